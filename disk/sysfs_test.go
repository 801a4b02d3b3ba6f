package disk

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func fixture(name string) Sys { return Sys{Root: filepath.Join("..", "testdata", "sysfs", name)} }

func scanOne(t *testing.T, fx string) []Disk {
	t.Helper()
	ds, err := fixture(fx).Scan()
	if err != nil {
		t.Fatalf("Scan %s: %v", fx, err)
	}
	return ds
}

func names(ds []Disk) []string {
	var n []string
	for _, d := range ds {
		n = append(n, d.Name)
	}
	return n
}

func hasReason(v Verdict, sub string) bool { return findReason(v, sub) != nil }

// findReason is the refusal whose text contains sub.
func findReason(v Verdict, sub string) *Reason {
	for i, r := range v.Refused {
		if strings.Contains(r.Text, sub) {
			return &v.Refused[i]
		}
	}
	return nil
}

func TestScanUSBBOT(t *testing.T) {
	ds := scanOne(t, "usb-bot")
	if len(ds) != 1 {
		t.Fatalf("disks = %v, want [sdi]", names(ds))
	}
	d := ds[0]
	want := Disk{Name: "sdi", Path: "/dev/sdi", MajMin: "8:128", DiskSeq: 23, Size: 976773168 * 512,
		LogicalSector: 512, PhysicalSector: 512, Rotational: true, Transport: "usb-storage",
		Vendor: "MAXTOR S", Model: "TM3500630AS", Serial: "152D203380B6"}
	got := Disk{Name: d.Name, Path: d.Path, MajMin: d.MajMin, DiskSeq: d.DiskSeq, Size: d.Size,
		LogicalSector: d.LogicalSector, PhysicalSector: d.PhysicalSector, Rotational: d.Rotational,
		Transport: d.Transport, Vendor: d.Vendor, Model: d.Model, Serial: d.Serial}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("disk\n got %+v\nwant %+v", got, want)
	}
	wantUSB := USBInfo{VendorID: "152d", ProductID: "2329", Manufacturer: "JMicron", Product: "USB to ATA/ATAPI bridge",
		Serial: "152D203380B6", Speed: "480", Port: "2-1"}
	if d.USB == nil || *d.USB != wantUSB {
		t.Errorf("USB = %+v, want %+v", d.USB, wantUSB)
	}
	if d.Content.Table != "dos" || d.Content.DiskGUID != "0c7e5d1a" {
		t.Errorf("content = %+v, want dos 0c7e5d1a", d.Content)
	}
	if len(d.Partitions) != 1 {
		t.Fatalf("partitions = %+v", d.Partitions)
	}
	p := d.Partitions[0]
	if p.Name != "sdi1" || !p.InKernel || p.Start != 2048*512 || p.Size != 976771120*512 || p.PartType != "0x8e" ||
		p.Content.Type != "LVM2_member" || p.Content.UUID != "Hc3fS0-A1b2-C3d4-E5f6-G7h8-I9j0-K1l2M3" {
		t.Errorf("partition = %+v", p)
	}
	if s := d.Summary(); s != "MBR: sdi1 LVM2 PV 465.8 GiB" {
		t.Errorf("Summary = %q", s)
	}
	v := Assess(d)
	if !v.OK(false) || v.Internal || len(v.Refused) != 0 {
		t.Errorf("verdict = %+v, want OK on USB", v)
	}
}

func TestScanUAS(t *testing.T) {
	ds := scanOne(t, "usb-uas")
	if len(ds) != 1 || ds[0].Name != "sdc" {
		t.Fatalf("disks = %v", names(ds))
	}
	d := ds[0]
	if d.Transport != "uas" || d.PhysicalSector != 4096 || d.LogicalSector != 512 || d.Vendor != "ASMT" ||
		d.Model != "2115" || d.Revision != "0" || d.USB == nil || d.USB.Speed != "5000" || d.USB.Port != "4-2" ||
		d.USB.VendorID != "174c" || d.Size != 1953525168*512 {
		t.Errorf("disk = %+v usb=%+v", d, d.USB)
	}
	if d.Summary() != "empty" || !d.Content.Empty() {
		t.Errorf("summary = %q", d.Summary())
	}
	if v := Assess(d); !v.OK(false) {
		t.Errorf("verdict = %+v", v)
	}
}

