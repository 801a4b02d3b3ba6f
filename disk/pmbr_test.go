package disk

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// Damaged, half-written and hybrid partition tables: a protective MBR
// (type 0xEE) with no valid GPT behind it must be described as what it is,
// never as empty; a GPT read from its backup header must say so and list
// what the backup holds. The fixtures are made with sfdisk (and luksdock's
// own table writer) and then damaged the way a kill or a bad sector would;
// blkid -p and sfdisk give their opinion where they have one.

const (
	pmbrDesc      = "GPT protective MBR, but no valid GPT header (damaged or half-written partition table)"
	recoveredDesc = "GPT partition table (primary header is missing; recoverable from the backup header at the end of the disk)"
)

// damagedGPTImage makes a 64 MiB image with a GPT (made by sfdisk) of two
// partitions: "photos" holding ext4 "photos", and a swap partition.
func damagedGPTImage(t *testing.T) string {
	t.Helper()
	testkit.NeedTools(t, "sfdisk", "blkid", "mkfs.ext4")
	img := sparse(t, 64<<20)
	testkit.Run(t, "label: gpt\nsize=16MiB, type=linux, name=\"photos\"\nsize=8MiB, type=swap\n", "sfdisk", "-q", img)
	p := sfdiskDump(t, img).PartitionTable.Partitions[0]
	fs := sparse(t, p.Size*512)
	testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-L", "photos", fs)
	splice(t, fs, img, p.Start*512, 1<<20)
	return img
}

// writeAt overwrites the bytes at off of file with b.
func writeAt(t *testing.T, file string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func zeroAt(t *testing.T, file string, off, n int64) { writeAt(t, file, off, make([]byte, n)) }

// flipAt inverts one byte of file at off.
func flipAt(t *testing.T, file string, off int64) {
	t.Helper()
	b := make([]byte, 1)
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadAt(b, off)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, file, off, []byte{^b[0]})
}

// sfdiskSays runs sfdisk --json on img and returns its label ("" when it
// finds no table), the types of the partitions it lists and its warnings.
func sfdiskSays(t *testing.T, img string) (label string, types []string, stderr string) {
	t.Helper()
	cmd := exec.Command("sfdisk", "--json", img)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if !strings.Contains(errb.String(), "does not contain a recognized partition table") {
			t.Fatalf("sfdisk --json %s: %v\n%s", img, err, errb.String())
		}
		return "", nil, errb.String()
	}
	var j sfdiskJSON
	if err := json.Unmarshal(out.Bytes(), &j); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out.String())
	}
	for _, p := range j.PartitionTable.Partitions {
		types = append(types, strings.ToLower(p.Type))
	}
	return j.PartitionTable.Label, types, errb.String()
}

