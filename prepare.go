package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/report"
	"luksdock/internal/secret"
	"luksdock/internal/stop"
	"luksdock/pipeline"
)

// prepareOptions are prepare's flags.
type prepareOptions struct {
	target                   targetFlags
	opts                     optionFlags
	o                        pipeline.Options
	table, passFile, confirm string
	asJSON, dryRun           bool
}

func newPrepareCmd() *cobra.Command {
	po := prepareOptions{table: string(disk.TableGPT)}
	o := &po.o
	return command("prepare", po.run, po.target.vars(true), po.opts.vars(), vars{"label": &o.Label,
		"passphrase-file": &po.passFile, "confirm": &po.confirm, "table": &po.table, "luks1": &o.LUKS1,
		"header-backup": &o.HeaderBackup, "set": &o.Set, "recovery-key": &o.RecoveryKeyFile,
		"accept-unhealthy": &o.AcceptUnhealthy, "owner": &o.Owner, "erase": &o.Erase,
		"surface-check": &o.SurfaceCheck, "restart": &o.Restart, "json": &po.asJSON, "dry-run": &po.dryRun})
}

// run is prepare: core.PlanPrepare (every refusal of a real run, for
// --dry-run too), then core's run, which records the verified disk and
// journals how the run ended.
func (po *prepareOptions) run(cmd *cobra.Command) (err error) {
	out, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	ran := false
	defer jsonRefusal(po.asJSON, &ran, out, &err, pipeline.StepPreflight)
	if err := core.CheckPrepareArgs(po.target.device, po.target.image, po.target.size, po.o, po.confirm, po.dryRun); err != nil {
		return err
	}
	t, err := core.LookupTarget(po.target.device, po.target.image, po.target.size, !po.dryRun)
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
	report.Warning(nil, stderr, false, prep.Warning)
	if po.dryRun {
		fmt.Fprint(out, prep.Plan.Script())
		return nil
	}
	pass, err := core.ReadPassphrase(po.passFile, cmd.InOrStdin())
	if err != nil {
		return err
	}
	defer secret.Free(pass)
	report.Warning(out, stderr, po.asJSON, prep.PassphraseWarning(pass))
	ctx, stop, finished := stop.Context(stderr)
	defer stop()
	ran = true
	res, err := prep.RunJournaled(ctx, po.confirm, pass, report.Events(out, po.asJSON, 0), finished)
	report.Prepared(out, stderr, res, err, po.asJSON)
	return err
}
