package core

import (
	"path/filepath"
	"testing"
	"time"

	"luksdock/inventory"
)

// TestHistoryRunsInOneSecond: two runs on one host that start within one
// second, appended to a disk's history file, are two runs in the inventory
// of a machine that merges the file (TestRotationTwoSites' site C once saw
// two of three), and merging the file again, or the machine's own record
// of the run, adds nothing.
func TestHistoryRunsInOneSecond(t *testing.T) {
	mnt := t.TempDir()
	inv := filepath.Join(t.TempDir(), "inventory.json")
	const uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	if err := inventory.Update(inv, func(f *inventory.File) error {
		f.Put(inventory.Record{LUKSUUID: uuid, Label: "backups01"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now().Truncate(time.Second)
	var runs []inventory.Backup
	for i, off := range []time.Duration{100 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		run := inventory.NewRun("nas", start.Add(off))
		run.Outcome, run.Bytes = inventory.OutcomeOK, int64(i+1)
		if err := AppendHistory(mnt, run); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, run)
	}
	for i := 0; i < 2; i++ {
		if err := MergeHistory(inv, uuid, mnt); err != nil {
			t.Fatal(err)
		}
	}
	if err := inventory.Update(inv, func(f *inventory.File) error {
		f.Find(uuid).AddBackups(runs[2])
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	got := f.Find(uuid).Backups
	if len(got) != 3 {
		t.Fatalf("the inventory holds %d runs, want the 3 of the history file: %+v", len(got), got)
	}
	for i, b := range got {
		if b.ID != runs[i].ID || b.Bytes != int64(i+1) || !b.Time.Equal(runs[i].Time) {
			t.Errorf("run %d: %+v, want %+v", i, b, runs[i])
		}
	}
}
