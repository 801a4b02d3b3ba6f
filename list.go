package main

import (
	"io"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
)

// listOptions are list's flags.
type listOptions struct {
	asJSON, wait, allowInternal bool
	sysRoot                     string
}

func newListCmd() *cobra.Command {
	lo := listOptions{sysRoot: "/"}
	return command("list", lo.run, vars{"json": &lo.asJSON, "wait": &lo.wait, "allow-internal": &lo.allowInternal, "sysroot": &lo.sysRoot})
}

func (lo *listOptions) run(cmd *cobra.Command) error {
	var progress io.Writer // with --json, the wait is silent
	if !lo.asJSON {
		progress = cmd.ErrOrStderr()
	}
	disks, err := core.ListDisks(cmd.Context(), lo.sysRoot, lo.wait, progress)
	if err != nil {
		return err
	}
	local := lo.sysRoot == "" || lo.sysRoot == "/"
	// --wait prints the new disk at once: reading SMART through a dock can
	// take seconds, so its health is left to `list`.
	entries, w := core.List(cmd.Context(), disks, core.ListOptions{AllowInternal: lo.allowInternal, KernelLog: local, Health: local && !lo.wait})
	if w != "" {
		report.Warnf(cmd.ErrOrStderr(), "%s", w)
	}
	return report.ListAs(cmd.OutOrStdout(), entries, lo.wait, lo.asJSON)
}
