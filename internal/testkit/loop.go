package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// LoopMu serialises AttachLoop's losetup --find across every test binary
// of a run (go test ./... runs packages' binaries in parallel): it is a
// mutex within this process and an flock on LoopLockPath between
// processes. A test that frees a loop number on purpose and attaches it
// again (a disk swapped behind luksdock's back), or detaches one and then
// drops its partition entries, holds it meanwhile, so that no other test,
// in this binary or another, takes the number in between.
var LoopMu = &crossLock{path: LoopLockPath}

// LoopLockPath is the file LoopMu flocks.
var LoopLockPath = lockDir() + "/luksdock-test-loop.lock"

// lockDir is /run (shared by every process of the machine, whatever their
// TMPDIR), or the temp directory where there is no /run.
func lockDir() string {
	if st, err := os.Stat("/run"); err == nil && st.IsDir() && unix.Access("/run", unix.W_OK) == nil {
		return "/run"
	}
	return os.TempDir()
}

// crossLock is a mutex that also holds an exclusive flock on a file while
// locked, so that it excludes other processes too.
type crossLock struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// Lock takes the mutex, then the flock (waiting for other processes).
func (l *crossLock) Lock() {
	l.mu.Lock()
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		panic(fmt.Sprintf("testkit: lock file %s: %v", l.path, err))
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		panic(fmt.Sprintf("testkit: flock %s: %v", l.path, err))
	}
	l.f = f
}

// Unlock releases the flock, then the mutex.
func (l *crossLock) Unlock() {
	l.f.Close() // closing the only descriptor releases the flock
	l.f = nil
	l.mu.Unlock()
}

// AttachLoop attaches file to a free loop device (losetup --find --show,
// with extra losetup options such as --offset, --sizelimit, --sector-size
// or --read-only) and returns the device, e.g. /dev/loop3. The test fails
// when losetup does; callers skip first when they may run without root.
//
// A loop number keeps state from its previous user that would otherwise
// leak into this test: partition entries added with BLKPG (on kernels
// without partition-table parsers, such as this project's hosts, they
// survive detaching) and a read-only flag set with BLKROSET (blockdev
// --setro). Both are cleared right after attaching, and again when the
// test ends and the device is detached (see DetachAtCleanup).
func AttachLoop(t testing.TB, file string, extra ...string) string {
	t.Helper()
	LoopMu.Lock()
	out, err := exec.Command("losetup", append(append([]string{"--find", "--show"}, extra...), file)...).CombinedOutput()
	LoopMu.Unlock()
	if err != nil {
		t.Fatalf("losetup --find --show %s %s: %v: %s", strings.Join(extra, " "), file, err, out)
	}
	dev := strings.TrimSpace(string(out))
	dropPartitions(dev)
	if !slices.Contains(extra, "--read-only") && !slices.Contains(extra, "-r") {
		exec.Command("blockdev", "--setrw", dev).Run()
	}
	DetachAtCleanup(t, dev)
	return dev
}

// DetachAtCleanup detaches the loop device dev when the test ends (its
// read-only flag cleared, its partition entries dropped), if dev is then
// still the attachment it is now: not when DetachLoop already detached it,
// or the number has since been given to another attachment (its backing
// file or disk sequence number changed). AttachLoop calls it; a test that
// attaches a number itself calls it too.
func DetachAtCleanup(t testing.TB, dev string) {
	id := attachment(dev)
	t.Cleanup(func() {
		if id == "" || attachment(dev) != id {
			return // detached already; the number may be someone else's now
		}
		exec.Command("blockdev", "--setrw", dev).Run()
		if err := DetachLoop(dev); err != nil {
			t.Errorf("%v", err)
		}
	})
}

// DetachLoop drops the kernel's partition entries of the loop device dev
// (partx --delete: BLKPG entries outlive the loop device otherwise) and
// detaches it (losetup --detach). A device still open elsewhere is detached
// by the kernel when its last user closes it.
func DetachLoop(dev string) error {
	dropPartitions(dev)
	if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
		return fmt.Errorf("losetup --detach %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// dropPartitions deletes every partition entry the kernel has for dev, one
// number at a time as /sys lists them (a busy one stays; nothing to do when
// there are none).
func dropPartitions(dev string) {
	name := filepath.Base(dev)
	parts, _ := filepath.Glob(filepath.Join("/sys/block", name, name+"p*"))
	for _, p := range parts {
		exec.Command("partx", "--delete", "--nr", strings.TrimPrefix(filepath.Base(p), name+"p"), dev).Run()
	}
}

// attachment identifies the current attachment of the loop device dev: its
// backing file and the kernel's disk sequence number, which is new for
// every attachment (kernels since 5.15). It is "" when dev is not attached.
func attachment(dev string) string {
	name := filepath.Base(dev)
	bf, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil || len(bf) == 0 {
		return ""
	}
	seq, _ := os.ReadFile(filepath.Join("/sys/block", name, "diskseq"))
	return strings.TrimSpace(string(bf)) + " " + strings.TrimSpace(string(seq))
}
