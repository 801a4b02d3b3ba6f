package luks

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The owner process for the SIGKILL tests: it mounts a volume, prints the
// file's path and the volume server's pid, optionally keeps reading the
// volume on several threads (LUKSDOCK_US_OWNER_READERS), and waits to be
// killed.
func TestUserspaceOwnerProcess(t *testing.T) {
	image := os.Getenv("LUKSDOCK_US_OWNER_IMAGE")
	if image == "" {
		t.Skip("owner process for the SIGKILL tests; runs only when started by them")
	}
	key := make([]byte, 64)
	rand.Read(key)
	v, err := MountUserspace(image, 0, 8<<20, Segment{SectorSize: 4096, Cipher: "aes-xts-plain64"}, key)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	readers, _ := strconv.Atoi(os.Getenv("LUKSDOCK_US_OWNER_READERS"))
	var reads atomic.Int64
	for i := 0; i < readers; i++ {
		go func() {
			f, err := os.Open(v.Path())
			if err != nil {
				fmt.Println("ERROR", err)
				os.Exit(1)
			}
			buf := make([]byte, 1<<20)
			for off := int64(0); ; off = (off + 1<<20) % (8 << 20) {
				if _, err := f.ReadAt(buf, off); err != nil {
					fmt.Println("ERROR", err)
					os.Exit(1)
				}
				reads.Add(1)
			}
		}()
	}
	// Wait until the readers are at work: every one has done reads, not a
	// fixed sleep that may be too short on a busy machine.
	for deadline := time.Now().Add(10 * time.Second); reads.Load() < int64(4*readers); {
		if time.Now().After(deadline) {
			fmt.Println("ERROR readers did only", reads.Load(), "reads in 10 s")
			os.Exit(1)
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Println(v.Path(), v.serverPid())
	time.Sleep(time.Minute)
	os.Exit(1)
}

// startTestProcess runs the test named test of this test binary in a new
// process with env added, kills it at cleanup, and returns it with a
// scanner on its standard output.
func startTestProcess(t *testing.T, test string, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

// usStartOwner starts TestUserspaceOwnerProcess in a new process.
func usStartOwner(t *testing.T, readers int) (cmd *exec.Cmd, path string, serverPid int) {
	t.Helper()
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, 8<<20)
	cmd, out := startTestProcess(t, "TestUserspaceOwnerProcess", "LUKSDOCK_US_OWNER_IMAGE="+image, fmt.Sprintf("LUKSDOCK_US_OWNER_READERS=%d", readers))
	if !out.Scan() {
		t.Fatalf("owner: %v", out.Err())
	}
	line := out.Text()
	if _, err := fmt.Sscan(line, &path, &serverPid); err != nil || !strings.HasPrefix(path, "/") {
		t.Fatalf("owner said %q", line)
	}
	t.Cleanup(func() { syscall.Kill(serverPid, syscall.SIGKILL) })
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("owner's volume not visible: %v", err)
	}
	return cmd, path, serverPid
}

func usMounted(mnt string) bool {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(mi), " "+mnt+" ")
}

// usAlive reports whether any thread of pid still exists and is not a
// zombie. (The leader of a dying multi-threaded process can be a zombie
// while its other threads, which still hold its files, are exiting.)
func usAlive(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X' {
			return true
		}
	}
	return false
}

