package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/charmbracelet/x/ansi"

	"luksdock/internal/procwatch"
	"luksdock/internal/testkit"
	"luksdock/inventory"
)

// Real-terminal tests of the built binary: tmux gives it a terminal, keys
// are sent with send-keys and the screen is read with capture-pane.

func TestMain(m *testing.M) {
	code := m.Run()
	testkit.RemoveBuilt()
	os.Exit(code)
}

type tmux struct {
	t      *testing.T
	socket string
	target string
}

func newTmux(t *testing.T, width, height int, env []string, command string) *tmux {
	t.Helper()
	testkit.NeedTools(t, "tmux") // the real terminal
	tm := &tmux{t: t, socket: fmt.Sprintf("luksdock-test-%d-%d", os.Getpid(), time.Now().UnixNano()), target: "wiz"}
	args := []string{"new-session", "-d", "-s", tm.target, "-x", fmt.Sprint(width), "-y", fmt.Sprint(height)}
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "LUKSDOCK_STATE_DIR=") }) {
		// erase positions and the journal of runs: never the host's /var/lib/luksdock
		env = append(env, "LUKSDOCK_STATE_DIR="+t.TempDir())
	}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	args = append(args, command)
	tm.run(args...)
	t.Cleanup(tm.kill)
	return tm
}

// kill ends the tmux server and waits until every process that ran in its
// panes (the shell, luksdock, what luksdock started) has exited: a
// luksdock still stopping after its hang-up would otherwise write into the
// test's temporary directory while the test's cleanup removes it.
func (tm *tmux) kill() {
	var pids []int
	if out, err := exec.Command("tmux", "-L", tm.socket, "list-panes", "-a", "-F", "#{pane_pid}").Output(); err == nil {
		ps := procwatch.Scan()
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				pids = append(pids, pid)
				for _, d := range procwatch.Descendants(ps, pid) {
					pids = append(pids, d.PID)
				}
			}
		}
	}
	_ = exec.Command("tmux", "-L", tm.socket, "kill-server").Run()
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for procwatch.Alive(pid) {
			if time.Now().After(deadline) {
				tm.t.Errorf("process %d (%s) still runs 30 s after its tmux session was killed", pid, procwatch.Comm(pid))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
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

// typeBackRecovery reads the recovery key off the terminal, hides it with
// Enter, types a wrong entry (refused), then the groups asked for.
func (tm *tmux) typeBackRecovery() {
	tm.t.Helper()
	s := tm.waitFor(5*time.Second, "Recovery key: write it down", "8 ")
	g := map[string]string{}
	for _, m := range keyGroupRe.FindAllStringSubmatch(s, -1) {
		g[m[1]] = m[2]
	}
	if len(g) != 8 {
		tm.t.Fatalf("the terminal shows %d groups of the key, want 8:\n%s", len(g), s)
	}
	tm.keys("Enter")
	s = tm.waitFor(5*time.Second, "The key is hidden now")
	m := askedRe.FindStringSubmatch(flat(s))
	if m == nil {
		tm.t.Fatalf("no groups asked for:\n%s", s)
	}
	tm.text("bcde")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "that is not groups")
	tm.text(g[m[1]] + "-" + g[m[2]])
	tm.keys("Enter")
}

var colourSGR = regexp.MustCompile(`\x1b\[[0-9;]*(3[0-7]|38;|4[0-7]|48;|9[0-7])[0-9;]*m`)

func TestTerminalPreparesImageEndToEnd(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "sfdisk", "losetup")
	testkit.NeedTools(t, "tmux") // the real terminal
	bin := testkit.Luksdock(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "offsite.img")
	cmd := fmt.Sprintf("%s --image %s --size 256M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json >%s/out.json 2>%s/err.txt; echo $? >%s/rc; sleep 60",
		bin, img, dir, dir, dir)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	trace := filepath.Join(dir, "tea-trace.log") // bubbletea would log raw input here
	inv := filepath.Join(dir, "inventory.json")
	tm := newTmux(t, 100, 30, []string{"NO_COLOR=1", "TERM=xterm-256color", "TMPDIR=" + tmp, "TEA_TRACE=" + trace, "LUKSDOCK_INVENTORY=" + inv}, cmd)

	s := tm.waitFor(15*time.Second, "1/9 Choose the disk", "offsite.img", "to be created")
	if !strings.Contains(s, "› offsite.img") {
		t.Errorf("the image is not pre-selected:\n%s", s)
	}
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "2/9", "to be created as a sparse file")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "3/9 Options", "next in your series")
	// A label typed by hand: invalid while too long, valid again after.
	tm.keys("C-u")
	tm.text("offsite-backups-2026")
	tm.waitFor(5*time.Second, "✗", "16")
	tm.keys("C-u")
	tm.text("offsite07")
	tm.waitFor(5*time.Second, "offsite07", "✓ ready")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "4/9 Passphrase")
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
	tm.typeBackRecovery()
	tm.waitFor(5*time.Second, "6/9 Plan", "This destroys everything on it")
	// Resize to 80x24: the screen is redrawn to fit.
	tm.run("resize-window", "-t", tm.target, "-x", "80", "-y", "24")
	time.Sleep(300 * time.Millisecond)
	s = tm.waitFor(5*time.Second, "6/9 Plan")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > 24 || !strings.Contains(lines[0], "6/9 Plan") || !strings.Contains(strings.Join(lines[len(lines)-3:], "\n"), "enter confirm") {
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
	tm.waitFor(5*time.Second, "7/9 Confirm", "offsite.img")
	tm.text("offsite.im")
	tm.keys("Enter")
	time.Sleep(300 * time.Millisecond)
	if s := tm.screen(); !strings.Contains(s, "7/9 Confirm") {
		t.Fatalf("Enter with an incomplete name left the Confirm screen:\n%s", s)
	}
	if _, err := os.Stat(img); err == nil {
		t.Fatal("the image exists before confirmation")
	}
	tm.text("g")
	tm.keys("Enter")
	tm.waitFor(120*time.Second, "9/9 Done", "verified backup disk")
	tm.keys("PageDown")
	tm.waitFor(5*time.Second, "Inventory", "recorded in")
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
	// The wizard recorded the disk in the inventory, with its recovery key.
	if f, err := inventory.Load(inv); err != nil {
		t.Errorf("inventory: %v", err)
	} else if r := f.Find(res.LUKS.UUID); r == nil || r.Label != "offsite07" || !r.RecoveryKey {
		t.Errorf("the inventory does not hold the disk with its recovery key: %+v", f.Disks)
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
	bin := testkit.Luksdock(t)
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

// waitRC waits for the shell around luksdock to write its exit code.
func waitRC(t *testing.T, dir string) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(dir, "rc")); err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatal("luksdock did not exit")
	return ""
}