func TestScanSATARoot(t *testing.T) {
	ds := scanOne(t, "sata-root")
	if len(ds) != 1 {
		t.Fatalf("disks = %v", names(ds))
	}
	d := ds[0]
	if d.Transport != "sata" || d.Serial != "S3Z9NB0K123456A" || d.WWN != "naa.5002538e40a1b2c3" || d.USB != nil ||
		d.Rotational || d.Model != "Samsung SSD 860" || d.Vendor != "ATA" || d.Revision != "4B6Q" {
		t.Errorf("disk = %+v", d)
	}
	if len(d.Partitions) != 2 || !reflect.DeepEqual(d.Partitions[1].Mounts, []string{"/"}) ||
		!reflect.DeepEqual(d.Partitions[0].Mounts, []string{"/boot/efi"}) {
		t.Fatalf("partitions = %+v", d.Partitions)
	}
	v := Assess(d)
	if v.OK(true) || !v.Internal || !hasReason(v, "sda2 holds the running system (mounted at /)") ||
		!hasReason(v, "sda1 is mounted at /boot/efi") {
		t.Errorf("verdict = %+v", v)
	}
}

func TestScanNVMeRoot(t *testing.T) {
	ds := scanOne(t, "nvme-root")
	if !reflect.DeepEqual(names(ds), []string{"nvme0n1"}) {
		t.Fatalf("disks = %v (dm devices must not be listed)", names(ds))
	}
	d := ds[0]
	if d.Transport != "nvme" || d.Model != "Samsung SSD 970 EVO Plus 1TB" || d.Serial != "S4EWNX0R123456W" ||
		d.Revision != "2B2QEXM7" || d.WWN != "eui.0025385b71b2c3d4" || d.MajMin != "259:0" {
		t.Errorf("disk = %+v", d)
	}
	if len(d.Partitions) != 3 {
		t.Fatalf("partitions = %+v", d.Partitions)
	}
	p3 := d.Partitions[2]
	if p3.Name != "nvme0n1p3" || !reflect.DeepEqual(p3.Holders, []string{"dm-0"}) || !p3.Swap ||
		!reflect.DeepEqual(p3.Mounts, []string{"/"}) {
		t.Errorf("p3 = %+v", p3)
	}
	v := Assess(d)
	// each reason with the fix for it, naming what to close
	for _, want := range []struct{ reason, fix string }{
		{"nvme0n1p3 holds the running system (mounted at /)", "luksdock never prepares it"},
		{`open dm-crypt mapping "nvme0n1p3_crypt" (dm-0)`, "cryptsetup close nvme0n1p3_crypt"},
		{`active LVM volume "vg0-root" (dm-1)`, "vgchange -an vg0"},
		{"dm-1 is mounted at /", "umount /"},
		{"dm-2 is active swap", "swapoff /dev/dm-2"},
		{"nvme0n1p2 is mounted at /boot", "umount /boot"},
	} {
		r := findReason(v, want.reason)
		switch {
		case r == nil:
			t.Errorf("missing reason %q in %q", want.reason, v.Refused)
		case !strings.Contains(r.Fix, want.fix):
			t.Errorf("reason %q: fix %q, want one with %q", r.Text, r.Fix, want.fix)
		}
	}
	if v.OK(true) {
		t.Error("NVMe root disk OK even with --allow-internal")
	}
}

func TestScanLoop(t *testing.T) {
	ds := scanOne(t, "loop")
	// loop1 is unbound, zram0 is swap in RAM: neither is listed.
	if !reflect.DeepEqual(names(ds), []string{"loop0", "vda"}) {
		t.Fatalf("disks = %v, want [loop0 vda]", names(ds))
	}
	l := ds[0]
	if l.Transport != "loop" || l.LoopBacking != "/var/tmp/disk.img" || l.Size != 1<<30 ||
		l.Content.Type != "ext4" || l.Content.Label != "scratch" || l.Content.UUID != "3e6e6f3a-2d1b-4c55-9a77-5b0a1c2d3e4f" {
		t.Errorf("loop0 = %+v", l)
	}
	v := Assess(l)
	if !v.OK(false) || v.Internal {
		t.Errorf("loop verdict = %+v", v)
	}
	if len(v.Warnings) != 2 || !strings.Contains(strings.Join(v.Warnings, "|"), `ext4 filesystem "scratch"`) {
		t.Errorf("loop warnings = %q", v.Warnings)
	}
	vda := ds[1]
	if vda.Transport != "virtio" || vda.Serial != "overlayblk" || vda.Vendor != "" {
		t.Errorf("vda = %+v", vda)
	}
	vv := Assess(vda)
	if !hasReason(vv, "vda holds the running system") || !hasReason(vv, "loop0 is backed by the file /var/tmp/disk.img on it") {
		t.Errorf("vda verdict = %+v", vv)
	}
	// Disk (unlike Scan) returns unbound loops, which are then refused as empty.
	l1, err := fixture("loop").Disk("loop1")
	if err != nil || l1.Size != 0 || !hasReason(Assess(l1), "no medium") {
		t.Errorf("loop1 = %+v, %v", l1, err)
	}
}

