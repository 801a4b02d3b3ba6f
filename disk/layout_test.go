package disk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

func TestPlanLayout(t *testing.T) {
	for _, c := range []struct {
		table  TableType
		size   int64
		sector int
		start  int64
		size1  int64
		err    string
	}{
		{"gpt", 64 << 20, 512, 1 << 20, 62 << 20, ""},
		{"mbr", 64 << 20, 512, 1 << 20, 63 << 20, ""},
		{"gpt", 64 << 20, 4096, 1 << 20, 62 << 20, ""},
		{"gpt", 1 << 40, 512, 1 << 20, 1<<40 - 2<<20, ""},
		{"mbr", 3 << 40, 512, 0, 0, "use --table gpt"},
		{"mbr", 3 << 40, 4096, 1 << 20, 3<<40 - 1<<20, ""},
		{"gpt", 2 << 20, 512, 0, 0, "too small"},
		{"apm", 64 << 20, 512, 0, 0, "unknown partition table"},
		{"gpt", 64 << 20, 1024, 0, 0, "sector size"},
	} {
		l, err := PlanLayout(TableType(c.table), c.size, c.sector)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: error %v, want %q", c, err, c.err)
			}
			continue
		}
		if err != nil || l.Start != c.start || l.Size != c.size1 {
			t.Errorf("%+v: got %+v %v", c, l, err)
		}
		if l.Size%Align != 0 {
			t.Errorf("%+v: size not MiB-aligned", c)
		}
	}
}

func TestWipeExtents(t *testing.T) {
	const M = 1 << 20
	got := WipeExtents(100*M, []Extent{{1 * M, 50 * M}, {51 * M, 49*M - 34*512}})
	want := []Extent{{0, 9 * M}, {50 * M, 9 * M}, {99 * M, 1 * M}}
	// disk head [0,8M) + part1 head [1M,9M) merge; part1 tail [50M,51M) + part2 head [51M,59M) merge;
	// part2 tail and disk tail merge at the end.
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2].Start+got[2].Size != 100*M {
		t.Fatalf("got %+v", got)
	}
	// Tiny partitions are wiped whole and never past the disk's end.
	for _, e := range WipeExtents(10*M, []Extent{{5 * M, 20 * M}}) {
		if e.Start+e.Size > 10*M {
			t.Errorf("extent %+v past the end", e)
		}
	}
}

// TestWritePartitionTableSfdisk checks the tables go-diskfs writes with
// util-linux's sfdisk.
func TestWritePartitionTableSfdisk(t *testing.T) {
	testkit.NeedTools(t, "sfdisk")
	for _, table := range []TableType{TableGPT, TableMBR} {
		img := filepath.Join(t.TempDir(), string(table)+".img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		size := int64(100 << 20)
		f.Truncate(size)
		l, _ := PlanLayout(TableType(table), size, 512)
		id, err := WritePartitionTable(f, size, 512, 4096, l)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sfdisk", "--dump", img).CombinedOutput()
		if err != nil {
			t.Fatalf("sfdisk: %v\n%s", err, out)
		}
		dump := string(out)
		wantType := map[TableType]string{"gpt": "type=0FC63DAF-8483-4772-8E79-3D69D8477DE4", "mbr": "type=83"}[table]
		if !strings.Contains(dump, "start=        2048, size=") || !strings.Contains(dump, wantType) || !strings.Contains(strings.ToLower(dump), strings.ToLower(id)) {
			t.Errorf("%s: sfdisk --dump:\n%s(id %s)", table, dump, id)
		}
		if v, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil || !strings.Contains(string(v), "No errors detected") {
			t.Errorf("%s: sfdisk --verify: %v\n%s", table, err, v)
		}
	}
}
