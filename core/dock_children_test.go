package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain runs this package's test binary as a luksdock dock process for
// TestDockChildrenDieWithLuksdock (LUKSDOCK_DOCK_CHILD set): it starts one
// of dock's children and waits for it; the test kills it.
func TestMain(m *testing.M) {
	if which := os.Getenv("LUKSDOCK_DOCK_CHILD"); which != "" {
		shim := os.Getenv("LUKSDOCK_DOCK_SHIM")
		switch which {
		case "e2fsck":
			e2fsckProg = shim
			fsck("/dev/null")
		case "command":
			runCommand(context.Background(), shim, filepath.Dir(shim), &DockResult{}, io.Discard)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestDockChildrenDieWithLuksdock: dock's e2fsck -p and the backup command
// end when the dock process dies (SIGKILL: it has no chance to stop them),
// as every tool luksdock starts does (issue 21 item 3; cryptsetup's,
// mkfs's and verify's e2fsck's are proved in the reliability suite). The
// child is a shim that records its pid and sleeps in its place (exec: the
// pid stays).
func TestDockChildrenDieWithLuksdock(t *testing.T) {
	for _, which := range []string{"e2fsck", "command"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			shim := filepath.Join(dir, which)
			if err := os.WriteFile(shim, []byte("#!/bin/sh\necho $$ > \"$0.pid\"\nexec sleep 120\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "LUKSDOCK_DOCK_CHILD="+which, "LUKSDOCK_DOCK_SHIM="+shim)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			var pid int
			for deadline := time.Now().Add(20 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				b, _ := os.ReadFile(shim + ".pid")
				pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			if pid == 0 {
				t.Fatalf("the dock process never started its %s", which)
			}
			time.Sleep(50 * time.Millisecond) // the shim has exec'd sleep
			cmd.Process.Kill()
			cmd.Wait()
			for deadline := time.Now().Add(3 * time.Second); running(pid) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			}
			if running(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("dock's %s (pid %d) still runs 3 s after the dock process was killed", which, pid)
			}
		})
	}
}

// running says whether pid is a live process (a zombie is not).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