var uuidAbbrev = regexp.MustCompile(`"?\s[0-9a-f]{8}…$`)

// checkScreen fails on a screen wider or taller than the terminal, on a
// line cut with an ellipsis, and on colour codes (NO_COLOR is set).
func (tm *tmux) checkScreen(w, h int) {
	tm.t.Helper()
	s := strings.TrimRight(tm.screen(), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > h {
		tm.t.Errorf("%d lines on a %d-line terminal:\n%s", len(lines), h, s)
	}
	for _, l := range lines {
		if ansi.StringWidth(l) > w {
			tm.t.Errorf("line wider than %d: %q", w, l)
		}
		// (a LUKS UUID shown by its first 8 digits, "a4b7c32f…", is an
		// abbreviation, not a cut: another test's disk may be listed)
		if strings.HasSuffix(strings.TrimRight(l, " "), "…") && !strings.Contains(l, "Dock a disk now…") && !strings.Contains(l, "engine:") && !strings.HasPrefix(l, "luksdock · ") && !uuidAbbrev.MatchString(strings.TrimRight(l, " ")) {
			tm.t.Errorf("line cut: %q", l)
		}
	}
	if e := tm.screenEscapes(); colourSGR.MatchString(e) {
		tm.t.Errorf("NO_COLOR is set but the screen has colour codes: %q", colourSGR.FindString(e))
	}
}

// TestTerminalDefectsAtSizes walks the built wizard in a real terminal at
// 80x24 and 60x15 with NO_COLOR, through the screens issue 12's defects
// were found on: Details of an image (9), Options (6: ? and q are text,
// F1 lists help once, the focused field is on screen), a weak passphrase
// (4), the Plan's commands (1), and the summary on standard output (8).
func TestTerminalDefectsAtSizes(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk", "losetup", "tmux")
	bin := testkit.Luksdock(t)
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			w, h := sz.w, sz.h
			dir := t.TempDir()
			img := filepath.Join(dir, "term.img")
			tmp := filepath.Join(dir, "tmp")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			cmd := fmt.Sprintf("%s --image %s --size 256M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >%s/out.txt 2>%s/err.txt; echo $? >%s/rc; sleep 60",
				bin, img, dir, dir, dir)
			tm := newTmux(t, w, h, []string{"NO_COLOR=1", "TERM=xterm-256color", "TMPDIR=" + tmp, "LUKSDOCK_INVENTORY=" + filepath.Join(dir, "inventory.json")}, cmd)
			tm.waitFor(15*time.Second, "1/9 Choose", "term.img")
			tm.keys("Up", "Up", "Up", "Up", "Up", "Up") // the image is the first row
			tm.waitFor(5*time.Second, "› term.img")
			tm.checkScreen(w, h)
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "2/9 Is this the image file you mean?", "nothing yet")
			tm.checkScreen(w, h)
			tm.keys("Escape")
			tm.waitFor(5*time.Second, "1/9 Choose", "› term.img")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "2/9 Is this the image file")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "3/9 Options", "enter continue", "esc back")
			tm.checkScreen(w, h)
			tm.text("?q")
			tm.waitFor(5*time.Second, "?q▏", "3/9 Options")
			tm.keys("F1")
			s := tm.waitFor(5*time.Second, "ctrl+w delete word")
			if n := strings.Count(s, "more help"); n != 1 {
				t.Errorf("the full help lists help %d times:\n%s", n, s)
			}
			tm.keys("F1", "BSpace", "BSpace")
			for _, name := range []string{"Partition table", "LUKS version", "Header backup", "Recovery key", "Set", "Owner", "Overwrite first", "Read it all back", "PBKDF"} {
				tm.keys("Tab")
				tm.waitFor(5*time.Second, "› "+name)
				tm.checkScreen(w, h)
			}
			// A wrong entry on each text field, then right again.
			tm.keys("BTab", "BTab", "BTab", "BTab", "BTab", "BTab")
			tm.waitFor(5*time.Second, "› Header backup")
			tm.text("/no/such/dir/h.bak")
			tm.waitFor(5*time.Second, "does not exist")
			tm.keys("C-u")
			tm.waitFor(5*time.Second, "✓ ready")
			tm.keys("Tab", "Tab", "Tab", "Tab", "Tab", "Tab", "Tab") // Recovery key, Set, Owner, Overwrite first, Read it all back, PBKDF, then Label
			tm.waitFor(5*time.Second, "› Label")
			tm.keys("C-u")
			tm.text("far-too-long-label-for-ext4")
			tm.waitFor(5*time.Second, "✗")
			tm.keys("C-u")
			tm.text("term01")
			tm.waitFor(5*time.Second, "✓ ready")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "4/9 Passphrase")
			tm.text("password")
			tm.keys("Enter")
			tm.text("passwort")
			tm.waitFor(5*time.Second, "do not match")
			tm.keys("BSpace", "BSpace")
			tm.text("rd")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "› [ ] use this weak passphrase anyway")
			tm.checkScreen(w, h)
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "4/9 Passphrase")
			tm.keys("Space")
			tm.waitFor(5*time.Second, "[x] use this weak")
			tm.keys("Enter")
			tm.typeBackRecovery()
			tm.checkScreen(w, h)
			tm.waitFor(5*time.Second, "6/9 Plan")
			tm.checkScreen(w, h)
			// Every command line but a command's last ends in " \".
			var all strings.Builder
			for range 6 {
				all.WriteString(tm.screen())
				tm.keys("PageDown")
				time.Sleep(100 * time.Millisecond)
			}
			for _, l := range strings.Split(all.String(), "\n") {
				if strings.Contains(l, "$ cryptsetup luksFormat") && !strings.HasSuffix(strings.TrimRight(l, " "), " \\") && ansi.StringWidth(l) >= w-10 {
					t.Errorf("a long command line does not continue: %q", l)
				}
			}
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "7/9 Confirm", "very weak")
			tm.checkScreen(w, h)
			tm.text("term.im")
			tm.keys("Enter")
			time.Sleep(200 * time.Millisecond)
			if _, err := os.Stat(img); err == nil {
				t.Fatal("the image exists before the confirmation")
			}
			tm.text("g")
			tm.keys("Enter")
			tm.waitFor(120*time.Second, "9/9 Done")
			tm.checkScreen(w, h)
			tm.keys("q")
			if rc := waitRC(t, dir); rc != "0" {
				errTxt, _ := os.ReadFile(filepath.Join(dir, "err.txt"))
				t.Fatalf("luksdock exited %s:\n%s", rc, errTxt)
			}
			out, _ := os.ReadFile(filepath.Join(dir, "out.txt"))
			if !strings.Contains(string(out), img+` is a verified backup disk, labelled "term01".`) || strings.Contains(string(out), "{") {
				t.Errorf("standard output is not the summary for people:\n%s", out)
			}
			noLeftovers(t, img, tmp)
		})
	}
}

