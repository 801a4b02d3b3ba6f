package core

import (
	"os"
	"path/filepath"
	"strings"

	"luksdock/disk"
	"luksdock/pipeline"
)

// OwnOpen is a disk's LUKS volume open as luksdock open leaves it: with the
// kernel engine a dm-crypt mapping over the LUKS device, mounted once (or
// not mounted), which the safety policy refuses as in use; with the
// userspace engine its volume holder, recorded by luksdock open, and the
// mount. The wizard offers such a disk all the same, so that it can be
// closed (Close, as luksdock close does), and never prepares it while it is
// open.
type OwnOpen struct {
	LUKSUUID string          `json:"luks_uuid"`
	Engine   pipeline.Engine `json:"engine"`
	// Device is the LUKS device (/dev/sdi1).
	Device string `json:"device"`
	// Mapping is the kernel engine's dm-crypt mapping: luks-UUID (luksdock
	// open's name, and the desktop's), or the one luksdock open's record
	// names.
	Mapping string `json:"mapping,omitempty"`
	// Mountpoint is where the mapping is mounted ("": unlocked only).
	Mountpoint string `json:"mountpoint,omitempty"`
	// Recorded: luksdock open's record (in RunDir) names this open.
	Recorded bool `json:"recorded,omitempty"`
}

// OpenOnly reports the open of d's LUKS volume when that is the only use of
// d (as discovery filled it in: d.Holders, Mounts, InUse of the disk and its
// partitions), else nil. The only use means: one device of the disk (the
// disk or one partition) is in use and it is the LUKS volume; it has
// exactly one holder, a dm-crypt mapping of that volume (its device-mapper
// UUID names the LUKS UUID) called luks-UUID or recorded by luksdock open;
// that mapping is mounted at most once, and nothing else is stacked on it,
// mounted from it or backed by a file on it. The luksdock-* mappings of a
// preparation, a verification or a backup run on docking are never
// luksdock open's, so a disk they hold stays refused. The userspace
// engine's open leaves no trace the policy refuses (its volume holder opens
// the device; the loop device is on its FUSE file): a disk nothing uses
// is reported open when luksdock open's record says its volume holder
// serves it and the record's mountpoint is mounted.
func OpenOnly(d disk.Disk) *OwnOpen { return openOnly(System, d, records()) }

// AssessOpen is disk.Assess for the disk list: when the only use of d is
// the open of its LUKS volume (OpenOnly) and nothing else refuses d (under
// allowInternal), the verdict is the one d would have without the open, and
// the open is returned: the caller offers d for closing, never for
// preparing (a prepare reads the disk again and its policy refuses it while
// it is open). Otherwise it is disk.Assess(d), every reason, and nil.
func AssessOpen(d disk.Disk, allowInternal bool) (disk.Verdict, *OwnOpen) {
	return assessOpen(System, d, records(), allowInternal)
}

func assessOpen(sys disk.Sys, d disk.Disk, recs []*openRecord, allowInternal bool) (disk.Verdict, *OwnOpen) {
	o := openOnly(sys, d, recs)
	if o == nil {
		return disk.Assess(d), nil
	}
	c := d
	c.Partitions = append([]disk.Partition(nil), d.Partitions...)
	if "/dev/"+c.Name == o.Device {
		c.Holders, c.Mounts, c.InUse = nil, nil, nil
	}
	for i := range c.Partitions {
		if p := &c.Partitions[i]; "/dev/"+p.Name == o.Device {
			p.Holders, p.Mounts, p.InUse = nil, nil, nil
		}
	}
	if v := disk.Assess(c); v.OK(allowInternal) {
		return v, o
	}
	return disk.Assess(d), nil
}

// usedDev is one block device of a disk (the disk itself or a partition)
// and what discovery found using it.
type usedDev struct {
	name    string
	content disk.Signature
	mounts  []string
	swap    bool
	holders []string
	inUse   []disk.Reason
}

func (u usedDev) used() bool {
	return len(u.mounts) > 0 || u.swap || len(u.holders) > 0 || len(u.inUse) > 0
}

func openOnly(sys disk.Sys, d disk.Disk, recs []*openRecord) *OwnOpen {
	devs := []usedDev{{d.Name, d.Content, d.Mounts, d.Swap, d.Holders, d.InUse}}
	for _, p := range d.Partitions {
		devs = append(devs, usedDev{p.Name, p.Content, p.Mounts, p.Swap, p.Holders, p.InUse})
	}
	var u *usedDev
	for i := range devs {
		if devs[i].used() {
			if u != nil {
				return nil // two devices of the disk in use
			}
			u = &devs[i]
		}
	}
	if u == nil {
		return userspaceOpen(sys, d, recs)
	}
	switch {
	case u.content.Type != disk.SigLUKS, u.content.UUID == "",
		len(u.holders) != 1, u.swap, len(u.mounts) > 1,
		// the mapping, and its one mount: nothing more (another holder
		// stacked on the mapping, a loop device on a file in it, a swap
		// file there would each add a reason)
		len(u.inUse) != 1+len(u.mounts):
		return nil
	}
	uuid := u.content.UUID
	h := u.holders[0]
	name := sysfsLine(sys, "sys", "block", h, "dm", "name")
	dmUUID := sysfsLine(sys, "sys", "block", h, "dm", "uuid")
	// cryptsetup names a LUKS mapping's device-mapper UUID
	// CRYPT-LUKS2-<the LUKS UUID without dashes>-<name>.
	flat := strings.ReplaceAll(strings.ToLower(uuid), "-", "")
	if name == "" || !strings.HasPrefix(dmUUID, "CRYPT-LUKS") || !strings.Contains(strings.ToLower(dmUUID), "-"+flat+"-") {
		return nil
	}
	o := &OwnOpen{LUKSUUID: uuid, Engine: pipeline.EngineKernel, Device: "/dev/" + u.name, Mapping: name}
	if len(u.mounts) == 1 {
		o.Mountpoint = u.mounts[0]
	}
	ok := name == MappingName(uuid)
	for _, r := range recs {
		if strings.EqualFold(r.LUKSUUID, uuid) && r.Mapping == name {
			ok = true
			o.Recorded = o.Mountpoint == "" || r.Mountpoint == o.Mountpoint
		}
	}
	if !ok {
		return nil
	}
	return o
}

// userspaceOpen is the userspace engine's open of d's LUKS volume: luksdock
// open's record of d with a volume holder, mounted now.
func userspaceOpen(sys disk.Sys, d disk.Disk, recs []*openRecord) *OwnOpen {
	uuid, _ := disk.LUKSOn(d.Content, d.Partitions)
	if uuid == "" {
		return nil
	}
	for _, r := range recs {
		if !strings.EqualFold(r.LUKSUUID, uuid) || r.Holder == 0 || r.Mountpoint == "" || (r.Disk != d.Path && r.Disk != "/dev/"+d.Name) {
			continue
		}
		for _, m := range sys.MountInfo() {
			if m.MountPoint == r.Mountpoint {
				return &OwnOpen{LUKSUUID: uuid, Engine: pipeline.EngineUserspace, Device: r.LUKS, Mountpoint: r.Mountpoint, Recorded: true}
			}
		}
	}
	return nil
}

// sysfsLine is the trimmed content of a sysfs file under sys's root ("" if
// it cannot be read).
func sysfsLine(sys disk.Sys, elem ...string) string {
	root := sys.Root
	if root == "" {
		root = "/"
	}
	b, err := os.ReadFile(filepath.Join(append([]string{root}, elem...)...))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
