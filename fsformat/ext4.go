// Package fsformat makes and checks the ext4 filesystem of a backup disk with
// the real e2fsprogs tools: mkfs.ext4 (mke2fs), e2fsck, dumpe2fs and debugfs.
package fsformat

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// MaxLabel is the size of ext4's s_volume_name field.
const MaxLabel = 16

// ValidateLabel accepts labels a desktop can mount by (/media/USER/LABEL) and
// that ext4 can store: 1 to 16 bytes of valid UTF-8, no control characters,
// no white space, no '/', not starting with '-' or '.'.
func ValidateLabel(label string) error {
	switch {
	case label == "":
		return errors.New("the label is empty")
	case !utf8.ValidString(label):
		return errors.New("the label is not valid UTF-8")
	case len(label) > MaxLabel:
		return fmt.Errorf("the label %q is %d bytes; ext4 labels hold at most %d bytes", label, len(label), MaxLabel)
	case label[0] == '-' || label[0] == '.':
		return fmt.Errorf("the label %q must not start with %q", label, label[0])
	}
	for _, r := range label {
		switch {
		case r == '/':
			return fmt.Errorf("the label %q contains '/', which cannot be part of a mount point", label)
		case unicode.IsControl(r):
			return fmt.Errorf("the label %q contains a control character", label)
		case unicode.IsSpace(r):
			return fmt.Errorf("the label %q contains white space", label)
		case !unicode.IsPrint(r):
			return fmt.Errorf("the label %q contains a character that cannot be printed", label)
		}
	}
	return nil
}

// Tools lists the e2fsprogs programs luksdock runs.
var Tools = []string{"mkfs.ext4", "e2fsck", "dumpe2fs", "debugfs"}

// Available reports whether e2fsprogs is installed, with the install hint.
func Available() error {
	for _, t := range Tools {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not found: install e2fsprogs (`apt-get install e2fsprogs`)", t)
		}
	}
	return nil
}

// PortableBlockSize is the smallest ext4 block size that mounts through any
// dock: the largest logical sector size docks report.
const PortableBlockSize = 4096

// Owner is who owns the filesystem's top directory (inode 2): the person the
// disk is for, so that a desktop that mounts it at /media/USER/LABEL lets
// them write there.
type Owner struct{ UID, GID int }

func (o Owner) String() string { return fmt.Sprintf("%d:%d", o.UID, o.GID) }

// MkfsArgs is the mkfs.ext4 command for dev. -F because dev may be a regular
// file (the userspace data path); nodiscard because a freshly keyed LUKS
// volume has nothing worth discarding; lazy_itable_init so that the cost grows
// with metadata, not capacity (the kernel zeroes inode tables on first mount);
// lazy_journal_init because mke2fs's zeroing of the journal (up to 1 GiB,
// written through the encryption) guards against stale journal blocks that
// recovery could take for transactions, and a brand-new LUKS volume has none:
// jbd2 recovery runs only when the journal superblock's s_start is not 0
// (mke2fs writes 0), and then stops at the first block that lacks the JBD2
// magic or carries another sequence number than the next expected one
// (fs/jbd2/recovery.c do_one_pass, which also checks block checksums); every
// journal block mkfs leaves unwritten decrypts, under the volume key just
// generated, to data no one chose (a 2^-64 chance per block of passing
// those two checks). Only for a volume made with a fresh key: never reuse
// these arguments on an existing plaintext device. See TestLazyJournalCrash.
// The block size is always 4096 (PortableBlockSize): the kernel refuses to
// mount an ext4 whose block is smaller than the device's logical sector, and
// the opened volume's sector is the larger of the LUKS sector and the dock's
// — which is 4096 behind many USB bridges even when the disk was prepared
// through a 512-byte dock (mke2fs picks 1024 for small filesystems by
// itself). sectorSize, the LUKS encryption sector size (0 if not known
// yet), raises it further should it ever exceed 4096.
// root_owner gives the top directory to owner (mke2fs makes it root's, or
// with a bare root_owner the caller's, which under sudo is root too).
func MkfsArgs(dev, label string, sectorSize int, owner Owner) []string {
	a := []string{"mkfs.ext4", "-q", "-F", "-L", label, "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1,root_owner=" + owner.String()}
	a = append(a, "-b", strconv.Itoa(max(sectorSize, PortableBlockSize)))
	return append(a, dev)
}

