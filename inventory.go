package main

import (
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
	"luksdock/inventory"
)

// inventoryOptions are inventory's flags.
type inventoryOptions struct {
	asJSON, check bool
	every         []string
}

func newInventoryCmd() *cobra.Command {
	var iv inventoryOptions
	return command("inventory", iv.run, vars{"json": &iv.asJSON, "every": &iv.every, "check": &iv.check})
}

func (iv *inventoryOptions) run(cmd *cobra.Command) error {
	policy, err := core.ParseEvery(iv.every)
	if err != nil {
		return usageError{err}
	}
	path, now := inventory.Path(), time.Now()
	f, overdue, w, err := core.InventoryNow(path, policy, now)
	if w != "" {
		report.Warnf(cmd.ErrOrStderr(), "%s", w)
	}
	if err != nil {
		return err
	}
	if err := report.InventoryAs(cmd.OutOrStdout(), f, overdue, path, now, iv.asJSON); err != nil {
		return err
	}
	if iv.check && len(overdue) > 0 {
		return core.OverdueError{N: len(overdue)}
	}
	return nil
}
