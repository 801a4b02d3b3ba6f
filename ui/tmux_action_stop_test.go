package ui

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Ctrl+C while Change passphrase runs (its new keyslot's key derivation
// takes seconds) does not cut the change off halfway: before, the wizard
// quit at once, exited 0 and said nothing, while core.Passwd was abandoned
// in the middle (a keyslot added and the old one not removed, the
// inventory not told). Now the change finishes, the screen says it was not
// stopped halfway and shows the outcome; the new passphrase opens the disk
// and the old one no longer does; q then quits with 0.
func TestTerminalStopDuringPasswd(t *testing.T) {
	const w, h = 80, 24
	tm, img, dir := passwdRunning(t, "wzstop01", false, w, h)
	tm.keys("C-c")
	s := tm.waitFor(5*time.Second, "does not stop this halfway")
	if !strings.Contains(s, "ctrl+c stop (it finishes first)") || strings.Contains(s, "esc back") {
		t.Errorf("the help while the change runs offers keys that do nothing:\n%s", s)
	}
	tm.checkScreen(w, h)
	tm.waitFor(180*time.Second, "changed (keyslot")
	tm.checkScreen(w, h)
	if !opens(t, img, newPass) || opens(t, img, testPass) {
		t.Errorf("after the change: the new passphrase opens %v, the old one %v", opens(t, img, newPass), opens(t, img, testPass))
	}
	if n := keyslots(t, img); n != 2 {
		t.Errorf("%d keyslots after the change, want 2 (passphrase and recovery key)", n)
	}
	tm.keys("q")
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "rc"))
		if err == nil {
			if rc := strings.TrimSpace(string(b)); rc != "0" {
				t.Errorf("the wizard exited %s after the finished change, want 0", rc)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the wizard did not quit on q:\n%s", tm.screen())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A hang-up while Change passphrase runs: the change finishes (as for
// Ctrl+C) and standard error says so in the action's terms, not a
// prepare's ("the step in progress …, the volume is closed").
func TestTerminalHangupDuringPasswd(t *testing.T) {
	tm, img, dir := passwdRunning(t, "wzhup01", true, 80, 24)
	pid, err := strconv.Atoi(strings.TrimSpace(tm.run("display-message", "-p", "-t", tm.target, "#{pane_pid}")))
	if err != nil {
		t.Fatal(err)
	}
	tm.run("kill-server") // the terminal is gone: SIGHUP
	waitGone(t, pid, 3*time.Minute)
	errs, _ := os.ReadFile(filepath.Join(dir, "err.txt"))
	if e := string(errs); !strings.Contains(e, "stopping safely: the passphrase change in progress finishes first") || strings.Contains(e, "the step in progress") {
		t.Errorf("standard error after a hang-up during Change passphrase:\n%s", e)
	}
	if !opens(t, img, newPass) || opens(t, img, testPass) {
		t.Errorf("after the hang-up: the new passphrase opens %v, the old one %v", opens(t, img, newPass), opens(t, img, testPass))
	}
}

// passwdRunning starts the wizard in tmux (w×h) on a prepared image
// labelled label and goes as a user would to Change passphrase (to
// newPass), up to the
// moment the new keyslot is being added (its key derivation takes
// seconds). With exec, luksdock is the pane's own process, the session
// leader a hang-up reaches; without, a shell waits for it and writes its
// exit code to DIR/rc. Its output goes to DIR/out.txt and DIR/err.txt.
func passwdRunning(t *testing.T, label string, exec bool, w, h int) (tm *tmux, img, dir string) {
	t.Helper()
	img, _ = knownImage(t, label)
	dir = filepath.Dir(img)
	run := fmt.Sprintf("%s --image %s --engine userspace --pbkdf argon2id --pbkdf-memory 65536 --iter-time 1500 >%s/out.txt 2>%s/err.txt", testkit.Luksdock(t), img, dir, dir)
	if exec {
		run = "exec " + run
	} else {
		run += fmt.Sprintf("; echo $? >%s/rc; sleep 60", dir)
	}
	env := []string{"NO_COLOR=1", "TERM=xterm-256color"}
	for _, k := range []string{"LUKSDOCK_INVENTORY", "LUKSDOCK_RUN_DIR", "LUKSDOCK_CONFIG_DIR"} {
		env = append(env, k+"="+os.Getenv(k))
	}
	tm = newTmux(t, w, h, env, run)
	tm.waitFor(15*time.Second, "Choose", "disk.img")
	tm.keys("Enter")
	tm.waitFor(15*time.Second, "Known disk: "+label)
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "What to do with this disk", "› Open")
	tm.keys("Down")
	tm.waitFor(5*time.Second, "› Change passphrase")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "› Old secret")
	tm.text(testPass)
	tm.keys("Tab")
	tm.text(newPass)
	tm.keys("Tab")
	tm.text(newPass)
	tm.keys("Enter")
	tm.waitFor(30*time.Second, "Adding the new passphrase")
	return tm, img, dir
}
