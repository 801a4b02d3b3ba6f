package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"luksdock/core"
	"luksdock/internal/testkit"
	"luksdock/inventory"
)

// cliProcess runs luksdock as a separate process (the test binary, see
// testkit.CLICommand), as concurrent luksdocks are (cobra's set-up is not
// safe to run in parallel in one).
func cliProcess(stdin string, args ...string) (int, string) {
	c := testkit.CLICommand(args...)
	c.Stdin = strings.NewReader(stdin)
	out, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		return -1, err.Error()
	}
	return 0, string(out)
}

func loadInventory(t *testing.T) *inventory.File {
	t.Helper()
	code, out, errs := cli(t, "", "inventory", "--json")
	if code != 0 {
		t.Fatalf("luksdock inventory --json: exit %d %s", code, errs)
	}
	var f inventory.File
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("inventory --json: %v\n%s", err, out)
	}
	// list and inventory record every luksdock disk docked on this machine
	// (learned from its token: SeenHere), as they promise. go test runs
	// packages side by side, and another package's test may have a disk of
	// its own attached as a loop device at that moment: these tests count
	// what this test's prepares recorded, so such records are left out.
	f.Disks = slices.DeleteFunc(f.Disks, func(r inventory.Record) bool { return r.SeenHere })
	return &f
}

// listed returns the `list --json` entry for the loop device dev.
func listed(t *testing.T, dev string) core.ListEntry {
	t.Helper()
	code, out, errs := cli(t, "", "list", "--json")
	if code != 0 {
		t.Fatalf("list --json: exit %d %s", code, errs)
	}
	var entries []core.ListEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Path == dev {
			return e
		}
	}
	t.Fatalf("%s is not in list --json", dev)
	return core.ListEntry{}
}

