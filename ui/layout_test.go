package ui

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"luksdock/internal/testkit"
)

// reachable pages through the current screen with PgDn and fails the test
// for each line of its body that no page showed (what a screen says must
// be reachable however small the terminal). It pages back up after.
func (h *harness) reachable(what string) {
	h.t.Helper()
	for range 40 {
		h.key(tea.KeyPgUp)
	}
	time.Sleep(30 * time.Millisecond)
	s := h.snap()
	seen := s.view
	prev := s.view
	for range 40 {
		h.key(tea.KeyPgDown)
		time.Sleep(15 * time.Millisecond)
		n := h.snap()
		if n.view == prev {
			break
		}
		seen += "\n" + n.view
		prev = n.view
	}
	for _, l := range strings.Split(s.body, "\n") {
		l = strings.TrimRight(l, " ")
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "|") || strings.ContainsAny(l, "▀▄█") {
			continue // blank, a spinner frame or the QR code (drawn only where it fits)
		}
		for _, part := range strings.Split(ansi.Hardwrap(l, h.w, true), "\n") {
			if !strings.Contains(seen, part) {
				h.t.Errorf("%s (%dx%d): %q is never shown, however far the screen is paged:\n%s", what, h.w, h.h, part, prev)
			}
		}
	}
	for range 40 {
		h.key(tea.KeyPgUp)
	}
}

// Issue 20 item 8: at 80x24 and 60x18, with the help short and full,
// everything each screen says can be brought into view: PgDn pages every
// screen, the Options screen shows the whole note of the focused field
// (the PBKDF warning that a machine with less memory cannot unlock the
// disk), and the Done screen with the full help open pages to its last
// line.
func TestEverythingReachableAtSmallSizes(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk", "losetup")
	eachSize20(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "reach.img")
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, nil)
		f1 := func() { h.tm.Send(tea.KeyPressMsg{Code: tea.KeyF1}) }
		both := func(what string) {
			h.t.Helper()
			h.reachable(what)
			f1()
			h.reachable(what + " with the full help")
			f1()
		}
		for _, sc := range []screenID{scrDisks, scrDetails, scrOptions} {
			h.walkTo(sc)
			both(string(sc))
		}
		h.focusField("PBKDF")
		h.key(tea.KeyRight) // from the command line's (a test's) to cryptsetup's default
		for _, full := range []bool{false, true} {
			if full {
				f1()
			}
			s := h.waitFor("the PBKDF note", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› PBKDF") })
			if v := flat(s.view); !strings.Contains(v, "one with less free memory than that cannot unlock the disk at all") {
				t.Errorf("full help %v: the PBKDF note's warning is not on screen with the field:\n%s", full, s.view)
			}
		}
		f1()
		h.focusField("Label")
		h.walkTo(scrPassphrase)
		h.typ("password1")
		h.enter()
		h.typ("password1")
		h.enter()
		h.waitFor("the weak verdict", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "use this weak passphrase anyway") })
		both("passphrase")
		h.key(tea.KeySpace)
		h.enter()
		h.onScreen(scrRecovery)
		both("recovery")
		h.walkTo(scrPlan)
		both("plan")
		h.walkTo(scrConfirm)
		both("confirm")
		h.typ("reach.img")
		h.enter()
		s := h.waitFor("the end", 120*time.Second, func(s snapshot) bool { return s.screen == scrDone || s.screen == scrFailed })
		if s.screen != scrDone {
			t.Fatalf("run: %v\n%s", s.lastErr, s.body)
		}
		both("done")
	})
}