func TestProbeDamagedGPT(t *testing.T) {
	const size = 64 << 20
	const last = size - 512 // backup header
	const backupEntries = size - 33*512
	cases := []struct {
		name   string
		damage func(t *testing.T, img string)
		want   string // Signature.TableString()
		table  string // Signature.Table
		parts  bool   // the GPT's partitions are still listed
		blkid  string // blkid -p PTTYPE
		sfdisk string // sfdisk's label ("" for none) and a warning it must print
		warn   string
	}{
		{"intact", func(*testing.T, string) {}, "GPT partition table", "gpt", true, "gpt", "gpt", ""},
		{"primary header zeroed", func(t *testing.T, img string) { zeroAt(t, img, 512, 512) },
			recoveredDesc, "gpt", true, "gpt", "gpt", "The primary GPT table is corrupt, but the backup appears OK"},
		{"primary header checksum", func(t *testing.T, img string) { flipAt(t, img, 512+60) }, // inside the disk GUID
			"GPT partition table (primary header fails its checksum; recoverable from the backup header at the end of the disk)", "gpt", true, "gpt",
			"gpt", "The primary GPT table is corrupt, but the backup appears OK"},
		{"primary entries checksum", func(t *testing.T, img string) { flipAt(t, img, 1024+60) }, // name of entry 1
			"GPT partition table (primary partition entries fail their checksum; recoverable from the backup header at the end of the disk)", "gpt", true, "gpt",
			"gpt", "The primary GPT table is corrupt, but the backup appears OK"},
		{"backup header zeroed", func(t *testing.T, img string) { zeroAt(t, img, last, 512) },
			"GPT partition table (backup header is missing)", "gpt", true, "gpt", "gpt", "The backup GPT table is corrupt, but the primary appears OK"},
		{"backup entries checksum", func(t *testing.T, img string) { flipAt(t, img, backupEntries+60) },
			"GPT partition table (backup partition entries fail their checksum)", "gpt", true, "gpt", "gpt", "The backup GPT table is corrupt, but the primary appears OK"},
		{"both headers zeroed", func(t *testing.T, img string) { zeroAt(t, img, 512, 512); zeroAt(t, img, last, 512) },
			pmbrDesc, "PMBR", false, "PMBR", "dos", ""},
		{"both headers checksum", func(t *testing.T, img string) { flipAt(t, img, 512+60); flipAt(t, img, last+60) },
			"GPT protective MBR, but no valid GPT header (primary header fails its checksum, backup header fails its checksum: damaged or half-written partition table)",
			"PMBR", false, "PMBR", "dos", ""},
		{"protective MBR only", func(t *testing.T, img string) { zeroAt(t, img, 512, 8<<20-512); zeroAt(t, img, size-1<<20, 1<<20) },
			pmbrDesc, "PMBR", false, "PMBR", "dos", ""},
		// Without a protective MBR blkid -p, sfdisk (and the kernel) do not
		// take the disk for GPT; the probe still lists it, and says so.
		{"no protective MBR", func(t *testing.T, img string) { zeroAt(t, img, 0, 512) },
			"GPT partition table (no protective MBR)", "gpt", true, "", "", ""},
		// luksdock's wipe zeros the head of the disk before the tail: a kill
		// in between leaves only the backup (here: sector 0 and the primary
		// table zeroed, the partitions' content kept to compare).
		{"backup only", func(t *testing.T, img string) { zeroAt(t, img, 0, 34*512) },
			"GPT partition table (no protective MBR; primary header is missing; recoverable from the backup header at the end of the disk)", "gpt", true, "", "", ""},
	}
	intact := damagedGPTImage(t)
	wantSig, wantParts := probeFile(t, intact)
	if len(wantParts) != 2 || wantParts[0].Content.Label != "photos" || wantParts[0].PartLabel != "photos" {
		t.Fatalf("intact image: %+v %+v", wantSig, wantParts)
	}
	orig, err := os.ReadFile(intact)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(img, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			c.damage(t, img)
			sig, parts := probeFile(t, img)
			if got := sig.TableString(); got != c.want {
				t.Errorf("TableString() = %q\n                     want %q", got, c.want)
			}
			if sig.Table != c.table || sig.Empty() || sig.String() != c.want {
				t.Errorf("signature %+v (String %q): want table %q, not empty", sig, sig, c.table)
			}
			// Linux reads a GPT only through a good primary header behind a
			// protective MBR.
			ignored := c.table == "gpt" && (strings.Contains(c.want, "recoverable") || strings.Contains(c.want, "no protective MBR"))
			if sig.KernelIgnoresTable != ignored {
				t.Errorf("KernelIgnoresTable = %v, want %v", sig.KernelIgnoresTable, ignored)
			}
			if c.parts {
				if sig.DiskGUID != wantSig.DiskGUID || !reflect.DeepEqual(parts, wantParts) {
					t.Errorf("partitions\n got %+v %+v\nwant %+v %+v", sig.DiskGUID, parts, wantSig.DiskGUID, wantParts)
				}
			} else if len(parts) != 0 || sig.DiskGUID != "" {
				t.Errorf("a protective MBR alone lists partitions %+v or disk id %q", parts, sig.DiskGUID)
			}
			b := blkid(t, img, 0, 0)
			if b["PTTYPE"] != c.blkid {
				t.Errorf("blkid -p PTTYPE = %q, want %q (test premise)", b["PTTYPE"], c.blkid)
			}
			if c.blkid == sig.Table && b["PTUUID"] != sig.DiskGUID {
				t.Errorf("disk GUID %q, blkid -p PTUUID %q", sig.DiskGUID, b["PTUUID"])
			}
			label, types, stderr := sfdiskSays(t, img)
			if label != c.sfdisk || !strings.Contains(stderr, c.warn) {
				t.Errorf("sfdisk says label %q, warnings %q; want %q, %q (test premise)", label, stderr, c.sfdisk, c.warn)
			}
			if c.table == "PMBR" && !reflect.DeepEqual(types, []string{"ee"}) {
				t.Errorf("sfdisk lists %v, want only the protective entry [ee]", types)
			}
		})
	}
}

