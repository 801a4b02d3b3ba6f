package ui

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"luksdock/disk"
	"luksdock/internal/testkit"
	"luksdock/luks"
	"luksdock/pipeline"
	"luksdock/recovery"
)

// Tests of the defects issue 12 found in the new-user trial, each at
// 80x24 and 60x15, asserting on the screens as drawn and on messages.

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

// commandsIn reassembles the commands drawn on a screen: "$ " starts one,
// a line ending in " \" continues it (as a shell would read it); a
// comment continues on indented lines that start with "# ".
func commandsIn(body string) []string {
	var out []string
	cur, open := "", false
	lines := strings.Split(body, "\n")
	for i, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case !open && strings.HasPrefix(t, "$ "):
			cur, open = strings.TrimPrefix(t, "$ "), true
		case open:
			cur += " " + t
		default:
			continue
		}
		if strings.HasPrefix(cur, "#") && i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "# ") && strings.HasPrefix(lines[i+1], " ") {
			lines[i+1] = strings.TrimPrefix(strings.TrimSpace(lines[i+1]), "# ")
			cur += " \\"
		}
		if strings.HasSuffix(cur, " \\") {
			cur = strings.TrimSuffix(cur, " \\")
			continue
		}
		out = append(out, cur)
		open = false
	}
	return out
}

// Defect 1: a command is broken only between words, with " \" at the end
// of every line but its last, so the lines pasted into a shell run it.
func TestShellLinesRunAsOneCommand(t *testing.T) {
	words := []string{"--cipher", "aes-xts-plain64", "--key-size", "512", "--label", "'two words'", "0b8e4c8a-1d55-4f6f-a88a-df9b7cc52333", strings.Repeat("x", 70)}
	cmd := "printf '%s\\n' " + strings.Join(words, " ")
	for _, w := range []int{40, 60, 80} {
		lines := shellLines("  ", cmd, w)
		if len(lines) < 2 {
			t.Fatalf("width %d: not wrapped: %q", w, lines)
		}
		for i, l := range lines {
			if i < len(lines)-1 && !strings.HasSuffix(l, " \\") {
				t.Errorf("width %d: line %d does not continue: %q", w, i, l)
			}
			if len(l) > w && len(strings.Fields(strings.TrimSuffix(l, " \\"))) > 1 {
				t.Errorf("width %d: line %d is %d wide: %q", w, i, len(l), l)
			}
		}
		script := strings.TrimPrefix(strings.Join(lines, "\n"), "  $ ")
		out, err := exec.Command("sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("sh: %v\n%s", err, script)
		}
		want := strings.Join(append([]string{}, "--cipher", "aes-xts-plain64", "--key-size", "512", "--label", "two words", "0b8e4c8a-1d55-4f6f-a88a-df9b7cc52333", strings.Repeat("x", 70)), "\n") + "\n"
		if string(out) != want {
			t.Errorf("width %d: sh read the wrapped command as\n%s\nwant\n%s", w, out, want)
		}
	}
	// A comment's continuation is a comment too: sh runs nothing of it.
	lines := shellLines("", "# cryptsetup open $PART name (userspace engine: luksdock decrypts in-process and serves it) touch /tmp/no", 40)
	script := strings.TrimPrefix(strings.Join(lines, "\n"), "$ ")
	if out, err := exec.Command("sh", "-c", script+"\necho end").CombinedOutput(); err != nil || string(out) != "end\n" {
		t.Errorf("the wrapped comment is not a comment to sh: %v %q\n%s", err, out, script)
	}
}