// Mkfs makes an ext4 filesystem labelled label on dev, whose sectors are
// sectorSize bytes (0: let mke2fs decide), with its top directory owned by
// owner.
func Mkfs(ctx context.Context, dev, label string, sectorSize int, owner Owner) error {
	if err := ValidateLabel(label); err != nil {
		return err
	}
	if owner.UID < 0 || owner.GID < 0 {
		return fmt.Errorf("invalid owner %s", owner)
	}
	_, err := run(ctx, MkfsArgs(dev, label, sectorSize, owner))
	return err
}

// TopDir is the filesystem's top directory (inode 2) as debugfs reports it.
type TopDir struct {
	Owner Owner
	Mode  string // octal permission bits, "0755"
}

// ReadTopDir reads the owner and mode of the top directory with
// `debugfs -R "stat <2>"` (read-only).
func ReadTopDir(ctx context.Context, dev string) (TopDir, error) {
	out, err := run(ctx, []string{"debugfs", "-R", "stat <2>", dev})
	if err != nil {
		return TopDir{}, err
	}
	var d TopDir
	uid, gid := -1, -1
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			switch f[i] {
			case "User:":
				uid, _ = strconv.Atoi(f[i+1])
			case "Group:":
				gid, _ = strconv.Atoi(f[i+1])
			case "Mode:":
				d.Mode = f[i+1]
			}
		}
	}
	if uid < 0 || gid < 0 {
		return TopDir{}, fmt.Errorf("debugfs -R 'stat <2>' %s printed no owner", dev)
	}
	d.Owner = Owner{uid, gid}
	return d, nil
}

// Check is the outcome of `e2fsck -fn`.
type Check struct {
	Clean  bool     // exit 0 and nothing but the pass summaries
	Output []string // e2fsck's lines
}

var passLine = regexp.MustCompile(`^(Pass [1-5][a-z]?: .*|.*: [0-9]+/[0-9]+ files \(.*\), [0-9]+/[0-9]+ blocks|e2fsck [0-9.]+ \(.*\))$`)

// Fsck runs `e2fsck -fn dev` (forced, read-only, answering no) and reports
// whether it found nothing but its pass summaries.
func Fsck(ctx context.Context, dev string) (Check, error) {
	out, err := run(ctx, []string{"e2fsck", "-fn", dev})
	c := Check{Clean: err == nil}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " ")
		if line == "" {
			continue
		}
		c.Output = append(c.Output, line)
		if !passLine.MatchString(line) {
			c.Clean = false
		}
	}
	var te *ToolError
	if err != nil && !errors.As(err, &te) {
		return c, err // could not run at all
	}
	return c, nil
}

// Super is what luksdock checks in an ext4 superblock.
type Super struct {
	Label     string
	BlockSize int
}

// ReadSuper reads the label and block size with dumpe2fs -h.
func ReadSuper(ctx context.Context, dev string) (Super, error) {
	out, err := run(ctx, []string{"dumpe2fs", "-h", dev})
	if err != nil {
		return Super{}, err
	}
	var sb Super
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Filesystem volume name:"); ok {
			if sb.Label, found = strings.TrimSpace(v), true; sb.Label == "<none>" {
				sb.Label = ""
			}
		}
		if v, ok := strings.CutPrefix(sc.Text(), "Block size:"); ok {
			sb.BlockSize, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if !found || sb.BlockSize == 0 {
		return Super{}, fmt.Errorf("dumpe2fs -h %s printed no volume name or block size", dev)
	}
	return sb, nil
}

// ToolError is a failed e2fsprogs run with the tool's own message.
type ToolError struct {
	Tool   string
	Code   int
	Output string
}

func (e *ToolError) Error() string {
	return fmt.Sprintf("%s failed (exit %d): %s", e.Tool, e.Code, strings.TrimSpace(e.Output))
}

// run executes an e2fsprogs tool with standard input closed; it returns the
// combined output.
func run(ctx context.Context, args []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = []string{"LC_ALL=C", "PATH=" + os.Getenv("PATH") + ":/usr/sbin:/sbin"}
	// A process group of its own: a terminal's Ctrl-C goes to luksdock,
	// which lets the step finish, not to mkfs/e2fsck halfway through it.
	// It dies with luksdock (Pdeathsig), and a cancelled context kills its
	// group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ctx.Err() != nil {
				return out.Bytes(), fmt.Errorf("%s: %w", args[0], ctx.Err())
			}
			return out.Bytes(), &ToolError{Tool: args[0], Code: ee.ExitCode(), Output: out.String()}
		}
		return out.Bytes(), fmt.Errorf("%s: %w", args[0], err)
	}
	return out.Bytes(), nil
}
