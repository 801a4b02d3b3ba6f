package disk

import (
	"fmt"
	"strings"
)

// MinDiskSize is the smallest disk luksdock prepares (64 MiB).
const MinDiskSize = 64 << 20

// LargeDiskSize is the size above which Assess warns (4 TB, decimal, as
// disks are sold).
const LargeDiskSize = 4_000_000_000_000

// USB4KWarning is Assess's warning for a USB dock that reports 4096-byte
// logical sectors.
const USB4KWarning = "the USB dock reports 4096-byte logical sectors; most other docks and computers report 512: " +
	"only a layout readable with both (the default GPT, or --table none) unlocks elsewhere"

// Verdict is the safety policy's judgement of one disk.
type Verdict struct {
	// Refused lists every reason the disk must not be prepared, each with
	// its fix; any reason makes it ineligible regardless of flags.
	Refused []Reason `json:"refused,omitempty"`
	// Internal is true for disks not on USB (SATA, NVMe, virtio, MMC, SCSI,
	// unknown): allowed only with --allow-internal and a louder confirmation.
	Internal bool `json:"internal,omitempty"`
	// InternalReason says why Internal is set ("not on USB: sata").
	InternalReason string `json:"internal_reason,omitempty"`
	// Warnings are shown before confirmation: what would be destroyed
	// (LUKS headers, labelled filesystems, by name) and unusual sizes.
	Warnings []string `json:"warnings,omitempty"`
}

// Check enforces the verdict: nil when the disk at path may be prepared,
// else an error naming every reason and what to do. It is the one place the
// verdict is enforced: the wizard (through OK), NewPlan and the pipeline's
// preflight all call it.
func (v Verdict) Check(path string, allowInternal bool) error {
	if len(v.Refused) > 0 {
		return &RefusedError{Path: path, Reasons: append([]Reason(nil), v.Refused...)}
	}
	if v.Internal && !allowInternal {
		return fmt.Errorf("%s is %s; backup disks come through the dock. Pass --allow-internal (and confirm with internal:NAME) if you really mean it", path, v.InternalReason)
	}
	return nil
}

// OK reports whether the disk may be prepared: Check finds nothing against
// it under allowInternal.
func (v Verdict) OK(allowInternal bool) bool { return v.Check("", allowInternal) == nil }

// Reasons lists why the disk may not be prepared under allowInternal, each
// with its fix (empty when OK).
func (v Verdict) Reasons(allowInternal bool) []Reason {
	r := append([]Reason(nil), v.Refused...)
	// A refused disk stays refused with --allow-internal: it does not
	// "need" it.
	if v.Internal && !allowInternal && len(v.Refused) == 0 {
		r = append(r, Reason{v.InternalReason + " (internal disk; needs --allow-internal)", fixInternal})
	}
	return r
}

// Status is the one-line status for the list table: "ok", "ok (internal)",
// "refused: REASON; REASON", or "internal: needs --allow-internal".
func (v Verdict) Status(allowInternal bool) string {
	switch {
	case len(v.Refused) > 0:
		return "refused: " + strings.Join(Texts(v.Refused), "; ")
	case v.Internal && !allowInternal:
		return "internal (" + v.InternalReason + "): needs --allow-internal"
	case v.Internal:
		return "ok (internal: " + v.InternalReason + ")"
	}
	return "ok"
}

