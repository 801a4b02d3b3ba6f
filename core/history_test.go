package core

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/testkit"
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
	seedInventory(t, inv, uuid)
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

// appendRaw appends b to the history file at mnt, as a write cut short
// would have left it.
func appendRaw(t *testing.T, mnt string, b string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(mnt, filepath.Dir(HistoryFile)), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(mnt, HistoryFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(b); err != nil {
		t.Fatal(err)
	}
}

func runIDs(runs []inventory.Backup) []string {
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}

func okRun(t time.Time, detail string) inventory.Backup {
	r := inventory.NewRun("nas", t)
	r.Outcome, r.Detail = inventory.OutcomeOK, detail
	return r
}

// TestHistoryKeepsEveryRun: the disk's history file keeps and gives back
// every run after an append that was cut short (the start of a line with
// no end: the next append must not be glued to it, and a file an older
// luksdock left glued is still read), and after a line longer than the
// reader's old 64 KiB limit (a failed run's long e2fsck output), which
// used to stop the reading, so that nothing of the file was merged.
func TestHistoryKeepsEveryRun(t *testing.T) {
	start := time.Now()
	r1, r2, r3, r4 := okRun(start, ""), okRun(start.Add(time.Second), ""), okRun(start.Add(2*time.Second), strings.Repeat("e2fsck said ", 8000)), okRun(start.Add(3*time.Second), "")
	r3.Outcome = inventory.OutcomeFailed

	// Written by this luksdock: a cut-short append between r1 and r2.
	mnt := t.TempDir()
	add := func(r inventory.Backup) {
		t.Helper()
		if err := AppendHistory(mnt, r); err != nil {
			t.Fatal(err)
		}
	}
	add(r1)
	appendRaw(t, mnt, `{"id":"0123456789abcdef","host":"na`)
	add(r2)
	add(r3)
	add(r4)
	runs, err := ReadHistory(mnt)
	if want := []string{r1.ID, r2.ID, r3.ID, r4.ID}; err != nil || !slices.Equal(runIDs(runs), want) {
		t.Errorf("runs read back: %v %v, want %v", runIDs(runs), err, want)
	}
	raw, _ := os.ReadFile(filepath.Join(mnt, HistoryFile))
	if lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n"); len(lines) != 5 || !strings.HasPrefix(lines[2], `{"id":"`+r2.ID) {
		t.Errorf("the file's lines: each run on its own line, the cut one apart: %q", lines)
	}

	// Left by an older luksdock: r2 glued to the cut line.
	old := t.TempDir()
	b1, _ := json.Marshal(r1)
	b2, _ := json.Marshal(r2)
	appendRaw(t, old, string(b1)+"\n"+`{"host":"nas","time":"2026-12-07T1`+string(b2)+"\n")
	if runs, err := ReadHistory(old); err != nil || !slices.Equal(runIDs(runs), []string{r1.ID, r2.ID}) {
		t.Errorf("a glued line: %v %v", runIDs(runs), err)
	}

	// Merged into an inventory: all four.
	inv := filepath.Join(t.TempDir(), "inventory.json")
	const uuid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	seedInventory(t, inv, uuid)
	if err := MergeHistory(inv, uuid, mnt); err != nil {
		t.Error(err)
	}
	f, _ := inventory.Load(inv)
	if got := runIDs(f.Find(uuid).Backups); len(got) != 4 {
		t.Errorf("merged: %v, want the 4 runs", got)
	}
}

// TestHistoryAppendFullDisk: an append that fails part way (the disk is
// full) leaves no cut line behind; once there is room, the next run is
// appended on a line of its own. A small tmpfs is the full disk.
func TestHistoryAppendFullDisk(t *testing.T) {
	testkit.NeedRoot(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	start := time.Now()
	r1 := okRun(start, "")
	if err := AppendHistory(mnt, r1); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(mnt, HistoryFile))
	filler, err := os.Create(filepath.Join(mnt, "backup"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = filler.Write(make([]byte, 4096))
	}
	filler.Close()
	// Longer than the room left in the history file's page: written in part.
	big := okRun(start.Add(time.Second), strings.Repeat("x", 6000))
	if err := AppendHistory(mnt, big); err == nil {
		t.Fatal("an append to a full disk succeeded")
	}
	after, _ := os.ReadFile(filepath.Join(mnt, HistoryFile))
	if string(after) != string(before) {
		t.Errorf("the failed append left %d bytes behind (a cut line)", len(after)-len(before))
	}
	os.Remove(filepath.Join(mnt, "backup"))
	r3 := okRun(start.Add(2*time.Second), "")
	if err := AppendHistory(mnt, r3); err != nil {
		t.Fatal(err)
	}
	if runs, err := ReadHistory(mnt); err != nil || !slices.Equal(runIDs(runs), []string{r1.ID, r3.ID}) {
		t.Errorf("after the disk had room again: %v %v", runIDs(runs), err)
	}
}

// seedInventory records the disk uuid (labelled backups01) in the
// inventory at inv, as a machine that knows the disk has it.
func seedInventory(t *testing.T, inv, uuid string) {
	t.Helper()
	if err := inventory.Update(inv, func(f *inventory.File) error {
		f.Put(inventory.Record{LUKSUUID: uuid, Label: "backups01"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
