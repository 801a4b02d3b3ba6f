package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/version"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// targetLUKSUUID is the LUKS UUID on a target before it is prepared again.
func targetLUKSUUID(t *pipeline.Target) string {
	uuid, _ := disk.LUKSOn(t.Content, t.Parts)
	return uuid
}

// driveOf is the drive's identity as discovery reads it, and whose it is.
func driveOf(t *pipeline.Target) inventory.Drive {
	if t.Image || t.Disk == nil {
		return inventory.Drive{ModelFrom: inventory.FromImage, SerialFrom: inventory.FromImage}
	}
	d := t.Disk
	dr := inventory.Drive{WWN: d.WWN}
	vendor := d.Vendor
	if vendor == "ATA" { // SCSI-ATA translation: the model is the drive's
		vendor = ""
	}
	dr.Model = strings.TrimSpace(vendor + " " + d.Model)
	dr.Serial = d.Serial
	if d.USB == nil {
		dr.ModelFrom, dr.SerialFrom = inventory.FromDrive, inventory.FromDrive
		return dr
	}
	dr.Dock = strings.TrimSpace(fmt.Sprintf("%s:%s %s %s", d.USB.VendorID, d.USB.ProductID, d.USB.Manufacturer, d.USB.Product))
	if h := t.Health; h != nil && h.Model != "" {
		// SMART reached the drive: its own model and serial.
		dr.Model, dr.ModelFrom = h.Model, inventory.FromDrive
		if h.Serial != "" {
			dr.Serial, dr.SerialFrom = h.Serial, inventory.FromDrive
		}
		return dr
	}
	// A bridge that translates SCSI to ATA answers INQUIRY with vendor
	// "ATA" and the drive's model; others answer with their own.
	dr.ModelFrom = inventory.FromDock
	if d.Vendor == "ATA" {
		dr.ModelFrom = inventory.FromDrive
	}
	// The serial sysfs reports for a USB disk is the USB device's (the dock's).
	dr.SerialFrom = inventory.FromDock
	if d.USB.Serial == "" && d.Serial != "" && d.Vendor == "ATA" {
		dr.SerialFrom = inventory.FromDrive
	}
	return dr
}

