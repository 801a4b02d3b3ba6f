// Package disk finds block disks the way the kernel sees them (sysfs, the
// kernel log, uevents), probes what they hold, and decides which of them may
// be prepared.
package disk

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sys is where discovery reads the kernel's view. Root is "/" in production
// and a fixture directory in tests. Discovery reads Root/sys/block,
// Root/sys/dev/block, Root/sys/class/block, Root/proc/self/mountinfo,
// Root/proc/swaps and, as an optional extra, udev's database in
// Root/run/udev/data. Disk contents are probed read-only from Root/dev/NAME
// (the real device node when Root is "/"; a small image file or nothing in a
// fixture). Reported device paths are always "/dev/NAME".
type Sys struct{ Root string }

// Host is the running machine's sysfs, /proc and /dev.
var Host = Sys{Root: "/"}

// Disk is one whole block disk as discovered from sysfs, with what it holds
// and how it is in use.
type Disk struct {
	Name           string `json:"name"`   // kernel name, "sdi"
	Path           string `json:"path"`   // "/dev/sdi"
	MajMin         string `json:"majmin"` // "8:128"
	DiskSeq        uint64 `json:"diskseq,omitempty"`
	Size           int64  `json:"size"` // bytes
	LogicalSector  int    `json:"logical_sector"`
	PhysicalSector int    `json:"physical_sector"`
	Rotational     bool   `json:"rotational"`
	ReadOnly       bool   `json:"read_only"`
	Removable      bool   `json:"removable"`
	// Transport is derived from the device path and drivers: "usb-storage",
	// "uas", "sata", "nvme", "virtio", "mmc", "loop", "scsi" or "unknown".
	Transport   string   `json:"transport"`
	Vendor      string   `json:"vendor,omitempty"`
	Model       string   `json:"model,omitempty"`
	Revision    string   `json:"revision,omitempty"`
	Serial      string   `json:"serial,omitempty"` // USB serial, else the disk's own
	WWN         string   `json:"wwn,omitempty"`
	USB         *USBInfo `json:"usb,omitempty"` // nil when not on USB
	LoopBacking string   `json:"loop_backing,omitempty"`
	SysPath     string   `json:"sys_path"` // resolved sysfs device path below Root, "/sys/devices/..."
	// Content is what the whole disk holds: a partition table, or a
	// filesystem/LUKS/LVM directly on it. ProbeError is set when the disk
	// could not be read (then Content is empty and Partitions come from sysfs).
	Content    Signature   `json:"content"`
	ProbeError string      `json:"probe_error,omitempty"`
	Partitions []Partition `json:"partitions,omitempty"`
	// Usage of the disk itself (partitions carry their own). Mounts includes
	// mount points of devices stacked on the disk (dm, md); Holders are the
	// kernel names in /sys/block/NAME/holders; InUse explains every use in
	// words (with the fix), including loop devices whose backing file lives on
	// the disk.
	Mounts  []string `json:"mounts,omitempty"`
	Swap    bool     `json:"swap,omitempty"`
	Holders []string `json:"holders,omitempty"`
	InUse   []Reason `json:"in_use,omitempty"`
}

// USBInfo describes the USB device a disk is attached through.
type USBInfo struct {
	VendorID     string `json:"vendor_id"`  // idVendor, "152d"
	ProductID    string `json:"product_id"` // idProduct, "2329"
	Manufacturer string `json:"manufacturer,omitempty"`
	Product      string `json:"product,omitempty"`
	Serial       string `json:"serial,omitempty"`
	Speed        string `json:"speed,omitempty"` // Mbit/s as sysfs prints it: "480", "5000"
	Port         string `json:"port"`            // bus-port path, "2-1.4"
}

// Partition is one partition of a disk: from the partition table found by
// Probe, merged with the kernel's partition nodes in sysfs.
type Partition struct {
	Name      string    `json:"name"` // "sdi1", "nvme0n1p1", "loop0p1"
	Path      string    `json:"path"` // "/dev/sdi1"
	Number    int       `json:"number"`
	Start     int64     `json:"start"`                // bytes from the start of the disk
	Size      int64     `json:"size"`                 // bytes
	PartType  string    `json:"part_type,omitempty"`  // GPT type GUID, or MBR type "0x83"
	PartUUID  string    `json:"part_uuid,omitempty"`  // GPT partition GUID, or MBR "ptuuid-NN"
	PartLabel string    `json:"part_label,omitempty"` // GPT partition name
	InKernel  bool      `json:"in_kernel"`            // the kernel has a node for it (/sys/class/block/NAME)
	Content   Signature `json:"content"`
	Mounts    []string  `json:"mounts,omitempty"`
	Swap      bool      `json:"swap,omitempty"`
	Holders   []string  `json:"holders,omitempty"`
	InUse     []Reason  `json:"in_use,omitempty"`
}

