package ui

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Tests reach the screen they are about by walking the flow table: the
// screen on show is read, and its walker (registered in that screen's own
// test file) does what a user who takes what is offered does there. No
// test counts Enter presses, so a new screen is one flow entry, its file,
// its test and its walker; the tests of other screens walk through it.

// walker takes the wizard on from its screen (s is that screen as drawn).
type walker func(h *harness, s snapshot)

// walkers are the screens' walkers, by screen; each screen's test file
// adds its own in an init function.
var walkers = map[screenID]walker{}

// walkTo walks on from the current screen until screen to is shown.
func (h *harness) walkTo(to screenID) snapshot {
	h.t.Helper()
	if flowIndex(to) < 0 {
		h.t.Fatalf("walkTo(%s): not a screen of the flow", to)
	}
	s := h.waitFor("a screen", 10*time.Second, func(s snapshot) bool { return s.screen != "" })
	for range 2 * len(flow) {
		if s.screen == to {
			return h.onScreen(to)
		}
		if flowIndex(s.screen) > flowIndex(to) {
			h.t.Fatalf("walkTo(%s): already past it, on %s:\n%s", to, s.screen, s.view)
		}
		w, ok := walkers[s.screen]
		if !ok {
			h.t.Fatalf("walkTo(%s): screen %s has no walker (add one to its test file)", to, s.screen)
		}
		from := s.screen
		w(h, s)
		s = h.waitFor("the screen after "+string(from), 30*time.Second, func(s snapshot) bool { return s.screen != from && s.screen != "" })
	}
	h.t.Fatalf("walkTo(%s): still on %s", to, s.screen)
	return s
}

// Every screen a run goes through before the disk is written has a
// walker, and so has every action's screen (a walk ends on Progress, Done
// or Failed; an action's walker does the action and returns to the list).
func TestEveryScreenHasAWalker(t *testing.T) {
	for _, f := range flow {
		if f.id == scrProgress || f.id == scrDone || f.id == scrFailed {
			continue
		}
		if walkers[f.id] == nil {
			t.Errorf("screen %s has no walker: tests cannot walk through it", f.id)
		}
	}
}

// The walkers of the screens without a test file of their own.
func init() {
	walkers[scrDetails] = func(h *harness, s snapshot) {
		h.onScreen(scrDetails) // the target read
		h.enter()
	}
	walkers[scrUnhealthy] = func(h *harness, s snapshot) {
		h.typ("yes")
		h.enter()
	}
	walkers[scrPlan] = func(h *harness, s snapshot) { h.enter() }
	walkers[scrConfirm] = func(h *harness, s snapshot) {
		m := confirmWordRe.FindStringSubmatch(flat(s.body))
		if m == nil {
			h.t.Fatalf("the Confirm screen names nothing to type:\n%s", s.body)
		}
		h.typ(m[1])
		h.enter()
	}
}

var confirmWordRe = regexp.MustCompile(`exactly: (\S+)`)

// TestEscBackFromEveryScreen walks the flow table forward one screen at a
// time; from each, Esc returns to the one before, and the walker goes
// forward again. Nothing is written.
func TestEscBackFromEveryScreen(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4")
	img := t.TempDir() + "/e.img"
	h := start(t, imageConfig(img, 128<<20), nil)
	h.waitFor("the image row", 10*time.Second, func(s snapshot) bool { return s.selected() == "e.img" })
	if s := h.snap(); strings.Contains(s.view, "ctrl+c") {
		t.Fatalf("full help shown before ?:\n%s", s.view)
	}
	h.typ("?")
	h.waitFor("the full help", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "ctrl+c") })
	h.typ("?")
	path := []screenID{scrDisks}
	for s := h.snap(); s.screen != scrConfirm; {
		walkers[s.screen](h, s)
		next := h.waitFor("the next screen", 10*time.Second, func(n snapshot) bool { return n.screen != s.screen && n.screen != "" })
		if flowIndex(next.screen) <= flowIndex(s.screen) {
			t.Fatalf("the walker of %s went to %s", s.screen, next.screen)
		}
		h.esc()
		h.onScreen(s.screen)
		if b := h.snap(); s.screen == scrPassphrase && b.dots("Again") == 0 {
			// back where the passphrase was typed, the entries are kept
			t.Fatalf("Esc from %s lost the passphrase", next.screen)
		}
		walkers[s.screen](h, h.snap())
		s = h.onScreen(next.screen)
		path = append(path, s.screen)
	}
	for i := len(path) - 2; i >= 0; i-- {
		h.esc()
		h.onScreen(path[i])
	}
	if !strings.Contains(strings.Join(func() []string {
		var out []string
		for _, p := range path {
			out = append(out, string(p))
		}
		return out
	}(), " "), "options passphrase recovery plan confirm") {
		t.Errorf("the walk missed screens: %v", path)
	}
}

// sizes are the terminal sizes issue 12's new-user trial found its
// defects at; the tests of those defects run at both.
var sizes = []struct{ w, h int }{{80, 24}, {60, 15}}

func eachSize(t *testing.T, f func(t *testing.T, w, h int)) {
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) { f(t, sz.w, sz.h) })
	}
}

// nospace is s without white space (a word longer than the line may be
// broken; no character may be lost).
func nospace(s string) string { return strings.Join(strings.Fields(s), "") }

// flat joins the words of s with single spaces (what wrapping may not
// change).
func flat(s string) string { return strings.Join(strings.Fields(s), " ") }
