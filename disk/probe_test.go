package disk

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// sparse is a sparse image of size bytes in a fresh temporary directory.
func sparse(t *testing.T, size int64) string {
	t.Helper()
	return testkit.SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), size)
}

// blkid runs `blkid -p -o export` on file (at offset/size when size > 0).
func blkid(t *testing.T, file string, off, size int64) map[string]string {
	t.Helper()
	args := []string{"-p", "-o", "export"}
	if size > 0 {
		args = append(args, "-O", strconv.FormatInt(off, 10), "-S", strconv.FormatInt(size, 10))
	}
	out, _ := exec.Command("blkid", append(args, file)...).Output() // exit 2 = nothing found
	m := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = strings.ReplaceAll(v, `\ `, " ")
		}
	}
	return m
}

func probeFile(t *testing.T, file string) (Signature, []Partition) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2) // works for block devices too
	if err != nil {
		t.Fatal(err)
	}
	sig, parts, err := Probe(f, size)
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	return sig, parts
}

// sameAsBlkid checks a Signature against blkid's TYPE, LABEL, UUID,
// VERSION (where we report one), PTTYPE and PTUUID.
func sameAsBlkid(t *testing.T, what string, s Signature, b map[string]string) {
	t.Helper()
	check := func(field, got, want string) {
		if got != want {
			t.Errorf("%s: %s = %q, blkid -p says %q", what, field, got, want)
		}
	}
	check("Type", string(s.Type), b["TYPE"])
	check("Label", s.Label, b["LABEL"])
	check("UUID", s.UUID, b["UUID"])
	check("Table", s.Table, b["PTTYPE"])
	check("DiskGUID", s.DiskGUID, b["PTUUID"])
	if s.Version != "" || b["VERSION"] != "" {
		if s.Type == "ntfs" || s.Type == "btrfs" || s.Type == "xfs" {
			return // we do not report these versions
		}
		check("Version", s.Version, b["VERSION"])
	}
}

