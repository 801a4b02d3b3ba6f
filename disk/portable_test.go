package disk

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// luksHeaderFile makes a small LUKS2 volume with cryptsetup (cheap PBKDF) to
// be spliced where a layout puts LUKS.
func luksHeaderFile(t *testing.T) string {
	t.Helper()
	testkit.NeedTools(t, "cryptsetup")
	f := sparse(t, 20<<20)
	testkit.Run(t, "pw", "cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file=-", f)
	return f
}

// The default layout is one GPT that util-linux (sfdisk, blkid), GPT fdisk
// and parted all read, without errors, whether the disk shows 512-byte or
// 4096-byte logical sectors, and it gives the same partition (same bytes,
// same PARTUUID, same disk GUID) in both; the kernel view luksdock computes
// agrees and finds the LUKS header in both.
func TestPortableGPTBothViews(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "sfdisk", "gdisk", "parted", "blkid")
	hdr := luksHeaderFile(t)
	for _, size := range []int64{100 << 20, 300<<20 + 12<<10} {
		img := sparse(t, size)
		l, err := PlanLayout(TableGPT, size, 512)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		guid, err := WritePartitionTable(f, size, 512, 4096, l)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		splice(t, hdr, img, l.Start, 16<<20)
		uuids := map[string]bool{}
		for _, ss := range SectorSizes {
			name := map[int]string{512: "512", 4096: "4096"}[ss]
			dev := testkit.AttachLoop(t, img, "--sector-size", name)
			what := func(tool string) string {
				return tool + " (" + name + "-byte sectors, size " + strconv.FormatInt(size, 10) + ")"
			}

			v, err := exec.Command("sfdisk", "--verify", dev).CombinedOutput()
			if err != nil || !strings.Contains(string(v), "No errors detected") || strings.Contains(string(v), "arning") {
				t.Errorf("%s: %v\n%s", what("sfdisk --verify"), err, v)
			}
			d := sfdiskDump(t, dev)
			pt := d.PartitionTable
			if pt.Label != "gpt" || len(pt.Partitions) != 1 || pt.Partitions[0].Start*int64(ss) != l.Start || pt.Partitions[0].Size*int64(ss) != l.Size ||
				!strings.EqualFold(pt.ID, guid) {
				t.Errorf("%s: %+v, want one partition at %d+%d, disk GUID %s", what("sfdisk --json"), pt, l.Start, l.Size, guid)
			}
			for _, p := range pt.Partitions {
				uuids[strings.ToLower(p.UUID)] = true
			}

			cmd := exec.Command("gdisk", dev)
			cmd.Stdin = strings.NewReader("v\nq\n")
			g, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(g), "No problems found") || strings.Contains(string(g), "Problem:") ||
				strings.Contains(string(g), "CRC") || strings.Contains(string(g), "corrupt") {
				t.Errorf("%s: %v\n%s", what("gdisk v"), err, g)
			}

			cmd = exec.Command("parted", "-s", dev, "unit", "B", "print")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			p, err := cmd.Output()
			// parted offers to grow the table over the space reserved for
			// the other view's metadata at the end: a warning, not an error.
			if err != nil || strings.Contains(stderr.String(), "Error") || !strings.Contains(string(p), "Partition Table: gpt") ||
				!strings.Contains(string(p), " 1      "+itoa(l.Start)+"B  "+itoa(l.Start+l.Size-1)+"B") {
				t.Errorf("%s: %v\n%s%s", what("parted print"), err, p, stderr.String())
			}

			b := blkid(t, dev, 0, 0)
			if b["PTTYPE"] != "gpt" || !strings.EqualFold(b["PTUUID"], guid) {
				t.Errorf("%s: %v", what("blkid -p"), b)
			}
			if b := blkid(t, dev, l.Start, l.Size); b["TYPE"] != "crypto_LUKS" {
				t.Errorf("%s at the partition: %v", what("blkid -p"), b)
			}

			df, err := os.Open(dev)
			if err != nil {
				t.Fatal(err)
			}
			kv := KernelView(df, size, ss)
			df.Close()
			if !kv.Readable() || kv.Table != "gpt" || kv.Start != l.Start || kv.Size != l.Size {
				t.Errorf("KernelView(%d) = %+v, want the partition %+v with LUKS", ss, kv, l)
			}
		}
		if len(uuids) != 1 {
			t.Errorf("PARTUUIDs differ between the views: %v", uuids)
		}
	}
}

// An MBR made through a 4096-byte dock names sectors of 4096 bytes: through a
// 512-byte dock partition 1 points elsewhere, and the kernel view says so. A
// GPT of one sector size (sfdisk's) is read in that view only. LUKS on the
// whole disk is read in both.
func TestKernelViewsOfOtherLayouts(t *testing.T) {
	testkit.NeedTools(t, "sfdisk", "cryptsetup")
	hdr := luksHeaderFile(t)
	const size = 64 << 20
	for _, c := range []struct {
		name  string
		make  func(img string) int64 // returns where LUKS goes
		views []int
	}{
		{"MBR for 4096-byte sectors", func(img string) int64 {
			l, _ := PlanLayout(TableMBR, size, 4096)
			f, _ := os.OpenFile(img, os.O_RDWR, 0)
			defer f.Close()
			if _, err := WritePartitionTable(f, size, 4096, 4096, l); err != nil {
				t.Fatal(err)
			}
			return l.Start
		}, []int{4096}},
		{"MBR for 512-byte sectors", func(img string) int64 {
			testkit.Run(t, "label: dos\nstart=2048, type=83\n", "sfdisk", "-q", img)
			return 1 << 20
		}, []int{512}},
		{"sfdisk GPT, 512-byte sectors", func(img string) int64 {
			testkit.Run(t, "label: gpt\nstart=2048, type=L\n", "sfdisk", "-q", img)
			return 1 << 20
		}, []int{512}},
		{"none", func(string) int64 { return 0 }, []int{512, 4096}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := sparse(t, size)
			off := c.make(img)
			splice(t, hdr, img, off, 16<<20)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			vs := KernelViews(f, size)
			if got := ReadableIn(vs); !equalInts(got, c.views) {
				t.Errorf("readable in %v, want %v (%+v)", got, c.views, vs)
			}
			if b := blkid(t, img, off, 1<<20); b["TYPE"] != "crypto_LUKS" {
				t.Errorf("blkid -p at %d: %v (test premise)", off, b)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
