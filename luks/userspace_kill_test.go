package luks

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The helper process for the SIGKILL tests: it mounts a volume, prints the
// mountpoint and the watchdog's pid, and waits to be killed.
func TestUserspaceHelperProcess(t *testing.T) {
	image := os.Getenv("LUKSDOCK_US_HELPER_IMAGE")
	if image == "" {
		t.Skip("helper process for the SIGKILL tests; runs only when started by them")
	}
	key := make([]byte, 64)
	rand.Read(key)
	v, err := MountUserspace(image, 0, 8<<20, Segment{SectorSize: 4096, Cipher: "aes-xts-plain64"}, key)
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println(v.Path(), v.watchdog.Process.Pid)
	time.Sleep(time.Minute)
	os.Exit(1)
}

func usStartHelper(t *testing.T) (cmd *exec.Cmd, path string, watchdogPid int) {
	t.Helper()
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, 8<<20)
	cmd = exec.Command(os.Args[0], "-test.run=^TestUserspaceHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LUKSDOCK_US_HELPER_IMAGE="+image)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	if _, err := fmt.Sscan(line, &path, &watchdogPid); err != nil || !strings.HasPrefix(path, "/") {
		t.Fatalf("helper said %q", line)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("helper's volume not visible: %v", err)
	}
	return cmd, path, watchdogPid
}

func usMounted(mnt string) bool {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(mi), " "+mnt+" ")
}

// TestUserspaceSIGKILLWatchdog: when the owning process is SIGKILLed, the
// watchdog removes the dead mount and the private directory.
func TestUserspaceSIGKILLWatchdog(t *testing.T) {
	usRequire(t)
	cmd, path, _ := usStartHelper(t)
	mnt := filepath.Dir(path)
	if !usMounted(mnt) {
		t.Fatalf("%s not in mountinfo", mnt)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for usMounted(mnt) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if usMounted(mnt) {
		t.Fatalf("dead mount %s still present 5 s after SIGKILL", mnt)
	}
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Dir(mnt)); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("private directory %s not removed after SIGKILL", filepath.Dir(mnt))
}

// TestUserspaceStaleMountCleanup: with the watchdog killed too, a dead
// mount remains; it fails with ENOTCONN (no data reachable) and
// CleanupStaleUserspaceMounts removes it.
func TestUserspaceStaleMountCleanup(t *testing.T) {
	usRequire(t)
	cmd, path, wpid := usStartHelper(t)
	mnt := filepath.Dir(path)
	syscall.Kill(wpid, syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if !usMounted(mnt) {
		t.Fatalf("expected a dead mount at %s after killing owner and watchdog", mnt)
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

// TestUserspaceNoFuseFDInChildren: children started while a volume is
// mounted (mke2fs, ...) do not inherit /dev/fuse.
func TestUserspaceNoFuseFDInChildren(t *testing.T) {
	usRequire(t)
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, 8<<20)
	v := usMount(t, image, 0, 8<<20, Segment{SectorSize: 512, Cipher: "aes-xts-plain64"}, usKey(t))
	out, err := exec.Command("sh", "-c", "ls -l /proc/$$/fd").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Fatalf("child inherited /dev/fuse:\n%s", out)
	}
	v.Close()
}
