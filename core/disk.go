package core

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"luksdock/disk"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// Selector names the disk a lifecycle command (open, close, passwd,
// recovery-key, retire) works on: exactly one of a whole disk's device
// node, an image file, or the LUKS2 label of a disk that is attached now
// (close also finds an open image by its label).
type Selector struct {
	Device string // /dev/sdi (a whole disk)
	Image  string // an image file luksdock prepared
	Label  string // the LUKS2 label (backups01)
}

// Check refuses a selector that names none or more than one disk.
func (s Selector) Check() error {
	n := 0
	for _, v := range []string{s.Device, s.Image, s.Label} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return &UsageError{errors.New("give exactly one of --device /dev/sdX, --image PATH or --label LABEL")}
	}
	return nil
}

// UsageError is a selector or flag combination that makes no sense: the
// CLI maps it to its usage exit code (2).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// LUKSDisk is a disk (or image) holding a luksdock LUKS volume, as found:
// where the LUKS device lies and what its header says.
type LUKSDisk struct {
	Path  string // /dev/sdi or the image's path
	Name  string // sdi, or the image's file name (what --confirm names)
	Image bool
	Size  int64
	// Disk is what discovery knows (block devices only).
	Disk *disk.Disk
	// LUKS is where the LUKS device lies: a partition node (or the whole
	// disk with --table none) for a block device, a byte range for an image.
	LUKS luks.Device
	// Info is the LUKS header (read without any secret; Keyslots lists the
	// active keyslots).
	Info luks.Info
}

// What names the LUKS device for messages: "/dev/sdi1", or "disk.img
// (LUKS at byte 1048576)".
func (d *LUKSDisk) What() string {
	if d.LUKS.Base == 0 {
		return d.LUKS.Path
	}
	return fmt.Sprintf("%s (LUKS at byte %d)", d.LUKS.Path, d.LUKS.Base)
}

// Find looks the selected disk up and locates its LUKS volume. It writes
// nothing, except that on a kernel without partition-table parsers it asks
// the kernel for the partition node (BLKPG), as verify does.
func Find(sel Selector) (*LUKSDisk, error) {
	if err := sel.Check(); err != nil {
		return nil, err
	}
	switch {
	case sel.Image != "":
		return findImage(sel.Image)
	case sel.Device != "":
		return findDevice(sel.Device)
	}
	return findLabel(sel.Label)
}

func refused(format string, a ...any) error {
	return &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf(format, a...)}
}

func findImage(path string) (*LUKSDisk, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, refused("%v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, refused("%s: %v", path, errors.Unwrap(err))
	}
	if !st.Mode().IsRegular() {
		return nil, refused("%s is not a regular file (use --device for a disk)", path)
	}
	d := &LUKSDisk{Path: path, Name: filepath.Base(path), Image: true, Size: st.Size()}
	return d, d.locate(512)
}

func findDevice(path string) (*LUKSDisk, error) {
	sys := disk.Sys{Root: "/"}
	name, err := sys.NameOf(path)
	if err != nil {
		return nil, refused("%v", err)
	}
	dk, err := sys.Disk(name)
	if err != nil {
		if errors.Is(err, disk.ErrPartition) {
			return nil, refused("%s: %v; name the whole disk", path, err)
		}
		return nil, refused("%s: %v", path, err)
	}
	d := &LUKSDisk{Path: "/dev/" + name, Name: name, Size: dk.Size, Disk: &dk}
	sector := dk.LogicalSector
	if sector == 0 {
		sector = 512
	}
	return d, d.locate(sector)
}

// findLabel finds the attached disk whose LUKS volume carries label: the
// LUKS2 label, else (LUKS1 has none) the inventory's record of the disk.
func findLabel(label string) (*LUKSDisk, error) {
	disks, err := disk.Sys{Root: "/"}.Scan()
	if err != nil {
		return nil, refused("listing disks: %v", err)
	}
	var uuids map[string]bool
	if inv, err := inventory.Load(inventory.Path()); err == nil {
		uuids = map[string]bool{}
		for _, r := range inv.Disks {
			if r.Label == label && r.Retired.IsZero() {
				uuids[strings.ToLower(r.LUKSUUID)] = true
			}
		}
	}
	match := func(s disk.Signature) bool {
		return s.Type == disk.SigLUKS && (s.Label == label || uuids[strings.ToLower(s.UUID)])
	}
	var found []string
	for _, dk := range disks {
		hit := match(dk.Content)
		for _, p := range dk.Partitions {
			hit = hit || p.Number == 1 && match(p.Content)
		}
		if hit {
			found = append(found, dk.Path)
		}
	}
	switch len(found) {
	case 0:
		return nil, refused("no attached disk has a LUKS volume labelled %q (luksdock list shows what is attached)", label)
	case 1:
		return findDevice(found[0])
	}
	return nil, refused("more than one attached disk is labelled %q (%s): name one with --device", label, strings.Join(found, ", "))
}

