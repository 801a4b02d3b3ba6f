package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/health"
	"luksdock/inventory"
)

// List is `luksdock list` for people: the table, then per disk its
// warnings, why it may not be prepared (with the fix), what the inventory
// knows and its health; with arrival (list --wait) the kernel log of the
// first disk's arrival.
func List(w io.Writer, entries []core.ListEntry, arrival bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tTRANSPORT\tSECTORS\tMODEL\tSERIAL\tCONTENTS\tSTATUS")
	for _, e := range entries {
		model := e.VendorModel()
		if e.USB != nil && e.USB.Product != "" && model == "" {
			model = e.USB.Product
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", e.Name, disk.SizeString(e.Size), e.Transport,
			e.LogicalSector, e.PhysicalSector, dash(model), dash(e.Serial), e.Summary, e.Status)
	}
	tw.Flush()
	for _, e := range entries {
		listNotes(w, e)
	}
	if arrival && len(entries) > 0 && entries[0].Arrival != nil {
		fmt.Fprintln(w, "\nKernel log of its arrival:")
		for _, l := range entries[0].Arrival.Lines {
			fmt.Fprintln(w, "  "+l.String())
		}
	}
}

func listNotes(w io.Writer, e core.ListEntry) {
	for _, x := range e.Verdict.Warnings {
		if x == disk.USB4KWarning {
			fmt.Fprintf(w, "warning: %s: %s\n", e.Name, x)
		}
	}
	// Why it may not be prepared, each with its fix (as in --json's
	// reasons[].fix and the wizard's Details).
	for _, r := range e.Reasons {
		fmt.Fprintf(w, "%s: %s\n", e.Name, r.Text)
		if r.Fix != "" {
			fmt.Fprintf(w, "  fix: %s\n", r.Fix)
		}
	}
	if e.Known != nil {
		fmt.Fprintf(w, "%s: %s\n", e.Name, e.Known.Description)
	}
	if h := e.Health; h != nil {
		line := h.Summary()
		if h.Verdict != health.Unknown {
			line += fmt.Sprintf(" (drive %s, serial %s)", dash(h.Model), dash(h.Serial))
		}
		if h.Bad() {
			line = "WARNING: " + line + ": do not trust it with backups"
		}
		fmt.Fprintf(w, "%s: %s\n", e.Name, line)
	}
}

// Inventory is `luksdock inventory` for people: the table of the disks
// recorded in f (at path), the overdue ones, and where the file is.
func Inventory(w io.Writer, f *inventory.File, overdue []string, path string, now time.Time) {
	if len(f.Disks) == 0 {
		fmt.Fprintf(w, "No disks recorded yet (%s).\n", path)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tSET\tLUKS UUID\tDRIVE\tSIZE\tPREPARED\tPASSPHRASE\tRECOVERY KEY\tHEADER BACKUP\tLAST SEEN\tLAST BACKUP\tFILL")
	for _, r := range f.Disks {
		c := inventoryRow(r, now)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.label, dash(r.Set), r.LUKSUUID, dash(c.drive),
			disk.SizeString(r.Size), c.prepared, c.pass, c.rk, dash(r.HeaderBackup), c.seen, c.last, c.fill)
	}
	tw.Flush()
	for _, o := range overdue {
		fmt.Fprintf(w, "OVERDUE: %s\n", o)
	}
	fmt.Fprintf(w, "\n(%s)\n", path)
}

// inventoryCells are the cells of a record that are more than its fields.
type inventoryCells struct{ label, drive, prepared, pass, rk, seen, last, fill string }

func inventoryRow(r inventory.Record, now time.Time) inventoryCells {
	c := inventoryCells{label: r.Label, pass: "as prepared", seen: "-", last: "-", fill: "-"}
	c.drive = strings.TrimSpace(r.Drive.Model + " " + r.Drive.Serial)
	if r.Drive.SerialFrom == inventory.FromDock {
		c.drive += " (serial: the dock's)"
	}
	if r.Drive.ModelFrom == inventory.FromImage {
		c.drive = "image file"
	}
	c.rk = map[bool]string{true: "yes", false: "no"}[r.RecoveryKey]
	if !r.RecoveryKeyReplaced.IsZero() {
		c.rk = "replaced " + r.RecoveryKeyReplaced.Local().Format("2006-01-02")
	}
	// When the passphrase was last set: a set changed disk by disk shows
	// which disks still have the old one.
	if !r.PassphraseChanged.IsZero() {
		c.pass = "changed " + r.PassphraseChanged.Local().Format("2006-01-02")
	}
	if !r.Retired.IsZero() {
		c.label += " (retired " + r.Retired.Local().Format("2006-01-02") + ")"
		c.pass, c.rk = "-", "-"
	}
	if !r.LastSeen.IsZero() {
		c.seen = inventory.Ago(r.LastSeen, now)
		if r.LastSeenAs != "" {
			c.seen += " as " + r.LastSeenAs
		}
	}
	c.prepared = r.Prepared.Local().Format("2006-01-02")
	if r.SeenHere && r.PreparedOn != "" {
		c.prepared += " on " + r.PreparedOn
	}
	if b := r.LastBackup(); b != nil {
		c.last = fmt.Sprintf("%s on %s: %s", inventory.Ago(b.Time, now), b.Host, b.Outcome)
	}
	if r.FSSize > 0 {
		c.fill = fmt.Sprintf("%d%% (%s free)", 100*(r.FSSize-r.FSFree)/r.FSSize, disk.SizeString(r.FSFree))
	}
	return c
}

// ListAs is list's output: with asJSON the entries as indented JSON (with
// wait the one new disk as an object), else the table (List).
func ListAs(w io.Writer, entries []core.ListEntry, wait, asJSON bool) error {
	switch {
	case asJSON && wait:
		return JSONIndented(w, entries[0])
	case asJSON:
		return JSONIndented(w, entries)
	}
	List(w, entries, wait)
	return nil
}

// InventoryAs is inventory's output: with asJSON the file's JSON, else the
// table (Inventory).
func InventoryAs(w io.Writer, f *inventory.File, overdue []string, path string, now time.Time, asJSON bool) error {
	if asJSON {
		return JSONIndented(w, f)
	}
	Inventory(w, f, overdue, path, now)
	return nil
}
