package ui

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"luksdock/pipeline"

	"luksdock/core"
)

// The sizes issue 20 names: everything a screen says must be reachable at
// both.
var sizes20 = []struct{ w, h int }{{80, 24}, {60, 18}}

func eachSize20(t *testing.T, f func(t *testing.T, w, h int)) {
	for _, sz := range sizes20 {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) { f(t, sz.w, sz.h) })
	}
}

// passphraseModel is a wizard on the Passphrase screen, driven without a
// program (for timing and for messages a program would deliver later).
func passphraseModel(t testing.TB) (*Model, *passphraseScreen) {
	m := New(Config{Keyboard: func() []string { return nil }})
	m.c.opts.Label = "backups01"
	m.cur = scrPassphrase
	m.screens[scrPassphrase].Enter()
	return m, m.screens[scrPassphrase].(*passphraseScreen)
}

// Issue 20 item 20: Enter on an empty entry says what to do.
func TestPassphraseEnterOnEmptySaysWhy(t *testing.T) {
	eachSize20(t, func(t *testing.T, w, hgt int) {
		h := startSized(t, imageConfig(filepath.Join(t.TempDir(), "e.img"), 128<<20), w, hgt, nil)
		h.walkTo(scrPassphrase)
		h.enter()
		s := h.waitFor("why Enter did nothing", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(flat(s.view), "✗ type a passphrase first")
		})
		if s.screen != scrPassphrase {
			t.Fatalf("Enter on nothing went to %s", s.screen)
		}
		h.typ(testPass)
		h.waitFor("the message gone once typing", 5*time.Second, func(s snapshot) bool { return !strings.Contains(s.view, "✗") })
		h.enter()
		h.enter() // Again is empty
		h.waitFor("why Enter on an empty Again did nothing", 5*time.Second, func(s snapshot) bool {
			return s.screen == scrPassphrase && strings.Contains(flat(s.view), "✗ type the passphrase again under Again")
		})
		h.typ(testPass)
		h.enter()
		h.onScreen(scrRecovery)
	})
}

// Issue 20 item 6: a passphrase over 512 bytes is refused on the field,
// never cut to its first 512 bytes; at exactly 512 it is taken.
func TestPassphraseOver512Refused(t *testing.T) {
	eachSize20(t, func(t *testing.T, w, hgt int) {
		h := startSized(t, imageConfig(filepath.Join(t.TempDir(), "l.img"), 128<<20), w, hgt, nil)
		h.walkTo(scrPassphrase)
		long := strings.Repeat("orbit velvet canyon mustard plains ", 16)[:551]
		h.tm.Send(tea.PasteMsg{Content: long})
		s := h.waitFor("the refusal", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(s.view, "✗ 39 over") && strings.Contains(flat(s.view), "too long: a passphrase is at most 512 bytes")
		})
		h.enter()
		time.Sleep(100 * time.Millisecond)
		if s = h.snap(); s.screen != scrPassphrase || s.dots("Again") != 0 || !strings.Contains(s.view, "› Passphrase") {
			t.Fatalf("Enter took a passphrase over 512 bytes:\n%s", s.view)
		}
		// Deleting what is past the limit makes it the 512 bytes typed.
		for range 39 {
			h.key(tea.KeyBackspace)
		}
		h.waitFor("the refusal gone at 512 bytes", 5*time.Second, func(s snapshot) bool {
			return !strings.Contains(s.view, "✗") && strings.Contains(s.view, "Strength:")
		})
		h.enter()
		h.tm.Send(tea.PasteMsg{Content: long[:512]})
		h.waitFor("the entries match", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "entries match") })
		h.enter()
		h.onScreen(scrRecovery)
	})
	var sec secret
	sec.Insert(nil, strings.Repeat("ü", 300)) // 600 bytes: 256 kept, 44 over
	if len(sec.Bytes()) != 512 || sec.Over() != 44 || sec.Len() != 300 || passphraseErr(&sec) == nil {
		t.Errorf("600 bytes kept %d, over %d, len %d, err %v", len(sec.Bytes()), sec.Over(), sec.Len(), passphraseErr(&sec))
	}
	sec.BackspaceWord()
	if sec.Over() != 0 || passphraseErr(&sec) != nil {
		t.Errorf("ctrl+w did not remove what is over the limit: over %d, %v", sec.Over(), passphraseErr(&sec))
	}
}

