package ui

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Open on a known disk: a wrong passphrase is refused with a readable
// message and mounts nothing; the right one mounts it (in /proc/mounts) and
// the screen says where. Close then refuses while a process has its working
// directory there, naming it, and closes once it is gone: the mount leaves
// /proc/mounts.
func TestActionOpenThenClose(t *testing.T) {
	img, _ := knownImage(t, "wzopen01")
	h := startAction(t, img, actOpen, 80, 24)
	// the list says what Enter offers on a disk the inventory knows
	h.waitFor("the known-disk hint", 10*time.Second, func(s snapshot) bool {
		return strings.Contains(flat(s.body), "known disk: Enter offers open or close")
	})
	s := h.walkTo(scrActions)
	if !strings.Contains(s.body, "Known disk: wzopen01") {
		t.Errorf("the Actions screen does not name the disk:\n%s", s.body)
	}
	walkers[scrActions](h, s)
	h.onScreen(scrOpen)
	h.typ("not the passphrase")
	h.enter()
	s = h.waitFor("the refusal", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "opens no keyslot") })
	if strings.Contains(s.body, "Mounted at") {
		t.Fatalf("mounted with a wrong passphrase:\n%s", s.view)
	}
	h.typ(testPass)
	h.enter()
	s = h.waitFor("mounted", 60*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "Mounted at") })
	m := mountedAtRe.FindStringSubmatch(s.body)
	if m == nil {
		t.Fatalf("no mountpoint shown:\n%s", s.body)
	}
	mnt := m[1]
	if strings.Contains(flat(s.body), "pulled") {
		t.Errorf("Open of an image file says to close it so it can be pulled (an image has no drive):\n%s", s.body)
	}
	// A failure before Close must not leave the mount, the loop device or
	// the volume holder behind: luksdock close tidies all three.
	t.Cleanup(func() { exec.Command(testkit.Luksdock(t), "close", "--mountpoint", mnt).Run() })
	if l := inProcMounts(mnt); l == "" {
		t.Fatalf("%s is not in /proc/mounts after Open", mnt)
	} else if !strings.Contains(l, " ext4 ") {
		t.Errorf("/proc/mounts: %s is not ext4: %s", mnt, l)
	}

	// Quitting now, the exit summary says the disk is left open and how
	// to close it.
	sum := flat(Summary(s.results, s.lastErr, s.actions...))
	if want := "wzopen01 is open, mounted at " + mnt + " — luksdock close --label wzopen01 (or Close in the wizard) before you undock it."; !strings.Contains(sum, want) || strings.Contains(sum, "No disk was prepared") {
		t.Errorf("the exit summary after Open lacks %q:\n%s", want, sum)
	}

	// Back on the list the disk is open: its actions offer Close.
	h.enter()
	h.onScreen(scrDisks)
	h.act = actClose
	h.walkTo(scrClose)
	busy := exec.Command("sleep", "60")
	busy.Dir = mnt
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Process.Kill(); busy.Wait() })
	h.enter()
	s = h.waitFor("the refusal", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "is in use") })
	if !strings.Contains(s.body, "sleep") {
		t.Errorf("the refusal does not name the process (sleep):\n%s", s.body)
	}
	if inProcMounts(mnt) == "" {
		t.Fatalf("busy, yet %s was unmounted", mnt)
	}
	busy.Process.Kill()
	busy.Wait()
	h.enter()
	h.waitFor("closed", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "unmounted "+mnt) })
	if l := inProcMounts(mnt); l != "" {
		t.Errorf("still in /proc/mounts after Close: %s", l)
	}
	h.enter()
	s = h.onScreen(scrDisks)
	// closed, the summary no longer says it is open
	if sum := flat(Summary(s.results, s.lastErr, s.actions...)); !strings.Contains(sum, "wzopen01 was closed (unmounted and locked).") || strings.Contains(sum, "undocked") || strings.Contains(sum, "is open") {
		t.Errorf("the exit summary after Close:\n%s", sum)
	}
}