// TestTerminalStopDuringLuksFormatUnderLoad: in a real terminal, with
// argon2 and two busy loops on both cores, ctrl+c y during luksFormat
// stops before the next step (recovery-key); the wizard says so, exits 130 and says so on stdout.
func TestTerminalStopDuringLuksFormatUnderLoad(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "losetup", "tmux")
	bin := testkit.Luksdock(t)
	testkit.Busy(t, 2)
	dir := t.TempDir()
	img := filepath.Join(dir, "stop.img")
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := fmt.Sprintf("%s --image %s --size 256M --pbkdf argon2id --pbkdf-memory 65536 --iter-time 2000 >%s/out.txt 2>%s/err.txt; echo $? >%s/rc; sleep 60",
		bin, img, dir, dir, dir)
	tm := newTmux(t, 80, 24, []string{"NO_COLOR=1", "TERM=xterm-256color", "TMPDIR=" + tmp, "LUKSDOCK_INVENTORY=" + filepath.Join(dir, "inventory.json")}, cmd)
	tm.runImageUntilFormat("stop.img")
	tm.keys("C-c")
	tm.waitFor(5*time.Second, "Stop? Format LUKS2 runs to its end")
	tm.keys("y")
	s := tm.waitFor(5*time.Second, "Stop asked for during Format LUKS2")
	tm.checkScreen(80, 24)
	if strings.Contains(s, "Started after the stop") {
		t.Errorf("a step started after the stop:\n%s", s)
	}
	s = tm.waitFor(120*time.Second, "Stopped: the preparation did not finish")
	tm.checkScreen(80, 24)
	for _, want := range []string{"Stopped before Add the recovery key", "Not started Add the recovery key (a second keyslot); Open the encrypted volume; Make the ext4 filesystem"} {
		if !strings.Contains(flat(s), want) {
			t.Errorf("the end screen lacks %q:\n%s", want, s)
		}
	}
	tm.keys("q")
	if rc := waitRC(t, dir); rc != "130" {
		t.Errorf("luksdock exited %s, want 130", rc)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "out.txt"))
	if !strings.Contains(string(out), "did not finish") {
		t.Errorf("standard output does not say the run did not finish:\n%s", out)
	}
	noLeftovers(t, img, tmp)
}

