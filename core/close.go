package core

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"luksdock/disk"
	"luksdock/pipeline"
)

// CloseOptions are what luksdock close takes: the disk (Selector) or the
// mountpoint luksdock open printed.
type CloseOptions struct {
	Selector
	Mountpoint string
	// NoPowerOff leaves a USB disk powered (it is powered off by default,
	// so it can be pulled).
	NoPowerOff bool
}

// Closed is what luksdock close did.
type Closed struct {
	Target     string          `json:"target,omitempty"`
	LUKSUUID   string          `json:"luks_uuid,omitempty"`
	Label      string          `json:"label,omitempty"`
	Engine     pipeline.Engine `json:"engine,omitempty"`
	Mountpoint string          `json:"mountpoint,omitempty"`
	// Unmounted, Locked: the filesystem was unmounted and the volume
	// locked (the mapping closed, or the volume holder stopped and the
	// key wiped) by this close.
	Unmounted bool `json:"unmounted"`
	Locked    bool `json:"locked"`
	// PoweredOff is set when the USB disk was powered off; PowerOff says
	// what was done or why not.
	PoweredOff bool   `json:"powered_off"`
	PowerOff   string `json:"power_off,omitempty"`
}

// Close flushes, unmounts and locks the selected open disk and, for a
// disk on USB, powers it off so it can be pulled. It refuses (a
// *BusyError, pipeline.KindRefused) while any process has a file open on
// the filesystem, a working directory in it or a file from it mapped,
// naming them, and then changes nothing. A disk that is not open is only
// powered off.
func Close(ctx context.Context, o CloseOptions) (*Closed, error) {
	if err := needRoot("luksdock close"); err != nil {
		return nil, err
	}
	if o.Mountpoint == "" {
		if err := o.Selector.Check(); err != nil {
			return nil, err
		}
	}
	rec := findRecord(o.Selector, o.Mountpoint)
	if rec == nil {
		var err error
		if rec, err = discover(o); err != nil {
			return nil, err
		}
	}
	res := &Closed{Target: rec.Target, LUKSUUID: rec.LUKSUUID, Label: rec.Label, Engine: rec.Engine, Mountpoint: rec.Mountpoint}
	v := &volume{mapping: rec.Mapping, holderPID: rec.Holder}
	if rec.Mountpoint != "" && isMountpoint(rec.Mountpoint) {
		if users := Users(rec.Mountpoint); len(users) > 0 {
			return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: &BusyError{Mountpoint: rec.Mountpoint, Procs: users}}
		}
		if err := unmount(rec.Mountpoint, false); err != nil {
			var busy *BusyError
			if errors.As(err, &busy) {
				return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
			}
			return nil, &pipeline.Error{Kind: pipeline.KindStep, Err: err}
		}
		res.Unmounted = true
	}
	if rec.MadeDir && rec.Mountpoint != "" {
		os.Remove(rec.Mountpoint) // only ever an empty directory
	}
	if v.mapping != "" || v.holderPID != 0 {
		if err := v.lock(ctx, false); err != nil {
			return nil, &pipeline.Error{Kind: pipeline.KindStep, Err: fmt.Errorf("unmounted %s, but locking it failed: %w", rec.Mountpoint, err)}
		}
		res.Locked = true
	}
	if rec.LUKSUUID != "" {
		removeRecord(rec.LUKSUUID)
	}
	if rec.Disk != "" && !o.NoPowerOff {
		did, usb, err := powerOffUSB(rec.Disk)
		switch {
		case !usb && err != nil:
			res.PowerOff = "not powered off: " + err.Error()
		case !usb:
			res.PowerOff = "not on USB: left powered"
		case err != nil:
			res.PowerOff = err.Error()
			return res, &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf("closed, but %w", err)}
		default:
			res.PoweredOff, res.PowerOff = true, did
		}
	}
	return res, nil
}

// discover builds a close plan for a disk luksdock open did not record:
// a dm-crypt mapping on its LUKS device (opened by hand, by udisks or by
// a luksdock whose record is gone) and the mountpoints of that mapping.
func discover(o CloseOptions) (*openRecord, error) {
	if o.Mountpoint != "" && o.Selector == (Selector{}) {
		return nil, refused("nothing luksdock opened is mounted at %s", o.Mountpoint)
	}
	d, err := Find(o.Selector)
	if err != nil {
		return nil, err
	}
	rec := &openRecord{Opened: Opened{Target: d.Path, LUKS: d.What(), LUKSUUID: d.Info.UUID, Label: d.Info.Label}}
	if !d.Image {
		rec.Disk = d.Path
	}
	name, mnt, err := mappingOver(d)
	if err != nil {
		return nil, err
	}
	if name != "" {
		rec.Mapping, rec.Engine, rec.Cleartext, rec.Mountpoint = name, pipeline.EngineKernel, "/dev/mapper/"+name, mnt
	}
	return rec, nil
}

// mappingOver finds a dm-crypt mapping on the disk's LUKS device (made by
// luksdock open, by hand or by the desktop) and where it is mounted ("" for
// none). More than one mountpoint is refused.
func mappingOver(d *LUKSDisk) (name, mountpoint string, err error) {
	var nodes []string
	if d.Image {
		nodes = disk.Host.LoopsBackedBy(d.Path) // an image's mapping lies on a loop device
	} else if d.LUKS.Direct() {
		nodes = []string{d.LUKS.Path}
	}
	for _, node := range nodes {
		holders, _ := filepath.Glob("/sys/block/dm-*/slaves/" + filepath.Base(node))
		for _, s := range holders {
			dm := filepath.Base(filepath.Dir(filepath.Dir(s)))
			b, err := os.ReadFile(filepath.Join("/sys/block", dm, "dm", "name"))
			if err != nil {
				continue
			}
			name = strings.TrimSpace(string(b))
			mm := devNumOf("/dev/" + dm)
			for _, m := range (disk.Sys{Root: "/"}).MountInfo() {
				if m.MajMin == mm {
					if mountpoint != "" {
						return "", "", refused("/dev/mapper/%s is mounted more than once (%s, %s): unmount the others first", name, mountpoint, m.MountPoint)
					}
					mountpoint = m.MountPoint
				}
			}
			return name, mountpoint, nil
		}
	}
	return "", "", nil
}