func TestScanMountedPartition(t *testing.T) {
	ds := scanOne(t, "mounted-partition")
	if !reflect.DeepEqual(names(ds), []string{"loop3", "sdb"}) {
		t.Fatalf("disks = %v", names(ds))
	}
	d := ds[1]
	if d.USB == nil || d.USB.Port != "3-4.2" || d.Transport != "usb-storage" {
		t.Errorf("sdb = %+v", d)
	}
	p := d.Partitions[0]
	if p.Content.Type != "vfat" || p.Content.Label != "PHOTOS" || p.Content.UUID != "1A2B-3C4D" ||
		!reflect.DeepEqual(p.Mounts, []string{"/media/user/PHOTOS"}) {
		t.Errorf("sdb1 = %+v", p)
	}
	v := Assess(d)
	if v.OK(true) || !hasReason(v, "sdb1 is mounted at /media/user/PHOTOS") ||
		!hasReason(v, "loop3 is backed by the file /media/user/PHOTOS/vm disk.img on it") {
		t.Errorf("verdict = %+v", v)
	}
	if !strings.Contains(strings.Join(v.Warnings, "|"), `sdb1 holds vfat filesystem "PHOTOS"`) {
		t.Errorf("warnings = %q", v.Warnings)
	}
}

func TestScanLVM(t *testing.T) {
	ds := scanOne(t, "lvm")
	if !reflect.DeepEqual(names(ds), []string{"sdd"}) {
		t.Fatalf("disks = %v", names(ds))
	}
	v := Assess(ds[0])
	if v.OK(true) || !hasReason(v, `active LVM volume "vg1-data" (dm-0)`) {
		t.Errorf("verdict = %+v", v)
	}
	if !reflect.DeepEqual(ds[0].Partitions[0].Holders, []string{"dm-0"}) {
		t.Errorf("holders = %v", ds[0].Partitions[0].Holders)
	}
}

func TestScanDMCrypt(t *testing.T) {
	ds := scanOne(t, "dm-crypt")
	d := ds[0]
	if d.Name != "sde" || !reflect.DeepEqual(d.Holders, []string{"dm-0"}) || d.Content.Type != "crypto_LUKS" ||
		d.Content.Version != "2" || d.Content.Label != "backups01" || d.Content.UUID != "1f3c5a2b-7d9e-4f60-a1b2-c3d4e5f60718" {
		t.Fatalf("sde = %+v", d)
	}
	v := Assess(d)
	if v.OK(true) || !hasReason(v, `open dm-crypt mapping "backups01" (dm-0)`) {
		t.Errorf("verdict = %+v", v)
	}
	if !strings.Contains(strings.Join(v.Warnings, "|"), `sde holds a LUKS2 header labelled "backups01" (UUID 1f3c5a2b-7d9e-4f60-a1b2-c3d4e5f60718)`) {
		t.Errorf("warnings = %q", v.Warnings)
	}
	if s := d.Summary(); s != `LUKS2 "backups01" 1f3c5a2b…` {
		t.Errorf("summary = %q", s)
	}
}

func TestDiskPartitionName(t *testing.T) {
	_, err := fixture("usb-bot").Disk("sdi1")
	var pe *PartitionError
	if !errors.Is(err, ErrPartition) || !errors.As(err, &pe) || pe.Parent != "sdi" {
		t.Fatalf("Disk(sdi1) = %v, want ErrPartition naming sdi", err)
	}
	_, err = fixture("nvme-root").Disk("/dev/nvme0n1p3")
	if !errors.As(err, &pe) || pe.Parent != "nvme0n1" {
		t.Fatalf("Disk(nvme0n1p3) = %v", err)
	}
	for _, bad := range []string{"sdz", "", "../sdi", "."} {
		if _, err := fixture("usb-bot").Disk(bad); !errors.Is(err, ErrNoDisk) {
			t.Errorf("Disk(%q) = %v, want ErrNoDisk", bad, err)
		}
	}
}

