package pipeline

import (
	"fmt"
	"slices"
	"strings"

	"luksdock/disk"
	"luksdock/fsformat"
	"luksdock/luks"
)

// stepDef declares one step of a prepare, once: Plan (its entry and
// title), Run (the function), --dry-run (the command by hand and the note)
// and the state report (StateAfter, StateFailedIn) all read it from
// stepTable. Adding a step is its function and one entry there.
type stepDef struct {
	id StepID
	// title is the step's title; titleOf, when set, makes a fuller one from
	// the plan (title is then what names the step where no plan is at hand).
	title   string
	titleOf func(p *Plan) string
	// slow says why the step may take seconds (Step.Slow).
	slow string
	// in says whether the step is in the plan; nil: always.
	in func(p *Plan) bool
	// command is the shell command a person would type to do the same by
	// hand (on a kernel with device-mapper), given the facts.
	command func(p *Plan, f cmdFacts) string
	// note is what the --dry-run script says about the step beyond its
	// command; nil or "": nothing.
	note func(p *Plan) string
	// run does the step: what it did, or why it failed.
	run func(r *runner) (string, error)
	// after is the disk's state once the step has completed.
	after string
	// failed is the disk's state when the step fails inside (it may have
	// written part of its changes); keepState for a step that writes
	// nothing to the disk's layout (the state after the last step that
	// completed stays).
	failed string
	// failKind, when set, is the kind of a failure of the step that is not
	// an *Error (verify: the disk is not verified), whose state is then
	// failed.
	failKind Kind
}

// keepState is stepDef.failed of a step that writes no part of the layout.
const keepState = "(the state after the last step that completed)"

// stepTable is every step, in the order a run takes them; a plan holds
// those whose in says so. Set in init: the steps' functions report states
// read from it.
var stepTable []stepDef

