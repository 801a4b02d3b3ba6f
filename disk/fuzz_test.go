package disk

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/ (go test's own format);
// the fixtures under ../testdata are added as seeds too. A short run:
//
//	go test ./disk -run '^$' -fuzz FuzzProbe -fuzztime 20s

func fixtureLines(f *testing.F) []string {
	var out []string
	for _, name := range []string{"blacx-dock.dmesg", "undock-redock.dmesg", "card-reader.dmesg"} {
		b, err := os.ReadFile(filepath.Join("..", "testdata", "kmsg", name))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	return out
}

func FuzzParseKmsgRecord(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kmsg", "uas-dock.kmsg"))
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range kmsgRecords(string(b)) {
		f.Add(r)
	}
	f.Add("6,1234,5678901,-;sd 13:0:0:0: [sdi] Attached SCSI disk")
	f.Add("12,7,1,c,caller=T1;\\x00\\xff\\x5c")
	f.Fuzz(func(t *testing.T, rec string) {
		l, ok := ParseKmsgRecord(rec)
		if !ok {
			if l != (KernelLine{}) {
				t.Fatalf("not ok but returned %+v", l)
			}
			return
		}
		if l.Time < 0 {
			t.Fatalf("negative time %v", l.Time)
		}
		if strings.Contains(l.Text, "\n") {
			t.Fatalf("text with a newline (dictionary leaked): %q", l.Text)
		}
		if !strings.Contains(rec, ";") {
			t.Fatal("accepted a record without a header separator")
		}
	})
}

func FuzzParseDmesgLine(f *testing.F) {
	for _, l := range fixtureLines(f) {
		f.Add(l)
	}
	f.Add("[    0.000000] Linux version")
	f.Add("[99999999999999999999.1] overflow")
	f.Fuzz(func(t *testing.T, s string) {
		l, ok := ParseDmesgLine(s)
		if !ok {
			return
		}
		if l.Time < 0 {
			t.Fatalf("negative time %v from %q", l.Time, s)
		}
		// Printing and parsing again gives the same line (to the µs).
		again, ok := ParseDmesgLine(l.String())
		if !ok || again.Text != l.Text || again.Time != l.Time.Truncate(time.Microsecond) {
			t.Fatalf("round trip %q -> %+v -> %q -> %+v %v", s, l, l.String(), again, ok)
		}
	})
}

func FuzzParseKernelLog(f *testing.F) {
	f.Add(strings.Join(fixtureLines(f), "\n"))
	f.Add("scsi 1:0:0:0: Direct-Access X PQ: 0 ANSI: 2\nsd 1:0:0:0: [sda] Attached SCSI disk\nusb 1-1: USB disconnect, device number 2")
	f.Fuzz(func(t *testing.T, text string) {
		var lines []KernelLine
		for i, s := range strings.Split(text, "\n") {
			if l, ok := ParseDmesgLine(s); ok {
				lines = append(lines, l)
			} else {
				lines = append(lines, KernelLine{Time: time.Duration(i), Text: s})
			}
		}
		arr := ParseKernelLog(lines)
		for _, a := range arr {
			if a.SCSI == "" || len(a.Lines) == 0 {
				t.Fatalf("arrival without address or evidence: %+v", a)
			}
			if a.Size() < 0 && a.Sectors >= 0 && a.SectorSize >= 0 {
				// overflow of huge numbers is tolerated, but not negative inputs
				continue
			}
		}
		if l, ok := LatestArrival(arr); ok && (l.Gone || l.Disk == "") {
			t.Fatalf("latest arrival is gone or nameless: %+v", l)
		}
	})
}

func FuzzProbe(f *testing.F) {
	// The corpus in testdata/fuzz/FuzzProbe holds the first sectors of images
	// made by mkfs.ext4, cryptsetup (LUKS1/2), mkswap, mkfs.vfat, mkfs.xfs,
	// mkfs.btrfs, mkntfs, pvcreate and sfdisk (GPT, MBR with logical
	// partitions; GPTs with a damaged primary or both headers, a protective
	// MBR alone, a hybrid MBR without its GPT); see TestWriteProbeSeeds.
	f.Add([]byte{})
	f.Add(make([]byte, 4096))
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, parts, err := Probe(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatalf("Probe of an in-memory image failed: %v", err)
		}
		if sig.Table != "" && (sig.Empty() || sig.TableString() == "" || sig.String() == "empty") {
			t.Fatalf("a partition table (%+v) described as nothing: %q", sig, sig)
		}
		if sig.Table == "" && (sig.TableString() != "" || sig.TableNote != "" || sig.HybridMBR) {
			t.Fatalf("table notes without a table: %+v", sig)
		}
		if sig.Table == "PMBR" && sig.DiskGUID != "" {
			t.Fatalf("a protective MBR without a GPT has no disk GUID (blkid reports none): %+v", sig)
		}
		for _, p := range parts {
			if p.Number <= 0 || p.Start < 0 || p.Size < 0 {
				t.Fatalf("bad partition %+v", p)
			}
		}
		sig2, parts2, _ := Probe(bytes.NewReader(b), int64(len(b)))
		if sig2 != sig || !reflect.DeepEqual(parts, parts2) {
			t.Fatal("Probe is not deterministic")
		}
		// A reader that reports a larger size than it holds must not fail
		// or panic either (short reads near the end of a device).
		if _, _, err := Probe(bytes.NewReader(b), int64(len(b))+8192); err != nil {
			t.Fatalf("Probe with a short device: %v", err)
		}
		// What a kernel of each sector size finds lies within the disk.
		for _, v := range KernelViews(bytes.NewReader(b), int64(len(b))) {
			if v.Start < 0 || v.Size < 0 || v.Start+v.Size > int64(len(b)) || (v.LUKS && v.Table == "") {
				t.Fatalf("bad view %+v of %d bytes", v, len(b))
			}
		}
	})
}

