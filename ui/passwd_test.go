package ui

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
)

// Change passphrase on a known disk: a wrong old secret is refused, a new
// passphrase over 512 bytes is refused as on the Passphrase screen, a weak
// one needs the box ticked; then cryptsetup opens the disk with the new
// passphrase and no longer with the old one (the recovery key still opens
// it).
func TestActionPasswd(t *testing.T) {
	img, key := knownImage(t, "wzpass01")
	h := startAction(t, img, actPasswd, 60, 18)
	h.walkTo(scrPasswd)

	// over the limit: refused at once, by name
	h.typ(testPass)
	h.enter()
	h.typ(strings.Repeat("a", 513))
	s := h.waitFor("the limit", 10*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "at most 512 bytes") })
	h.enter()
	if s = h.snap(); strings.Contains(s.body, "Again") && s.dots("Again") > 0 {
		t.Fatalf("went on with a passphrase over the limit:\n%s", s.view)
	}
	h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})

	// weak: needs the box
	h.typ("password1")
	h.enter()
	h.typ("password1")
	h.enter()
	s = h.waitFor("the weak box", 30*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "use this weak passphrase anyway") })
	if !opens(t, img, testPass) || opens(t, img, "password1") {
		t.Fatal("a weak passphrase was set before the box was ticked")
	}
	h.esc()
	h.onScreen(scrActions)
	walkers[scrActions](h, h.snap())
	h.onScreen(scrPasswd)

	// a wrong old secret
	for _, p := range []string{"not the passphrase", newPass, newPass} {
		h.typ(p)
		h.enter()
	}
	h.waitFor("the refusal", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "opens no keyslot") })
	if !opens(t, img, testPass) || opens(t, img, newPass) {
		t.Fatal("the passphrase changed with a wrong old secret")
	}
	h.esc()
	h.onScreen(scrActions)
	walkers[scrActions](h, h.snap())
	h.onScreen(scrPasswd)
	walkers[scrPasswd](h, h.snap())
	h.onScreen(scrDisks)
	if !opens(t, img, newPass) {
		t.Error("cryptsetup does not open the disk with the new passphrase")
	}
	if opens(t, img, testPass) {
		t.Error("cryptsetup still opens the disk with the old passphrase")
	}
	if !opens(t, img, key) {
		t.Error("the recovery key no longer opens the disk")
	}
}
