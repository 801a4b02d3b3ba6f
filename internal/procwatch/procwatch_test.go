package procwatch

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	ppid, comm, ok := parseStat([]byte("42 (a) (b)) S 7 42 42 0 -1 4194304\n"))
	if !ok || ppid != 7 || comm != "a) (b)" {
		t.Errorf("parseStat = %d %q %v, want 7 \"a) (b)\" true", ppid, comm, ok)
	}
	for _, bad := range []string{"", "42 x S 7", "42 (x) S"} {
		if _, _, ok := parseStat([]byte(bad)); ok {
			t.Errorf("parseStat(%q) ok, want not", bad)
		}
	}
}

// TestScanFindsChild starts a child (and a grandchild) under a name with
// ')' and a space in it and requires Scan and Descendants to find both.
func TestScanFindsChild(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	dir := t.TempDir()
	name := "pw) (x"
	if err := os.Symlink(sh, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	// ": " after the sleep so sh forks it; a process group to kill both.
	cmd := exec.Command(filepath.Join(dir, name), "-c", sleep+" 30; :")
	cmd.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		cmd.Wait()
	}()
	child := cmd.Process.Pid
	var got []Proc
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		got = Descendants(Scan(), os.Getpid())
		var sawChild, sawGrandchild bool
		for _, p := range got {
			if p.PID == child {
				sawChild = p.PPID == os.Getpid() && p.Comm == name
			}
			if p.PPID == child && p.Comm == "sleep" {
				sawGrandchild = true
			}
		}
		if sawChild && sawGrandchild {
			for _, p := range got {
				if p.PID == os.Getpid() {
					t.Errorf("Descendants includes the root %d", p.PID)
				}
			}
			// The cheap reader agrees: the child among this test's
			// children (forked from whichever thread), its comm, and its
			// sleep among the child's.
			if kids := Children(os.Getpid()); !slices.Contains(kids, child) {
				t.Errorf("Children(%d) = %v, without the child %d", os.Getpid(), kids, child)
			}
			if c := Comm(child); c != name {
				t.Errorf("Comm(%d) = %q, want %q", child, c, name)
			}
			if gk := Children(child); len(gk) != 1 || Comm(gk[0]) != "sleep" {
				t.Errorf("Children(%d) = %v, want its sleep", child, gk)
			}
			// WaitStopped returns once the stopped child is seen stopped.
			unix.Kill(child, unix.SIGSTOP)
			WaitStopped(child, 5*time.Second)
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); err != nil || stateOf(b) != 'T' {
				t.Errorf("after WaitStopped the child's state is %q (%v), want T", stateOf(b), err)
			}
			return
		}
	}
	t.Fatalf("child %d (ppid %d, comm %q) and its sleep not both among the descendants: %+v", child, os.Getpid(), name, got)
}

func TestReadEvents(t *testing.T) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	dir := t.TempDir()
	wd, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_CLOSE_WRITE)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a-rather-long-file-name"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	var evs []Event
	ReadEvents(fd, func(e Event) { evs = append(evs, e) })
	want := []Event{
		{Wd: int32(wd), Name: "a-rather-long-file-name", Mask: unix.IN_CREATE},
		{Wd: int32(wd), Name: "a-rather-long-file-name", Mask: unix.IN_CLOSE_WRITE},
		{Wd: int32(wd), Name: "d", Mask: unix.IN_CREATE | unix.IN_ISDIR},
	}
	if len(evs) != len(want) {
		t.Fatalf("events %+v, want %+v", evs, want)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, evs[i], want[i])
		}
	}
	n := 0
	ReadEvents(fd, func(Event) { n++ })
	if n != 0 {
		t.Errorf("%d more events after all were read", n)
	}
}

// TestPeakRSS: this process's peak RSS grows to cover 64 MiB it touches;
// a process that does not exist has none.
func TestPeakRSS(t *testing.T) {
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = 1
	}
	if got := PeakRSS(os.Getpid()); got < 64<<20 {
		t.Errorf("PeakRSS = %d after touching 64 MiB", got)
	}
	if got := PeakRSS(1 << 30); got != -1 {
		t.Errorf("PeakRSS of a missing process = %d, want -1", got)
	}
	runtime.KeepAlive(b)
}

// TestAlive: a running child is alive; once it has exited it is not, both
// while it is a zombie (not yet waited for) and after it is reaped.
func TestAlive(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !Alive(pid) {
		t.Fatalf("running sleep %d: Alive = false", pid)
	}
	_ = cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for zombie := false; !zombie; {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		zombie = strings.Contains(string(b), ") Z ")
		if time.Now().After(deadline) {
			t.Fatalf("killed sleep %d did not become a zombie: %s", pid, b)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if Alive(pid) {
		t.Errorf("zombie %d: Alive = true", pid)
	}
	_ = cmd.Wait()
	if Alive(pid) {
		t.Errorf("reaped %d: Alive = true", pid)
	}
}