// usWaitGone waits up to d for the mount and the private directory of path
// to disappear and the server to exit.
func usWaitGone(t *testing.T, path string, serverPid int, d time.Duration) {
	t.Helper()
	mnt := filepath.Dir(path)
	deadline := time.Now().Add(d)
	for (usMounted(mnt) || usAlive(serverPid)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if usMounted(mnt) {
		t.Errorf("mount %s still present %v after the owner died", mnt, d)
	}
	if usAlive(serverPid) {
		t.Errorf("volume server %d still running %v after the owner died", serverPid, d)
	}
	if _, err := os.Stat(filepath.Dir(mnt)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private directory %s not removed after the owner died (stat: %v)", filepath.Dir(mnt), err)
	}
}

// TestUserspaceSIGKILLOwner: when the owning process is SIGKILLed, the
// volume server removes the mount and the private directory and exits.
func TestUserspaceSIGKILLOwner(t *testing.T) {
	usRequire(t)
	cmd, path, spid := usStartOwner(t, 0)
	if !usMounted(filepath.Dir(path)) {
		t.Fatalf("%s not in mountinfo", filepath.Dir(path))
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	usWaitGone(t, path, spid, 5*time.Second)
}

// TestUserspaceSIGKILLOwnerDuringIO: an owner killed while its threads wait
// on requests to the volume dies completely. (When the owner served the
// mount itself, a thread waiting on a request its own dying server threads
// had taken could never be answered, and the process never finished dying.)
// Repeated, because the kill must land while requests are in flight.
func TestUserspaceSIGKILLOwnerDuringIO(t *testing.T) {
	usRequire(t)
	for i := 0; i < 5; i++ {
		cmd, path, spid := usStartOwner(t, 4)
		// I/O must be in flight at the kill: the owner's read counter
		// (rchar) grows between two samples just before it, and a request
		// is pending in the FUSE connection (the server's
		// /sys/fs/fuse/connections/N/waiting) in one of them.
		if err := usWaitIOInFlight(cmd.Process.Pid, path, 5*time.Second); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			t.Fatalf("run %d: the owner, SIGKILLed during I/O on its volume, has not died in 10 s:\n%s", i, st)
		}
		usWaitGone(t, path, spid, 5*time.Second)
	}
}

// usWaitIOInFlight waits until the owner pid is reading the volume at path:
// its rchar grows from one sample to the next and the FUSE connection of
// the mount has a request waiting for the server.
func usWaitIOInFlight(pid int, path string, d time.Duration) error {
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Dir(path), &st); err != nil {
		return err
	}
	// The connection's directory is named by the mount's device number.
	conn := fmt.Sprintf("/sys/fs/fuse/connections/%d/waiting", unix.Minor(st.Dev))
	rchar := func() int64 {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "rchar: "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return -1
	}
	last, waited := rchar(), false
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		if b, err := os.ReadFile(conn); err == nil && strings.TrimSpace(string(b)) != "0" {
			waited = true
		}
		now := rchar()
		if waited && last >= 0 && now > last {
			return nil
		}
		last = now
	}
	return fmt.Errorf("no read of the owner was seen in flight on its volume within %v (%s)", d, conn)
}

// TestUserspaceStaleMountCleanup: with the volume server killed too, a dead
// mount remains; it fails with ENOTCONN (no data reachable) and
// CleanupStaleUserspaceMounts removes it.
//
// Every luksdock run removes dead luksdock mounts, so a test of another
// package running beside this one could remove this one first: the test
// runs in a mount namespace of its own (usPrivateMountNS).
func TestUserspaceStaleMountCleanup(t *testing.T) {
	usRequire(t)
	if !usPrivateMountNS(t, "TestUserspaceStaleMountCleanup") {
		return
	}
	cmd, path, spid := usStartOwner(t, 0)
	mnt := filepath.Dir(path)
	syscall.Kill(spid, syscall.SIGKILL)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for i := 0; i < 100 && usAlive(spid); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if !usMounted(mnt) {
		t.Fatalf("expected a dead mount at %s after killing owner and server", mnt)
	}
	if _, err := os.ReadFile(path); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("reading the dead volume: %v, want ENOTCONN", err)
	}
	removed, err := CleanupStaleUserspaceMounts()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range removed {
		found = found || m == mnt
	}
	if !found || usMounted(mnt) {
		t.Fatalf("CleanupStaleUserspaceMounts removed %v, %s still mounted: %v", removed, mnt, usMounted(mnt))
	}
	if _, err := os.Stat(filepath.Dir(mnt)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("private directory not removed: %v", err)
	}
}

// TestUserspaceServerKilled: if the volume server dies under a live owner,
// the file fails with ENOTCONN, and Close reports it and removes the dead
// mount and the private directory.
func TestUserspaceServerKilled(t *testing.T) {
	usRequire(t)
	if !usPrivateMountNS(t, "TestUserspaceServerKilled") {
		return // ran in a mount namespace of its own (a dead mount for a while)
	}
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, 8<<20)
	v := usMount(t, image, 0, 8<<20, Segment{SectorSize: 512, Cipher: "aes-xts-plain64"}, usKey(t))
	if err := syscall.Kill(v.serverPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-v.exited
	if _, err := os.ReadFile(v.Path()); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("reading the volume of a killed server: %v, want ENOTCONN", err)
	}
	err := v.Close()
	if err == nil || !strings.Contains(err.Error(), "volume server") {
		t.Errorf("Close after the server was killed: %v, want an error about the volume server", err)
	}
	if usMounted(v.mnt) {
		t.Errorf("dead mount %s left after Close", v.mnt)
	}
	if _, err := os.Stat(v.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private directory %s left after Close (stat: %v)", v.dir, err)
	}
}

