package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"luksdock/disk"
	"luksdock/internal/secret"
	"luksdock/internal/version"
	"luksdock/inventory"
	"luksdock/pipeline"
	"luksdock/recovery"
)

// PrepareRequest is what a prepare is asked for, by `luksdock prepare` and
// by the wizard alike.
type PrepareRequest struct {
	Target  *pipeline.Target
	Options pipeline.Options
	// WantRecoveryKey asks for a recovery key (a second keyslot); a
	// RecoveryKeyFile in Options asks for one too.
	WantRecoveryKey bool
	// RecoveryKey is a key already generated and shown (the wizard keeps
	// the one on the user's paper when they go back and forth); nil: a new
	// one is generated when one is wanted. The plan gets its own copy.
	RecoveryKey []byte
	// Inventory is the inventory to check the label against; nil: read
	// from InventoryPath. A damaged inventory does not stop a prepare (it
	// is reported when recording).
	Inventory *inventory.File
	// InventoryPath is the inventory file; "": inventory.Path().
	InventoryPath string
	// Labels are the labels on the disks attached now; nil: the attached
	// disks are scanned (for a block device target).
	Labels []string
}

// Prepare is a checked, ready-to-run prepare: the pipeline's plan, with the
// set's label rule applied and the recovery key (if any) in its options.
type Prepare struct {
	Plan *pipeline.Plan
	// Warning is the label rule's warning ("" for none): a label that
	// another disk has, outside any set.
	Warning string
	// InventoryPath is where Run records the verified disk.
	InventoryPath string
}

// PlanPrepare checks everything that can be checked without writing, the
// refusals of a real run included (the pipeline's plan, the label against
// the set): --dry-run and the wizard's plan screen use it as the run does.
// It writes nothing.
func PlanPrepare(req PrepareRequest) (_ *Prepare, err error) {
	o := req.Options
	if req.WantRecoveryKey || o.RecoveryKeyFile != "" {
		key := secret.Clone(req.RecoveryKey)
		if key == nil {
			if key, err = recovery.Generate(); err != nil {
				return nil, fmt.Errorf("making the recovery key: %w", err)
			}
		}
		o.RecoveryKey = key
		defer func() {
			if err != nil {
				secret.Free(key)
			}
		}()
	}
	p, err := pipeline.NewPlan(req.Target, o)
	if err != nil {
		return nil, err
	}
	path := req.InventoryPath
	if path == "" {
		path = inventory.Path()
	}
	w, err := checkLabelInSet(path, req, p.Opts)
	if err != nil {
		return nil, err
	}
	return &Prepare{Plan: p, Warning: w, InventoryPath: path}, nil
}

// Run runs the prepare: RunPlan with its plan and inventory.
func (p *Prepare) Run(ctx context.Context, confirm string, passphrase []byte, emit func(pipeline.Event)) (res *pipeline.Result, recordErr, err error) {
	return RunPlan(ctx, p.Plan, p.InventoryPath, confirm, passphrase, emit)
}

// RunPlan runs plan (confirm must name the target; nothing is written
// otherwise) and records the verified disk in the inventory at
// inventoryPath ("": not recorded). recordErr says why a verified disk was
// not recorded; it does not make the run fail. The caller owns passphrase;
// the plan's recovery key is cleared when the run ends.
func RunPlan(ctx context.Context, plan *pipeline.Plan, inventoryPath, confirm string, passphrase []byte, emit func(pipeline.Event)) (res *pipeline.Result, recordErr, err error) {
	defer secret.Free(plan.Opts.RecoveryKey)
	oldUUID := TargetLUKSUUID(plan.Target)
	res, err = plan.Run(ctx, confirm, passphrase, emit)
	if err != nil && inventoryPath != "" && oldUUID != "" && plan.Resume == nil {
		// A run that wrote to the disk and did not finish destroyed the
		// volume the disk held: its record and this host's key of it go,
		// as a finished run's Record removes them (a later run that
		// continues an interrupted erase no longer sees the old volume's
		// UUID on the disk).
		var pe *pipeline.Error
		if !errors.As(err, &pe) || !pe.Unchanged() {
			dropHostKey(oldUUID)
			recordErr = inventory.Update(inventoryPath, func(f *inventory.File) error {
				f.Remove(oldUUID)
				return nil
			})
		}
		return res, recordErr, err
	}
	if err != nil || inventoryPath == "" {
		return res, nil, err
	}
	return res, Record(inventoryPath, plan, res), nil
}

