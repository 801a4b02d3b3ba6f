package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"luksdock/disk"
	"luksdock/internal/manpage"
	"luksdock/inventory"
)

func newInventoryCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "List the disks luksdock prepared (the rotation set)",
		Long: `inventory prints the disks luksdock prepared and verified on this machine:
label, set, LUKS UUID, the drive's model and serial (and whether they are
the drive's own or the dock's), size, date prepared, whether a recovery key
was made (or when it was last replaced), when the passphrase was last
changed (luksdock passwd: a set changed disk by disk shows which disks
still have the old one), the header backup, and when each was last seen
docked. A retired disk (luksdock retire) stays listed, marked retired.

The inventory is ` + "`/var/lib/luksdock/inventory.json`" + ` for root, else
$XDG_STATE_HOME/luksdock/inventory.json (~/.local/state/luksdock/...);
LUKSDOCK_INVENTORY names another file. It is JSON a person can read and
other tools can parse; it holds no secret. A damaged file is reported, and
never overwritten.

Exit status: 0 success, 2 usage error, 4 the inventory cannot be read,
130 interrupted.`,
		Example: inventoryExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := inventory.Path()
			f, err := inventory.Load(path)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(f)
			}
			if len(f.Disks) == 0 {
				fmt.Fprintf(out, "No disks recorded yet (%s).\n", path)
				return nil
			}
			now := time.Now()
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LABEL\tSET\tLUKS UUID\tDRIVE\tSIZE\tPREPARED\tPASSPHRASE\tRECOVERY KEY\tHEADER BACKUP\tLAST SEEN")
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
				// When the passphrase was last set: a set changed disk by
				// disk shows which disks still have the old one.
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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", label, dash(r.Set), r.LUKSUUID, dash(drive),
					disk.SizeString(r.Size), r.Prepared.Local().Format("2006-01-02"), pass, rk, dash(r.HeaderBackup), seen)
			}
			tw.Flush()
			fmt.Fprintf(out, "\n(%s)\n", path)
			return nil
		},
	}
	manpage.SetFiles(cmd, inventoryFiles)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the inventory file's JSON")
	return cmd
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