// locate finds the LUKS volume the way a docked kernel does (partition 1,
// or LUKS on the whole disk), preferring the view of this dock's sector
// size, and reads its header.
func (d *LUKSDisk) locate(sector int) error {
	views, err := disk.ReadViews(d.Path, d.Size)
	if err != nil {
		return refused("%s: %v", d.Path, err)
	}
	var v *disk.View
	for i := range views {
		if views[i].Readable() && (v == nil || views[i].Sector == sector) {
			v = &views[i]
		}
	}
	if v == nil {
		return &pipeline.Error{Kind: pipeline.KindNotVerified, Err: fmt.Errorf("%s holds no LUKS volume luksdock can find (neither on partition 1 nor on the whole disk)", d.Path)}
	}
	d.LUKS = luks.Device{Path: d.Path, Base: v.Start, Size: v.Size}
	if !d.Image && v.Table != "none" {
		node := "/dev/" + disk.PartitionName(d.Name, 1)
		if !sameGeometry(node, v.Start, v.Size) {
			f, err := os.Open(d.Path)
			if err != nil {
				return refused("%s: %v", d.Path, err)
			}
			node, _, err = disk.SyncPartition(f, d.Name, disk.Layout{Start: v.Start, Size: v.Size}, 10*time.Second)
			f.Close()
			if err != nil {
				return &pipeline.Error{Kind: pipeline.KindStep, Err: err}
			}
		}
		d.LUKS = luks.Device{Path: node, Size: v.Size}
	}
	f, err := os.Open(d.LUKS.Path)
	if err != nil {
		return refused("%s: %v", d.LUKS.Path, err)
	}
	defer f.Close()
	info, err := luks.ReadHeader(io.NewSectionReader(f, d.LUKS.Base, max(d.LUKS.Size, 1<<20)))
	if err != nil {
		return &pipeline.Error{Kind: pipeline.KindNotVerified, Err: fmt.Errorf("%s: %v", d.What(), err)}
	}
	d.Info = info
	return nil
}

// sameGeometry reports whether the partition node exists at start, size.
func sameGeometry(node string, start, size int64) bool {
	name := filepath.Base(node)
	rd := func(f string) int64 {
		b, err := os.ReadFile(filepath.Join("/sys/class/block", name, f))
		if err != nil {
			return -1
		}
		var n int64
		fmt.Sscan(strings.TrimSpace(string(b)), &n)
		return n
	}
	if _, err := os.Stat(node); err != nil {
		return false
	}
	return rd("start")*512 == start && rd("size")*512 == size
}

// blockDevice gives cryptsetup a block device holding the LUKS device at
// offset 0: the partition node itself, or, for an image, a loop device on
// the LUKS range (cryptsetup then writes in place, in its own crash-safe
// order, exactly as on a disk). release detaches the loop device (it goes
// once nothing else holds it: autoclear).
func (d *LUKSDisk) blockDevice() (path string, release func(), err error) {
	if d.LUKS.Direct() {
		return d.LUKS.Path, func() {}, nil
	}
	size := d.LUKS.Size
	if size == 0 {
		size = d.Size - d.LUKS.Base
	}
	l, err := disk.AttachLoop(d.LUKS.Path, d.LUKS.Base, size)
	if err != nil {
		return "", nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf("a loop device for %s: %w", d.What(), err)}
	}
	return l.Path, func() { l.Close() }, nil
}

// FindLUKS is Find for the commands that use a disk's LUKS device as it is
// (host enroll and forget, dock --image): a disk with no LUKS volume is a
// refusal there (the caller named the wrong disk), not a failed
// verification.
func FindLUKS(sel Selector) (*LUKSDisk, error) {
	d, err := Find(sel)
	if err != nil && pipeline.KindOf(err) == pipeline.KindNotVerified {
		return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: errors.Unwrap(err)}
	}
	return d, err
}
