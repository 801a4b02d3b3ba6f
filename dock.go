package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/stop"
	"luksdock/inventory"
	"luksdock/pipeline"
)

func newDockCmd() *cobra.Command {
	do := dockOptions{engine: "auto"}
	cmd := help.Command("dock") // takes the device as its argument
	cmd.Args, cmd.RunE = cobra.MaximumNArgs(1), do.run
	help.Bind(cmd, vars{"image": &do.image, "engine": &do.engine, "no-power-off": &do.noPowerOff})
	return cmd
}

// dockOptions are dock's flags.
type dockOptions struct {
	image, engine string
	noPowerOff    bool
}

func (do *dockOptions) run(cmd *cobra.Command, args []string) error {
	d, err := core.DockDevice(args, do.image)
	if err != nil {
		return err
	}
	// SIGTERM is how systemd stops the unit when the disk goes (BindsTo):
	// Dock records the run as interrupted. It also comes right after a
	// finished run's power-off, harmlessly.
	ctx, stop := stop.Quiet(cmd.Context())
	defer stop()
	res, err := core.Dock(ctx, core.DockOptions{Device: d, InvPath: inventory.Path(), Engine: do.engine,
		PowerOff: !do.noPowerOff && do.image == "", Log: cmd.OutOrStdout()})
	if errors.Is(err, core.ErrInterrupted) {
		return &pipeline.Error{Kind: pipeline.KindInterrupted, Err: err}
	}
	if err == nil && res != nil && !res.Enrolled {
		fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: %s: not enrolled on this host, nothing done\n", d.Path)
	}
	return err
}
