package disk

import "strings"

// Reason is one reason a disk must not be prepared, decided where the
// reason is found, with what its owner can do about it. It reads, and is
// written to JSON, as its text alone (list --json keeps strings).
type Reason struct {
	Text string
	// Fix says what to do, naming the device, mount point or mapping
	// concerned ("" when nothing specific is known). It says nothing of
	// the interface: the wizard and the CLI say what comes after.
	Fix string
}

func (r Reason) String() string { return r.Text }

// MarshalText writes the reason as its text.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.Text), nil }

// UnmarshalText reads a reason written by MarshalText (the fix is not
// kept in JSON).
func (r *Reason) UnmarshalText(b []byte) error {
	*r = Reason{Text: string(b)}
	return nil
}

// WithFix is the reason and, when one is known, its fix: "TEXT (to fix:
// FIX)", for messages that have only one line to say both.
func (r Reason) WithFix() string {
	if r.Fix == "" {
		return r.Text
	}
	return r.Text + " (to fix: " + strings.TrimSuffix(r.Fix, ".") + ")"
}

// RefusedError is Verdict.Check's refusal: the disk at Path and every
// reason, each with its fix, so that JSON can carry the fixes apart from
// the message (errors.As finds it through wrapping).
type RefusedError struct {
	Path    string
	Reasons []Reason
}

func (e *RefusedError) Error() string {
	with := make([]string, len(e.Reasons))
	for i, r := range e.Reasons {
		with[i] = r.WithFix()
	}
	return e.Path + " is refused: " + strings.Join(with, "; ")
}

// Texts are the reasons' texts.
func Texts(rs []Reason) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Text
	}
	return out
}

func appendReason(l []Reason, r Reason) []Reason {
	for _, x := range l {
		if x.Text == r.Text {
			return l
		}
	}
	return append(l, r)
}

// The fixes, one per kind of reason.
const (
	fixSystem   = "none: this is the disk the running system lives on, and luksdock never prepares it. Dock the backup disk instead."
	fixReadOnly = "the disk is write-protected: slide its lock switch off, or use another disk."
	fixNoMedium = "insert the medium, or undock and dock the disk again."
	fixTooSmall = "use a larger disk (or, for an image, a larger --size)."
	fixInternal = "backup disks come through the dock. If you really mean this disk, start luksdock again with --allow-internal."
)

func fixUnmount(what string) string {
	return "unmount it (umount " + what + ", or eject it in the file manager)."
}

func fixSwapoff(dev string) string {
	return "turn the swap off (swapoff /dev/" + dev + ")."
}

func fixLoop(loop string) string {
	return "detach the loop device (losetup -d /dev/" + loop + ")."
}