func TestProbeFilesystemsAgainstBlkid(t *testing.T) {
	testkit.NeedTools(t, "blkid")
	type mk struct {
		name  string
		tool  string
		size  int64
		build func(t *testing.T, img string)
		want  string // Signature.String()
	}
	pbkdf := []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", "-q"}
	cases := []mk{
		{"ext4", "mkfs.ext4", 64 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-L", "photos", img) }, `ext4 "photos"`},
		{"ext3", "mkfs.ext3", 64 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkfs.ext3", "-q", "-F", "-L", "old3", img) }, `ext3 "old3"`},
		{"ext2", "mkfs.ext2", 64 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkfs.ext2", "-q", "-F", img) }, `ext2`},
		{"luks2", "cryptsetup", 32 << 20, func(t *testing.T, img string) {
			testkit.Run(t, "pw", "cryptsetup", append([]string{"luksFormat", "--type", "luks2", "--label", "backups01", img}, pbkdf...)...)
		}, `LUKS2 "backups01" `},
		{"luks1", "cryptsetup", 32 << 20, func(t *testing.T, img string) {
			testkit.Run(t, "pw", "cryptsetup", append([]string{"luksFormat", "--type", "luks1", img}, pbkdf...)...)
		}, `LUKS1 `},
		{"swap", "mkswap", 16 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkswap", "-L", "swappy", img) }, `swap "swappy"`},
		{"vfat32", "mkfs.vfat", 64 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkfs.vfat", "-F", "32", "-n", "CAMERA", img) }, `vfat (FAT32) "CAMERA"`},
		{"vfat16", "mkfs.vfat", 32 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkfs.vfat", "-F", "16", img) }, `vfat (FAT16)`},
		{"xfs", "mkfs.xfs", 320 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkfs.xfs", "-q", "-f", "-L", "media", img) }, `xfs "media"`},
		{"btrfs", "mkfs.btrfs", 128 << 20, func(t *testing.T, img string) { testkit.Run(t, "", "mkfs.btrfs", "-q", "-f", "-L", "pool", img) }, `btrfs "pool"`},
		{"ntfs", "mkntfs", 64 << 20, func(t *testing.T, img string) {
			testkit.Run(t, "", "mkntfs", "-q", "-F", "-f", "-L", "Windows Data", img)
		}, `ntfs "Windows Data"`},
		{"lvm", "pvcreate", 16 << 20, func(t *testing.T, img string) {
			testkit.NeedRoot(t)
			testkit.NeedTools(t, "losetup")
			dev := testkit.AttachLoop(t, img)
			testkit.Run(t, "", "pvcreate", "-q", "-y", dev)
			if err := testkit.DetachLoop(dev); err != nil {
				t.Error(err)
			}
		}, `LVM2 PV`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			testkit.NeedTools(t, c.tool)
			img := sparse(t, c.size)
			c.build(t, img)
			sig, parts := probeFile(t, img)
			sameAsBlkid(t, c.name, sig, blkid(t, img, 0, 0))
			if len(parts) != 0 {
				t.Errorf("partitions on a bare filesystem: %+v", parts)
			}
			if got := sig.String(); !strings.HasPrefix(got, c.want) {
				t.Errorf("String() = %q, want prefix %q", got, c.want)
			}
		})
	}
}

type sfdiskJSON struct {
	PartitionTable struct {
		Label      string `json:"label"`
		ID         string `json:"id"`
		SectorSize int64  `json:"sectorsize"`
		Partitions []struct {
			Node  string `json:"node"`
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
			UUID  string `json:"uuid"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdiskDump(t *testing.T, img string, extra ...string) sfdiskJSON {
	t.Helper()
	var j sfdiskJSON
	out := testkit.Run(t, "", "sfdisk", append(extra, "--json", img)...)
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	return j
}

// checkTable compares Probe's partitions with sfdisk's view, and each
// partition's content with blkid -p at the partition's offset.
func checkTable(t *testing.T, img string, sig Signature, parts []Partition, extra ...string) {
	t.Helper()
	j := sfdiskDump(t, img, extra...)
	ss := j.PartitionTable.SectorSize
	if ss == 0 {
		ss = 512
	}
	if len(parts) != len(j.PartitionTable.Partitions) {
		t.Fatalf("probe found %d partitions, sfdisk %d: %+v", len(parts), len(j.PartitionTable.Partitions), parts)
	}
	for i, sp := range j.PartitionTable.Partitions {
		p := parts[i]
		num, _ := strconv.Atoi(sp.Node[strings.LastIndexAny(sp.Node, "abcdefghijklmnopqrstuvwxyz.")+1:])
		if p.Number != num || p.Start != sp.Start*ss || p.Size != sp.Size*ss {
			t.Errorf("partition %d: probe #%d start %d size %d; sfdisk #%d start %d size %d", i, p.Number, p.Start, p.Size, num, sp.Start*ss, sp.Size*ss)
		}
		if j.PartitionTable.Label == "gpt" {
			if !strings.EqualFold(p.PartUUID, sp.UUID) || !strings.EqualFold(p.PartType, sp.Type) || p.PartLabel != sp.Name {
				t.Errorf("partition %d: probe uuid %s type %s name %q; sfdisk %s %s %q", i, p.PartUUID, p.PartType, p.PartLabel, sp.UUID, sp.Type, sp.Name)
			}
		} else if want := "0x" + strings.TrimLeft(sp.Type, "0"); p.PartType != want {
			t.Errorf("partition %d: type %s, sfdisk %s", i, p.PartType, want)
		}
		if p.PartType == "0x5" {
			continue // the extended partition's container: blkid reports its EBR, not content
		}
		sameAsBlkid(t, fmt.Sprintf("partition %d", p.Number), p.Content, blkid(t, img, p.Start, p.Size))
	}
	b := blkid(t, img, 0, 0)
	if sig.Table != b["PTTYPE"] || sig.DiskGUID != b["PTUUID"] {
		t.Errorf("table %s %s, blkid %s %s", sig.Table, sig.DiskGUID, b["PTTYPE"], b["PTUUID"])
	}
}

func TestProbeGPTAgainstSfdisk(t *testing.T) {
	testkit.NeedTools(t, "sfdisk", "blkid", "mkfs.ext4", "cryptsetup")
	img := sparse(t, 256<<20)
	testkit.Run(t, "label: gpt\nsize=64MiB, type=linux, name=\"photos part\"\nsize=64MiB, type=swap\ntype=linux\n", "sfdisk", "-q", img)
	j := sfdiskDump(t, img)
	p := j.PartitionTable.Partitions
	testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-L", "photos", "-E", fmt.Sprintf("offset=%d", p[0].Start*512), img, strconv.FormatInt(p[0].Size/2, 10)+"k")
	// cryptsetup on a slice of the image, through --offset on a copy: use a
	// loop-free route by formatting a separate file and splicing it in.
	luks := sparse(t, p[2].Size*512)
	testkit.Run(t, "pw", "cryptsetup", "luksFormat", "-q", "--type", "luks2", "--label", "vault", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file=-", luks)
	splice(t, luks, img, p[2].Start*512, 16<<20)
	sig, parts := probeFile(t, img)
	if sig.Table != "gpt" || sig.Type != "" {
		t.Fatalf("sig = %+v", sig)
	}
	checkTable(t, img, sig, parts)
	if parts[0].Content.Label != "photos" || parts[0].PartLabel != "photos part" || parts[2].Content.Label != "vault" {
		t.Errorf("parts = %+v", parts)
	}
}

func TestProbeGPT4K(t *testing.T) {
	testkit.NeedTools(t, "sfdisk", "blkid", "losetup")
	testkit.NeedRoot(t)
	img := sparse(t, 64<<20)
	dev := testkit.AttachLoop(t, img, "--sector-size", "4096")
	testkit.Run(t, "label: gpt\nsize=16MiB\nsize=16MiB\n", "sfdisk", "-q", dev)
	sig, parts := probeFile(t, dev)
	if sig.Table != "gpt" || len(parts) != 2 || parts[0].Start != 256*4096 {
		t.Fatalf("4K GPT: %+v %+v", sig, parts)
	}
	checkTable(t, dev, sig, parts)
}

func TestProbeGPTBackupHeader(t *testing.T) {
	testkit.NeedTools(t, "sfdisk")
	img := sparse(t, 64<<20)
	testkit.Run(t, "label: gpt\nsize=16MiB\n", "sfdisk", "-q", img)
	want, wantParts := probeFile(t, img)
	// Destroy the primary header: the probe must fall back to the backup.
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 512), 512)
	f.Close()
	got, gotParts := probeFile(t, img)
	want.TableNote = "primary header is missing; recoverable from the backup header at the end of the disk"
	want.KernelIgnoresTable = true // Linux reads the backup only when the primary is good
	if got != want || len(gotParts) != 1 || gotParts[0].Start != wantParts[0].Start {
		t.Errorf("from backup: %+v %+v, want %+v %+v", got, gotParts, want, wantParts)
	}
}

func TestProbeMBRWithLogicalPartitions(t *testing.T) {
	testkit.NeedTools(t, "sfdisk", "blkid", "mkswap")
	img := sparse(t, 128<<20)
	testkit.Run(t, "label: dos\nlabel-id: 0x1234abcd\nsize=32MiB, type=8e\nsize=80MiB, type=5\n"+
		img+"5 : size=16MiB, type=82\n"+img+"6 : size=16MiB, type=83\n", "sfdisk", "-q", img)
	j := sfdiskDump(t, img)
	sw := j.PartitionTable.Partitions[2]
	part := sparse(t, sw.Size*512)
	testkit.Run(t, "", "mkswap", "-L", "logical5", part)
	splice(t, part, img, sw.Start*512, sw.Size*512)
	sig, parts := probeFile(t, img)
	if sig.Table != "dos" || sig.DiskGUID != "1234abcd" || len(parts) != 4 || parts[2].Number != 5 || parts[3].Number != 6 {
		t.Fatalf("sig %+v parts %+v", sig, parts)
	}
	checkTable(t, img, sig, parts)
	if parts[2].Content.Type != "swap" || parts[2].Content.Label != "logical5" {
		t.Errorf("logical 5 = %+v", parts[2].Content)
	}
}

func TestProbeVFATIsNotAnMBR(t *testing.T) {
	testkit.NeedTools(t, "mkfs.vfat", "blkid")
	img := sparse(t, 32<<20)
	testkit.Run(t, "", "mkfs.vfat", "-n", "STICK", img)
	sig, parts := probeFile(t, img)
	sameAsBlkid(t, "superfloppy", sig, blkid(t, img, 0, 0))
	if len(parts) != 0 || sig.Table != "" {
		t.Errorf("superfloppy vfat taken for a table: %+v %+v", sig, parts)
	}
}

func TestProbeEmptyAndShort(t *testing.T) {
	img := sparse(t, 1<<20)
	sig, parts := probeFile(t, img)
	if !sig.Empty() || len(parts) != 0 || sig.String() != "empty" {
		t.Errorf("zeroes: %+v %+v", sig, parts)
	}
	// Sizes smaller than any superblock offset must not fail.
	for _, n := range []int64{0, 1, 511, 4095} {
		if _, _, err := Probe(strings.NewReader(strings.Repeat("\x00", int(n))), n); err != nil {
			t.Errorf("Probe(%d zero bytes): %v", n, err)
		}
	}
}

// splice copies n bytes of src into dst at off.
func splice(t *testing.T, src, dst string, off, n int64) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) > n {
		b = b[:n]
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// MBR entries count 4096-byte sectors on a 4Kn disk (USB bridges that
// present 4K logical sectors): discovery must scale them by the disk's
// logical sector size.
func TestProbeMBR4KnThroughDiscovery(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "sfdisk", "blkid", "mkswap", "losetup")
	img := sparse(t, 64<<20)
	dev := testkit.AttachLoop(t, img, "--sector-size", "4096")
	testkit.Run(t, "label: dos\nlabel-id: 0x4b4b4b4b\nstart=256, size=2048, type=83\nstart=2304, size=4096, type=82\n", "sfdisk", "-q", dev)
	j := sfdiskDump(t, dev)
	if j.PartitionTable.SectorSize != 4096 {
		t.Fatalf("sfdisk sector size %d", j.PartitionTable.SectorSize)
	}
	d, err := Sys{Root: "/"}.Disk(filepath.Base(dev))
	if err != nil {
		t.Fatal(err)
	}
	if d.LogicalSector != 4096 || d.Content.Table != "dos" || len(d.Partitions) != 2 {
		t.Fatalf("disk = %+v", d)
	}
	for i, sp := range j.PartitionTable.Partitions {
		if p := d.Partitions[i]; p.Start != sp.Start*4096 || p.Size != sp.Size*4096 {
			t.Errorf("partition %d: start %d size %d, sfdisk says %d %d (4096-byte sectors)", i+1, p.Start, p.Size, sp.Start*4096, sp.Size*4096)
		}
	}
	// Probe without the sector size would misplace them by a factor of 8.
	f, _ := os.Open(dev)
	defer f.Close()
	_, parts512, _ := Probe(f, 64<<20)
	if len(parts512) == 2 && parts512[0].Start == d.Partitions[0].Start {
		t.Error("Probe (512) and discovery (4096) agree: the sector size is not being used")
	}
}
