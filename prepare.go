package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/manpage"
	"luksdock/internal/secret"
	"luksdock/pipeline"
)

func newPrepareCmd() *cobra.Command {
	var po prepareOptions
	cmd := &cobra.Command{
		Use:   "prepare (--device /dev/sdX | --image PATH [--size SIZE]) --label LABEL --passphrase-file FILE|- --confirm NAME",
		Short: "Prepare a backup disk non-interactively (the wizard's pipeline)",
		Long: `prepare wipes the target, makes one partition from 1 MiB to the end (none
with --table none: LUKS on the whole disk), formats it with LUKS2
(aes-xts-plain64, 512-bit key; LUKS1 with --luks1) whose label is LABEL,
opens it, makes an ext4 filesystem labelled LABEL inside (4096-byte blocks,
which mount behind any dock), closes it, and verifies that the passphrase
unlocks it (with luksdock's own LUKS code and with cryptsetup, to the volume
key it generated; started during open and mkfs), that e2fsck -fn is clean,
who owns the top directory, and with which sector sizes a kernel finds the
volume.

Docks disagree about sector size: many USB bridges present a disk with
4096-byte logical sectors, SATA and other docks with 512. The default table
(--table gpt) is one GPT valid with both, so the disk unlocks in any dock.
--table none puts LUKS directly on the whole disk (no partition; also found
with both). --table mbr counts the sectors of the dock it is made in and is
found only through docks of that sector size.

The filesystem's top directory belongs to the person who ran luksdock: the
user behind sudo (SUDO_UID, SUDO_GID) or pkexec (PKEXEC_UID and that user's
primary group), root when there is none; --owner USER or UID:GID overrides
(mke2fs -E root_owner).

With --recovery-key FILE it also generates a recovery key (256 bits from
the system's random generator, 8 groups of 8 letters, as
systemd-cryptenroll --recovery-key makes them), writes it to FILE (a new
file, mode 0600, which must not be on the target disk) and adds it as a
second LUKS keyslot; verify then proves that it opens the disk too. Type it
exactly as written, dashes included, at the disk's passphrase prompt when
the passphrase is lost. Print it, keep the paper away from the disk and
delete the file.

Before anything is written the drive's SMART health is read with smartctl
(read-only commands; through a USB dock with SAT or the bridge's documented
pass-through). A failing or degrading disk (FAILED self-assessment, an
attribute at its threshold, reallocated, pending or offline-uncorrectable
sectors) is refused unless --accept-unhealthy is given too. A dock that
passes no SMART commands, or a missing smartctl, is said and does not stop
the run.

--set NAME names the rotation set the disk belongs to ("offsite"); it is
kept in the LUKS2 subsystem field (cryptsetup luksDump shows it), so any
machine can tell. Every verified disk is recorded in the inventory (see
'luksdock inventory'); a label that another disk of the same set has there
is refused, with the next free one suggested (without --set: a warning).

--confirm must name the target: the kernel name of a disk (sdi for /dev/sdi),
internal:NAME for a disk not on USB (which also needs --allow-internal), or
the file name of an image (disk.img). Otherwise nothing is written.

The passphrase is the line in --passphrase-file without its line ending,
exactly what you will type at the unlock prompt; '-' reads standard input. A
file of more than one line is refused rather than cut short. The passphrase
is never accepted as an argument or from the environment.

Engines: 'kernel' opens the volume with cryptsetup (device-mapper);
'userspace' encrypts in luksdock and serves the volume to mkfs.ext4 through
FUSE, for machines without device-mapper and for image files. 'auto' picks
kernel for block devices when device-mapper works, userspace otherwise.

What a killed luksdock left on the target is cleaned up first and reported:
an unused luksdock-* dm-crypt mapping on its partitions, a dead luksdock FUSE
mount (not with --dry-run, which touches nothing).

The PBKDF flags are passed to cryptsetup as they are; without them
cryptsetup's own benchmarked defaults apply.

--erase writes the whole LUKS data segment with zeros through the encryption
after luksFormat and before mkfs, so the disk holds only ciphertext (old data
is gone; used space cannot be told from free space). --surface-check then
reads it all back and checks that every sector decrypts to zeros: a disk
that returns wrong data (fake capacity) or read errors is refused with exit
5, naming the first bad byte and the count. Both run at the disk's speed and
print their progress (a line updated in place on a terminal; 'progress'
events with --json). Ctrl+C or SIGTERM stops them within a second; the
position is saved with the disk's identity and LUKS UUID (in
$LUKSDOCK_STATE_DIR, default /var/lib/luksdock, or
~/.local/state/luksdock for a user other than root), also every few seconds
while they run, so after an interruption, a kill or an undock the same
command on the same disk continues from there (it says so; --restart
starts over instead).

` + prepareExitCodes,
		Example: prepareExample,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return po.run(cmd) },
	}
	manpage.SetFiles(cmd, rootFiles)
	po.flags(cmd)
	return cmd
}