// recordPrepared adds the verified disk of a run to the inventory,
// replacing the record of what the target held before (prepared over).
func recordPrepared(path string, t *pipeline.Target, o pipeline.Options, oldUUID string, res *pipeline.Result, drive inventory.Drive) error {
	now := time.Now().UTC().Truncate(time.Second)
	r := inventory.Record{
		LUKSUUID: res.LUKS.UUID, Label: res.FSLabel, Set: o.Set, Drive: drive,
		Size: t.Size, LUKSSector: res.LUKS.SectorSize,
		Prepared: now, Version: version.String(), RecoveryKey: res.RecoveryKey,
		LastSeen: now, LastSeenAs: t.Path,
	}
	if abs, err := filepath.Abs(t.Path); err == nil {
		r.LastSeenAs = abs
	}
	if t.Disk != nil {
		r.LogicalSector, r.PhysicalSector = t.Disk.LogicalSector, t.Disk.PhysicalSector
	}
	if res.HeaderBackup != "" {
		sum, err := fileSHA256(res.HeaderBackup)
		if err != nil {
			return err
		}
		r.HeaderBackup, r.HeaderBackupSHA256 = res.HeaderBackup, sum
	}
	return inventory.Update(path, func(f *inventory.File) error {
		if oldUUID != "" {
			f.Remove(oldUUID)
		}
		f.Put(r)
		return nil
	})
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkLabelInSet applies inventory.CheckLabel to a prepare: a clash
// within a set is a refusal (exit 3). A damaged inventory does not stop a
// prepare (it is reported when recording).
func checkLabelInSet(path string, t *pipeline.Target, o pipeline.Options, attached []string) (warning string, err error) {
	f, err := inventory.Load(path)
	if err != nil {
		return "", nil
	}
	w, err := inventory.CheckLabel(f, o.Set, o.Label, targetLUKSUUID(t), attached)
	if err != nil {
		return "", &pipeline.Error{Kind: pipeline.KindRefused, Step: pipeline.StepPreflight, Err: err}
	}
	return w, nil
}

// attachedLabels are the LUKS2 and filesystem labels on the disks attached now.
func attachedLabels(disks []disk.Disk) []string {
	var l []string
	for _, d := range disks {
		if d.Content.Label != "" {
			l = append(l, d.Content.Label)
		}
		for _, p := range d.Partitions {
			if p.Content.Label != "" {
				l = append(l, p.Content.Label)
			}
		}
	}
	return l
}

// knownDisk is what `list` says about a docked LUKS disk.
type knownDisk struct {
	Known       bool              `json:"known"`
	Description string            `json:"description"`
	Record      *inventory.Record `json:"record,omitempty"`
	// SetOnDisk is the set named in the LUKS2 subsystem field, which other
	// machines see without the inventory.
	SetOnDisk string `json:"set_on_disk,omitempty"`
}

// recognise looks the LUKS disks among entries up in the inventory, fills
// their Known field and records them as seen now. A damaged or unreadable
// inventory is returned as a warning; recognition then says so.
func recognise(path string, entries []listEntry, now time.Time) (warning string) {
	type hit struct {
		i    int
		uuid string
		set  string
		meta *luks.Metadata
	}
	var hits []hit
	for i, e := range entries {
		if uuid, set := disk.LUKSOn(e.Disk.Content, e.Disk.Partitions); uuid != "" {
			hits = append(hits, hit{i, uuid, set, core.DiskMetadata(e.Disk.Path, e.Disk.Content, e.Disk.Partitions)})
		}
	}
	if len(hits) == 0 {
		return ""
	}
	describe := func(f *inventory.File) {
		for _, h := range hits {
			k := &knownDisk{SetOnDisk: h.set}
			k.Description, k.Known = core.RecogniseToken(f, h.uuid, h.set, h.meta, now)
			if r := f.Find(h.uuid); r != nil {
				rc := *r
				k.Record = &rc
			}
			entries[h.i].Known = k
		}
	}
	f, err := inventory.Load(path)
	if err != nil {
		return err.Error()
	}
	describe(f)
	anyKnown := false
	for _, h := range hits {
		anyKnown = anyKnown || f.Find(h.uuid) != nil || h.meta != nil
	}
	if !anyKnown {
		return ""
	}
	err = inventory.Update(path, func(f *inventory.File) error {
		for _, h := range hits {
			if !f.Seen(h.uuid, entries[h.i].Path, now) && h.meta != nil {
				// Prepared on another machine: its own token says what it is.
				f.Put(core.RecordFromToken(h.uuid, *h.meta, entries[h.i].Path, now))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrPermission) {
		return "could not record when the disks were seen: " + err.Error()
	}
	return ""
}

func newInventoryCmd() *cobra.Command {
	var asJSON, check bool
	var every []string
	cmd := &cobra.Command{
		Use:   "inventory",
		Short: "List the disks luksdock knows (the rotation set), their backups and which are overdue",
		Long: `inventory prints the disks luksdock prepared on this machine, and those
prepared elsewhere that were docked here (recognised by the luksdock token
in their LUKS2 header, which any machine reads without the passphrase):
label, set, LUKS UUID, the drive's model and serial (and whether they are
the drive's own or the dock's), size, date prepared (and where, when not
here), whether a recovery key was made (or when it was last replaced), when
the passphrase was last changed (luksdock passwd: a set changed disk by disk
shows which disks still have the old one), the header backup, when and as
what each was last seen docked, its last backup run (when, on which host,
how it ended), and how full its filesystem was then. A retired disk
(luksdock retire) stays listed, marked retired.

Disks docked now are looked at first: one prepared elsewhere is added as
seen here.

--every INTERVAL says how often each disk of a set should get a backup:
"7d" for every set, "offsite=14d" for one (repeatable; d, w or a Go
duration such as 36h). A disk whose last successful backup (or, with
none, its preparation) is older is overdue: listed below the table, and
with --check the exit status is 1, for monitoring. Retired disks are
never overdue.

The inventory is ` + "`/var/lib/luksdock/inventory.json`" + ` for root, else
$XDG_STATE_HOME/luksdock/inventory.json (~/.local/state/luksdock/...);
LUKSDOCK_INVENTORY names another file. It is JSON a person can read and
other tools can parse; it holds no secret. A damaged file is reported, and
never overwritten.

Exit status: 0 success, 1 (--check) a disk is overdue, 2 usage error,
4 the inventory cannot be read, 130 interrupted.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			policy, err := core.ParseEvery(every)
			if err != nil {
				return usageError{err}
			}
			path := inventory.Path()
			now := time.Now()
			if disks, err := (disk.Sys{Root: "/"}).Scan(); err == nil {
				entries := make([]listEntry, len(disks))
				for i, d := range disks {
					entries[i] = listEntry{Disk: d}
				}
				if w := recognise(path, entries, now); w != "" {
					fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: warning: %s\n", w)
				}
			}
			f, err := inventory.Load(path)
			if err != nil {
				return err
			}
			overdue := core.Overdue(f, policy, now)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(f); err != nil {
					return err
				}
			} else if len(f.Disks) == 0 {
				fmt.Fprintf(out, "No disks recorded yet (%s).\n", path)
			} else {
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the inventory file's JSON")
	cmd.Flags().StringArrayVar(&every, "every", nil, "how often each disk of a set should get a backup: 7d (every set) or SET=14d (repeatable)")
	cmd.Flags().BoolVar(&check, "check", false, "exit 1 when a disk is overdue (with --every), for monitoring")
	return cmd
}

// overdueError is inventory --check finding overdue disks: exit status 1.
type overdueError struct{ n int }

func (e overdueError) Error() string { return fmt.Sprintf("%d disk(s) overdue for a backup", e.n) }

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

// ExitCode is inventory --check's status for overdue disks.
func (overdueError) ExitCode() int { return 1 }
