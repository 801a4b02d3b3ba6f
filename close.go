package main

import (
	"context"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
)

// closeOptions are close's flags.
type closeOptions struct {
	core.CloseOptions
	asJSON bool
}

func newCloseCmd() *cobra.Command {
	var co closeOptions
	o := &co.CloseOptions
	return command("close", co.run, selectorVars(&o.Selector, true),
		vars{"mountpoint": &o.Mountpoint, "no-power-off": &o.NoPowerOff, "json": &co.asJSON})
}

// run is close: what was done is printed even when a later step failed
// (unmounted and locked, but not powered off).
func (co *closeOptions) run(cmd *cobra.Command) error {
	out := cmd.OutOrStdout()
	res, err := core.Close(context.Background(), co.CloseOptions)
	switch {
	case co.asJSON:
		report.JSONResult(out, "close", res, err)
	case res != nil:
		report.Closed(out, res)
	}
	return err
}