// The two states a kill leaves while luksdock writes its GPT (go-diskfs
// writes the protective MBR, then the backup entries and header, then the
// primary), after the wipe zeroed the head and tail of the disk.
func TestProbeInterruptedTableWrite(t *testing.T) {
	testkit.NeedTools(t, "blkid")
	const size = 96 << 20
	img := sparse(t, size)
	l, err := PlanLayout("gpt", size, 512)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	guid, err := WritePartitionTable(f, size, 512, 512, l)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		keep  func(t *testing.T, img string)
		want  string
		table string
		blkid string
	}{
		{"after the protective MBR", func(t *testing.T, img string) { zeroAt(t, img, 512, 8<<20-512); zeroAt(t, img, size-1<<20, 1<<20) },
			pmbrDesc, "PMBR", "PMBR"},
		{"after the backup header", func(t *testing.T, img string) { zeroAt(t, img, 512, 33*512) },
			recoveredDesc, "gpt", "gpt"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(p, orig, 0o644); err != nil {
				t.Fatal(err)
			}
			c.keep(t, p)
			sig, parts := probeFile(t, p)
			if sig.String() != c.want || sig.Table != c.table {
				t.Errorf("probe says %q (%+v), want %q", sig, sig, c.want)
			}
			if c.table == "gpt" && (sig.DiskGUID != strings.ToLower(guid) || len(parts) != 1 || parts[0].Start != l.Start || parts[0].Size != l.Size) {
				t.Errorf("from the backup: guid %s parts %+v, want %s and %+v", sig.DiskGUID, parts, guid, l)
			}
			if b := blkid(t, p, 0, 0); b["PTTYPE"] != c.blkid {
				t.Errorf("blkid -p PTTYPE = %q, want %q (test premise)", b["PTTYPE"], c.blkid)
			}
		})
	}
}

// A hybrid MBR (sfdisk --label-nested dos): MBR partitions beside the
// protective entry. With the GPT intact it is a GPT (blkid and sfdisk
// agree) with a note; without, the MBR partitions are what is left.
func TestProbeHybridMBR(t *testing.T) {
	img := damagedGPTImage(t)
	// The MBR copy of GPT partition 1 (sectors 2048..34815), as gdisk makes.
	testkit.Run(t, "start=1, size=2047, type=ee\nstart=2048, size=32768, type=83\n", "sfdisk", "-q", "--label-nested", "dos", img)
	sig, parts := probeFile(t, img)
	if got := sig.String(); got != "GPT partition table (hybrid MBR)" || !sig.HybridMBR || len(parts) != 2 {
		t.Errorf("hybrid with GPT: %q %+v %+v", got, sig, parts)
	}
	checkTable(t, img, sig, parts)

	zeroAt(t, img, 512, 512)
	zeroAt(t, img, 64<<20-512, 512)
	sig, parts = probeFile(t, img)
	want := "hybrid MBR (a GPT protective entry and MBR partitions), but no valid GPT header (damaged or half-written partition table)"
	if got := sig.String(); got != want || sig.Table != "PMBR" || !sig.HybridMBR {
		t.Errorf("hybrid without GPT: %q (%+v)\nwant %q", got, sig, want)
	}
	if len(parts) != 1 || parts[0].Number != 2 || parts[0].Start != 2048*512 || parts[0].Size != 32768*512 ||
		parts[0].PartType != "0x83" || parts[0].Content.Type != "ext4" || parts[0].Content.Label != "photos" {
		t.Errorf("hybrid without GPT lists %+v, want MBR partition 2 holding ext4 \"photos\"", parts)
	}
	if b := blkid(t, img, 0, 0); b["PTTYPE"] != "PMBR" || b["PTUUID"] != "" {
		t.Errorf("blkid -p says %v, want PTTYPE=PMBR without PTUUID (test premise)", b)
	}
	if _, types, _ := sfdiskSays(t, img); !reflect.DeepEqual(types, []string{"ee", "83"}) {
		t.Errorf("sfdisk lists %v, want [ee 83]", types)
	}
	sameAsBlkid(t, "hybrid MBR partition 2", parts[0].Content, blkid(t, img, parts[0].Start, parts[0].Size))
}