// Issue 20 item 5: a keystroke at 512 characters is handled and drawn
// within a frame (zxcvbn took 5.8 s there when it ran on every key); the
// verdict follows once typing pauses, and a stale verdict is dropped.
func TestPassphraseKeystrokeFastAtAnyLength(t *testing.T) {
	m, s := passphraseModel(t)
	m.c.pass[0].Insert(nil, strings.Repeat("correct horse battery staple ", 20)[:511])
	worst := time.Duration(0)
	for i := range 5 {
		t0 := time.Now()
		m.Update(tea.KeyPressMsg{Code: 'x', Text: "x"})
		m.View()
		m.Update(tea.KeyPressMsg{Code: tea.KeyBackspace})
		m.View()
		if d := time.Since(t0) / 2; d > worst && i > 0 {
			worst = d
		}
	}
	// a frame is 16 ms; this machine is shared, so allow some slack
	if worst > 50*time.Millisecond {
		t.Errorf("a keystroke at 512 characters takes %s", worst)
	}
	if !s.judging {
		t.Fatal("no verdict pending after an edit")
	}
	// a verdict of an earlier edit is dropped
	m.Update(strengthMsg{gen: s.gen - 1, v: verdict{Strength: core.Strength{Set: true, Score: 0}, set: true}})
	if m.c.strength.set {
		t.Errorf("a stale verdict was taken: %+v", m.c.strength)
	}
	// the tick of the latest edit judges the first judgeMax bytes only
	cmd := s.Update(strengthTick{gen: s.gen})
	if cmd == nil {
		t.Fatal("the tick of the latest edit asked for no verdict")
	}
	t0 := time.Now()
	msg := cmd()
	// The verdict below says what was judged; the time is a second check:
	// 512 characters take about 6 s unloaded, 64 (in a child process) well
	// under 1 s, and 2.2 s was seen on the 2-core machine with the whole
	// suite running beside it.
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("judging took %s: the input is not bounded", d)
	}
	m.Update(msg)
	if !m.c.strength.set || s.judging || !strings.Contains(m.c.strength.summary(), "judged on its first 64 characters") {
		t.Errorf("the verdict was not taken, or does not say what it judged: %+v %q", m.c.strength, m.c.strength.summary())
	}
	if s.Update(strengthTick{gen: s.gen - 1}) != nil {
		t.Error("a stale tick started zxcvbn")
	}
}

// BenchmarkPassphraseKeystroke512 is one key typed and drawn on the
// Passphrase screen at 512 characters (docs/performance-wizard.md).
func BenchmarkPassphraseKeystroke512(b *testing.B) {
	m, _ := passphraseModel(b)
	m.c.pass[0].Insert(nil, strings.Repeat("correct horse battery staple ", 20)[:pipeline.MaxPassphrase-1])
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			m.Update(tea.KeyPressMsg{Code: 'x', Text: "x"})
		} else {
			m.Update(tea.KeyPressMsg{Code: tea.KeyBackspace})
		}
		m.View()
	}
}

// The Passphrase screen's walker types testPass twice (Enter alone when
// the entries are kept from before).
func init() {
	walkers[scrPassphrase] = func(h *harness, s snapshot) {
		if s.dots("Again") == 0 {
			h.passphrase(testPass)
			return
		}
		h.enter()
	}
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

// Found trying the wizard: with the recovery key on, the match message
// said "Enter shows the plan" while Enter showed the recovery key.
func TestPassphraseMatchNamesTheNextScreen(t *testing.T) {
	for _, rec := range []bool{true, false} {
		t.Run(fmt.Sprintf("recovery=%v", rec), func(t *testing.T) {
			h := startSized(t, imageConfig(filepath.Join(t.TempDir(), "n.img"), 128<<20), 60, 18, nil)
			h.walkTo(scrOptions)
			want, next := "Enter shows the recovery key", scrRecovery
			if !rec {
				h.focusField("Recovery key")
				h.key(tea.KeyRight)
				h.waitFor("recovery key off", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "on  [off]") })
				want, next = "Enter shows the plan", scrPlan
			}
			h.enter()
			h.onScreen(scrPassphrase)
			h.typ(testPass)
			h.enter()
			h.typ(testPass)
			s := h.waitFor("the entries match", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "entries match") })
			if !strings.Contains(flat(s.view), want) {
				t.Errorf("the match message does not say %q:\n%s", want, s.view)
			}
			h.enter()
			h.onScreen(next)
		})
	}
}
