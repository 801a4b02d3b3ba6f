package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
	"luksdock/inventory"
)

func newInventoryCmd() *cobra.Command {
	var iv inventoryOptions
	cmd := &cobra.Command{
		Use:     "inventory",
		Short:   "List the disks luksdock knows (the rotation set), their backups and which are overdue",
		Long:    help.Text("inventory"),
		Example: inventoryExample,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return iv.run(cmd) },
	}
	manpage.SetFiles(cmd, inventoryFiles)
	cmd.Flags().BoolVar(&iv.asJSON, "json", false, "print the inventory file's JSON")
	cmd.Flags().StringArrayVar(&iv.every, "every", nil, "how often each disk of a set should get a backup: 7d (every set) or SET=14d (repeatable)")
	cmd.Flags().BoolVar(&iv.check, "check", false, "exit 1 when a disk is overdue (with --every), for monitoring")
	return cmd
}

// inventoryOptions are inventory's flags.
type inventoryOptions struct {
	asJSON, check bool
	every         []string
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
	out := cmd.OutOrStdout()
	if iv.asJSON {
		if err := report.JSONIndented(out, f); err != nil {
			return err
		}
	} else {
		report.Inventory(out, f, overdue, path, now)
	}
	if iv.check && len(overdue) > 0 {
		return overdueError{n: len(overdue)}
	}
	return nil
}

// overdueError is inventory --check finding overdue disks: exit status 1.
type overdueError struct{ n int }

func (e overdueError) Error() string { return fmt.Sprintf("%d disk(s) overdue for a backup", e.n) }

// ExitCode is inventory --check's status for overdue disks.
func (overdueError) ExitCode() int { return 1 }

// inventoryExample is inventory's EXAMPLES (in --help and the man page).
const inventoryExample = `  # The disks of your rotation, where each was last seen docked:
  luksdock inventory

  # The same for scripts: labels of the set "offsite"
  luksdock inventory --json | jq -r '.disks[]? | select(.set == "offsite") | .label'`

// inventoryFiles are the FILES of inventory's man page.
var inventoryFiles = [][2]string{
	{"/var/lib/luksdock/inventory.json", "the inventory, for root; $XDG_STATE_HOME/luksdock/inventory.json (~/.local/state/luksdock/inventory.json) for another user; LUKSDOCK_INVENTORY names another file. inventory only reads it."},
}