// Defect 1 on the Plan screen: every step's command, reassembled from the
// screen, is the pipeline's command exactly.
func TestPlanCommandsCopyable(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4")
	eachSize(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "copy.img")
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, nil)
		h.toPlan(testPass)
		s := h.snap()
		tg, err := pipeline.ImageTarget(img, 128<<20)
		if err != nil {
			t.Fatal(err)
		}
		rk, err := recovery.Generate() // the commands do not show the key
		if err != nil {
			t.Fatal(err)
		}
		p, err := pipeline.NewPlan(tg, pipeline.Options{Label: "backups01", PBKDF: testPBKDF, RecoveryKey: rk})
		if err != nil {
			t.Fatal(err)
		}
		// a step's command of several lines is drawn as several commands
		var wants []string
		for _, st := range p.Steps {
			wants = append(wants, strings.Split(st.Command, "\n")...)
		}
		got := commandsIn(s.body)
		if len(got) != len(wants) {
			t.Fatalf("%d commands on the screen, %d in the steps:\n%s", len(got), len(wants), s.body)
		}
		for i, want := range wants {
			orig := want
			if strings.Contains(want, "#") { // a comment: its spacing does not matter
				want, got[i] = flat(want), flat(got[i])
			}
			if got[i] != want {
				t.Errorf("command %d drawn as\n%q\nwant\n%q", i+1, got[i], orig)
			}
		}
		for _, l := range strings.Split(s.view, "\n") {
			if strings.HasSuffix(l, "…") {
				t.Errorf("a line is cut: %q", l)
			}
		}
	})
}

// Defect 4: a weak passphrase shows zxcvbn's feedback, needs the box
// ticked, and the verdict is repeated on Plan and Confirm; a strong one
// goes straight on.
func TestWeakPassphraseNeedsAcknowledgement(t *testing.T) {
	eachSize(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "weak.img")
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, nil)
		h.toOptions()
		h.enter()
		h.passphrase("password")
		s := h.waitFor("the weak verdict", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(s.body, "[ ] use this weak passphrase anyway")
		})
		for _, want := range []string{"very weak (zxcvbn score 0/4)", "most common passwords", "tick the box"} {
			if !strings.Contains(flat(s.body), want) {
				t.Errorf("passphrase screen lacks %q:\n%s", want, s.body)
			}
		}
		if !strings.Contains(s.view, "› [ ] use this weak") {
			t.Errorf("the acknowledgement is not focused and visible:\n%s", s.view)
		}
		h.enter() // not ticked: stays
		time.Sleep(50 * time.Millisecond)
		if s := h.snap(); s.screen != scrPassphrase {
			t.Fatalf("Enter without the acknowledgement went to %s", s.screen)
		}
		h.key(tea.KeySpace)
		h.waitFor("the ticked box", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "[x] use this weak") })
		h.enter()
		h.typeBackRecovery()
		s = h.onScreen(scrPlan)
		if !strings.Contains(flat(s.body), "Passphrase: very weak") {
			t.Errorf("the plan does not repeat the verdict:\n%s", s.body)
		}
		h.enter()
		s = h.onScreen(scrConfirm)
		if !strings.Contains(flat(s.view), "Passphrase: very weak (zxcvbn score 0/4)") || !strings.Contains(flat(s.view), "you chose to use it anyway") {
			t.Errorf("Confirm does not repeat the verdict:\n%s", s.view)
		}
		// Back to the passphrase: a strong one needs no acknowledgement.
		h.esc()
		h.onScreen(scrPlan)
		h.esc()
		h.onScreen(scrRecovery)
		h.esc()
		h.onScreen(scrPassphrase)
		h.esc()
		h.onScreen(scrOptions)
		h.enter()
		h.onScreen(scrPassphrase)
		h.typ("orbit velvet canyon mustard plains")
		h.enter()
		h.typ("orbit velvet canyon mustard plains")
		s = h.waitFor("the strong verdict", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "strong (zxcvbn score 4/4)") })
		if strings.Contains(s.body, "use this weak") {
			t.Errorf("a strong passphrase asks for an acknowledgement:\n%s", s.body)
		}
		h.enter()
		h.typeBackRecovery()
		h.onScreen(scrPlan)
	})
}

