package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"luksdock/core"
	"luksdock/luks"
	"luksdock/pipeline"
)

// Opened is open's result for people: what was unlocked and where, then
// the mountpoint alone on the last line (for a script).
func Opened(w io.Writer, res *core.Opened) {
	if res.Already {
		fmt.Fprintf(w, "%s is already open: %s\n", res.Target, res.Mountpoint)
	} else {
		fmt.Fprintf(w, "%s (%s) unlocked (%s engine) and mounted at %s\n", res.Target, res.Label, res.Engine, res.Mountpoint)
	}
	fmt.Fprintf(w, "%s\n", res.Mountpoint)
}

// Closed is close's result for people.
func Closed(w io.Writer, res *core.Closed) {
	switch {
	case res.Unmounted || res.Locked:
		fmt.Fprintf(w, "%s: unmounted %s and locked\n", res.Target, res.Mountpoint)
	default:
		fmt.Fprintf(w, "%s was not open\n", res.Target)
	}
	if res.PowerOff != "" {
		fmt.Fprintf(w, "power: %s\n", res.PowerOff)
	}
}

// KeyChange is a passwd or recovery-key result for people (what: "passphrase"
// or "recovery key"); a change the inventory could not record is warned
// about on stderr.
func KeyChange(w, stderr io.Writer, r *core.KeyChange, what string) {
	if n := r.Note(what); n != "" {
		fmt.Fprintln(w, n)
	}
	if r.AlreadyDone {
		fmt.Fprintf(w, "%s: already complete: the new %s opens keyslot %d; nothing written\n", r.Target, what, r.NewSlot)
	} else {
		fmt.Fprintf(w, "%s: the %s is replaced (keyslot %d", r.Target, what, r.NewSlot)
		if r.OldSlot >= 0 {
			fmt.Fprintf(w, "; keyslot %d removed", r.OldSlot)
		}
		fmt.Fprintln(w, ")")
	}
	fmt.Fprintf(w, "  proved:       %s\n", r.Proved)
	if r.Strength != nil {
		fmt.Fprintf(w, "  strength:     %s\n", r.Strength.Summary())
	}
	switch {
	case r.RecoveryKeyFile == "":
	case r.AlreadyDone:
		fmt.Fprintf(w, "  recovery key: the one in %s (already there; nothing written now); print it, keep the paper away from this disk, then delete the file\n", r.RecoveryKeyFile)
	case r.Resumed:
		fmt.Fprintf(w, "  recovery key: the one in %s (written by the interrupted run); print it, keep the paper away from this disk, then delete the file\n", r.RecoveryKeyFile)
	default:
		fmt.Fprintf(w, "  recovery key: written to %s: print it, keep the paper away from this disk, then delete the file\n", r.RecoveryKeyFile)
	}
	if r.Recorded {
		fmt.Fprintf(w, "  inventory:    changed %s\n", r.Changed.Format("2006-01-02"))
	} else {
		Warnf(stderr, "%s is not in the inventory, so the date of this change is not recorded", r.Target)
	}
}

// EraseProgress is retire --erase's progress line for people.
func EraseProgress(w io.Writer, done, total int64) {
	fmt.Fprintf(w, "overwriting: %s of %s\n", pipeline.HumanSize(done), pipeline.HumanSize(total))
}

// Retired is retire's result: for people on w (text), and in either case
// a header backup that could not be removed is warned about on stderr.
func Retired(w, stderr io.Writer, res *core.Retired, text bool) {
	if !text {
		if res.HeaderBackup != "" && !res.HeaderBackupRemoved {
			Warnf(stderr, "HEADER BACKUP NOT REMOVED: %s", res.HeaderBackupNote)
		}
		return
	}
	fmt.Fprintf(w, "%s is retired: crypto-erased (keyslots %v wiped)", res.Target, res.KeyslotsBefore)
	if res.Erased {
		fmt.Fprint(w, " and overwritten with zeros")
	}
	fmt.Fprintln(w)
	for _, p := range res.Proved {
		fmt.Fprintf(w, "  proved: %s\n", p)
	}
	if res.HeaderBackupNote != "" {
		if res.HeaderBackupRemoved {
			fmt.Fprintf(w, "  %s\n", res.HeaderBackupNote)
		} else {
			Warnf(stderr, "HEADER BACKUP NOT REMOVED: %s", res.HeaderBackupNote)
		}
	}
	if res.HostKeyRemoved != "" {
		fmt.Fprintf(w, "  host key: %s removed (it opened the disk on this host)\n", res.HostKeyRemoved)
	}
	if res.Recorded {
		fmt.Fprintf(w, "  inventory: %s marked retired on %s; the label is free\n", res.Label, res.Time.Format("2006-01-02"))
	}
}

// Enrolled is host enroll's result.
func Enrolled(w io.Writer, h luks.HostSlot, uuid string) {
	fmt.Fprintf(w, "Enrolled %s on disk %s: keyslot %d, %s.\n", h.Name, uuid, h.Keyslot, core.HostKeyWhere(h, uuid))
}

// Forgot is host forget's result (msg: what core.Forget did).
func Forgot(w io.Writer, uuid, msg string) {
	fmt.Fprintf(w, "Disk %s: %s.\n", uuid, msg)
}

// HostKeys is host status: the disks this host holds keys for, as a table
// or (asJSON) an indented JSON array.
func HostKeys(w io.Writer, keys []core.HostKey, asJSON bool) error {
	if asJSON {
		if keys == nil {
			keys = []core.HostKey{}
		}
		return JSONIndented(w, keys)
	}
	if len(keys) == 0 {
		fmt.Fprintf(w, "This host holds no disk keys (%s/keys).\n", core.ConfigDir())
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tSET\tLUKS UUID\tKEY\tSTATE")
	for _, k := range keys {
		state := "enrolled (" + k.Method + ")"
		if k.Forget {
			state = "forgotten: keyslot wiped at next docking"
		}
		key := dash(k.KeyFile)
		if k.Mode != "" {
			key += " (" + k.Mode + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(k.Label), dash(k.Set), strings.ToLower(k.LUKSUUID), key, state)
	}
	return tw.Flush()
}

// EraseProgressEvery is an overwrite's progress (EraseProgress) on w at
// most every interval, and when it is done.
func EraseProgressEvery(w io.Writer, interval time.Duration) func(done, total int64) {
	last := time.Time{}
	return func(done, total int64) {
		if time.Since(last) > interval || done == total {
			last = time.Now()
			EraseProgress(w, done, total)
		}
	}
}
