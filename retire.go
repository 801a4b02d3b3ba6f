package main

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
	"luksdock/internal/stop"
)

// retireOptions are retire's flags.
type retireOptions struct {
	core.RetireOptions
	asJSON bool
}

func newRetireCmd() *cobra.Command {
	var ro retireOptions
	o := &ro.RetireOptions
	return command("retire", printResult(&ro.asJSON, ro.run, func(w, stderr io.Writer, r *core.Retired) { report.Retired(w, stderr, r, true) }),
		selectorVars(&o.Selector, false), vars{"confirm": &o.Confirm, "erase": &o.Erase, "json": &ro.asJSON})
}

func (ro *retireOptions) run(cmd *cobra.Command) (*core.Retired, error) {
	o := ro.RetireOptions
	if err := core.CheckRetireArgs(o); err != nil {
		return nil, err
	}
	ctx, stop, _ := stop.Context(cmd.ErrOrStderr())
	defer stop()
	if o.Erase && !ro.asJSON {
		o.Progress = report.EraseProgressEvery(cmd.OutOrStdout(), 2*time.Second)
	}
	res, err := core.Retire(ctx, o)
	if err == nil && ro.asJSON { // the warning of a header backup left behind goes to stderr with --json too
		report.Retired(nil, cmd.ErrOrStderr(), res, false)
	}
	return res, err
}
