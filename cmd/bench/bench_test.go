package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchEraseAloneKeepsInventory (issue 20, item 17): `go run ./cmd/bench
// -parts erase` measures the erase by itself (it printed nothing unless
// "small" was asked too), and the luksdock runs it measures record their
// "bench" disks in an inventory of their own: the inventory luksdock would
// use on this machine (here LUKSDOCK_INVENTORY, standing in for
// /var/lib/luksdock/inventory.json) and its state directory stay untouched.
// Each measured prepare has an inventory of its own, so a repeated one
// does not warn about the label "bench" of the one before.
func TestBenchEraseAloneKeepsInventory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: the benchmark's luksdock runs need root (loop devices, FUSE)")
	}
	for _, tool := range []string{"go", "cryptsetup", "mkfs.ext4", "dd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed", tool)
		}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("SKIP: no FUSE: the userspace engine cannot run")
	}
	dir := t.TempDir()
	hostInv, hostState := filepath.Join(dir, "host", "inventory.json"), filepath.Join(dir, "host", "state")
	bench := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", append([]string{"run", "./cmd/bench", "-erase", "64M", "-erase-rounds", "1", "-dir", dir}, args...)...)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "LUKSDOCK_INVENTORY="+hostInv, "LUKSDOCK_STATE_DIR="+hostState)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("bench %v in %s:\n%s", args, time.Since(t0).Round(time.Second), out)
		if err != nil {
			t.Fatalf("bench: %v", err)
		}
		return string(out)
	}
	if out := bench("-parts", "erase"); !strings.Contains(out, "erase/check, 64.0 MiB image") || !strings.Contains(out, "luksdock --erase") {
		t.Errorf("-parts erase measured no erase")
	}
	// Two measured prepares: the second is a first prepare too (an
	// inventory of its own), not a disk whose label "bench" clashes with
	// the first's.
	out := bench("-parts", "small", "-sizes", "64M,80M")
	if !strings.Contains(out, "64.0 MiB") || !strings.Contains(out, "80.0 MiB") {
		t.Errorf("-parts small -sizes 64M,80M measured nothing")
	}
	if strings.Contains(out, "label bench:") {
		t.Errorf("a repeated prepare of the benchmark warned about its own label")
	}
	if b, err := os.ReadFile(hostInv); err == nil {
		t.Errorf("the benchmark wrote the machine's inventory:\n%s", b)
	}
	if _, err := os.Stat(hostState); err == nil {
		t.Errorf("the benchmark wrote the machine's state directory %s", hostState)
	}
}