// Defect 4: the keyboard warning names this machine's layout and only the
// characters typed on other keys there than on a US boot prompt.
func TestKeyboardWarningNamesLayoutAndCharacters(t *testing.T) {
	eachSize(t, func(t *testing.T, w, hgt int) {
		for _, c := range []struct {
			layouts []string
			want    string // "" no warning
		}{
			{nil, ""},
			{[]string{"de"}, "German (de); boot prompts use the US keymap. These characters of the passphrase are on other keys there: # - Z y"},
			{[]string{"fr"}, "French AZERTY (fr); boot prompts use the US keymap. These characters of the passphrase are on other keys there: # - 1 Z a"},
		} {
			img := filepath.Join(t.TempDir(), "kb.img")
			cfg := imageConfig(img, 128<<20)
			layouts := c.layouts
			cfg.Keyboard = func() []string { return layouts }
			h := startSized(t, cfg, w, hgt, nil)
			h.toOptions()
			h.enter()
			h.onScreen(scrPassphrase)
			h.typ("Zebra-yak#1 velvet")
			s := h.waitFor("the verdict", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "Strength:") })
			body := flat(s.body)
			switch {
			case c.want == "" && strings.Contains(body, "Keyboard"):
				t.Errorf("US machine: a keyboard warning:\n%s", s.body)
			case c.want != "" && !strings.Contains(body, c.want):
				t.Errorf("layouts %v: want %q in\n%s", c.layouts, c.want, s.body)
			}
			for _, other := range []string{"QWERTZ", "German", "AZERTY"} {
				if strings.Contains(body, other) && !strings.Contains(c.want, other) {
					t.Errorf("layouts %v: names a layout this machine does not use (%s):\n%s", c.layouts, other, s.body)
				}
			}
		}
	})
}

func TestNormLayout(t *testing.T) {
	for in, want := range map[string]string{
		"de": "de", "de-latin1-nodeadkeys": "de", "uk": "gb", "us": "", "": "", "fr(bepo)": "fr",
		"sv-latin1": "se", "dvorak": "dvorak", "us(dvorak)": "dvorak", "de_CH-latin1": "ch", "n/a": "",
	} {
		if got := normLayout(in); got != want {
			t.Errorf("normLayout(%q) = %q, want %q", in, got, want)
		}
	}
}

// Defect 5: a refused disk's whole reason is in the list, and Enter on it
// shows the reason and the fix.
func TestRefusedDiskReasonAndFix(t *testing.T) {
	eachSize(t, func(t *testing.T, w, hgt int) {
		mnt := "/media/someone/a-rather-long-mount-point-name/with/several/levels"
		fd := &fakeDiscovery{}
		fd.set(disk.Disk{Name: "sdq", Path: "/dev/sdq", MajMin: "65:0", Size: 1 << 40, LogicalSector: 512, PhysicalSector: 512,
			Transport: "usb-storage", Vendor: "WD", Model: "Elements",
			Partitions: []disk.Partition{{Name: "sdq1", Path: "/dev/sdq1", Number: 1, Size: 1 << 39, Mounts: []string{mnt}}}})
		h := startSized(t, Config{Scan: fd.scan}, w, hgt, nil)
		s := h.waitFor("the refused disk", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "refused:") })
		if !strings.Contains(nospace(s.view), nospace("refused: sdq1: mounted at "+mnt)) {
			t.Errorf("the reason is cut:\n%s", s.view)
		}
		for _, l := range strings.Split(s.view, "\n") {
			if strings.HasSuffix(l, "…") && !strings.Contains(l, "Dock a disk now…") {
				t.Errorf("a line is cut with an ellipsis: %q", l)
			}
		}
		h.enter()
		s = h.waitFor("the reason screen", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "Why sdq cannot be prepared") })
		for _, want := range []string{"✗ sdq1: mounted at " + mnt, "fix: unmount it (umount " + mnt + ", or eject it in the file manager)"} {
			if !strings.Contains(nospace(s.body), nospace(want)) {
				t.Errorf("reason screen lacks %q:\n%s", want, s.body)
			}
		}
		if strings.Contains(s.view, "enter choose") {
			t.Errorf("the help offers to choose a refused disk:\n%s", s.view)
		}
		h.enter() // does nothing
		h.esc()
		h.onScreen(scrDisks)
	})
}