func TestIdentityFixture(t *testing.T) {
	s := fixture("usb-bot")
	a, err := s.Identity("sdi")
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{Name: "sdi", MajMin: "8:128", DiskSeq: 23, Size: 976773168 * 512, Model: "TM3500630AS", Serial: "152D203380B6", DiskGUID: "0c7e5d1a"}
	if a != want {
		t.Fatalf("identity = %+v, want %+v", a, want)
	}
	if err := a.Check(a); err != nil {
		t.Fatalf("same identity: %v", err)
	}
	// A different disk docked under the same name (the UAS fixture's sdc
	// renamed) must fail the check, naming what changed.
	b := a
	b.Serial, b.DiskSeq = "000000000001", 24
	err = a.Check(b)
	if !errors.Is(err, ErrDiskChanged) || !strings.Contains(err.Error(), `serial "152D203380B6" -> "000000000001"`) ||
		!strings.Contains(err.Error(), "disk sequence 23 -> 24") {
		t.Fatalf("Check = %v", err)
	}
	c := a
	c.DiskGUID = "deadbeef"
	if err := a.Check(c); !errors.Is(err, ErrDiskChanged) {
		t.Errorf("changed table GUID not caught: %v", err)
	}
	if err := a.CheckDevice(c); err != nil {
		t.Errorf("CheckDevice must ignore the table GUID: %v", err)
	}
}

func TestTransportOf(t *testing.T) {
	s := fixture("usb-bot")
	for p, want := range map[string]string{
		"/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sdb":           "sata",
		"/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1":                    "nvme",
		"/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1":                                "nvme",
		"/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda":                                  "virtio",
		"/sys/devices/pci0000:00/0000:00:1c.0/0000:02:00.0/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0": "mmc",
		"/sys/devices/pci0000:00/0000:00:10.0/host32/target32:0:0/32:0:0:0/block/sda":             "scsi",
		"/sys/devices/platform/foo/block/xyz":                                                     "unknown",
		// USB interface with a driver link in the fixture:
		"/sys/devices/pci0000:00/0000:00:1d.7/usb2/2-1/2-1:1.0/host13/target13:0:0/13:0:0:0/block/sdi": "usb-storage",
	} {
		if got := transportOf(s, p); got != want {
			t.Errorf("transportOf(%s) = %q, want %q", p, got, want)
		}
	}
	if got := transportOf(fixture("usb-uas"), "/sys/devices/pci0000:00/0000:00:14.0/usb4/4-2/4-2:1.0/host6/target6:0:0/6:0:0:0/block/sdc"); got != "uas" {
		t.Errorf("uas = %q", got)
	}
}

func TestParseSysfsAttrs(t *testing.T) {
	for in, want := range map[string]int64{"976773168\n": 976773168, "0\n": 0, " 12 \n": 12} {
		if v, ok := parseSysfsInt(in); !ok || v != want {
			t.Errorf("parseSysfsInt(%q) = %d,%v", in, v, ok)
		}
	}
	for _, in := range []string{"", "x", "1.5", "99999999999999999999"} {
		if _, ok := parseSysfsInt(in); ok {
			t.Errorf("parseSysfsInt(%q) accepted", in)
		}
	}
	if !parseSysfsBool("1\n") || parseSysfsBool("0\n") || parseSysfsBool("") {
		t.Error("parseSysfsBool")
	}
	vpd := []byte("\x00\x80\x00\x0cWD-WCAV1234  ")
	if s := parseVPD80(vpd); s != "WD-WCAV1234" {
		t.Errorf("parseVPD80 = %q", s)
	}
	if s := parseVPD80([]byte{0, 0x83, 0, 4, 'a', 'b', 'c', 'd'}); s != "" {
		t.Errorf("parseVPD80 of page 83 = %q", s)
	}
	u := parseUeventFile("MAJOR=8\nMINOR=128\nDEVNAME=sdi\nDEVTYPE=disk\n")
	if u["DEVNAME"] != "sdi" || u["MAJOR"] != "8" || len(u) != 4 {
		t.Errorf("parseUeventFile = %v", u)
	}
}

