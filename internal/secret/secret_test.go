package secret

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmFlags is the VmFlags line of the mapping of /proc/self/smaps holding p.
func vmFlags(t *testing.T, p []byte) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("SKIP: /proc/self/smaps: %v", err)
	}
	addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(p))))
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && strings.Contains(f[0], "-") {
			lo, hi, _ := strings.Cut(f[0], "-")
			a, _ := strconv.ParseUint(lo, 16, 64)
			z, _ := strconv.ParseUint(hi, 16, 64)
			in = addr >= a && addr < z
			continue
		}
		if v, ok := strings.CutPrefix(l, "VmFlags:"); ok && in {
			return " " + strings.TrimSpace(v) + " "
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return ""
}

func TestNewIsLockedUndumpedAndFreeWipes(t *testing.T) {
	s := New(100)
	if len(s) != 100 || cap(s) != 100 {
		t.Fatalf("len %d cap %d, want 100 100", len(s), cap(s))
	}
	if !bytes.Equal(s, make([]byte, 100)) {
		t.Fatal("new secret memory is not zeroed")
	}
	copy(s, "correct horse battery staple")
	f := vmFlags(t, s)
	if !strings.Contains(f, " dd ") {
		t.Errorf("secret memory would be in a core dump: VmFlags%s", f)
	}
	if all, n := Locked(); all && (!strings.Contains(f, " lo ") || n < 100) {
		t.Errorf("secret memory is not locked: VmFlags%s, %d bytes locked", f, n)
	} else if !all {
		t.Logf("mlock failed here (no RLIMIT_MEMLOCK room): locking not checked")
	}
	view := s[10:20]
	Free(view) // a view inside frees the whole allocation
	if !bytes.Equal(s, make([]byte, 100)) {
		t.Fatalf("Free did not wipe the secret: %q", s)
	}
	if f := vmFlags(t, s); strings.Contains(f, " lo ") {
		t.Errorf("freed secret memory is still locked: VmFlags%s", f)
	}
	Free(s) // twice: harmless
	Free(nil)
}

func TestFreeOfHeapSliceClears(t *testing.T) {
	b := []byte("not secret memory")
	Free(b)
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Fatalf("Free left a heap slice as it was: %q", b)
	}
}

func TestClone(t *testing.T) {
	c := Clone([]byte("abc"))
	if string(c) != "abc" {
		t.Fatalf("Clone = %q", c)
	}
	if Clone(nil) != nil {
		t.Fatal("Clone(nil) is not nil")
	}
	Free(c)
}

// TestWarnWhenMlockFails: without CAP_IPC_LOCK and with no RLIMIT_MEMLOCK
// room, New still gives undumped memory that Free wipes, and Warn is
// called once. The capability is dropped on one locked thread only (Linux
// credentials are per thread), which then ends with its goroutine.
func TestWarnWhenMlockFails(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: 0, Max: old.Max}); err != nil {
		t.Skipf("SKIP: cannot lower RLIMIT_MEMLOCK: %v", err)
	}
	defer unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old)
	var warnings []error
	defer func(w func(error)) { Warn = w }(Warn)
	Warn = func(err error) { warnings = append(warnings, err) }
	warned = sync.Once{}
	done := make(chan []byte)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err == nil {
			data[0].Effective &^= 1 << unix.CAP_IPC_LOCK
			unix.Capset(&hdr, &data[0])
		}
		s := New(64)
		s2 := New(64)
		copy(s, "correct horse battery staple")
		Free(s2)
		done <- s
	}()
	s := <-done
	defer Free(s)
	if len(warnings) != 1 {
		t.Fatalf("Warn called %d times, want once: %v", len(warnings), warnings)
	}
	if !strings.Contains(warnings[0].Error(), "RLIMIT_MEMLOCK") {
		t.Errorf("the warning does not name the limit: %v", warnings[0])
	}
	if all, _ := Locked(); all {
		t.Error("Locked reports everything locked after mlock failed")
	}
	f := vmFlags(t, s)
	if strings.Contains(f, " lo ") || !strings.Contains(f, " dd ") {
		t.Errorf("unlocked secret memory: VmFlags%s, want dd and not lo", f)
	}
	Free(s)
	if !bytes.Equal(s, make([]byte, len(s))) {
		t.Fatalf("Free did not wipe unlocked secret memory: %q", s)
	}
}

func ExampleNew() {
	pass := New(5)
	copy(pass, "hello")
	defer Free(pass)
	fmt.Println(len(pass))
	// Output: 5
}
