package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/inventory"
)

func newInventoryCmd() *cobra.Command {
	var asJSON, check bool
	var every []string
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "List the disks luksdock knows (the rotation set), their backups and which are overdue",
		Long: help.Text("inventory") + "`/var/lib/luksdock/inventory.json`" + ` for root, else
$XDG_STATE_HOME/luksdock/inventory.json (~/.local/state/luksdock/...);
LUKSDOCK_INVENTORY names another file. It is JSON a person can read and
other tools can parse; it holds no secret. A damaged file is reported, and
never overwritten.

Exit status: 0 success, 1 (--check) a disk is overdue, 2 usage error,
4 the inventory cannot be read, 130 interrupted.`,
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
					fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: warning: %s\n", w)
				}
			}
			f, err := inventory.Load(path)
			if err != nil {
				return err
			}
			overdue := core.Overdue(f, policy, now)
			out := cmd.OutOrStdout()
			switch {
			case asJSON:
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(f); err != nil {
					return err
				}
			case len(f.Disks) == 0:
				fmt.Fprintf(out, "No disks recorded yet (%s).\n", path)
			default:
				writeInventoryTable(out, f, now)
				for _, o := range overdue {
					fmt.Fprintf(out, "OVERDUE: %s\n", o)
				}
				fmt.Fprintf(out, "\n(%s)\n", path)
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

func writeInventoryTable(out io.Writer, f *inventory.File, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tSET\tLUKS UUID\tDRIVE\tSIZE\tPREPARED\tPASSPHRASE\tRECOVERY KEY\tHEADER BACKUP\tLAST SEEN\tLAST BACKUP\tFILL")
	for _, r := range f.Disks {
		drive := strings.TrimSpace(r.Drive.Model + " " + r.Drive.Serial)
		if r.Drive.SerialFrom == inventory.FromDock {
			drive += " (serial: the dock's)"
		}
		if r.Drive.ModelFrom == inventory.FromImage {
			drive = "image file"
		}
		rk := map[bool]string{true: "yes", false: "no"}[r.RecoveryKey]
		if !r.RecoveryKeyReplaced.IsZero() {
			rk = "replaced " + r.RecoveryKeyReplaced.Local().Format("2006-01-02")
		}
		// When the passphrase was last set: a set changed disk by disk
		// shows which disks still have the old one.
		pass := "as prepared"
		if !r.PassphraseChanged.IsZero() {
			pass = "changed " + r.PassphraseChanged.Local().Format("2006-01-02")
		}
		label := r.Label
		if !r.Retired.IsZero() {
			label += " (retired " + r.Retired.Local().Format("2006-01-02") + ")"
			pass, rk = "-", "-"
		}
		seen := "-"
		if !r.LastSeen.IsZero() {
			seen = inventory.Ago(r.LastSeen, now)
			if r.LastSeenAs != "" {
				seen += " as " + r.LastSeenAs
			}
		}
		prepared := r.Prepared.Local().Format("2006-01-02")
		if r.SeenHere && r.PreparedOn != "" {
			prepared += " on " + r.PreparedOn
		}
		last := "-"
		if b := r.LastBackup(); b != nil {
			last = fmt.Sprintf("%s on %s: %s", inventory.Ago(b.Time, now), b.Host, b.Outcome)
		}
		fill := "-"
		if r.FSSize > 0 {
			fill = fmt.Sprintf("%d%% (%s free)", 100*(r.FSSize-r.FSFree)/r.FSSize, disk.SizeString(r.FSFree))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", label, dash(r.Set), r.LUKSUUID, dash(drive),
			disk.SizeString(r.Size), prepared, pass, rk, dash(r.HeaderBackup), seen, last, fill)
	}
	tw.Flush()
}

// inventoryExample is inventory's EXAMPLES (in --help and the man page).
const inventoryExample = `  # The disks of your rotation, where each was last seen docked:
  luksdock inventory

  # The same for scripts: labels of the set "offsite"
  luksdock inventory --json | jq -r '.disks[]? | select(.set == "offsite") | .label'`

// inventoryFiles are the FILES of inventory's man page.
var inventoryFiles = [][2]string{
	{"/var/lib/luksdock/inventory.json", "the inventory, for root; $XDG_STATE_HOME/luksdock/inventory.json (~/.local/state/luksdock/inventory.json) for another user; LUKSDOCK_INVENTORY names another file. inventory only reads it."},
}