func FuzzParseUevent(f *testing.F) {
	f.Add([]byte("add@/devices/virtual/block/loop3\x00ACTION=add\x00DEVPATH=/devices/virtual/block/loop3\x00SUBSYSTEM=block\x00MAJOR=7\x00MINOR=3\x00DEVNAME=loop3\x00DEVTYPE=disk\x00DISKSEQ=41\x00SEQNUM=5012\x00"))
	f.Add([]byte("change@/devices/virtual/block/loop0\x00ACTION=change\x00SUBSYSTEM=block\x00DEVNAME=loop0\x00DEVTYPE=disk\x00"))
	f.Add([]byte("libudev\x00\xfe\xed\xca\xfe"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		ev, ok := ParseUevent(msg)
		if !ok {
			return
		}
		if ev.Action == "" || !strings.HasPrefix(ev.DevPath, "/") {
			t.Fatalf("accepted %+v", ev)
		}
		if h, ok := hotplugOf(ev); ok {
			if h.Action != "add" && h.Action != "remove" && h.Action != "change" {
				t.Fatalf("action %q", h.Action)
			}
			if strings.HasPrefix(h.Name, "/dev/") {
				t.Fatalf("name keeps /dev/: %q", h.Name)
			}
		}
	})
}

// FuzzSysfsAttr feeds the same text to every sysfs/proc parser.
func FuzzSysfsAttr(f *testing.F) {
	f.Add("976773168\n")
	f.Add("\x00\x80\x00\x14S3Z9NB0K123456A     ")
	f.Add("MAJOR=8\nMINOR=128\nDEVNAME=sdi\nDEVTYPE=disk\n")
	f.Add("26 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n40 26 8:17 / /media/a\\040b rw - vfat /dev/sdb1 rw\n")
	f.Add("Filename\tType\tSize\tUsed\tPriority\n/dev/dm-2 partition 8388604 0 -2\n")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseSysfsInt(s)
		_ = parseSysfsBool(s)
		if vpd := parseVPD80([]byte(s)); len(vpd) > len(s) {
			t.Fatalf("parseVPD80 grew: %q", vpd)
		}
		for k := range parseUeventFile(s) {
			if k == "" || strings.Contains(k, "\n") {
				t.Fatalf("bad key %q", k)
			}
		}
		for _, m := range ParseMountInfo(s) {
			if !strings.Contains(m.MajMin, ":") {
				t.Fatalf("mount without major:minor: %+v", m)
			}
		}
		_ = ParseSwaps(s)
		if u := unescapeOctal(s); len(u) > len(s) {
			t.Fatalf("unescape grew %q -> %q", s, u)
		}
	})
}

