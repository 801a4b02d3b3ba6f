package luks

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// TestRemoveStaleMappingsChooses: on a sysfs fixture, only luksdock-*
// mappings on the given devices are closed, and a verify mapping whose
// luksdock still runs is kept. (The fixture's mappings have no
// /dev/mapper node, so closing them is a no-op; the closing itself runs in
// the QEMU suite, e2e TestSIGKILLKernelEngine, on a real dm-crypt mapping.)
func TestRemoveStaleMappingsChooses(t *testing.T) {
	root := t.TempDir()
	dm := func(n int, name string, slaves ...string) {
		d := filepath.Join(root, "sys", "block", "dm-"+strconv.Itoa(n))
		os.MkdirAll(filepath.Join(d, "dm"), 0o755)
		os.MkdirAll(filepath.Join(d, "slaves"), 0o755)
		os.WriteFile(filepath.Join(d, "dm", "name"), []byte(name+"\n"), 0o644)
		for _, s := range slaves {
			os.WriteFile(filepath.Join(d, "slaves", s), nil, 0o644)
		}
	}
	proc := func(pid int, comm string) {
		d := filepath.Join(root, "proc", strconv.Itoa(pid))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "comm"), []byte(comm+"\n"), 0o644)
	}
	dm(0, "luksdock-backups03-zz-nonexistent", "sda1")
	dm(1, "luksdock-verify-4242", "sda1") // its luksdock is gone
	dm(2, "luksdock-verify-4343", "sda1") // its luksdock runs
	dm(3, "luksdock-verify-4444", "sda1") // the PID is now another program
	dm(4, "backups03", "sda1")            // the user's own mapping
	dm(5, "luksdock-other-zz", "sdb1")    // another disk
	proc(4343, "luksdock")
	proc(4444, "bash")
	got, err := RemoveStaleMappings(context.Background(), root, []string{"sda1", "sda2"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"luksdock-backups03-zz-nonexistent", "luksdock-verify-4242", "luksdock-verify-4444"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("closed %q, want %q", got, want)
	}
}
