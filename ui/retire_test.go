package ui

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Retire on a known disk: a wrong name is refused and nothing is written;
// the right name crypto-erases it, the screen shows core's proof, and
// blkid finds no LUKS on the image any more.
func TestActionRetire(t *testing.T) {
	img, _ := knownImage(t, "wzret01")
	h := startAction(t, img, actRetire, 60, 18)
	s := h.walkTo(scrRetire)
	if !strings.Contains(flat(s.body), "type exactly: disk.img") {
		t.Fatalf("the Retire screen does not say what to type:\n%s", s.body)
	}
	h.typ("disk")
	h.enter()
	h.waitFor("the refusal", 10*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "that is not disk.img") })
	if !opens(t, img, testPass) {
		t.Fatal("a wrong name wrote to the disk")
	}
	h.esc()
	h.onScreen(scrActions)
	walkers[scrActions](h, h.snap())
	s = h.onScreen(scrRetire)
	walkers[scrConfirm](h, s)
	s = h.waitFor("retired", 120*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "is retired") })
	if !strings.Contains(s.body, "Proved") || !strings.Contains(s.body, "blkid") {
		t.Errorf("no proof shown:\n%s", s.body)
	}
	out, _ := exec.Command("blkid", "-p", img).CombinedOutput()
	if strings.Contains(string(out), "crypto_LUKS") {
		t.Errorf("blkid still finds LUKS on the image: %s", out)
	}
	out, _ = exec.Command("blkid", "-p", "-O", "1048576", img).CombinedOutput()
	if strings.Contains(string(out), "crypto_LUKS") {
		t.Errorf("blkid still finds LUKS where partition 1 was: %s", out)
	}
	h.enter()
	h.onScreen(scrDisks)
}