// TestHelpDocumentsSummaryAndJSON: --help says what the wizard prints.
func TestHelpDocumentsSummaryAndJSON(t *testing.T) {
	bin := testkit.Luksdock(t)
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("--help: %v\n%s", err, out)
	}
	for _, want := range []string{"prints to standard output a summary", "--json", "one JSON line"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--help lacks %q:\n%s", want, out)
		}
	}
}

// runImageUntilFormat takes the wizard, started on the image file name,
// from the disk list through every screen with the defaults, a passphrase
// typed twice and the recovery key typed back, confirms, and waits until
// Format LUKS2 runs: its own line says running (the screen lists the
// step while the partition step still runs, and a stop or hang-up sent
// then stops the run before Format LUKS2: seen under load).
func (tm *tmux) runImageUntilFormat(name string) {
	tm.waitFor(15*time.Second, "1/9 Choose", name)
	tm.keys("Up", "Up", "Up", "Up", "Up", "Up")
	tm.waitFor(5*time.Second, "› "+name)
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "2/9 Is this the image file")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "3/9 Options", "✓ ready")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "4/9 Passphrase")
	pass := "orbit velvet canyon mustard plains"
	tm.text(pass)
	tm.keys("Enter")
	tm.text(pass)
	tm.keys("Enter")
	tm.typeBackRecovery()
	tm.waitFor(5*time.Second, "6/9 Plan")
	tm.keys("Enter")
	tm.waitFor(5*time.Second, "7/9 Confirm")
	tm.text(name)
	tm.keys("Enter")
	tm.waitFor(60*time.Second, "Format LUKS2", "running")
	formatRunning := regexp.MustCompile(`(?m)Format LUKS2\b.*\brunning\s*$`)
	for end := time.Now().Add(60 * time.Second); !formatRunning.MatchString(tm.screen()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			tm.t.Fatalf("Format LUKS2 is not running after a minute:\n%s", tm.screen())
		}
	}
}
