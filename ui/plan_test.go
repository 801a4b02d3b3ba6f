package ui

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luksdock/pipeline"
	"luksdock/recovery"

	"luksdock/internal/testkit"
)

// commandsIn reassembles the commands drawn on a screen: "$ " starts one,
// a line ending in " \" continues it (as a shell would read it); a
// comment continues on indented lines that start with "# ".
func commandsIn(body string) []string {
	var out []string
	cur, open := "", false
	// a word broken with a backslash at a line's end goes on at the next
	// line's start, as sh reads it
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if n := len(lines); n > 0 && strings.HasSuffix(lines[n-1], "\\") && !strings.HasSuffix(lines[n-1], " \\") {
			lines[n-1] = strings.TrimSuffix(lines[n-1], "\\") + strings.TrimRight(l, " ")
			continue
		}
		lines = append(lines, strings.TrimRight(l, " "))
	}
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
			if i < len(lines)-1 && !strings.HasSuffix(l, "\\") {
				t.Errorf("width %d: line %d does not continue: %q", w, i, l)
			}
			if len(l) > w {
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

// A new user's defect: the Plan screen summed up the label, table, LUKS
// version and engine but not the set or the owner chosen on Options.
func TestPlanNamesSetAndOwner(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup")
	img := filepath.Join(t.TempDir(), "so.img")
	h := startSized(t, imageConfig(img, 128<<20), 100, 40, nil)
	h.toOptions()
	h.focusField("Set")
	h.setText("offsite")
	h.focusField("Owner")
	h.setText("4242:4343")
	h.focusField("Label")
	h.setText("offsite01")
	h.waitFor("the choices checked", 5*time.Second, func(s snapshot) bool {
		return s.field("Label") == "offsite01" && strings.Contains(s.body, "✓ ready")
	})
	s := h.optionsToPlan(testPass)
	if b := flat(s.body); !strings.Contains(b, "Set: offsite; owner of the top directory: 4242:4343") || strings.Contains(b, "--owner") {
		t.Errorf("the Plan screen does not name the set and the owner:\n%s", s.body)
	}
}