// Defect 6: the Options footer is whole, the full help lists each key
// once, a focused field is always on screen, and what is typed in a text
// field is text (? and q included).
func TestOptionsFooterHelpAndScrolling(t *testing.T) {
	eachSize(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "opt.img")
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, nil)
		h.toOptions()
		s := h.snap()
		for _, want := range []string{"enter continue", "esc back", "tab/↓ next field"} {
			if !strings.Contains(s.view, want) {
				t.Errorf("footer lacks %q:\n%s", want, s.view)
			}
		}
		// ? and q in the label are text.
		h.typ("?q")
		s = h.waitFor("?q in the label", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.field("Label"), "backups01?q") })
		if s.screen != scrOptions || strings.Contains(s.view, "ctrl+w delete word") {
			t.Errorf("? or q was taken as a command:\n%s", s.view)
		}
		// F1: the full help, each key once.
		h.tm.Send(tea.KeyPressMsg{Code: tea.KeyF1})
		s = h.waitFor("the full help", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "ctrl+w delete word") })
		if n := strings.Count(s.view, "more help"); n != 1 {
			t.Errorf("the full help lists help %d times:\n%s", n, s.view)
		}
		if strings.Contains(s.view, "?/F1") {
			t.Errorf("the help offers ? while ? types into the label:\n%s", s.view)
		}
		h.tm.Send(tea.KeyPressMsg{Code: tea.KeyF1})
		h.key(tea.KeyBackspace)
		h.key(tea.KeyBackspace)
		// Every field, in turn, is on screen when it has the focus.
		for _, name := range []string{"Partition table", "LUKS version", "Header backup", "Recovery key", "Set", "Owner", "Overwrite first", "Read it all back", "PBKDF", "Label"} {
			h.key(tea.KeyTab)
			s = h.waitFor(name+" focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› "+name) })
		}
		// → on the PBKDF field (shift+tab from Label) changes what is shown.
		h.tm.Send(tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift})
		s = h.waitFor("PBKDF focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› PBKDF") })
		before := s.view
		h.key(tea.KeyRight)
		s = h.waitFor("PBKDF changed", 5*time.Second, func(s snapshot) bool { return s.view != before && strings.Contains(s.view, "› PBKDF") })
		if !strings.Contains(s.view, "[cryptsetup's default]") {
			t.Errorf("the changed PBKDF choice is not on screen:\n%s", s.view)
		}
	})
}

// Defect 3 (UI side): the header-backup path goes through the pluggable
// check (pipeline.CheckHeaderBackupPath after the merge): its refusal is
// shown on Options, and the path it returns is what the plan uses.
func TestHeaderBackupCheckPlugged(t *testing.T) {
	img := filepath.Join(t.TempDir(), "hb.img")
	cfg := imageConfig(img, 128<<20)
	var mu sync.Mutex
	var asked [][2]string
	dir := t.TempDir()
	cfg.CheckHeaderBackup = func(target, backup string) (string, error) {
		mu.Lock()
		asked = append(asked, [2]string{target, backup})
		mu.Unlock()
		if strings.Contains(backup, "on-target") {
			return "", errors.New("the header backup would be written onto the target itself")
		}
		return filepath.Join(dir, backup), nil
	}
	h := start(t, cfg, nil)
	h.toOptions()
	for range 3 {
		h.key(tea.KeyTab)
	}
	h.typ("on-target.hdr")
	h.enter()
	s := h.waitFor("the refusal", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "onto the target itself") })
	if s.screen != scrOptions {
		t.Fatalf("a refused header path left Options: %s", s.screen)
	}
	h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})
	h.typ("ok.hdr")
	h.waitFor("ready", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "✓ ready") })
	s = h.optionsToPlan(testPass)
	if !strings.Contains(flat(s.body), "Header backup: "+filepath.Join(dir, "ok.hdr")) {
		t.Errorf("the plan does not use the checked path:\n%s", s.body)
	}
	mu.Lock()
	defer mu.Unlock()
	// The check runs as the path is typed and again on Enter, always
	// against the chosen target; the last call is the path the plan uses.
	if len(asked) < 2 || asked[len(asked)-1][1] != "ok.hdr" {
		t.Errorf("check called with %q", asked)
	}
	for _, a := range asked {
		if a[0] != img {
			t.Errorf("check called for target %q, want %q", a[0], img)
		}
	}
}