func init() {
	stepTable = []stepDef{
		{id: StepPreflight, title: "Check the target",
			command: (*Plan).preflightCommand, run: (*runner).preflight,
			after: stateUnchanged, failed: keepState},
		{id: StepResume, title: "Continue the interrupted erase", titleOf: func(p *Plan) string { return "Continue the interrupted erase (" + p.Resume.String() + ")" },
			slow: "runs the key derivation function to recover the volume key",
			in:   resuming, command: (*Plan).resumeCommand, run: (*runner).resume,
			after:  "partitioned, LUKS header, no filesystem; the erase is incomplete: run the same command again to continue",
			failed: "partitioned, LUKS header, no filesystem; the erase is incomplete: run the same command again to continue, or prepare it again"},
		{id: StepWipe, title: "Wipe old signatures",
			in: notResuming, command: (*Plan).wipeCommand, run: (*runner).wipe,
			after: stateWiped, failed: statePartWiped},
		{id: StepPartition, title: "Partition the disk", titleOf: func(p *Plan) string { return partTitle(p.Opts.Table) },
			in: notResuming, command: (*Plan).partitionCommand, note: (*Plan).partitionNote, run: (*runner).partition,
			after: statePartitioned, failed: statePartPartitioned},
		{id: StepFormat, title: "Format LUKS", titleOf: formatTitle,
			slow: "the key derivation function is deliberately slow and memory-hard, so guessing passphrases is expensive",
			in:   notResuming, command: (*Plan).formatCommand, note: (*Plan).formatNote, run: (*runner).format,
			after: stateFormatted, failed: statePartFormatted},
		// Right after luksFormat, so verify proves it with the passphrase.
		{id: StepRecoveryKey, title: "Add the recovery key (a second keyslot)",
			slow:    "adding a keyslot runs the key derivation function twice: to unlock with the passphrase and to seal the new slot",
			in:      func(p *Plan) bool { return p.Opts.RecoveryKey != nil },
			command: (*Plan).recoveryKeyCommand,
			note:    (*Plan).recoveryKeyNote, run: (*runner).addRecoveryKey,
			after: stateFormatted, failed: statePartRecoveryKey},
		{id: StepOpen, title: "Open the encrypted volume",
			command: func(p *Plan, f cmdFacts) string { return fmt.Sprintf("cryptsetup open %s %s", f.part, p.mapperName()) },
			run:     (*runner).open,
			after:   stateFormatted, failed: keepState},
		{id: StepErase, title: "Erase the whole disk (zeros through the encryption)",
			slow: "writes every byte of the disk: hours on a large USB disk; Ctrl+C stops it and the same command continues it",
			in:   func(p *Plan) bool { return p.Opts.Erase }, command: (*Plan).eraseCommand, run: (*runner).erase,
			after:  "partitioned, LUKS header, erased, no filesystem: run the same command again to continue",
			failed: "partitioned, LUKS header, partly erased, no filesystem: run the same command again to continue"},
		{id: StepSurfaceCheck, title: "Read the whole disk back (surface check)",
			slow: "reads every byte of the disk back: as long as the erase",
			in:   func(p *Plan) bool { return p.Opts.Erase && p.Opts.SurfaceCheck },
			command: func(_ *Plan, f cmdFacts) string {
				return fmt.Sprintf("cmp --bytes=$(blockdev --getsize64 %s) %s /dev/zero", f.vol, f.vol)
			},
			run:    (*runner).surfaceCheck,
			after:  "partitioned, LUKS header, erased and read back, no filesystem: run the same command again to continue",
			failed: "partitioned, LUKS header, erased, partly read back, no filesystem: run the same command again to continue"},
		{id: StepMkfs, title: "Make the ext4 filesystem", titleOf: func(p *Plan) string {
			return "Make the ext4 filesystem (top directory owned by " + p.Owner.String() + ")"
		},
			slow: "writes the journal (up to 1 GiB on large disks) through the encryption",
			command: func(p *Plan, f cmdFacts) string {
				return strings.Join(fsformat.MkfsArgs(f.vol, p.Opts.Label, f.sector, p.Owner), " ")
			},
			run: (*runner).mkfs, after: stateNoVerify, failed: statePartMkfs},
		{id: StepClose, title: "Close the volume",
			command: func(p *Plan, _ cmdFacts) string { return "cryptsetup close " + p.mapperName() },
			run:     (*runner).closeVolume, after: stateNoVerify, failed: keepState},
		{id: StepVerify, title: "Verify it unlocks and fscks clean",
			slow: "unlocks the keyslot with luksdock's own LUKS code and with cryptsetup, each running the key derivation function (started early: during open and mkfs)",
			command: func(_ *Plan, f cmdFacts) string {
				return fmt.Sprintf("cryptsetup open --readonly %s luksdock-verify && e2fsck -fn /dev/mapper/luksdock-verify && cryptsetup close luksdock-verify", f.part)
			},
			run: (*runner).verify, after: stateReady, failed: stateVerifyFail, failKind: KindNotVerified},
		{id: StepHeaderBackup, title: "Back up the LUKS header",
			in: func(p *Plan) bool { return p.Opts.HeaderBackup != "" },
			command: func(p *Plan, f cmdFacts) string {
				return fmt.Sprintf("cryptsetup luksHeaderBackup %s --header-backup-file %s", f.part, shq(p.Opts.HeaderBackup))
			},
			run: (*runner).headerBackup, after: stateReady, failed: stateBackupFailed},
	}
}

func resuming(p *Plan) bool    { return p.Resume != nil }
func notResuming(p *Plan) bool { return p.Resume == nil }

// lookupStep is the table's entry for id; ok is false for an unknown step.
func lookupStep(id StepID) (d stepDef, ok bool) {
	for _, d := range stepTable {
		if d.id == id {
			return d, true
		}
	}
	return stepDef{id: id}, false
}

// StepTitle is the step's title without a plan, as messages name it (for
// a step whose title depends on the plan, its general one: "Partition the
// disk"); for a step the table does not have, its ID. A plan's own titles
// are in Plan.Steps.
func StepTitle(id StepID) string {
	if d, _ := lookupStep(id); d.title != "" {
		return d.title
	}
	return string(id)
}

