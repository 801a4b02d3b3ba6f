package ui

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Close on a disk luksdock open (the command) has open: the Actions screen
// offers Close first and says where it is mounted; Close refuses while a
// process has its working directory there, naming it, and changes nothing;
// once it is gone, Close unmounts and locks: the mount leaves /proc/mounts.
func TestActionClose(t *testing.T) {
	img, _ := knownImage(t, "wzclose1")
	mnt := filepath.Join(filepath.Dir(img), "mnt")
	open := exec.Command(testkit.Luksdock(t), "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt, "--engine", "userspace")
	open.Stdin = strings.NewReader(testPass + "\n")
	if out, err := open.CombinedOutput(); err != nil {
		t.Fatalf("luksdock open: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(testkit.Luksdock(t), "close", "--mountpoint", mnt).Run() })
	if inProcMounts(mnt) == "" {
		t.Fatalf("luksdock open did not mount %s", mnt)
	}
	h := startAction(t, img, actClose, 60, 18)
	s := h.walkTo(scrActions)
	if !strings.Contains(flat(s.body), "Open now: mounted at "+mnt) || !strings.Contains(s.body, "› Close") {
		t.Errorf("the Actions screen does not offer Close first for the open disk:\n%s", s.body)
	}
	if strings.Contains(s.body, "Retire") {
		t.Errorf("Retire is offered for an open disk:\n%s", s.body)
	}
	walkers[scrActions](h, s)
	h.onScreen(scrClose)
	busy := exec.Command("sleep", "60")
	busy.Dir = mnt
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Process.Kill(); busy.Wait() })
	h.enter()
	s = h.waitFor("the refusal", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "is in use") })
	if !strings.Contains(flat(s.body), "(sleep): cwd") {
		t.Errorf("the refusal does not name the process (sleep):\n%s", s.body)
	}
	if inProcMounts(mnt) == "" {
		t.Fatalf("busy, yet %s was unmounted", mnt)
	}
	h.esc() // Esc goes back; nothing changes
	h.onScreen(scrActions)
	walkers[scrActions](h, h.snap())
	h.onScreen(scrClose)
	busy.Process.Kill()
	busy.Wait()
	h.enter()
	h.waitFor("closed", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "unmounted "+mnt+" and locked") })
	if l := inProcMounts(mnt); l != "" {
		t.Errorf("still in /proc/mounts after Close: %s", l)
	}
	h.enter()
	h.onScreen(scrDisks)
}
