package ui

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// TestTerminalIssue20AtSizes walks the built wizard in a real terminal at
// 80x24 and 60x18 through what issue 20 found on its screens: the PBKDF
// warning in view and PgDn paging Options (8), the screen's words for a
// wrong choice (12), Enter on an empty passphrase (20), a 551-character
// passphrase typed into the field: handled at once and refused (5, 6), the
// recovery key as typed, broken between groups (21), and the Done screen
// with the full help paged to its last line, naming the set (8, 22).
func TestTerminalIssue20AtSizes(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk", "losetup", "tmux")
	bin := testkit.Luksdock(t)
	for _, sz := range sizes20 {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			w, h := sz.w, sz.h
			dir := t.TempDir()
			img := filepath.Join(dir, "i20.img")
			tmp := filepath.Join(dir, "tmp")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			cmd := fmt.Sprintf("%s --image %s --size 256M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >%s/out.txt 2>%s/err.txt; echo $? >%s/rc; sleep 60", bin, img, dir, dir, dir)
			tm := newTmux(t, w, h, []string{"NO_COLOR=1", "TERM=xterm-256color", "TMPDIR=" + tmp, "LUKSDOCK_INVENTORY=" + filepath.Join(dir, "inventory.json")}, cmd)
			tm.waitFor(15*time.Second, "1/9 Choose", "› i20.img")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "2/9 Is this the image file")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "3/9 Options", "✓ ready")
			// 8: the PBKDF field's whole note, with its memory warning
			for range 9 {
				tm.keys("Tab")
			}
			tm.waitFor(5*time.Second, "› PBKDF", "[command line]")
			tm.keys("Right") // cryptsetup's default, to read its note
			s := tm.waitFor(5*time.Second, "[cryptsetup's default]")
			if !strings.Contains(flat(s), "one with less free memory than that cannot unlock the disk at all") {
				t.Errorf("the PBKDF warning is not in view with the field:\n%s", s)
			}
			tm.checkScreen(w, h)
			tm.keys("Left") // back to the test's cheap key derivation
			tm.waitFor(5*time.Second, "[command line]")
			// 8: PgDn pages Options (from the PBKDF field, up: PgUp)
			tm.keys("PPage", "PPage", "PPage", "PPage", "PPage", "PPage", "PPage", "PPage")
			time.Sleep(300 * time.Millisecond)
			if s2 := tm.screen(); strings.Contains(s2, "more above") || !strings.Contains(s2, "  Label ") {
				t.Errorf("PgUp did not page Options up to the label:\n%s", s2)
			}
			tm.keys("NPage")
			time.Sleep(300 * time.Millisecond)
			if s2 := tm.screen(); !strings.Contains(s2, "more above") {
				t.Errorf("PgDn did not page Options down:\n%s", s2)
			}
			// 12: the check alone, in the screen's words
			tm.keys("BTab")
			tm.waitFor(5*time.Second, "› Read it all back")
			tm.keys("Right")
			s = tm.waitFor(5*time.Second, "✗")
			if f := flat(s); !strings.Contains(f, "Read it all back reads back what Overwrite first writes") || strings.Contains(f, "--") {
				t.Errorf("the refusal is not in the screen's words:\n%s", s)
			}
			tm.keys("Left")
			for range 3 {
				tm.keys("BTab")
			}
			tm.waitFor(5*time.Second, "› Set")
			tm.text("offsite")
			tm.waitFor(5*time.Second, "✓ ready")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "4/9 Passphrase")
			// 20: Enter on nothing says so
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "type a passphrase first")
			// 5 and 6: 551 characters typed: handled at once, refused
			long := strings.Repeat("orbit velvet canyon mustard plains ", 16)[:551]
			t0 := time.Now()
			tm.text(long)
			tm.waitFor(20*time.Second, "✗ 39 over")
			t.Logf("551 characters typed and shown in %s", time.Since(t0).Round(time.Millisecond))
			if d := time.Since(t0); d > 10*time.Second {
				t.Errorf("551 characters took %s to be handled", d)
			}
			tm.waitFor(5*time.Second, "too long")
			tm.checkScreen(w, h)
			tm.keys("Enter")
			time.Sleep(200 * time.Millisecond)
			if s = tm.screen(); !strings.Contains(s, "› Passphrase") {
				t.Fatalf("Enter took a passphrase over 512 bytes:\n%s", s)
			}
			tm.keys("C-u")
			pass := "Zebra 42 juggles @ dawn"
			tm.text(pass)
			tm.keys("Enter")
			tm.text(pass)
			tm.waitFor(5*time.Second, "entries match")
			tm.keys("Enter")
			// 21: the key as typed, broken between groups only
			s = tm.waitFor(5*time.Second, "As typed at the unlock prompt:")
			after := s[strings.Index(s, "As typed at the unlock prompt:"):]
			lines := strings.Split(after, "\n")[1:]
			typed := ""
			for _, l := range lines {
				l = strings.TrimRight(l, " ")
				if !typedRe.MatchString(l) {
					if strings.TrimSpace(l) != "" && regexp.MustCompile(`^  [a-z-]+$`).MatchString(l) {
						t.Errorf("a line of the typed key breaks inside a group: %q", l)
					}
					break
				}
				typed += strings.TrimSpace(l)
			}
			if len(typed) != 71 {
				t.Errorf("the typed key's lines make %q (%d characters, want 71):\n%s", typed, len(typed), s)
			}
			tm.checkScreen(w, h)
			tm.typeBackRecovery()
			tm.waitFor(5*time.Second, "6/9 Plan")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "7/9 Confirm")
			tm.text("i20.img")
			tm.keys("Enter")
			tm.waitFor(180*time.Second, "9/9 Done")
			// 8 and 22: the full help open, PgDn reaches the last line
			tm.keys("F1")
			tm.waitFor(5*time.Second, "ctrl+c")
			var all strings.Builder
			for range 12 {
				all.WriteString(tm.screen())
				tm.keys("NPage")
				time.Sleep(100 * time.Millisecond)
			}
			all.WriteString(tm.screen())
			if f := flat(all.String()); !regexp.MustCompile(`mounts it as "backups\d+"\.`).MatchString(f) {
				t.Errorf("the Done screen with the full help does not page to its last line:\n%s", tm.screen())
			}
			if !regexp.MustCompile(`Set\s+offsite`).MatchString(all.String()) {
				t.Errorf("the Done screen does not name the set:\n%s", all.String())
			}
			tm.checkScreen(w, h)
			tm.keys("Enter")
			if rc := waitRC(t, dir); rc != "0" {
				errTxt, _ := os.ReadFile(filepath.Join(dir, "err.txt"))
				t.Fatalf("luksdock exited %s:\n%s", rc, errTxt)
			}
		})
	}
}