// Defect 9: an image to be created says so in the list and in Details
// alike, Details asks about the image file, and the plan's "will be
// created as a sparse file" is gone once the run has made it.
func TestImageWording(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "losetup")
	eachSize(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "new.img")
		var mu sync.Mutex
		var atPreflight, atWipe string
		hook := func(p *probe, msg tea.Msg) {
			if e, ok := msg.(runEventMsg); ok && e.Kind == pipeline.EventStart {
				mu.Lock()
				defer mu.Unlock()
				switch e.Step {
				case pipeline.StepPreflight:
					b, _ := p.m.screens[p.m.cur].View()
					atPreflight = flat(ansi.Strip(b))
				case pipeline.StepWipe:
					b, _ := p.m.screens[p.m.cur].View()
					atWipe = flat(ansi.Strip(b))
				}
			}
		}
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, hook)
		s := h.waitFor("the list", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "new.img") })
		if !strings.Contains(flat(s.view), "to be created") {
			t.Errorf("the list does not say the image is to be created:\n%s", s.view)
		}
		h.enter()
		s = h.onScreen(scrDetails)
		if !strings.Contains(s.view, "Is this the image file you mean?") || strings.Contains(s.view, "disk you just docked") {
			t.Errorf("Details title for an image:\n%s", s.view)
		}
		if !strings.Contains(flat(s.body), "Holds nothing yet: the file is to be created") || strings.Contains(s.body, "empty") {
			t.Errorf("Details do not agree with the list:\n%s", s.body)
		}
		h.enter()
		h.onScreen(scrOptions)
		h.optionsToPlan(testPass)
		h.enter()
		h.onScreen(scrConfirm)
		h.typ("new.img")
		h.enter()
		s = h.waitFor("the end", 60*time.Second, func(s snapshot) bool { return s.screen == scrDone || s.screen == scrFailed })
		if s.screen != scrDone {
			t.Fatalf("run failed:\n%s", s.body)
		}
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(atPreflight, "will be created as a sparse file") {
			t.Errorf("before the run made it, the warning was not shown:\n%s", atPreflight)
		}
		if strings.Contains(atWipe, "sparse file") {
			t.Errorf("after the image was created, the warning is still shown:\n%s", atWipe)
		}
	})
}

// waitForTool waits until a process whose executable is the real tool
// (/proc/PID/exe, not a shell of that name) runs with arg in its command
// line.
func waitForTool(tool, arg string, timeout time.Duration) bool {
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		dirs, _ := os.ReadDir("/proc")
		for _, d := range dirs {
			exe, err := os.Readlink("/proc/" + d.Name() + "/exe")
			if err != nil || filepath.Base(exe) != tool {
				continue
			}
			if cl, err := os.ReadFile("/proc/" + d.Name() + "/cmdline"); err == nil && bytes.Contains(cl, []byte(arg)) {
				return true
			}
		}
	}
	return false
}

