package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
	"luksdock/inventory"
)

func newInventoryCmd() *cobra.Command {
	var asJSON, check bool
	var every []string
	cmd := &cobra.Command{
		Use:     "inventory",
		Short:   "List the disks luksdock knows (the rotation set), their backups and which are overdue",
		Long:    help.Text("inventory"),
		Example: inventoryExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			policy, err := core.ParseEvery(every)
			if err != nil {
				return usageError{err}
			}
			path := inventory.Path()
			now := time.Now()
			if disks, err := disk.Host.Scan(); err == nil {
				if _, w := core.Recognise(path, disks, now); w != "" {
					report.Warnf(cmd.ErrOrStderr(), "%s", w)
				}
			}
			f, err := inventory.Load(path)
			if err != nil {
				return err
			}
			overdue := core.Overdue(f, policy, now)
			out := cmd.OutOrStdout()
			if asJSON {
				if err := report.JSONIndented(out, f); err != nil {
					return err
				}
			} else {
				report.Inventory(out, f, overdue, path, now)
			}
			if check && len(overdue) > 0 {
				return overdueError{n: len(overdue)}
			}
			return nil
		},
	}
	manpage.SetFiles(cmd, inventoryFiles)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the inventory file's JSON")
	cmd.Flags().StringArrayVar(&every, "every", nil, "how often each disk of a set should get a backup: 7d (every set) or SET=14d (repeatable)")
	cmd.Flags().BoolVar(&check, "check", false, "exit 1 when a disk is overdue (with --every), for monitoring")
	return cmd
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