// prepareOptions are prepare's flags.
type prepareOptions struct {
	target                   targetFlags
	opts                     optionFlags
	o                        pipeline.Options
	table, passFile, confirm string
	asJSON, dryRun           bool
}

func (po *prepareOptions) flags(cmd *cobra.Command) {
	o := &po.o
	po.target.add(cmd, true, true)
	po.opts.add(cmd, false)
	f := cmd.Flags()
	f.StringVar(&o.Label, "label", "", "filesystem and LUKS2 label, at most 16 bytes (e.g. backups01)")
	addPassphraseFlag(cmd, &po.passFile)
	f.StringVar(&po.confirm, "confirm", "", "the target's name, to confirm it may be destroyed (sdi, internal:sda, disk.img)")
	f.StringVar(&po.table, "table", string(disk.TableGPT), "partition table: gpt, none or mbr (gpt: one GPT for 512- and 4096-byte docks; none: LUKS on the whole disk; mbr: only the dock's own sector size)")
	f.BoolVar(&o.LUKS1, "luks1", false, "LUKS1 instead of LUKS2, for old systems")
	f.StringVar(&o.HeaderBackup, "header-backup", "", "write a LUKS header backup here (mode 0600; never overwrites; refused on the target itself)")
	f.StringVar(&o.Set, "set", "", "the rotation set this disk belongs to (e.g. offsite): kept in the LUKS2 subsystem field and the inventory")
	f.StringVar(&o.RecoveryKeyFile, "recovery-key", "", "generate a recovery key, add it as a second keyslot and write it to this new file (mode 0600; never overwrites; not on the target disk)")
	f.BoolVar(&o.AcceptUnhealthy, "accept-unhealthy", false, "use a disk even though its SMART health is failing or degrading")
	f.StringVar(&o.Owner, "owner", "", "owner of the filesystem's top directory: USER or UID:GID (default: the user behind sudo or pkexec, else root)")
	f.BoolVar(&o.Erase, "erase", false, "overwrite the whole disk through the encryption (zeros, encrypted) before mkfs; resumable")
	f.BoolVar(&o.SurfaceCheck, "surface-check", false, "after --erase, read the whole disk back and refuse it (exit 5) if any sector is wrong or unreadable")
	f.BoolVar(&o.Restart, "restart", false, "with --erase: start over, even if an interrupted erase of this disk could be continued")
	f.BoolVar(&po.asJSON, "json", false, "print one JSON event per line")
	f.BoolVar(&po.dryRun, "dry-run", false, "print the plan as a shell script that does the same by hand (on a kernel with device-mapper) and touch nothing")
}

// check refuses what is wrong with the flags alone (exit 2): the target
// first, then the label and the options that go together.
func (po *prepareOptions) check() error {
	if err := core.CheckTargetChoice(po.target.device, po.target.image, po.target.size != ""); err != nil {
		return usageError{err}
	}
	o := &po.o
	switch {
	case o.Label == "":
		return usageError{errors.New("--label is required")}
	case o.SurfaceCheck && !o.Erase:
		return usageError{errors.New("--surface-check reads back what --erase writes: give both")}
	case o.Restart && !o.Erase:
		return usageError{errors.New("--restart goes with --erase")}
	case po.confirm == "" && !po.dryRun:
		return usageError{errors.New("--confirm NAME is required: the kernel name of the disk (sdi) or the image's file name")}
	}
	return nil
}