// Defect 7: a stop asked for while luksFormat runs (argon2 and two busy
// loops keep both cores busy) stops at the next step boundary: no later
// step starts, the screen says so, and the run ends interrupted.
func TestStopDuringLuksFormatUnderLoad(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "losetup")
	eachSize(t, func(t *testing.T, w, hgt int) {
		tmp := privateTmp(t)
		testkit.Busy(t, 2)
		img := filepath.Join(t.TempDir(), "stop.img")
		cfg := imageConfig(img, 128<<20)
		cfg.PBKDF = luks.PBKDF{Type: "argon2id", MemoryKiB: 64 << 10, Parallel: 2, IterTimeMS: 1500}
		var mu sync.Mutex
		var stopping string
		var started []pipeline.StepID
		stopped, armed := false, false
		var h *harness
		hook := func(p *probe, msg tea.Msg) {
			if k, ok := msg.(tea.KeyPressMsg); ok && k.Text == "y" {
				mu.Lock()
				defer mu.Unlock()
				if !armed {
					return // a y typed into a field before the run
				}
				stopped = true
				v := p.view()
				stopping = flat(v)
				for _, l := range strings.Split(v, "\n") {
					if strings.HasSuffix(l, "…") && !strings.HasPrefix(l, "engine:") && !strings.Contains(l, "luksdock · ") {
						t.Errorf("a progress line is cut: %q", l)
					}
				}
				return
			}
			e, ok := msg.(runEventMsg)
			if !ok || e.Kind != pipeline.EventStart {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				started = append(started, e.Step)
			}
			if e.Step == pipeline.StepFormat {
				armed = true
				// Stop while the real cryptsetup luksFormat runs, not
				// merely after its start event was drawn.
				go func() {
					if !waitForTool("cryptsetup", "luksFormat", 60*time.Second) {
						t.Errorf("cryptsetup luksFormat was never seen running")
					}
					h.ctrlC()
					h.tm.Send(tea.KeyPressMsg{Code: 'y', Text: "y"})
				}()
			}
		}
		h = startSized(t, cfg, w, hgt, hook)
		h.toPlan(testPass)
		h.enter()
		h.onScreen(scrConfirm)
		h.typ("stop.img")
		h.enter()
		s := h.waitFor("the end", 120*time.Second, func(s snapshot) bool { return s.screen == scrDone || s.screen == scrFailed })
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(stopping, "Stop asked for during Format LUKS2: it runs to its end, then no further step starts") {
			t.Errorf("the stop was not announced truthfully:\n%s", stopping)
		}
		if len(started) > 0 {
			t.Errorf("steps started after the stop: %v", started)
		}
		var e *pipeline.Error
		if s.screen != scrFailed || !errors.As(s.lastErr, &e) || e.Kind != pipeline.KindInterrupted || e.Step != pipeline.StepRecoveryKey {
			t.Fatalf("want interrupted before recovery-key, got %v on %s:\n%s", s.lastErr, s.screen, s.body)
		}
		for _, want := range []string{"Stopped before Add the recovery key", "Not started recovery-key, open, mkfs, close, verify", "no later step started"} {
			if !strings.Contains(flat(s.body), want) {
				t.Errorf("the end screen lacks %q:\n%s", want, s.body)
			}
		}
		if !strings.Contains(s.view, "Stopped: the preparation did not finish") {
			t.Errorf("title:\n%s", s.view)
		}
		noLeftovers(t, img, tmp)
		testkit.Run(t, "", "cryptsetup", "isLuks", loopPart(t, img))
	})
}

// Defect 8: what the wizard prints when it ends is for people.
func TestSummaryForPeople(t *testing.T) {
	r := &pipeline.Result{Target: "/dev/sdz", Partition: "/dev/sdz1", FSLabel: "offsite07", LUKS: luks.Info{Version: 2, Cipher: "aes-xts-plain64", UUID: "0b8e4c8a-1d55-4f6f-a88a-df9b7cc52333", DataSize: 1 << 30}, HeaderBackup: "/root/h.bak"}
	got := Summary([]*pipeline.Result{r}, nil)
	for _, want := range []string{`/dev/sdz is a verified backup disk, labelled "offsite07".`, "UUID 0b8e4c8a-1d55-4f6f-a88a-df9b7cc52333", "Header backup: /root/h.bak", "cryptsetup open /dev/sdz1 offsite07"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "{") {
		t.Errorf("summary looks like JSON:\n%s", got)
	}
	got = Summary(nil, &pipeline.Error{Kind: pipeline.KindInterrupted, Err: errors.New("interrupted before this step")})
	if !regexp.MustCompile(`did not finish: .*interrupted`).MatchString(got) {
		t.Errorf("summary of a stopped run:\n%s", got)
	}
	if got := Summary(nil, nil); got != "No disk was prepared.\n" {
		t.Errorf("summary of nothing: %q", got)
	}
}
