package core

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUsers: a process with a file open under the directory (its stdin),
// one with its working directory there, and one with a file mapped from
// there are all named, with how; a process elsewhere is not.
func TestUsers(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "open.txt")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	// A copy of sleep inside dir: running it maps it from there.
	mapped := filepath.Join(dir, "sleepcopy")
	b, _ := os.ReadFile(sleep)
	if err := os.WriteFile(mapped, b, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func(c *exec.Cmd) *exec.Cmd {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	in, _ := os.Open(f)
	defer in.Close()
	byFD := exec.Command(sleep, "30")
	byFD.Stdin = in
	start(byFD)
	byCwd := exec.Command(sleep, "30")
	byCwd.Dir = dir
	start(byCwd)
	byMap := start(exec.Command(mapped, "30"))
	elsewhere := start(exec.Command(sleep, "30"))

	got := map[int]string{}
	for _, p := range Users(dir) {
		got[p.PID] = p.Uses
	}
	want := map[int]string{
		byFD.Process.Pid:  "open file " + f,
		byCwd.Process.Pid: "cwd " + dir,
		byMap.Process.Pid: "mapped file " + mapped,
	}
	for pid, w := range want {
		if got[pid] != w {
			t.Errorf("pid %d: %q, want %q (all: %v)", pid, got[pid], w, got)
		}
	}
	if u, ok := got[elsewhere.Process.Pid]; ok {
		t.Errorf("a process outside %s is named: %s", dir, u)
	}
	e := (&BusyError{Mountpoint: dir, Procs: Users(dir)}).Error()
	if !strings.Contains(e, fmt.Sprintf("pid %d (sleep): cwd %s", byCwd.Process.Pid, dir)) {
		t.Errorf("BusyError: %s", e)
	}
}