// Assess is the one place the safety policy lives; the wizard and prepare
// both use it. It refuses disks that hold the running system or anything
// mounted (on the disk, a partition, or a dm/md/LVM device stacked on
// them), active swap, holders (dm-crypt, md, LVM), loop devices attached to
// the disk or a partition itself or backed by a file on it, read-only disks, disks without a medium or smaller than
// MinDiskSize. Disks not on USB are Internal. Loop devices are not Internal:
// they are image files the user attached on purpose (a warning names the
// backing file). It warns about LUKS headers and labelled filesystems it
// would destroy, about disks larger than 4 TB, and about a USB dock that
// reports 4096-byte logical sectors. Partitions are refused
// before Assess: Sys.Disk returns ErrPartition for them.
func Assess(d Disk) Verdict {
	var v Verdict
	refuse := func(fix, f string, a ...any) { v.Refused = appendReason(v.Refused, Reason{fmt.Sprintf(f, a...), fix}) }

	uses := func(name string, mounts []string, swap bool, inUse []Reason) {
		root := false
		for _, m := range mounts {
			if m == "/" {
				root = true
				refuse(fixSystem, "%s holds the running system (mounted at /)", name)
			}
		}
		for _, u := range inUse {
			if root && u.Text == name+" is mounted at /" {
				continue
			}
			v.Refused = appendReason(v.Refused, u)
		}
		for _, m := range mounts {
			refuse(mountedReason(name, m).Fix, "%s: mounted at %s", name, m)
		}
		if swap {
			refuse(fixSwapoff(name), "%s: active swap", name)
		}
	}
	uses(d.Name, d.Mounts, d.Swap, d.InUse)
	for _, p := range d.Partitions {
		uses(p.Name, p.Mounts, p.Swap, p.InUse)
	}
	// Drop the generic "mounted at" lines that repeat an InUse reason.
	v.Refused = dedupeMounted(v.Refused)

	if d.ReadOnly {
		refuse(fixReadOnly, "read-only (write-protected)")
	}
	switch {
	case d.Size == 0:
		refuse(fixNoMedium, "no medium (size 0)")
	case d.Size < MinDiskSize:
		refuse(fixTooSmall, "smaller than 64 MiB (%s)", SizeString(d.Size))
	}
	switch d.Transport {
	case "usb-storage", "uas":
	case "loop":
		if d.LoopBacking != "" {
			v.Warnings = append(v.Warnings, fmt.Sprintf("loop device backed by %s", d.LoopBacking))
		}
	default:
		v.Internal = true
		v.InternalReason = "not on USB: " + d.Transport
	}

	warnSig := func(where string, s Signature) {
		switch {
		case s.Type == SigLUKS:
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s holds a LUKS%s header%s (UUID %s) that will be destroyed", where, s.Version, quoteLabel(s.Label), s.UUID))
		case s.Type != "" && s.Label != "":
			v.Warnings = append(v.Warnings, fmt.Sprintf("%s holds %s filesystem %q that will be destroyed", where, s.Type, s.Label))
		}
	}
	warnSig(d.Name, d.Content)
	for _, p := range d.Partitions {
		warnSig(p.Name, p.Content)
	}
	if d.USB != nil && d.LogicalSector == 4096 {
		v.Warnings = append(v.Warnings, USB4KWarning)
	}
	if d.Size > LargeDiskSize {
		v.Warnings = append(v.Warnings, fmt.Sprintf("larger than 4 TB (%s): check this is the disk you mean", SizeString(d.Size)))
	}
	return v
}

func quoteLabel(l string) string {
	if l == "" {
		return ""
	}
	return fmt.Sprintf(" labelled %q", l)
}

func dedupeMounted(r []Reason) []Reason {
	var out []Reason
	for _, x := range r {
		_, rest, ok := strings.Cut(x.Text, ": mounted at ")
		if ok {
			dup := false
			for _, y := range r {
				if strings.HasSuffix(y.Text, " is mounted at "+rest) || strings.HasSuffix(y.Text, "(mounted at "+rest+")") {
					dup = true
				}
			}
			if dup {
				continue
			}
		}
		out = append(out, x)
	}
	return out
}

// SizeString formats a byte count with binary units, one decimal: "465.8 GiB".
func SizeString(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit && exp < 5; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// Summary is a one-line "what is on it" for the list table, e.g.
// `GPT: sdi1 LVM2 PV 465.8 GiB`, `LUKS2 "backups01" 1f3c5a2b…`, `GPT
// protective MBR, but no valid GPT header (damaged or half-written partition
// table)` or "empty".
func (d Disk) Summary() string {
	if d.ProbeError != "" && d.Content.Empty() && len(d.Partitions) == 0 {
		return "unknown (" + d.ProbeError + ")"
	}
	var parts []string
	if d.Content.Type != "" {
		parts = append(parts, Signature{Type: d.Content.Type, Version: d.Content.Version, Label: d.Content.Label, UUID: d.Content.UUID}.String())
	}
	if len(d.Partitions) > 0 || d.Content.Table != "" {
		var ps []string
		for _, p := range d.Partitions {
			what := p.Content.String()
			if p.Content.Empty() && d.ProbeError != "" {
				what = "unknown"
			}
			ps = append(ps, fmt.Sprintf("%s %s %s", p.Name, what, SizeString(p.Size)))
		}
		t := d.Content.tableString(true)
		if t == "" {
			t = "partitions"
		}
		switch {
		case len(ps) > 0:
			t += ": " + strings.Join(ps, "; ")
		case d.Content.Table != "PMBR":
			// A protective MBR without a GPT says enough on its own.
			t += ": no partitions"
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, " + ")
}