// TestWriteProbeSeeds regenerates testdata/fuzz/FuzzProbe from images made by
// real tools. It only runs when LUKSDOCK_WRITE_FUZZ_SEEDS=1 (it rewrites
// committed files); otherwise it is skipped with that reason.
func TestWriteProbeSeeds(t *testing.T) {
	if os.Getenv("LUKSDOCK_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("SKIP: seed generator; run with LUKSDOCK_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzProbe")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzProbe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seed := func(name string, size int64, keep int, build func(img string)) {
		img := sparse(t, size)
		build(img)
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		b = b[:keep]
		sig, _, _ := Probe(bytes.NewReader(b), int64(len(b)))
		t.Logf("%s: %d bytes, probe says %v", name, len(b), sig)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pb := []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", "-q"}
	seed("ext4", 8<<20, 2048, func(img string) { testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-L", "photos", img) })
	seed("luks2", 32<<20, 4096, func(img string) {
		testkit.Run(t, "pw", "cryptsetup", append([]string{"luksFormat", "--type", "luks2", "--label", "backups01", img}, pb...)...)
	})
	seed("luks1", 32<<20, 1024, func(img string) {
		testkit.Run(t, "pw", "cryptsetup", append([]string{"luksFormat", "--type", "luks1", img}, pb...)...)
	})
	seed("swap", 1<<20, 4096, func(img string) { testkit.Run(t, "", "mkswap", "-L", "sw", img) })
	seed("vfat", 32<<20, 512, func(img string) { testkit.Run(t, "", "mkfs.vfat", "-n", "CAM", img) })
	seed("xfs", 320<<20, 512, func(img string) { testkit.Run(t, "", "mkfs.xfs", "-q", "-f", "-L", "media", img) })
	seed("btrfs", 128<<20, 69632, func(img string) { testkit.Run(t, "", "mkfs.btrfs", "-q", "-f", "-L", "pool", img) })
	seed("ntfs", 8<<20, 512, func(img string) { testkit.Run(t, "", "mkntfs", "-q", "-F", "-f", "-L", "Win", img) })
	seed("gpt", 8<<20, 34*512, func(img string) {
		testkit.Run(t, "label: gpt\nfirst-lba: 34\nstart=34, size=8\nstart=42, size=8, name=\"two\"\n", "sfdisk", "-q", img)
	})
	// A small whole GPT disk (80 sectors), so that its backup is in the seed.
	smallGPT := func(img string) {
		testkit.Run(t, "label: gpt\nfirst-lba: 34\nstart=34, size=8, name=\"one\"\n", "sfdisk", "-q", img)
	}
	seed("gpt-primary-zeroed", 40<<10, 40<<10, func(img string) { smallGPT(img); zeroAt(t, img, 512, 512) })
	seed("pmbr-both-headers-bad-crc", 40<<10, 40<<10, func(img string) {
		smallGPT(img)
		flipAt(t, img, 512+60)
		flipAt(t, img, 40<<10-512+60)
	})
	seed("pmbr-only", 8<<20, 2048, func(img string) {
		testkit.Run(t, "label: gpt\nsize=1MiB\n", "sfdisk", "-q", img)
		zeroAt(t, img, 512, 512)
	})
	seed("hybrid-mbr-no-gpt", 8<<20, 4096, func(img string) {
		testkit.Run(t, "label: gpt\nsize=1MiB\n", "sfdisk", "-q", img)
		testkit.Run(t, "start=1, size=2047, type=ee\nstart=2048, size=2048, type=83\n", "sfdisk", "-q", "--label-nested", "dos", img)
		zeroAt(t, img, 512, 512)
	})
	seed("mbr-logical", 1<<20, 64*512, func(img string) {
		testkit.Run(t, "label: dos\nlabel-id: 0x1234abcd\nstart=2, size=8, type=83\nstart=12, size=50, type=5\n"+
			img+"5 : start=14, size=10, type=82\n"+img+"6 : start=26, size=10, type=8e\n", "sfdisk", "-q", "--no-reread", img)
	})
}
