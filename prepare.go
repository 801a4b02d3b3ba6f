package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
	"luksdock/internal/secret"
	"luksdock/pipeline"
)

func newPrepareCmd() *cobra.Command {
	var po prepareOptions
	cmd := &cobra.Command{
		Use:     "prepare (--device /dev/sdX | --image PATH [--size SIZE]) --label LABEL --passphrase-file FILE|- --confirm NAME",
		Short:   "Prepare a backup disk non-interactively (the wizard's pipeline)",
		Long:    help.Text("prepare") + help.ExitCodes("prepare") + exitInterruptedHelp,
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
		return err
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
			report.JSONRefusal(out, err, pipeline.StepPreflight)
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
		report.JSONEvents(out)(pipeline.Event{Time: time.Now(), Kind: pipeline.EventWarning, Step: pipeline.StepPreflight, Message: w})
	} else if w != "" {
		fmt.Fprintf(stderr, "luksdock: warning: %s\n", w)
	}
	ctx, stop, finished := signalContext(stderr)
	defer stop()
	emit := report.Events(out, po.asJSON, 0)
	ran = true
	res, recErr, err := prep.Run(ctx, po.confirm, pass, emit)
	sig := finished()
	core.JournalRun("prepare", prep.Plan.Target.Path, res, err, sig)
	if err == nil {
		if recErr != nil {
			fmt.Fprintf(stderr, "luksdock: warning: the disk is ready, but it was not recorded in the inventory: %v\n", recErr)
		} else if !po.asJSON {
			fmt.Fprintf(out, "  inventory:    recorded in %s\n", prep.InventoryPath)
		}
	}
	if sig != nil && err == nil {
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
