package ui

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"luksdock/internal/procwatch"
	"luksdock/internal/testkit"
)

// waitGone waits until process pid (luksdock, hung up) has ended, and
// fails the test when it still runs after d.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for procwatch.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if procwatch.Alive(pid) {
		t.Fatalf("luksdock (pid %d) still runs %s after the hang-up", pid, d)
	}
}

// TestTerminalHangupDuringLuksFormat (issue 20, item 14): the wizard runs
// in a tmux pane as its only process (the pane's session leader, as on an
// SSH login) and the pane is killed while Format LUKS2 runs: tmux closes
// the terminal, the kernel sends SIGHUP and the terminal is gone for good.
// The wizard must stop as for Ctrl+C — the step finishes, the volume is
// closed, the disk released — leave partition 1 with the LUKS header
// luksFormat wrote (stock cryptsetup reads it), nothing mounted or
// attached, print its summary to standard output (a file here, still
// there), and record how the run ended in the journal of its state
// directory, since nobody saw the screen.
func TestTerminalHangupDuringLuksFormat(t *testing.T) {
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "losetup", "tmux")
	bin := testkit.Luksdock(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "hup.img")
	tmp, state := filepath.Join(dir, "tmp"), filepath.Join(dir, "state")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	// exec: luksdock is the pane's process, the session leader the hang-up reaches
	cmd := fmt.Sprintf("exec %s --image %s --size 128M --pbkdf argon2id --pbkdf-memory 65536 --pbkdf-force-iterations 12 --pbkdf-parallel 1 >%s/out.txt 2>%s/err.txt",
		bin, img, dir, dir)
	tm := newTmux(t, 100, 30, []string{"NO_COLOR=1", "TERM=xterm-256color", "TMPDIR=" + tmp, "LUKSDOCK_STATE_DIR=" + state,
		"LUKSDOCK_INVENTORY=" + filepath.Join(dir, "inventory.json")}, cmd)
	pid, err := strconv.Atoi(strings.TrimSpace(tm.run("display-message", "-p", "-t", tm.target, "#{pane_pid}")))
	if err != nil {
		t.Fatal(err)
	}
	tm.runImageUntilFormat("hup.img")
	tm.run("kill-server") // the terminal is gone: SIGHUP
	waitGone(t, pid, 2*time.Minute)
	out, _ := os.ReadFile(filepath.Join(dir, "out.txt"))
	errs, _ := os.ReadFile(filepath.Join(dir, "err.txt"))
	t.Logf("stdout:\n%s\nstderr:\n%s", out, errs)
	if !strings.Contains(string(out), "did not finish") {
		t.Errorf("standard output has no summary of the stopped run")
	}
	journal, err := os.ReadFile(filepath.Join(state, "journal.log"))
	if err != nil {
		t.Fatalf("no journal: %v", err)
	}
	t.Logf("journal: %s", journal)
	if j := string(journal); !strings.Contains(j, "wizard (its last run): did not finish (interrupted in step ") || !strings.Contains(j, "[stopped by hangup") {
		t.Errorf("the journal does not say how the run ended")
	}
	// partition 1 (from 1 MiB) holds the LUKS header luksFormat wrote
	hdr := filepath.Join(dir, "hdr")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hdr, b[1<<20:], 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cryptsetup", "isLuks", "-v", hdr).CombinedOutput(); err != nil {
		t.Errorf("partition 1 holds no LUKS header (cryptsetup isLuks: %v %s)", err, out)
	}
	noLeftovers(t, img, tmp)
}