// TestInventoryRecognition prepares two images of set "offsite", checks
// the inventory against cryptsetup and sha256 of the header backup, then
// docks each as a loop device (one twice, under another name) and requires
// `list` to recognise it by LUKS UUID and update its last-seen; a LUKS disk
// luksdock did not make is called unknown; a third disk of the set may not
// take a label the set already has.
func TestInventoryRecognition(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "losetup")
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "state", "inventory.json"))
	imgA, imgB := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	backup := filepath.Join(dir, "a.header")
	rk := filepath.Join(dir, "b.recovery")
	for _, c := range []struct {
		img, label string
		extra      []string
	}{
		{imgA, "backups01", []string{"--header-backup", backup}},
		{imgB, "backups02", []string{"--recovery-key", rk}},
	} {
		args := append([]string{"prepare", "--image", c.img, "--size", "100M", "--label", c.label, "--set", "offsite",
			"--passphrase-file", "-", "--confirm", filepath.Base(c.img)}, smallKDF...)
		if code, out, errs := cli(t, testPass+"\n", append(args, c.extra...)...); code != 0 {
			t.Fatalf("prepare %s: exit %d\n%s%s", c.label, code, out, errs)
		}
	}
	uuid := map[string]string{}
	for _, img := range []string{imgA, imgB} {
		p1, _ := testkit.Partition1(t, img)
		part := testkit.AttachLoop(t, img, "--offset", fmt.Sprint(p1.Base), "--sizelimit", fmt.Sprint(p1.Size))
		uuid[img] = strings.TrimSpace(testkit.Run(t, "", "cryptsetup", "luksUUID", part))
		if dump := testkit.Run(t, "", "cryptsetup", "luksDump", part); !strings.Contains(dump, "Subsystem:     \toffsite\n") {
			t.Errorf("luksDump does not show subsystem offsite:\n%s", dump)
		}
		testkit.DetachLoop(part)
	}
	f := loadInventory(t)
	if len(f.Disks) != 2 {
		t.Fatalf("inventory has %d disks, want 2: %+v", len(f.Disks), f)
	}
	a, b := f.Find(uuid[imgA]), f.Find(uuid[imgB])
	if a == nil || b == nil {
		t.Fatalf("inventory does not have the UUIDs cryptsetup reads (%v): %+v", uuid, f.Disks)
	}
	if a.Label != "backups01" || a.Set != "offsite" || a.Size != 100<<20 || a.LUKSSector == 0 || a.RecoveryKey ||
		a.HeaderBackup != backup || a.HeaderBackupSHA256 != testkit.SHA256File(t, backup) || a.Drive.ModelFrom != inventory.FromImage ||
		time.Since(a.Prepared) > time.Hour || a.Version == "" {
		t.Errorf("record of a.img: %+v", *a)
	}
	if !b.RecoveryKey || b.HeaderBackup != "" || b.Label != "backups02" {
		t.Errorf("record of b.img: %+v", *b)
	}
	raw, _ := os.ReadFile(os.Getenv("LUKSDOCK_INVENTORY"))
	key, _ := os.ReadFile(rk)
	if lines := strings.Split(strings.TrimSpace(string(key)), "\n"); strings.Contains(string(raw), lines[len(lines)-1]) || strings.Contains(string(raw), testPass) {
		t.Fatal("a secret is in the inventory")
	}
	if code, out, _ := cli(t, "", "inventory"); code != 0 || !strings.Contains(out, "backups01  offsite") {
		t.Errorf("inventory table: exit %d\n%s", code, out)
	}

	// Docked (a loop device), recognised by UUID; again under another name.
	before := a.LastSeen
	time.Sleep(1100 * time.Millisecond) // last_seen has whole seconds
	devA := testkit.AttachLoop(t, imgA)
	e := listed(t, devA)
	want := "backups01, set offsite, prepared " + a.Prepared.Local().Format("2006-01-02") + ", last seen just now"
	if e.Known == nil || !e.Known.Known || e.Known.Description != want || e.Known.SetOnDisk != "offsite" {
		t.Errorf("list: %s is not recognised as %q: %+v", devA, want, e.Known)
	}
	if code, out, _ := cli(t, "", "list"); code != 0 || !strings.Contains(out, filepath.Base(devA)+": "+want) {
		t.Errorf("list table does not name %s:\n%s", devA, out)
	}
	f = loadInventory(t)
	if r := f.Find(uuid[imgA]); !r.LastSeen.After(before) || r.LastSeenAs != devA {
		t.Errorf("last seen not updated: %v as %s (before %v)", r.LastSeen, r.LastSeenAs, before)
	}
	testkit.DetachLoop(devA)
	hold := testkit.AttachLoop(t, imgB) // takes the old name, if free
	devA2 := testkit.AttachLoop(t, imgA)
	if devA2 == devA {
		t.Logf("note: %s got the same loop name again", devA2)
	}
	if e := listed(t, devA2); e.Known == nil || !e.Known.Known || !strings.HasPrefix(e.Known.Description, "backups01, set offsite") {
		t.Errorf("after re-attach as %s: %+v", devA2, e.Known)
	}
	if e := listed(t, hold); e.Known == nil || !strings.HasPrefix(e.Known.Description, "backups02, set offsite") {
		t.Errorf("b.img as %s: %+v", hold, e.Known)
	}
	if r := loadInventory(t).Find(uuid[imgA]); r.LastSeenAs != devA2 {
		t.Errorf("last seen as %s, want %s", r.LastSeenAs, devA2)
	}

	// A LUKS disk luksdock did not make.
	other := testkit.SparseFile(t, filepath.Join(dir, "other.img"), 64<<20)
	testkit.Run(t, "x", "cryptsetup", "luksFormat", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", other)
	devO := testkit.AttachLoop(t, other)
	if e := listed(t, devO); e.Known == nil || e.Known.Known || !strings.Contains(e.Known.Description, "does not know") {
		t.Errorf("unknown LUKS disk: %+v", e.Known)
	}

	// A third disk of the set may not take backups01.
	imgC := filepath.Join(dir, "c.img")
	args := append([]string{"prepare", "--image", imgC, "--size", "100M", "--label", "backups01", "--set", "offsite",
		"--passphrase-file", "-", "--confirm", "c.img"}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != 3 || !strings.Contains(errs, "two disks of a set must not share a label") || !strings.Contains(errs, "Next free label: backups03") {
		t.Errorf("duplicate label in set: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(imgC); err == nil {
		t.Error("the refused image was created")
	}
	// Preparing a.img again under its own label replaces its record.
	testkit.DetachLoop(devA2)
	args = append([]string{"prepare", "--image", imgA, "--label", "backups01", "--set", "offsite",
		"--passphrase-file", "-", "--confirm", "a.img"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare a.img again: exit %d\n%s%s", code, out, errs)
	}
	f = loadInventory(t)
	if len(f.Disks) != 2 || f.Find(uuid[imgA]) != nil {
		t.Errorf("after preparing a.img again: %+v", f.Disks)
	}
}

// TestInventoryConcurrentPrepares: three prepares at once, one inventory;
// all three recorded, the file parses.
func TestInventoryConcurrentPrepares(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	var wg sync.WaitGroup
	codes := make([]int, 3)
	outs := make([]string, 3)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("d%d.img", i)
			args := append([]string{"prepare", "--image", filepath.Join(dir, name), "--size", "80M", "--label", fmt.Sprintf("backups%02d", i+1),
				"--set", "offsite", "--passphrase-file", "-", "--confirm", name}, smallKDF...)
			codes[i], outs[i] = cliProcess(testPass+"\n", args...)
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 0 {
			t.Errorf("prepare %d: exit %d\n%s", i, c, outs[i])
		}
	}
	if f := loadInventory(t); len(f.Disks) != 3 {
		t.Errorf("inventory has %d disks, want 3", len(f.Disks))
	}
}

// TestInventoryCorrupt: a damaged inventory is reported by prepare (which
// still makes the disk), inventory and list, and never overwritten.
func TestInventoryCorrupt(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "inventory.json")
	t.Setenv("LUKSDOCK_INVENTORY", p)
	damaged := `{"format": 1, "disks": [{"luks_uuid": "1234", "label": "backu`
	os.WriteFile(p, []byte(damaged), 0o600)
	img := filepath.Join(dir, "d.img")
	args := append([]string{"prepare", "--image", img, "--size", "80M", "--label", "backups01",
		"--passphrase-file", "-", "--confirm", "d.img"}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != 0 || !strings.Contains(errs, "not recorded in the inventory") || !strings.Contains(errs, "damaged") || !strings.Contains(errs, "will not overwrite") {
		t.Errorf("prepare with a damaged inventory: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := cli(t, "", "inventory"); code != 4 || !strings.Contains(errs, "damaged") {
		t.Errorf("inventory: exit %d %s", code, errs)
	}
	dev := testkit.AttachLoop(t, img)
	code, out, errs = cli(t, "", "list")
	if code != 0 || !strings.Contains(errs, "warning: the inventory file is damaged") {
		t.Errorf("list with a damaged inventory: exit %d\n%s%s", code, out, errs)
	}
	_ = dev
	if b, _ := os.ReadFile(p); string(b) != damaged {
		t.Errorf("the damaged inventory was changed:\n%s", b)
	}
}

// TestSetNameRefused: set names that would not survive the LUKS2
// subsystem field or a shell, and --set with LUKS1, are refused before
// anything is written.
func TestSetNameRefused(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	img := testkit.SparseFile(t, filepath.Join(dir, "d.img"), 80<<20)
	sum := testkit.SHA256File(t, img)
	for _, c := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--set", "two words"}, "only letters, digits"},
		{[]string{"--set", strings.Repeat("s", 48)}, "at most 47"},
		{[]string{"--set", "-x"}, "must not start with '-'"},
		{[]string{"--set", "offsite", "--luks1"}, "LUKS1 has none"},
	} {
		args := append([]string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", "-", "--confirm", "d.img"}, c.extra...)
		code, _, errs := cli(t, testPass+"\n", args...)
		if code != 3 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d %s", c.extra, code, errs)
		}
	}
	if testkit.SHA256File(t, img) != sum {
		t.Error("the image changed")
	}
}

// TestDuplicateLabelWithoutSet: without --set a label another disk has is
// a warning, not a refusal.
func TestDuplicateLabelWithoutSet(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	for i, want := range []string{"", "luksdock: warning: label backups01: the inventory already has backups01 (LUKS UUID "} {
		name := fmt.Sprintf("d%d.img", i)
		args := append([]string{"prepare", "--image", filepath.Join(dir, name), "--size", "80M", "--label", "backups01",
			"--passphrase-file", "-", "--confirm", name}, smallKDF...)
		code, out, errs := cli(t, testPass+"\n", args...)
		if code != 0 || (want == "") != (errs == "") || !strings.Contains(errs, want) || !strings.Contains(errs, "Next free label: backups02") && want != "" {
			t.Errorf("prepare %s: exit %d\n%s%s", name, code, out, errs)
		}
	}
	if f := loadInventory(t); len(f.Disks) != 2 {
		t.Errorf("%d disks recorded", len(f.Disks))
	}
}