// The same on a 4K-sector disk: the headers are 4096-byte sectors.
func TestProbeDamagedGPT4K(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "sfdisk", "blkid")
	img := sparse(t, 64<<20)
	dev := testkit.AttachLoop(t, img, "--sector-size", "4096")
	testkit.Run(t, "label: gpt\nsize=16MiB, name=\"four\"\n", "sfdisk", "-q", dev)
	want, wantParts := probeFile(t, dev)
	if want.Table != "gpt" || len(wantParts) != 1 || wantParts[0].Start != 256*4096 {
		// Seen once, not reproduced in 40 runs: say what the device was then.
		dump, _ := exec.Command("sfdisk", "--dump", dev).CombinedOutput()
		t.Fatalf("intact 4K GPT: %+v %+v\n%s backing file %q (ours: %s)\nsfdisk --dump: %s", want, wantParts,
			dev, sysfsAttr("/sys/block/"+filepath.Base(dev)+"/loop/backing_file"), img, dump)
	}
	zeroAt(t, dev, 4096, 4096)
	for _, ss := range []int{512, 4096} {
		f, err := os.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		sig, parts, err := ProbeSectors(f, 64<<20, ss)
		f.Close()
		if err != nil || sig.String() != recoveredDesc || !reflect.DeepEqual(parts, wantParts) {
			t.Errorf("ProbeSectors(%d) without the primary: %q %+v %v", ss, sig, parts, err)
		}
	}
	if b := blkid(t, dev, 0, 0); b["PTTYPE"] != "gpt" {
		t.Errorf("blkid -p PTTYPE = %q, want gpt (test premise)", b["PTTYPE"])
	}
	zeroAt(t, dev, 64<<20-4096, 4096)
	if sig, parts := probeFile(t, dev); sig.String() != pmbrDesc || len(parts) != 0 {
		t.Errorf("4K protective MBR alone: %q %+v", sig, parts)
	}
	if b := blkid(t, dev, 0, 0); b["PTTYPE"] != "PMBR" {
		t.Errorf("blkid -p PTTYPE = %q, want PMBR (test premise)", b["PTTYPE"])
	}
}

// A disk holding only a protective MBR is not empty anywhere discovery and
// the policy look: the list summary says what it is, and the verdict is the
// one any disk with data gets.
func TestProtectiveMBRIsNotEmpty(t *testing.T) {
	img := damagedGPTImage(t)
	zeroAt(t, img, 512, 512)
	zeroAt(t, img, 64<<20-512, 512)
	sig, parts := probeFile(t, img)
	d := Disk{Name: "sdz", Path: "/dev/sdz", Size: 64 << 20, Transport: "usb-storage", Content: sig, Partitions: parts}
	if s := d.Summary(); s != pmbrDesc {
		t.Errorf("Summary = %q, want %q", s, pmbrDesc)
	}
	if d.Content.Empty() {
		t.Error("Content.Empty() for a protective MBR")
	}
	blank := Disk{Name: "sdz", Path: "/dev/sdz", Size: 64 << 20, Transport: "usb-storage"}
	if v, vb := Assess(d), Assess(blank); !reflect.DeepEqual(v, vb) || !v.OK(false) {
		t.Errorf("verdict %+v, a blank disk's %+v", v, vb)
	}

	// The backup still valid: the summary lists what it holds.
	img = damagedGPTImage(t)
	zeroAt(t, img, 512, 512)
	sig, parts = probeFile(t, img)
	for i := range parts {
		parts[i].Name = PartitionName("sdz", parts[i].Number)
	}
	d = Disk{Name: "sdz", Size: 64 << 20, Transport: "usb-storage", Content: sig, Partitions: parts}
	want := `GPT (primary header is missing; recoverable from the backup header at the end of the disk): sdz1 ext4 "photos" 16.0 MiB; sdz2 empty 8.0 MiB`
	if s := d.Summary(); s != want {
		t.Errorf("Summary = %q\n    want %q", s, want)
	}
	if v := Assess(d); len(v.Warnings) != 1 || !strings.Contains(v.Warnings[0], `sdz1 holds ext4 filesystem "photos" that will be destroyed`) {
		t.Errorf("warnings %q, want the labelled filesystem the backup lists", v.Warnings)
	}
}

// Through discovery on a loop device: what `luksdock list` and the wizard show.
func TestProtectiveMBRThroughDiscovery(t *testing.T) {
	testkit.NeedRoot(t)
	img := damagedGPTImage(t)
	zeroAt(t, img, 512, 512)
	zeroAt(t, img, 64<<20-512, 512)
	dev := testkit.AttachLoop(t, img)
	d, err := Sys{Root: "/"}.Disk(filepath.Base(dev))
	if err != nil {
		t.Fatal(err)
	}
	if d.Content.Table != "PMBR" || d.Summary() != pmbrDesc {
		t.Errorf("discovery: %+v, summary %q", d.Content, d.Summary())
	}
}