// Record adds the verified disk of a run of plan to the inventory at path,
// replacing the record of what the target held before (prepared over).
func Record(path string, plan *pipeline.Plan, res *pipeline.Result) error {
	t, o := plan.Target, plan.Opts
	oldUUID := TargetLUKSUUID(t)
	now := time.Now().UTC().Truncate(time.Second)
	r := inventory.Record{
		LUKSUUID: res.LUKS.UUID, Label: res.FSLabel, Set: o.Set, Drive: DriveOf(t),
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
	if oldUUID != "" && oldUUID != res.LUKS.UUID {
		// this host's key of the volume the run replaced opens nothing
		dropHostKey(oldUUID)
	}
	return inventory.Update(path, func(f *inventory.File) error {
		if oldUUID != "" {
			f.Remove(oldUUID)
		}
		f.Put(r)
		return nil
	})
}

// TargetLUKSUUID is the LUKS UUID on a target as it was looked up (before
// it is prepared again).
func TargetLUKSUUID(t *pipeline.Target) string {
	uuid, _ := disk.LUKSOn(t.Content, t.Parts)
	return uuid
}

// DriveOf is the drive's identity as discovery reads it, and whose it is
// (the drive's own, the dock's, an image's).
func DriveOf(t *pipeline.Target) inventory.Drive {
	if t.Image || t.Disk == nil {
		return inventory.Drive{ModelFrom: inventory.FromImage, SerialFrom: inventory.FromImage}
	}
	d := t.Disk
	dr := inventory.Drive{WWN: d.WWN, Model: d.VendorModel(), Serial: d.Serial}
	if d.USB == nil {
		dr.ModelFrom, dr.SerialFrom = inventory.FromDrive, inventory.FromDrive
		return dr
	}
	dr.Dock = d.USB.String()
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
	if d.ATATranslated() {
		dr.ModelFrom = inventory.FromDrive
	}
	// The serial sysfs reports for a USB disk is the USB device's (the dock's).
	dr.SerialFrom = inventory.FromDock
	if d.USB.Serial == "" && d.Serial != "" && d.ATATranslated() {
		dr.SerialFrom = inventory.FromDrive
	}
	return dr
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
// within a set is a refusal (exit 3).
func checkLabelInSet(path string, req PrepareRequest, o pipeline.Options) (warning string, err error) {
	f := req.Inventory
	if f == nil {
		if f, err = inventory.Load(path); err != nil {
			return "", nil
		}
	}
	labels := req.Labels
	if labels == nil && !req.Target.Image {
		attached, _ := System.Scan()
		labels = AttachedLabels(attached)
	}
	w, err := inventory.CheckLabel(f, o.Set, o.Label, TargetLUKSUUID(req.Target), labels)
	if err != nil {
		return "", &pipeline.Error{Kind: pipeline.KindRefused, Step: pipeline.StepPreflight, Err: err}
	}
	return w, nil
}

// AttachedLabels are the LUKS2 and filesystem labels on disks.
func AttachedLabels(disks []disk.Disk) []string {
	var l []string
	add := func(s disk.Signature) {
		if s.Label != "" {
			l = append(l, s.Label)
		}
	}
	for _, d := range disks {
		add(d.Content)
		for _, p := range d.Partitions {
			add(p.Content)
		}
	}
	return l
}