// planSteps lays out the plan's steps from stepTable.
func (p *Plan) planSteps() []Step {
	f := p.planFacts()
	var steps []Step
	for _, d := range stepTable {
		if d.in != nil && !d.in(p) {
			continue
		}
		s := Step{ID: d.id, Title: d.title, Slow: d.slow, Command: d.command(p, f)}
		if d.titleOf != nil {
			s.Title = d.titleOf(p)
		}
		steps = append(steps, s)
	}
	return steps
}

// command is step id's shell command, the one a person would type to do the
// same by hand on a kernel with device-mapper, given f. The plan's steps and
// --dry-run's script use the plan's facts; a run reports it with what it
// learnt in each start event.
func (p *Plan) command(id StepID, f cmdFacts) string {
	if d, ok := lookupStep(id); ok {
		return d.command(p, f)
	}
	return ""
}

// scriptNote is what a person running the --dry-run script by hand should
// know about a step that its one-line command cannot say.
func (p *Plan) scriptNote(id StepID) string {
	if d, _ := lookupStep(id); d.note != nil {
		return d.note(p)
	}
	return ""
}

// StateFailedIn is the disk's state when step failed after done (the last
// step that completed): the steps that write say that they may have written
// part of their changes; the others leave the state after done.
func StateFailedIn(step, done StepID) string {
	d, ok := lookupStep(step)
	if !ok || d.failed == keepState {
		return StateAfter(done)
	}
	return d.failed
}

// StateAfter is the disk's state once step has completed ("": before any
// step). A step the table does not know is never reported as ready.
func StateAfter(step StepID) string {
	if step == "" {
		return stateUnchanged
	}
	if d, ok := lookupStep(step); ok {
		return d.after
	}
	return fmt.Sprintf("unknown: luksdock has no state for step %q; do not use this disk; prepare it again", step)
}

func partTitle(t disk.TableType) string {
	switch t {
	case disk.TableNone:
		return "No partition table (LUKS on the whole disk)"
	case disk.TableMBR:
		return "Partition (MBR, one partition from 1 MiB)"
	}
	return "Partition (GPT for 512- and 4096-byte sectors, one partition from 1 MiB)"
}

func formatTitle(p *Plan) string {
	if p.Opts.LUKS1 {
		return "Format LUKS1"
	}
	return "Format LUKS2"
}

func (p *Plan) preflightCommand(cmdFacts) string {
	t := p.Target
	img := shq(t.Path)
	if t.Image {
		if t.Create {
			// luksdock creates the image (O_EXCL) in preflight.
			return fmt.Sprintf("test ! -e %s && truncate -s %d %s", img, t.Size, img)
		}
		return fmt.Sprintf("test -f %s && test -z \"$(losetup --associated %s)\"", img, img)
	}
	return "lsblk --output NAME,SIZE,MODEL,SERIAL,MOUNTPOINTS " + img
}

func (p *Plan) wipeCommand(cmdFacts) string {
	wipe := "wipefs --all"
	for _, pt := range p.Target.Parts {
		if pt.Path != "" {
			wipe += " " + shq(pt.Path)
		}
	}
	return wipe + " " + shq(p.Target.Path)
}

func (p *Plan) partitionCommand(cmdFacts) string {
	t, o := p.Target, p.Opts
	img := shq(t.Path)
	ss := int64(t.logicalSector())
	if o.Table == disk.TableNone {
		if t.Image {
			return fmt.Sprintf("LOOP=$(losetup --find --show %s) && PART=$LOOP", img)
		}
		return "blockdev --rereadpt " + img
	}
	// the partition as disk.WritePartitionTable writes it
	part := "type=L, name=luksdock"
	if o.Table == disk.TableMBR {
		part = "type=83"
	}
	cmd := fmt.Sprintf("printf 'label: %s\\nstart=%d, size=%d, %s\\n' | sfdisk --quiet %s", o.Table.SfdiskLabel(), p.Layout.Start/ss, p.Layout.Size/ss, part, img)
	if t.Image {
		// The kernel makes the partition node of a loop device
		// attached with --partscan.
		return cmd + fmt.Sprintf(" && LOOP=$(losetup --find --show --partscan %s) && PART=${LOOP}p1 && test -b \"$PART\"", img)
	}
	return cmd + " && partx --update " + img
}

