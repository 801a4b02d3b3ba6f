package ui

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Enroll this host on a known disk: a wrong passphrase is refused; then a
// third keyslot opens with the host's key file, with cryptsetup.
func TestActionEnroll(t *testing.T) {
	img, _ := knownImage(t, "wzhost01")
	if err := os.MkdirAll(os.Getenv("LUKSDOCK_CONFIG_DIR"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(os.Getenv("LUKSDOCK_CONFIG_DIR"), "machine-id"), []byte("0123456789abcdef0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := startAction(t, img, actEnroll, 80, 24)
	h.walkTo(scrEnroll)
	h.typ("not the passphrase")
	h.enter()
	h.waitFor("the refusal", 60*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "opens no keyslot") })
	walkers[scrEnroll](h, h.snap())
	h.onScreen(scrDisks)
	if n := keyslots(t, img); n != 3 {
		t.Errorf("luksDump lists %d keyslots after enrolling, want 3", n)
	}
	keys, _ := filepath.Glob(filepath.Join(os.Getenv("LUKSDOCK_CONFIG_DIR"), "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("host key files: %v, want one", keys)
	}
	if !opensWith(t, img, "", "--key-file", keys[0]) {
		t.Error("cryptsetup does not open the disk with this host's key file")
	}
	if !opens(t, img, testPass) {
		t.Error("the passphrase no longer opens the disk")
	}
}