func TestParseMountInfo(t *testing.T) {
	mi := ParseMountInfo(`26 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
40 26 8:17 / /media/user/MY\040DISK rw,nosuid - vfat /dev/sdb1 rw
41 26 0:50 /@home /home rw - btrfs /dev/sdc2 rw
garbage line
`)
	if len(mi) != 3 || mi[1].MountPoint != "/media/user/MY DISK" || mi[2].Root != "/@home" || mi[2].Source != "/dev/sdc2" || mi[0].MajMin != "8:2" {
		t.Fatalf("mountinfo = %+v", mi)
	}
	sw := ParseSwaps("Filename\tType\tSize\tUsed\tPriority\n/dev/sda3 partition 100 0 -2\n/swap\\040file file 10 0 -3\n")
	if len(sw) != 2 || sw[0].Filename != "/dev/sda3" || sw[1].Filename != "/swap file" || sw[1].Type != "file" {
		t.Fatalf("swaps = %+v", sw)
	}
}

func TestPolicyLimits(t *testing.T) {
	base := Disk{Name: "sdx", Transport: "uas", Size: 500e9}
	cases := []struct {
		mod  func(*Disk)
		want string
	}{
		{func(d *Disk) { d.ReadOnly = true }, "read-only"},
		{func(d *Disk) { d.Size = 0 }, "no medium"},
		{func(d *Disk) { d.Size = 63 << 20 }, "smaller than 64 MiB"},
		{func(d *Disk) { d.Swap = true }, "sdx: active swap"},
		{func(d *Disk) { d.Mounts = []string{"/mnt"} }, "sdx: mounted at /mnt"},
		{func(d *Disk) { d.Partitions = []Partition{{Name: "sdx2", Swap: true}} }, "sdx2: active swap"},
	}
	for _, c := range cases {
		d := base
		c.mod(&d)
		v := Assess(d)
		if v.OK(true) || !hasReason(v, c.want) {
			t.Errorf("%s: verdict %+v", c.want, v)
		}
	}
	if v := Assess(base); !v.OK(false) || len(v.Warnings) != 0 {
		t.Errorf("plain USB disk: %+v", v)
	}
	big := base
	big.Size = 6e12
	if v := Assess(big); !v.OK(false) || len(v.Warnings) != 1 || !strings.Contains(v.Warnings[0], "larger than 4 TB") {
		t.Errorf("6 TB disk: %+v", v)
	}
	dock4k := base
	dock4k.USB, dock4k.LogicalSector, dock4k.PhysicalSector = &USBInfo{}, 4096, 4096
	if v := Assess(dock4k); !v.OK(false) || len(v.Warnings) != 1 || v.Warnings[0] != USB4KWarning {
		t.Errorf("USB dock with 4096-byte sectors: %+v", v)
	}
	sata4k := dock4k
	sata4k.USB, sata4k.Transport = nil, "sata"
	if v := Assess(sata4k); len(v.Warnings) != 0 {
		t.Errorf("internal 4Kn disk: %+v", v)
	}
	internal := base
	internal.Transport = "sata"
	v := Assess(internal)
	if v.OK(false) || !v.OK(true) || !v.Internal || v.Status(false) != "internal (not on USB: sata): needs --allow-internal" {
		t.Errorf("internal: %+v %q", v, v.Status(false))
	}
	exact := base
	exact.Size = MinDiskSize
	if v := Assess(exact); !v.OK(false) {
		t.Errorf("64 MiB disk refused: %+v", v)
	}
}

func TestSizeString(t *testing.T) {
	for b, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 976773168 * 512: "465.8 GiB", 1 << 40: "1.0 TiB"} {
		if got := SizeString(b); got != want {
			t.Errorf("SizeString(%d) = %q, want %q", b, got, want)
		}
	}
}

// TestLVMVolumeGroup: the volume group named in an LVM holder's fix comes
// from its device-mapper name, whose dashes LVM doubles.
func TestLVMVolumeGroup(t *testing.T) {
	for in, want := range map[string]string{"vg0-root": "vg0", "my--vg-root": "my-vg", "a--b--c-l--v": "a-b-c", "novg": "novg"} {
		if got := lvmVG(in); got != want {
			t.Errorf("lvmVG(%q) = %q, want %q", in, got, want)
		}
	}
}