// ErrPartition is returned (wrapped in a *PartitionError) when a partition is
// named where a whole disk is required.
var ErrPartition = errors.New("is a partition, not a whole disk")

// PartitionError says which disk a partition belongs to. errors.Is(err,
// ErrPartition) is true for it.
type PartitionError struct{ Name, Parent string }

func (e *PartitionError) Error() string {
	return fmt.Sprintf("%s is a partition of %s, not a whole disk; choose the whole disk /dev/%s", e.Name, e.Parent, e.Parent)
}

// Is makes errors.Is(err, ErrPartition) true.
func (e *PartitionError) Is(target error) bool { return target == ErrPartition }

// ErrNoDisk is returned when a name is not a block device the kernel knows.
var ErrNoDisk = errors.New("no such block device")

func (s Sys) root() string {
	if s.Root == "" {
		return "/"
	}
	return s.Root
}

func (s Sys) p(elem ...string) string {
	return filepath.Join(append([]string{s.root()}, elem...)...)
}

// sysfsAttr reads a sysfs attribute file and trims the trailing newline and
// padding the kernel adds.
func sysfsAttr(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// parseSysfsInt parses a decimal sysfs attribute ("976773168\n"); ok is false
// for anything else.
func parseSysfsInt(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// parseSysfsBool parses "0"/"1" attributes.
func parseSysfsBool(s string) bool {
	v, ok := parseSysfsInt(s)
	return ok && v != 0
}

// parseUeventFile parses a sysfs "uevent" file (KEY=VALUE lines).
func parseUeventFile(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// skipScan reports whether a /sys/block entry is not a disk candidate:
// RAM disks, zram (compressed swap in RAM), device-mapper and md devices
// (they are stacked on disks, not disks), and other virtual devices. Loop
// devices are handled separately (listed only while bound to a file).
func skipScan(name, devPath string) bool {
	for _, p := range []string{"ram", "zram", "dm-", "md", "nbd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	// NVMe namespaces with native multipath live below
	// /devices/virtual/nvme-subsystem; they are real disks.
	return strings.Contains(devPath, "/devices/virtual/") && !strings.HasPrefix(name, "loop") &&
		!strings.Contains(devPath, "/nvme-subsystem/")
}

// Scan lists every whole disk, sorted by name. It skips RAM disks, zram,
// device-mapper, md and nbd devices, other /sys/devices/virtual devices,
// hidden disks (NVMe multipath paths), loop devices not bound to a file,
// and loop devices that are luksdock's own decrypted volume (OwnVolumeLoop):
// the disk under it is listed, open.
func (s Sys) Scan() ([]Disk, error) {
	ents, err := os.ReadDir(s.p("sys", "block"))
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	u := s.loadUsage()
	var out []Disk
	for _, e := range ents {
		name := e.Name()
		d, ok, err := s.disk(name, u, true)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Disk returns the whole disk with kernel name name ("sdi"). For a partition
// it returns a *PartitionError (errors.Is ErrPartition) naming its parent.
// Unlike Scan it returns any whole block device, also unbound loop devices
// and virtual disks.
func (s Sys) Disk(name string) (Disk, error) {
	name = strings.TrimPrefix(name, "/dev/")
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return Disk{}, fmt.Errorf("%q: %w", name, ErrNoDisk)
	}
	if _, err := os.Stat(s.p("sys", "block", name)); err != nil {
		// Not a whole disk: maybe a partition.
		cls := s.p("sys", "class", "block", name)
		if _, err2 := os.Stat(filepath.Join(cls, "partition")); err2 == nil {
			target, _ := filepath.EvalSymlinks(cls)
			return Disk{}, &PartitionError{Name: name, Parent: filepath.Base(filepath.Dir(target))}
		}
		return Disk{}, fmt.Errorf("%s: %w", name, ErrNoDisk)
	}
	d, _, err := s.disk(name, s.loadUsage(), false)
	return d, err
}

// NameOf maps a device path ("/dev/sdi", or a symlink such as
// /dev/disk/by-id/usb-...) to its kernel name by the device number of the
// node (stat major:minor -> Root/sys/dev/block/MAJ:MIN). The path is resolved
// on the real filesystem, not below Root.
func (s Sys) NameOf(devPath string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(devPath, &st); err != nil {
		return "", fmt.Errorf("%s: %w", devPath, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s is not a block device", devPath)
	}
	mm := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	name := s.nameOfMajMin(mm)
	if name == "" {
		return "", fmt.Errorf("%s (%s): %w in %s", devPath, mm, ErrNoDisk, s.p("sys", "dev", "block"))
	}
	return name, nil
}

// NameOfDevNum maps a device number (a stat's st_dev or st_rdev) to the
// kernel name of its block device, "" if it is none (tmpfs, FUSE...).
func (s Sys) NameOfDevNum(dev uint64) string {
	return s.nameOfMajMin(fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev)))
}

// nameOfMajMin maps "8:128" to "sdi" through Root/sys/dev/block.
func (s Sys) nameOfMajMin(mm string) string {
	link, err := os.Readlink(s.p("sys", "dev", "block", mm))
	if err != nil {
		return ""
	}
	return path.Base(filepath.ToSlash(link))
}

// devSysPath resolves Root/sys/block/NAME (a symlink into /sys/devices) and
// returns the target relative to Root, e.g. "/sys/devices/pci0000:00/.../block/sdi".
func (s Sys) devSysPath(dir string) string {
	target, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(s.root(), target)
	if err != nil {
		return ""
	}
	return "/" + filepath.ToSlash(rel)
}

func (s Sys) disk(name string, u *usage, scanning bool) (Disk, bool, error) {
	dir := s.p("sys", "block", name)
	d := Disk{Name: name, Path: "/dev/" + name}
	d.SysPath = s.devSysPath(dir)
	if scanning {
		if skipScan(name, d.SysPath) {
			return d, false, nil
		}
		if parseSysfsBool(sysfsAttr(filepath.Join(dir, "hidden"))) {
			return d, false, nil
		}
	}
	d.MajMin = sysfsAttr(filepath.Join(dir, "dev"))
	if seq, ok := parseSysfsInt(sysfsAttr(filepath.Join(dir, "diskseq"))); ok {
		d.DiskSeq = uint64(seq)
	}
	if sec, ok := parseSysfsInt(sysfsAttr(filepath.Join(dir, "size"))); ok {
		d.Size = sec * 512 // sysfs "size" is always in 512-byte units
	}
	lbs, _ := parseSysfsInt(sysfsAttr(filepath.Join(dir, "queue", "logical_block_size")))
	pbs, _ := parseSysfsInt(sysfsAttr(filepath.Join(dir, "queue", "physical_block_size")))
	d.LogicalSector, d.PhysicalSector = int(lbs), int(pbs)
	if d.LogicalSector == 0 {
		d.LogicalSector = 512
	}
	if d.PhysicalSector == 0 {
		d.PhysicalSector = d.LogicalSector
	}
	d.Rotational = parseSysfsBool(sysfsAttr(filepath.Join(dir, "queue", "rotational")))
	d.ReadOnly = parseSysfsBool(sysfsAttr(filepath.Join(dir, "ro")))
	d.Removable = parseSysfsBool(sysfsAttr(filepath.Join(dir, "removable")))

	if strings.HasPrefix(name, "loop") {
		d.Transport = "loop"
		d.LoopBacking = sysfsAttr(filepath.Join(dir, "loop", "backing_file"))
		if scanning && d.LoopBacking == "" {
			return d, false, nil
		}
		if scanning && u != nil && OwnVolumeLoop(d.LoopBacking, u.table) {
			return d, false, nil // luksdock's own decrypted volume, not a disk
		}
	} else {
		d.Transport = transportOf(s, d.SysPath)
	}
	s.fillIdentity(&d, dir)
	s.fillUdev(&d)
	s.fillContent(&d)
	if u != nil {
		u.apply(s, &d)
	}
	return d, true, nil
}

var usbIfaceRe = regexp.MustCompile(`^\d+-[\d.]+:\d+\.\d+$`)
var usbDevRe = regexp.MustCompile(`^\d+-[\d.]+$`)
var ataRe = regexp.MustCompile(`^ata\d+$`)

// transportOf derives the transport from the sysfs device path and the
// drivers bound along it (never from the removable flag).
func transportOf(s Sys, sysPath string) string {
	if sysPath == "" {
		return "unknown"
	}
	parts := strings.Split(strings.TrimPrefix(sysPath, "/"), "/")
	for i, p := range parts {
		if usbIfaceRe.MatchString(p) {
			drv := linkBase(s.p(append(parts[:i+1:i+1], "driver")...))
			switch drv {
			case "uas":
				return "uas"
			case "usb-storage", "ums-realtek", "ums_realtek":
				return "usb-storage"
			}
			if strings.HasPrefix(drv, "ums") {
				return "usb-storage"
			}
			return "usb-storage"
		}
	}
	for _, p := range parts {
		switch {
		case ataRe.MatchString(p):
			return "sata"
		case p == "nvme" || strings.HasPrefix(p, "nvme-subsys"):
			return "nvme"
		case strings.HasPrefix(p, "virtio"):
			return "virtio"
		case p == "mmc_host" || strings.HasPrefix(p, "mmc"):
			return "mmc"
		}
	}
	for _, p := range parts {
		if strings.HasPrefix(p, "host") || strings.HasPrefix(p, "target") {
			return "scsi"
		}
	}
	return "unknown"
}

func linkBase(p string) string {
	t, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	return path.Base(filepath.ToSlash(t))
}

// fillIdentity reads vendor, model, revision, serial, WWN and the USB device.
func (s Sys) fillIdentity(d *Disk, dir string) {
	dev := filepath.Join(dir, "device")
	d.Vendor = sysfsAttr(filepath.Join(dev, "vendor"))
	d.Model = sysfsAttr(filepath.Join(dev, "model"))
	d.Revision = sysfsAttr(filepath.Join(dev, "rev"))
	if d.Revision == "" {
		d.Revision = sysfsAttr(filepath.Join(dev, "firmware_rev")) // NVMe controller
	}
	if d.Transport == "virtio" {
		d.Vendor = "" // virtio "vendor" is the PCI vendor id, not a name
	}
	// Serial: NVMe controller "serial", virtio-blk "serial", SCSI VPD page 0x80.
	d.Serial = sysfsAttr(filepath.Join(dev, "serial"))
	if d.Serial == "" {
		d.Serial = sysfsAttr(filepath.Join(dir, "serial"))
	}
	if d.Serial == "" {
		if b, err := os.ReadFile(filepath.Join(dev, "vpd_pg80")); err == nil {
			d.Serial = parseVPD80(b)
		}
	}
	d.WWN = sysfsAttr(filepath.Join(dev, "wwid"))
	if d.WWN == "" {
		d.WWN = sysfsAttr(filepath.Join(dir, "wwid"))
	}
	if d.WWN == "" {
		d.WWN = sysfsAttr(filepath.Join(dev, "wwn"))
	}
	if d.Transport == "usb-storage" || d.Transport == "uas" {
		d.USB = s.usbInfo(d.SysPath)
		if d.USB != nil && d.USB.Serial != "" {
			d.Serial = d.USB.Serial
		}
	}
}

// parseVPD80 extracts the unit serial number from SCSI VPD page 0x80 as the
// kernel exposes it in sysfs (4-byte header, then the ASCII serial).
func parseVPD80(b []byte) string {
	if len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if n > len(b)-4 {
		n = len(b) - 4
	}
	return strings.TrimSpace(strings.Trim(string(b[4:4+n]), "\x00"))
}

// usbInfo walks up the device path to the USB device (the directory named
// like "2-1.4" holding idVendor).
func (s Sys) usbInfo(sysPath string) *USBInfo {
	parts := strings.Split(strings.TrimPrefix(sysPath, "/"), "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if !usbDevRe.MatchString(parts[i]) {
			continue
		}
		dir := s.p(parts[:i+1]...)
		vid := sysfsAttr(filepath.Join(dir, "idVendor"))
		if vid == "" {
			continue
		}
		return &USBInfo{
			VendorID:     vid,
			ProductID:    sysfsAttr(filepath.Join(dir, "idProduct")),
			Manufacturer: sysfsAttr(filepath.Join(dir, "manufacturer")),
			Product:      sysfsAttr(filepath.Join(dir, "product")),
			Serial:       sysfsAttr(filepath.Join(dir, "serial")),
			Speed:        sysfsAttr(filepath.Join(dir, "speed")),
			Port:         parts[i],
		}
	}
	return nil
}

// fillUdev adds what udev's database knows (only where udevd runs): a serial
// or WWN sysfs did not provide.
func (s Sys) fillUdev(d *Disk) {
	if d.MajMin == "" {
		return
	}
	b, err := os.ReadFile(s.p("run", "udev", "data", "b"+d.MajMin))
	if err != nil {
		return
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if kv, ok := strings.CutPrefix(line, "E:"); ok {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	if d.Serial == "" {
		d.Serial = env["ID_SERIAL_SHORT"]
	}
	if d.WWN == "" {
		d.WWN = env["ID_WWN_WITH_EXTENSION"]
	}
}

// fillContent probes the disk read-only and merges the table's partitions
// with the kernel's partition nodes.
func (s Sys) fillContent(d *Disk) {
	var table []Partition
	var f *os.File
	var err error
	if d.Size == 0 {
		err = errors.New("no medium")
	} else {
		f, err = os.Open(s.p("dev", d.Name))
	}
	if err == nil {
		size := d.Size
		if st, e := f.Stat(); e == nil && st.Mode().IsRegular() {
			size = st.Size() // fixture image
		}
		d.Content, table, err = ProbeSectors(f, size, d.LogicalSector)
		f.Close()
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			d.ProbeError = "no device node " + d.Path
		} else {
			d.ProbeError = err.Error()
		}
	}
	kernel := s.kernelPartitions(d.Name)
	d.Partitions = mergePartitions(d.Name, table, kernel)
	for i := range d.Partitions {
		p := &d.Partitions[i]
		if !p.InKernel || p.Content != (Signature{}) {
			continue
		}
		// A partition the table did not describe (or the disk was not
		// readable): probe its own node.
		if pf, err := os.Open(s.p("dev", p.Name)); err == nil {
			size := p.Size
			if st, e := pf.Stat(); e == nil && st.Mode().IsRegular() {
				size = st.Size()
			}
			p.Content, _, _ = ProbeSectors(pf, size, d.LogicalSector)
			pf.Close()
		}
	}
}

// kernelPartitions reads the partition nodes below /sys/block/NAME.
// Present reports whether the kernel knows block device name now.
func (s Sys) Present(name string) bool {
	_, err := os.Stat(s.p("sys", "class", "block", name))
	return err == nil
}

// ReadOnlyNow reports whether block device name is read-only now
// (write-protected, or switched read-only by the kernel).
func (s Sys) ReadOnlyNow(name string) bool {
	return parseSysfsBool(sysfsAttr(s.p("sys", "class", "block", name, "ro")))
}

// PartitionNames lists the kernel names of disk name's partitions.
func (s Sys) PartitionNames(name string) []string {
	var out []string
	for _, p := range s.kernelPartitions(name) {
		out = append(out, p.Name)
	}
	return out
}

func (s Sys) kernelPartitions(name string) []Partition {
	dir := s.p("sys", "block", name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []Partition
	for _, e := range ents {
		pdir := filepath.Join(dir, e.Name())
		num, ok := parseSysfsInt(sysfsAttr(filepath.Join(pdir, "partition")))
		if !ok {
			continue
		}
		start, _ := parseSysfsInt(sysfsAttr(filepath.Join(pdir, "start")))
		size, _ := parseSysfsInt(sysfsAttr(filepath.Join(pdir, "size")))
		out = append(out, Partition{
			Name: e.Name(), Path: "/dev/" + e.Name(), Number: int(num),
			Start: start * 512, Size: size * 512, InKernel: true,
		})
	}
	return out
}

// PartitionName is the kernel's name for partition n of disk: "sdi1", or
// "nvme0n1p1"/"loop0p1"/"mmcblk0p1" when the disk name ends in a digit.
func PartitionName(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

func mergePartitions(disk string, table, kernel []Partition) []Partition {
	byNum := map[int]int{}
	var out []Partition
	for _, p := range table {
		p.Name = PartitionName(disk, p.Number)
		p.Path = "/dev/" + p.Name
		byNum[p.Number] = len(out)
		out = append(out, p)
	}
	for _, k := range kernel {
		if i, ok := byNum[k.Number]; ok {
			out[i].InKernel = true
			out[i].Name, out[i].Path = k.Name, k.Path
			if out[i].Start != k.Start || out[i].Size != k.Size {
				// The kernel's idea wins for what is usable now; keep the node.
				out[i].Start, out[i].Size = k.Start, k.Size
			}
			continue
		}
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out
}
