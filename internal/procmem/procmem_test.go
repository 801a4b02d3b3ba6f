package procmem

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

var sink []byte

// TestReadFindsHeapAndLockedCopies reads this process's own memory: a
// marker in the heap is found unlocked, one in mlock'd memory locked. Only
// the mappings holding them are read (under -race the detector's shadow
// memory, terabytes of mappings, would take minutes); Read of a whole
// process is what reliability.TestSecretsInMemory does.
func TestReadFindsHeapAndLockedCopies(t *testing.T) {
	heap := append([]byte("procmem-heap-"), "marker-0123456789abcdef"...)
	sink = heap
	locked, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(locked)
	if err := unix.Mlock(locked); err != nil {
		t.Skipf("SKIP: mlock: %v", err)
	}
	copy(locked, "procmem-locked-marker-fedcba9876543210")
	addrs := []uint64{uint64(uintptr(unsafe.Pointer(&heap[0]))), uint64(uintptr(unsafe.Pointer(&locked[0])))}
	s, err := read(os.Getpid(), func(start, end uint64) bool {
		return addrs[0] >= start && addrs[0] < end || addrs[1] >= start && addrs[1] < end
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.VmLckKB() < 4 {
		t.Errorf("VmLck %q, want at least 4 kB", s.VmLck)
	}
	// The forms are built at run time, so that the test binary's own
	// constants (read-only, skipped) are not what is found.
	forms := map[string][]byte{
		"heap":   append([]byte("procmem-heap-"), "marker-0123456789abcdef"...),
		"locked": append([]byte("procmem-locked-"), "marker-fedcba9876543210"...),
	}
	var heapHit, lockedHit bool
	for _, h := range s.Find(forms) {
		switch {
		case h.Form == "locked" && h.Locked:
			lockedHit = true
		case h.Form == "heap" && !h.Locked:
			heapHit = true
		}
	}
	if !heapHit || !lockedHit {
		t.Errorf("found the heap marker %v, the locked one (locked) %v", heapHit, lockedHit)
	}
}

func TestForms(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 64)
	f := Forms([]byte("pw"), []byte("cbdefghi-jklnrtuv"), key)
	if !bytes.Equal(f["recovery key bytes"], []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}) {
		t.Errorf("recovery key bytes %x", f["recovery key bytes"])
	}
	if string(f["volume key luksDump line 1"]) != "ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab ab" {
		t.Errorf("luksDump line %q", f["volume key luksDump line 1"])
	}
	if len(Forms([]byte("pw"), nil, nil)) != 1 {
		t.Error("forms without a recovery key or volume key")
	}
}

// TestRunTraced: the exit status comes back, and the exit stop is seen
// with the memory still readable.
func TestRunTraced(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("SKIP: no sh")
	}
	var pid, exitTid int
	var snap *Snapshot
	code, err := RunTraced(sh, []string{"sh", "-c", "exit 3"}, &os.ProcAttr{}, func(p int) { pid = p }, func(tid int) {
		exitTid = tid
		snap, _ = Read(tid)
	})
	if err != nil {
		t.Skipf("SKIP: ptrace not allowed here: %v", err)
	}
	if code != 3 || pid == 0 || exitTid != pid {
		t.Errorf("exit %d, pid %d, exit stop of %d; want 3 and the exit stop of the pid", code, pid, exitTid)
	}
	if snap == nil || snap.Size == 0 {
		t.Error("the memory was not readable at the exit stop")
	}
}

// TestRunTracedStops: each run of a stopping shim is seen once, stopped,
// with the tool's name and the program's pid, and then goes on (the
// program ends with its own status).
func TestRunTracedStops(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("SKIP: no sh")
	}
	shims := t.TempDir()
	if err := os.WriteFile(shims+"/tool", []byte("#!/bin/sh\nkill -STOP $$\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var pid int
	var stops []string
	code, err := RunTracedStops(sh, []string{"sh", "-c", "tool && tool && exit 4"},
		&os.ProcAttr{Env: []string{"PATH=" + shims + ":/usr/bin:/bin"}}, shims,
		func(p int) { pid = p },
		func(tool string, p int) {
			if p != pid {
				t.Errorf("atStop with pid %d, want the program's %d", p, pid)
			}
			stops = append(stops, tool)
		}, nil)
	if err != nil {
		t.Skipf("SKIP: ptrace not allowed here: %v", err)
	}
	if code != 4 || len(stops) != 2 || stops[0] != "tool" || stops[1] != "tool" {
		t.Errorf("exit %d, stops %q; want 4 and [tool tool]", code, stops)
	}
}
