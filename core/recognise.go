package core

import (
	"errors"
	"os"
	"time"

	"luksdock/disk"
	"luksdock/inventory"
)

// KnownDisk is what the inventory says about a docked LUKS disk.
type KnownDisk struct {
	Known       bool              `json:"known"`
	Description string            `json:"description"`
	Record      *inventory.Record `json:"record,omitempty"`
	// SetOnDisk is the set named in the LUKS2 subsystem field, which other
	// machines see without the inventory.
	SetOnDisk string `json:"set_on_disk,omitempty"`
}

// Recognise looks the LUKS disks among disks up in the inventory at path
// (known[i] is disks[i]'s, nil for a disk without LUKS) and records the
// known ones as seen now. A damaged or unreadable inventory is returned as
// a warning; recognition then says so.
func Recognise(path string, disks []disk.Disk, now time.Time) (known []*KnownDisk, warning string) {
	type hit struct {
		i    int
		uuid string
		set  string
	}
	known = make([]*KnownDisk, len(disks))
	var hits []hit
	for i, d := range disks {
		if uuid, set := disk.LUKSOn(d.Content, d.Partitions); uuid != "" {
			hits = append(hits, hit{i, uuid, set})
		}
	}
	if len(hits) == 0 {
		return known, ""
	}
	f, err := inventory.Load(path)
	if err != nil {
		return known, err.Error()
	}
	anyKnown := false
	for _, h := range hits {
		k := &KnownDisk{SetOnDisk: h.set}
		k.Description, k.Known = inventory.Recognise(f, h.uuid, h.set, now)
		if r := f.Find(h.uuid); r != nil {
			rc := *r
			k.Record = &rc
			anyKnown = true
		}
		known[h.i] = k
	}
	if !anyKnown {
		return known, ""
	}
	err = inventory.Update(path, func(f *inventory.File) error {
		for _, h := range hits {
			f.Seen(h.uuid, disks[h.i].Path, now)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrPermission) {
		return known, "could not record when the disks were seen: " + err.Error()
	}
	return known, ""
}
