package ui

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Found trying the wizard at 60x18: 900 characters typed under Header
// backup are refused with a status quoting the whole path (12 lines); the
// frame put it above the help, so the help's last line (F1, ctrl+c) fell
// off the bottom of the terminal and the body shrank to one line. A status
// that long now keeps its first lines, says how many are left out, and
// its last line (the reason), and the help stays on screen.
func TestTerminalLongStatusKeepsHelp(t *testing.T) {
	testkit.NeedRoot(t, "tmux")
	bin := testkit.Luksdock(t)
	const w, h = 60, 18
	dir := t.TempDir()
	img := filepath.Join(dir, "st.img")
	cmd := fmt.Sprintf("cd %s && %s --image %s --size 256M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >%s/out.txt 2>%s/err.txt; sleep 60", dir, bin, img, dir, dir)
	tm := newTmux(t, w, h, []string{"NO_COLOR=1", "TERM=xterm-256color", "LUKSDOCK_INVENTORY=" + filepath.Join(dir, "inventory.json")}, cmd)
	tm.waitFor(15*time.Second, "1/9 Choose", "› st.img")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "2/9 Is this the image file")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "3/9 Options", "✓ ready")
	tm.keys("Tab", "Tab", "Tab")
	tm.waitFor(5*time.Second, "› Header backup")
	tm.text(strings.Repeat("h", 900))
	// (the 900 characters arrive in pieces: wait for the whole entry's
	// refusal, which is long enough to be shortened)
	s := tm.waitFor(20*time.Second, "file name too long", "more lines of this message]")
	last := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if !strings.Contains(s, "ctrl+c quit") || len(last) > h {
		t.Errorf("the help is not on screen under a long status:\n%s", s)
	}
	if !strings.Contains(s, "› Header backup") {
		t.Errorf("the field is not shown under the long status:\n%s", s)
	}
	tm.checkScreen(w, h)
	if _, err := os.Stat(img); err == nil {
		t.Error("the image was created before the Confirm screen")
	}
}
