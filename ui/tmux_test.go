package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"luksdock/internal/testkit"
)

// Real-terminal tests of the built binary: tmux gives it a terminal, keys
// are sent with send-keys and the screen is read with capture-pane.

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildLuksdock builds the luksdock binary from the repository root (once
// per test run).
func buildLuksdock(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "luksdock-ui-test-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "luksdock")
		cmd := exec.Command("go", "build", "-o", buildBin, ".")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

type tmux struct {
	t      *testing.T
	socket string
	target string
}

func newTmux(t *testing.T, width, height int, env []string, command string) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skipf("SKIP: tmux is not installed (apt-get install tmux); the real-terminal test cannot run")
	}
	tm := &tmux{t: t, socket: fmt.Sprintf("luksdock-test-%d-%d", os.Getpid(), time.Now().UnixNano()), target: "wiz"}
	args := []string{"new-session", "-d", "-s", tm.target, "-x", fmt.Sprint(width), "-y", fmt.Sprint(height)}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	args = append(args, command)
	tm.run(args...)
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// keys sends tmux key names (Enter, Escape, BSpace, C-u…).
func (tm *tmux) keys(k ...string) { tm.run(append([]string{"send-keys", "-t", tm.target}, k...)...) }

// text types literally.
func (tm *tmux) text(s string) { tm.run("send-keys", "-t", tm.target, "-l", s) }

func (tm *tmux) screen() string { return tm.run("capture-pane", "-p", "-t", tm.target) }

func (tm *tmux) screenEscapes() string { return tm.run("capture-pane", "-e", "-p", "-t", tm.target) }

func (tm *tmux) waitFor(timeout time.Duration, want ...string) string {
	tm.t.Helper()
	deadline := time.Now().Add(timeout)
	var s string
	for time.Now().Before(deadline) {
		s = tm.screen()
		ok := true
		for _, w := range want {
			if !strings.Contains(s, w) {
				ok = false
			}
		}
		if ok {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	tm.t.Fatalf("timed out waiting for %q on the terminal:\n%s", want, s)
	return ""
}

var colourSGR = regexp.MustCompile(`\x1b\[[0-9;]*(3[0-7]|38;|4[0-7]|48;|9[0-7])[0-9;]*m`)

func TestTerminalPreparesImageEndToEnd(t *testing.T) {
	needTools(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "sfdisk", "losetup")
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skipf("SKIP: tmux is not installed (apt-get install tmux); the real-terminal test cannot run")
	}
	bin := buildLuksdock(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "offsite.img")
	cmd := fmt.Sprintf("%s --image %s --size 256M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json >%s/out.json 2>%s/err.txt; echo $? >%s/rc; sleep 60",
		bin, img, dir, dir, dir)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	trace := filepath.Join(dir, "tea-trace.log") // bubbletea would log raw input here
	tm := newTmux(t, 100, 30, []string{"NO_COLOR=1", "TERM=xterm-256color", "TMPDIR=" + tmp, "TEA_TRACE=" + trace}, cmd)

	s := tm.waitFor(15*time.Second, "1/8 Choose the disk", "offsite.img", "to be created")
	if !strings.Contains(s, "› offsite.img") {
		t.Errorf("the image is not pre-selected:\n%s", s)
	}
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "2/8", "to be created as a sparse file")
	tm.keys("Enter")
	s = tm.waitFor(5*time.Second, "3/8 Options", "next in your series")
	// A label typed by hand: invalid while too long, valid again after.
	tm.keys("C-u")
	tm.text("offsite-backups-2026")
	tm.waitFor(5*time.Second, "✗", "16")
	tm.keys("C-u")
	tm.text("offsite07")
	tm.waitFor(5*time.Second, "offsite07", "✓ ready")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "4/8 Passphrase")
	pass := "Zebra 42 juggles @ dawn"
	tm.text(pass)
	tm.keys("Enter")
	tm.text("Zebra 4")
	tm.text("3")
	tm.waitFor(5*time.Second, "do not match")
	tm.keys("BSpace")
	tm.text("2 juggles @ dawn")
	s = tm.waitFor(5*time.Second, "entries match", "Strength: ")
	if strings.Contains(s, "juggles") || strings.Contains(s, "Zebra") {
		t.Fatalf("the passphrase is on the screen:\n%s", s)
	}
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "5/8 Plan", "This destroys everything on it")
	// Resize to 80x24: the screen is redrawn to fit.
	tm.run("resize-window", "-t", tm.target, "-x", "80", "-y", "24")
	time.Sleep(300 * time.Millisecond)
	s = tm.waitFor(5*time.Second, "5/8 Plan")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 24 || !strings.Contains(lines[0], "5/8 Plan") || !strings.Contains(strings.Join(lines[len(lines)-3:], "\n"), "enter confirm") {
		t.Errorf("after resizing to 80x24 the screen is not laid out for it (%d lines):\n%s", len(lines), s)
	}
	for _, l := range lines {
		if ansi.StringWidth(l) > 80 {
			t.Errorf("line wider than 80 columns after resize: %q", l)
		}
	}
	if e := tm.screenEscapes(); colourSGR.MatchString(e) {
		t.Errorf("NO_COLOR is set but the screen has colour codes: %q", colourSGR.FindString(e))
	}
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "6/8 Confirm", "offsite.img")
	tm.text("offsite.im")
	tm.keys("Enter")
	time.Sleep(300 * time.Millisecond)
	if s := tm.screen(); !strings.Contains(s, "6/8 Confirm") {
		t.Fatalf("Enter with an incomplete name left the Confirm screen:\n%s", s)
	}
	if _, err := os.Stat(img); err == nil {
		t.Fatal("the image exists before confirmation")
	}
	tm.text("g")
	tm.keys("Enter")
	s = tm.waitFor(120*time.Second, "8/8 Done", "verified backup disk")
	tm.keys("q")
	deadline := time.Now().Add(20 * time.Second)
	var rc []byte
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "rc")); err == nil && len(b) > 0 {
			rc = b
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	errTxt, _ := os.ReadFile(filepath.Join(dir, "err.txt"))
	if strings.TrimSpace(string(rc)) != "0" {
		t.Fatalf("luksdock exited %q; stderr:\n%s", rc, errTxt)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out.json"))
	outLines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res struct {
		Target  string `json:"target"`
		FSLabel string `json:"fs_label"`
		Clean   bool   `json:"fsck_clean"`
		LUKS    struct {
			UUID string `json:"uuid"`
		} `json:"luks"`
	}
	if len(outLines) != 1 || json.Unmarshal([]byte(outLines[0]), &res) != nil {
		t.Fatalf("standard output is not one JSON summary line:\n%s", out)
	}
	if res.Target != img || res.FSLabel != "offsite07" || !res.Clean || res.LUKS.UUID == "" {
		t.Errorf("summary %+v", res)
	}
	if bytes.Contains(out, []byte("juggles")) || bytes.Contains(errTxt, []byte("juggles")) {
		t.Error("the passphrase reached standard output or error")
	}
	if b, err := os.ReadFile(trace); err == nil {
		t.Errorf("TEA_TRACE was honoured: bubbletea logged the raw input (%d bytes) to %s", len(b), trace)
	}
	noLeftovers(t, img, tmp)
	if dump := testkit.Run(t, "", "cryptsetup", "luksDump", loopPart(t, img)); !strings.Contains(dump, res.LUKS.UUID) {
		t.Errorf("luksDump does not show UUID %s", res.LUKS.UUID)
	}
	checkPreparedImage(t, img, pass, "offsite07")
}

func TestWizardRefusesWithoutTerminal(t *testing.T) {
	bin := buildLuksdock(t)
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, &stdout, &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("want exit 2 without a terminal, got %v; stderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "luksdock prepare") {
		t.Errorf("the refusal does not point to luksdock prepare:\n%s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("standard output is not clean: %q", stdout.String())
	}
}