func (p *Plan) partitionNote() string {
	switch p.Opts.Table {
	case disk.TableGPT:
		return fmt.Sprintf("luksdock writes one GPT valid with 512- and 4096-byte sectors; this sfdisk equivalent is valid with %d-byte sectors only", p.Target.logicalSector())
	case disk.TableNone:
		return "no partition table: LUKS goes directly on the whole disk"
	}
	return ""
}

func (p *Plan) formatCommand(f cmdFacts) string {
	o := p.Opts
	a := luks.FormatArgs(f.part, luks.FormatOptions{LUKS1: o.LUKS1, Label: o.Label, Subsystem: o.Set, PBKDF: o.PBKDF})
	if !f.run {
		// By hand the passphrase is typed at cryptsetup's prompt: twice,
		// so a typo does not go unnoticed (--batch-mode alone asks once).
		// luksdock gives it on a pipe, where cryptsetup cannot ask twice.
		a = slices.Insert(a, 2, "--verify-passphrase")
	}
	return "cryptsetup " + strings.Join(a, " ")
}

func (p *Plan) formatNote() string {
	return "luksdock gives cryptsetup the passphrase on a pipe; by hand it asks for it twice (--verify-passphrase), so a typo does not go unnoticed"
}

// recoveryKeyCommand: luksdock generates the key, writes its file first,
// and gives cryptsetup the passphrase on stdin and the key on a pipe (fd
// 3), at the passphrase keyslot's cost (a run knows it: f.kdf); the
// --dry-run script does the same by hand (recoveryKeyByHand).
func (p *Plan) recoveryKeyCommand(f cmdFacts) string {
	if f.script {
		return p.recoveryKeyByHand(f)
	}
	kdf := f.kdf
	if !f.run {
		kdf = p.Opts.PBKDF
	}
	return "cryptsetup " + strings.Join(luks.AddKeyArgs(f.part, kdf), " ")
}

func (p *Plan) recoveryKeyNote() string {
	n := "luksdock generates the recovery key"
	if f := p.Opts.RecoveryKeyFile; f != "" {
		n += ", writes it to " + f + " (a new file, mode 0600, synced) before the disk accepts it,"
	}
	return n + " and gives cryptsetup the passphrase on stdin and the key on a pipe (fd 3); " +
		"by hand: 256 random bits as 8 groups of 8 modhex letters, the key file written first, the keyslot sealed at the passphrase keyslot's cost read from the header"
}

func (p *Plan) resumeCommand(cmdFacts) string {
	what := "partition and LUKS header"
	if p.Opts.Table == disk.TableNone {
		what = "LUKS header on the whole disk"
	}
	return fmt.Sprintf("# keep the %s (UUID %s) the interrupted run made; cryptsetup luksDump --dump-volume-key recovers the volume key", what, p.Resume.LUKSUUID)
}

func (p *Plan) eraseCommand(f cmdFacts) string {
	// count_bytes: exactly the volume's size, so dd does not fail with "No
	// space left on device" at its end (and stop a set -e script).
	cmd := fmt.Sprintf("dd if=/dev/zero of=%s bs=16M count=$(blockdev --getsize64 %s) iflag=count_bytes oflag=direct status=progress", f.vol, f.vol)
	if f.run && p.Engine == EngineUserspace {
		cmd = "# " + cmd + "  (userspace engine: luksdock encrypts the zeros on every core and writes the ciphertext straight to the data segment)"
	}
	return cmd
}
