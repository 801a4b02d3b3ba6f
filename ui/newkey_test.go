package ui

import (
	"strings"
	"testing"
	"time"
)

// New recovery key on a known disk: the recovery key is refused where the
// passphrase is asked for; groups typed back wrong are refused and nothing
// is written; then the new key (as shown) opens the disk with cryptsetup,
// the old one no longer does, the passphrase still does, and luksDump
// counts the same two keyslots (the old key's removed).
func TestActionNewRecoveryKey(t *testing.T) {
	img, oldKey := knownImage(t, "wzkey01")
	if n := keyslots(t, img); n != 2 {
		t.Fatalf("prepared with %d keyslots, want 2", n)
	}
	h := startAction(t, img, actRecoveryKey, 80, 24)
	h.walkTo(scrNewKey)
	h.typ(oldKey)
	h.enter()
	h.waitFor("the refusal", 10*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "that is a recovery key") })
	h.typ("not the passphrase")
	h.enter()
	h.waitFor("the refusal", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "opens no keyslot") })
	if keyGroupRe.MatchString(h.snap().body) {
		t.Fatal("a key was shown for a wrong passphrase")
	}
	h.typ(testPass)
	h.enter()
	s := h.waitFor("the new key", 30*time.Second, func(s snapshot) bool { return keyGroupRe.MatchString(s.body) })
	g := shownKey(t, s.body)
	h.enter()
	h.waitFor("the groups asked", 5*time.Second, func(s snapshot) bool { return askedRe.MatchString(flat(s.body)) })
	h.typ("cccccccc-cccccccc")
	h.enter()
	h.waitFor("the refusal", 10*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "look at your paper again") })
	if !opens(t, img, oldKey) {
		t.Fatal("the old key stopped opening after a wrong type-back")
	}
	h.esc() // the key again
	s = h.waitFor("the key again", 5*time.Second, func(s snapshot) bool { return keyGroupRe.MatchString(s.body) })
	if g2 := shownKey(t, s.body); g2["1"] != g["1"] || g2["8"] != g["8"] {
		t.Fatal("Esc showed another key")
	}
	h.enter()
	s = h.waitFor("the groups asked", 5*time.Second, func(s snapshot) bool { return askedRe.MatchString(flat(s.body)) })
	m := askedRe.FindStringSubmatch(flat(s.body))
	h.typ(g[m[1]] + "-" + g[m[2]])
	h.enter()
	s = h.waitFor("replaced", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "has a new recovery key") })
	if !strings.Contains(flat(s.body), "(the old recovery key) is gone") {
		t.Errorf("the proof does not say the old keyslot is gone:\n%s", s.body)
	}
	var parts []string
	for _, i := range []string{"1", "2", "3", "4", "5", "6", "7", "8"} {
		parts = append(parts, g[i])
	}
	newKey := strings.Join(parts, "-")
	if !opens(t, img, newKey) {
		t.Error("cryptsetup does not open the disk with the new recovery key")
	}
	if opens(t, img, oldKey) {
		t.Error("cryptsetup still opens the disk with the old recovery key")
	}
	if !opens(t, img, testPass) {
		t.Error("the passphrase no longer opens the disk")
	}
	if n := keyslots(t, img); n != 2 {
		t.Errorf("luksDump lists %d keyslots after the replacement, want 2", n)
	}
	h.enter()
	h.onScreen(scrDisks)
}