// run is prepare: core.PlanPrepare (every refusal of a real run, for
// --dry-run too), then core's Run, which records the verified disk.
func (po *prepareOptions) run(cmd *cobra.Command) (err error) {
	ran := false
	out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	defer func() {
		if po.asJSON && !ran {
			jsonRefusal(out, err, pipeline.StepPreflight)
		}
	}()
	if err := po.check(); err != nil {
		return err
	}
	t, err := po.target.target(!po.dryRun)
	if err != nil {
		return err
	}
	o := po.o
	o.Table, o.Engine, o.PBKDF, o.AllowInternal = disk.TableType(po.table), pipeline.Engine(po.opts.engine), po.opts.pbkdf, po.opts.allowInternal
	prep, err := core.PlanPrepare(core.PrepareRequest{Target: t, Options: o})
	if err != nil {
		return err
	}
	defer secret.Free(prep.Plan.Opts.RecoveryKey)
	if prep.Warning != "" {
		fmt.Fprintf(stderr, "luksdock: warning: %s\n", prep.Warning)
	}
	if po.dryRun {
		fmt.Fprint(out, prep.Plan.Script())
		return nil
	}
	pass, err := readPassphrase(po.passFile, cmd.InOrStdin())
	if err != nil {
		return err
	}
	defer secret.Free(pass)
	// the wizard's estimate: there a weak passphrase needs a tick, here a warning
	if w := core.AssessPassphrase(pass, core.StrengthInputs(o.Label, t.Name)).Warning(); w != "" && po.asJSON {
		jsonEvents(out)(pipeline.Event{Time: time.Now(), Kind: pipeline.EventWarning, Step: pipeline.StepPreflight, Message: w})
	} else if w != "" {
		fmt.Fprintf(stderr, "luksdock: warning: %s\n", w)
	}
	ctx, stop, finished := signalContext(stderr)
	defer stop()
	emit := textEvents(out, 0)
	if po.asJSON {
		emit = jsonEvents(out)
	}
	ran = true
	res, recErr, err := prep.Run(ctx, po.confirm, pass, emit)
	sig, _ := lastStop.Load().(os.Signal)
	journalRun("prepare", prep.Plan.Target.Path, res, err, sig)
	if err == nil {
		if recErr != nil {
			fmt.Fprintf(stderr, "luksdock: warning: the disk is ready, but it was not recorded in the inventory: %v\n", recErr)
		} else if !po.asJSON {
			fmt.Fprintf(out, "  inventory:    recorded in %s\n", prep.InventoryPath)
		}
	}
	if finished() && err == nil {
		// The signal came during the last step or after it: every
		// step finished, nothing was stopped, the disk is verified.
		fmt.Fprintln(stderr, "luksdock: the signal came as the run was completing: all steps finished and the disk is verified")
	}
	return err
}

// prepareExample is prepare's EXAMPLES (in --help and the man page).
const prepareExample = `  # See the plan: the shell commands a person would type, nothing touched.
  luksdock prepare --device /dev/sdi --label backups01 --dry-run

  # Prepare the docked disk sdi; type the passphrase on standard input and
  # keep a header backup off the disk:
  luksdock prepare --device /dev/sdi --label backups01 --passphrase-file - \
      --confirm sdi --header-backup /root/backups01-header.img

  # One disk of the rotation set "offsite", with a recovery key (a second
  # keyslot) written to a file off the disk, to print and keep apart:
  luksdock prepare --device /dev/sdj --label backups02 --set offsite \
      --recovery-key /root/backups02-recovery.txt --passphrase-file - --confirm sdj

  # Try it on a 1 GiB image file first (cheap KDF: for tests only):
  printf '%s\n' 'correct horse battery staple' > pass.txt
  luksdock prepare --image demo.img --size 1G --label demo --passphrase-file pass.txt \
      --confirm demo.img --pbkdf pbkdf2 --pbkdf-force-iterations 1000`

// prepareExitCodes are prepare's exit codes.
const prepareExitCodes = `Exit codes:
  0    success: the disk is made and verified
  2    usage error (bad flags or arguments)
  3    refused by safety: wrong --confirm, the disk is in use, internal, too
       small, read-only, a partition; bad label, or a label another disk of
       the set has; bad passphrase; missing tools. Nothing was written.
  4    a step failed; the message names the step and the state of the disk
  5    verification failed: the new disk does not unlock, fsck clean or
       read with 512- and 4096-byte sectors, or the surface check found bad
       sectors
` + exitInterruptedHelp
