package ui

import (
	"fmt"
	"slices"
	"strings"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/pipeline"
)

// Summary is what luksdock prints on standard output when the wizard ends:
// for a person, what the actions on known disks did and left (actions:
// Model.ActionsDone), one paragraph per disk prepared and verified, and
// the error of a last run that did not finish (nil: none). (--json prints the
// results as JSON instead.)
func Summary(results []*pipeline.Result, last error, actions ...string) string {
	var b strings.Builder
	for _, l := range actions {
		b.WriteString(l + "\n")
	}
	for _, r := range results {
		fmt.Fprintf(&b, "%s is a verified backup disk, labelled %q.\n", r.Target, r.FSLabel)
		fmt.Fprintf(&b, "  LUKS%d %s, UUID %s; %s usable.\n", r.LUKS.Version, r.LUKS.Cipher, r.LUKS.UUID, disk.SizeString(r.LUKS.DataSize))
		if r.HeaderBackup != "" {
			fmt.Fprintf(&b, "  Header backup: %s (keep it safe and off the disk).\n", r.HeaderBackup)
		}
		if !strings.HasPrefix(r.Partition, "/dev/") {
			fmt.Fprintf(&b, "  Partition: %s\n", r.Partition)
		} else {
			fmt.Fprintf(&b, "  Unlock by hand: cryptsetup open %s %s\n", r.Partition, r.FSLabel)
		}
	}
	if last != nil {
		fmt.Fprintf(&b, "The last preparation did not finish: %v\n", AfterWizard(last))
	}
	if b.Len() == 0 {
		b.WriteString("No disk was prepared.\n")
	}
	return b.String()
}

// actionDone is what one action did to the volume with LUKS UUID uuid;
// open is set for an Open that left it open.
type actionDone struct {
	uuid string
	open bool
	line string
}

// noteAction adds what act did (res: core's result) to done. A Close
// drops the line of an Open of the same volume: it is not open any more.
func noteAction(done []actionDone, act action, res any) []actionDone {
	var d actionDone
	switch r := res.(type) {
	case *core.Opened:
		d = actionDone{uuid: r.LUKSUUID, open: true,
			line: fmt.Sprintf("%s is open, mounted at %s — luksdock close --label %s (or Close in the wizard) before you undock it.", nameOf(r.Label, r.Target), r.Mountpoint, r.Label)}
		if r.Label == "" {
			d.line = fmt.Sprintf("%s is open, mounted at %s — luksdock close --mountpoint %s (or Close in the wizard) before you undock it.", r.Target, r.Mountpoint, r.Mountpoint)
		}
	case *core.Closed:
		done = slices.DeleteFunc(done, func(o actionDone) bool { return o.open && strings.EqualFold(o.uuid, r.LUKSUUID) })
		d = actionDone{uuid: r.LUKSUUID, line: nameOf(r.Label, r.Target) + " was closed"}
		if r.PoweredOff {
			d.line += " and powered off: it can be undocked."
		} else {
			d.line += " (unmounted and locked)." // an image file, or a drive left on
		}
	case *core.KeyChange:
		what := "passphrase"
		if act == actRecoveryKey {
			what = "recovery key"
		}
		d = actionDone{uuid: r.LUKSUUID, line: fmt.Sprintf("%s: its %s was replaced (keyslot %d).", nameOf(r.Label, r.Target), what, r.NewSlot)}
		if r.AlreadyDone {
			d.line = fmt.Sprintf("%s: its new %s was already in place (keyslot %d); nothing was written.", nameOf(r.Label, r.Target), what, r.NewSlot)
		}
	case *core.Retired:
		d = actionDone{uuid: r.LUKSUUID, line: nameOf(r.Label, r.Target) + " was retired: crypto-erased, it opens nothing any more."}
	case *enrolled:
		d = actionDone{line: fmt.Sprintf("This host was enrolled (keyslot %d, %s): it unlocks the disk on its own when docked.", r.slot.Keyslot, r.slot.Method)}
	default:
		return done
	}
	return append(done, d)
}

// nameOf names a disk by its label, else its path.
func nameOf(label, target string) string {
	if label != "" {
		return label
	}
	return target
}

// actionLines are done's lines, in order.
func actionLines(done []actionDone) []string {
	var l []string
	for _, d := range done {
		l = append(l, d.line)
	}
	return l
}