// TestUserspaceServerProcess: the caller holds no /dev/fuse descriptor (it
// never serves its own mount); the server holds one, and its argv and
// environment carry nothing but its name and an allow-list of variables.
func TestUserspaceServerProcess(t *testing.T) {
	usRequire(t)
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, 8<<20)
	v := usMount(t, image, 0, 8<<20, Segment{SectorSize: 512, Cipher: "aes-xts-plain64"}, usKey(t))
	fuseFDs := func(pid string) int {
		n := 0
		ents, _ := os.ReadDir("/proc/" + pid + "/fd")
		for _, e := range ents {
			if l, _ := os.Readlink("/proc/" + pid + "/fd/" + e.Name()); l == "/dev/fuse" {
				n++
			}
		}
		return n
	}
	if n := fuseFDs("self"); n != 0 {
		t.Errorf("the calling process holds %d /dev/fuse descriptors", n)
	}
	spid := strconv.Itoa(v.serverPid())
	if n := fuseFDs(spid); n != 1 {
		t.Errorf("the volume server holds %d /dev/fuse descriptors, want 1", n)
	}
	if argv, _ := os.ReadFile("/proc/" + spid + "/cmdline"); string(argv) != serverArg0+"\x00" {
		t.Errorf("server argv %q", argv)
	}
	if comm, _ := os.ReadFile("/proc/" + spid + "/comm"); strings.TrimSpace(string(comm)) != serverComm {
		t.Errorf("server comm %q, want %q", comm, serverComm)
	}
	env, _ := os.ReadFile("/proc/" + spid + "/environ")
	for _, kv := range strings.Split(strings.TrimRight(string(env), "\x00"), "\x00") {
		k, _, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "TMPDIR" && k != "GORACE" {
			t.Errorf("server environment has %q", kv)
		}
	}
	// A child of the caller started now (mke2fs, ...) does not inherit the
	// control pipe: it would keep the volume alive after the caller died.
	ctl, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", v.ctl.Fd()))
	if err != nil || !strings.HasPrefix(ctl, "pipe:") {
		t.Fatalf("control pipe: %q %v", ctl, err)
	}
	out, err := exec.Command("sh", "-c", "ls -l /proc/$$/fd").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), ctl) || strings.Contains(string(out), "/dev/fuse") {
		t.Errorf("child inherited the control pipe %s or /dev/fuse:\n%s", ctl, out)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if usAlive(v.serverPid()) {
		t.Errorf("server %s still running after Close", spid)
	}
}

// TestUserspaceRemovesEmptyPrivateDirs: private directories left empty by a
// kill during close are removed once a minute old; a fresh one (a server
// about to mount) and one that holds anything else are kept.
func TestUserspaceRemovesEmptyPrivateDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	old := time.Now().Add(-2 * time.Minute)
	mk := func(name string, withMnt bool, extra string, when time.Time) string {
		d := filepath.Join(tmp, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if withMnt {
			os.Mkdir(filepath.Join(d, "mnt"), 0o700)
			os.Chtimes(filepath.Join(d, "mnt"), when, when)
		}
		if extra != "" {
			os.WriteFile(filepath.Join(d, extra), []byte("x"), 0o600)
		}
		os.Chtimes(d, when, when)
		return d
	}
	gone := []string{mk("luksdock-fuse-1", false, "", old), mk("luksdock-fuse-2", true, "", old)}
	kept := []string{mk("luksdock-fuse-3", true, "", time.Now()), mk("luksdock-fuse-4", true, "other", old), mk("not-luksdock", false, "", old)}
	removeEmptyPrivateDirs(time.Minute)
	for _, d := range gone {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed (stat: %v)", d, err)
		}
	}
	for _, d := range kept {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
		if strings.HasPrefix(filepath.Base(d), "luksdock-fuse-") {
			if _, err := os.Stat(filepath.Join(d, "mnt")); err != nil {
				t.Errorf("%s/mnt removed: %v", d, err)
			}
		}
	}
}

// usPrivateMountNS makes a test that leaves a dead luksdock mount behind for
// a while run in a mount namespace of its own, where no other process's
// clean-up (any luksdock run, any other test binary) can remove it. In the
// test process it re-runs the test in a child under `unshare --mount
// --propagation private`, checks that it ran and passed, and returns false;
// in that child it returns true and the test body runs.
func usPrivateMountNS(t *testing.T, test string) bool {
	t.Helper()
	if os.Getenv("LUKSDOCK_US_PRIVATE_NS") == test {
		return true
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "LUKSDOCK_US_PRIVATE_NS="+test)
	out, err := cmd.CombinedOutput()
	t.Logf("%s in a mount namespace of its own:\n%s", test, out)
	if err != nil {
		t.Fatalf("%s in its own mount namespace: %v", test, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+test+" ") {
		t.Fatalf("%s did not run and pass in its own mount namespace", test)
	}
	return false
}
