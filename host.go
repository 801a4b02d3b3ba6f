package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/report"
	"luksdock/internal/stop"
	"luksdock/inventory"
)

func newHostCmd() *cobra.Command {
	cmd := help.Command("host")
	// "host" alone or "host bogus" is a usage error (exit 2), not the
	// help with exit 0.
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
		}
		return usageError{fmt.Errorf("%s needs a command: enroll, forget or status", cmd.CommandPath())}
	}
	var en, fo, st hostOptions // each command's own
	cmd.AddCommand(
		command("host-enroll", en.enroll, selectorVars(&en.sel, true), vars{"passphrase-file": &en.passFile, "key-file": &en.keyFile, "tpm2": &en.tpm2}),
		command("host-forget", fo.forget, selectorVars(&fo.sel, true), vars{"uuid": &fo.uuid}),
		command("host-status", st.status, vars{"json": &st.asJSON}))
	return cmd
}

// hostOptions are the flags of host's commands: each sets those it has.
type hostOptions struct {
	sel                   core.Selector
	passFile, uuid        string
	keyFile, tpm2, asJSON bool
}

func (ho *hostOptions) enroll(cmd *cobra.Command) error {
	d, err := core.FindLUKS(ho.sel)
	if err != nil {
		return err
	}
	pass, err := core.ReadPassphrase(ho.passFile, cmd.InOrStdin())
	if err != nil {
		return err
	}
	defer clear(pass)
	ctx, stop, _ := stop.Context(cmd.ErrOrStderr())
	defer stop()
	h, err := core.EnrollHost(ctx, d.LUKS, pass, ho.keyFile, ho.tpm2)
	if err != nil {
		return err
	}
	report.Enrolled(cmd.OutOrStdout(), h, d.Info.UUID)
	return nil
}

func (ho *hostOptions) forget(cmd *cobra.Command) error {
	ctx, stop, _ := stop.Context(cmd.ErrOrStderr())
	defer stop()
	uuid, msg, err := core.ForgetDisk(ctx, ho.sel, ho.uuid)
	if err != nil {
		return err
	}
	report.Forgot(cmd.OutOrStdout(), uuid, msg)
	return nil
}

func (ho *hostOptions) status(cmd *cobra.Command) error {
	keys, err := core.HostStatus(inventory.Path())
	if err != nil {
		return err
	}
	return report.HostKeys(cmd.OutOrStdout(), keys, ho.asJSON)
}
