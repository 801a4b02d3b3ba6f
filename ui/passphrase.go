package ui

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	tea "charm.land/bubbletea/v2"

	"luksdock/pipeline"
)

// secret is a masked input that keeps its bytes in one fixed buffer, so
// Clear really removes the passphrase from memory (no copies left behind by
// growing a slice or a string).
type secret struct{ b []byte }

// Insert appends typed or pasted text; control characters are dropped and
// nothing beyond pipeline.MaxPassphrase bytes is kept.
func (s *secret) Insert(t string) {
	if s.b == nil {
		s.b = make([]byte, 0, pipeline.MaxPassphrase+utf8.UTFMax)
	}
	for _, r := range t {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if len(s.b)+utf8.RuneLen(r) > pipeline.MaxPassphrase {
			return
		}
		s.b = utf8.AppendRune(s.b, r)
	}
}

// Backspace removes the last character.
func (s *secret) Backspace() {
	if len(s.b) == 0 {
		return
	}
	_, n := utf8.DecodeLastRune(s.b)
	clear(s.b[len(s.b)-n:])
	s.b = s.b[:len(s.b)-n]
}

// Clear zeroes the buffer.
func (s *secret) Clear() {
	clear(s.b[:cap(s.b)])
	s.b = s.b[:0]
}

// Bytes is the secret (not a copy).
func (s *secret) Bytes() []byte { return s.b }

// Len is the number of characters typed.
func (s *secret) Len() int { return utf8.RuneCount(s.b) }

func (m *Model) passKey(msg tea.KeyPressMsg) tea.Cmd {
	cur := &m.pass[m.passFocus]
	switch msg.String() {
	case "esc":
		m.clearSecrets()
		m.passErr = ""
		m.goTo(screenOptions)
		return m.focusOption()
	case "tab", "shift+tab", "up", "down":
		m.passFocus = 1 - m.passFocus
	case "enter":
		if m.passFocus == 0 {
			if err := pipeline.ValidatePassphrase(m.pass[0].Bytes()); err == nil {
				m.passFocus = 1
			}
			m.checkPass()
			return nil
		}
		m.checkPass()
		if m.passOK() {
			m.goTo(screenPlan)
		} else if m.pass[1].Len() > 0 || m.pass[0].Len() > 0 {
			m.passErr = "✗ the two entries do not match"
			if err := pipeline.ValidatePassphrase(m.pass[0].Bytes()); err != nil {
				m.passErr = "✗ " + err.Error()
			}
		}
		return nil
	case "backspace", "ctrl+h":
		cur.Backspace()
	case "ctrl+u", "ctrl+w":
		cur.Clear()
	default:
		if msg.Text != "" && msg.Mod&^tea.ModShift == 0 {
			cur.Insert(msg.Text)
		}
	}
	m.checkPass()
	return nil
}

func (m *Model) passOK() bool {
	return pipeline.ValidatePassphrase(m.pass[0].Bytes()) == nil && bytes.Equal(m.pass[0].Bytes(), m.pass[1].Bytes())
}

// checkPass updates the mismatch message as the second entry is typed: a
// mismatch shows as soon as the second entry stops being a prefix of the
// first.
func (m *Model) checkPass() {
	p1, p2 := m.pass[0].Bytes(), m.pass[1].Bytes()
	m.passErr = ""
	switch {
	case len(p1) == 0:
	case pipeline.ValidatePassphrase(p1) != nil:
		m.passErr = "✗ " + pipeline.ValidatePassphrase(p1).Error()
	case len(p2) == 0:
	case !bytes.HasPrefix(p1, p2):
		m.passErr = "✗ the two entries do not match"
	}
}

func (m *Model) passView() string {
	var b strings.Builder
	b.WriteString("The passphrase unlocks this disk whenever it is docked. Type it twice; it is\nnever shown, logged or stored, and goes to cryptsetup over a pipe.\n\n")
	for i, label := range []string{"Passphrase", "Again"} {
		marker := "  "
		name := label
		if m.passFocus == i {
			marker = "› "
			name = stKey.Render(label)
		}
		dots := strings.Repeat("•", min(m.pass[i].Len(), 40))
		if m.pass[i].Len() > 40 {
			dots += "…"
		}
		cursor := ""
		if m.passFocus == i {
			cursor = "▏"
		}
		fmt.Fprintf(&b, "%s%s%s%s\n", marker, stLabel.Render(name), dots, cursor)
	}
	b.WriteString("\n")
	p1, p2 := m.pass[0].Bytes(), m.pass[1].Bytes()
	switch {
	case m.passErr != "":
		b.WriteString(stErr.Render(m.passErr) + "\n")
	case len(p2) > 0 && bytes.Equal(p1, p2):
		b.WriteString(stOK.Render("✓ the two entries match") + " — Enter shows the plan\n")
	case len(p2) > 0:
		b.WriteString(stFaint.Render("…keep typing") + "\n")
	default:
		b.WriteString("\n")
	}
	if len(p1) > 0 {
		bits, rating := strength(p1)
		fmt.Fprintf(&b, "\nStrength: %s, about %.0f bits.\n", rating, bits)
		b.WriteString(stFaint.Render("Rough estimate: characters counted as if chosen at random, repeats and runs\ndiscounted. Real words, names and dates are weaker than this; four or more\nrandom words are a good passphrase.") + "\n")
		if w := layoutWarnings(p1); len(w) > 0 {
			b.WriteString("\n" + stWarn.Render("⚠ Keyboard layout: this passphrase contains "+strings.Join(w, ", ")+".") + "\n")
			b.WriteString(stFaint.Render("These sit elsewhere on other layouts (German QWERTZ, French AZERTY…) and at\nboot-time prompts that use a US keymap. Make sure you can type it where you\nwill unlock the disk.") + "\n")
		}
	}
	return b.String()
}

// strength estimates the passphrase's entropy in bits, honestly labelled as
// a rough estimate: each character counts log2 of the size of the character
// classes used, except repeats and runs (aaa, abc, 123), which count 1 bit;
// common passwords inside it count little; phrases of several words count
// about 11 bits a word (plus 3.3 per digit or symbol) when that is lower.
func strength(p []byte) (float64, string) {
	var lower, upper, digit, space, punct, other bool
	for _, r := range string(p) {
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= '0' && r <= '9':
			digit = true
		case r == ' ':
			space = true
		case r < 0x80:
			punct = true
		default:
			other = true
		}
	}
	pool := 0
	for _, c := range []struct {
		on bool
		n  int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {space, 1}, {punct, 33}, {other, 32}} {
		if c.on {
			pool += c.n
		}
	}
	per := math.Log2(float64(max(pool, 2)))
	bits := 0.0
	prev := rune(-10)
	for _, r := range string(p) {
		d := r - prev
		if d == 0 || d == 1 || d == -1 {
			bits++
		} else {
			bits += per
		}
		prev = r
	}
	lowerText := strings.ToLower(string(p))
	for _, w := range commonPasswords {
		if strings.Contains(lowerText, w) {
			bits -= float64(len(w)) * per
			bits += 8
		}
	}
	words := strings.FieldsFunc(string(p), func(r rune) bool { return r == ' ' || r == '-' || r == '_' || r == '.' })
	if len(words) >= 2 {
		// A phrase: about 11 bits a word (a guesser's vocabulary of a few
		// thousand words), plus a little for digits and symbols in it.
		wb := 0.0
		for _, w := range words {
			wb += 11
			for _, r := range w {
				if !unicode.IsLetter(r) {
					wb += 3.3
				}
			}
		}
		bits = math.Min(bits, wb)
	}
	bits = math.Max(bits, 0)
	switch {
	case bits < 40:
		return bits, "weak"
	case bits < 60:
		return bits, "fair"
	case bits < 80:
		return bits, "good"
	}
	return bits, "strong"
}

var commonPasswords = []string{"password", "passwort", "123456", "qwerty", "azerty", "letmein", "welcome", "admin", "backup", "secret", "iloveyou", "dragon", "monkey"}

// layoutWarnings names the kinds of characters in p that type differently
// on common keyboard layouts. It names classes, never the passphrase's own
// characters beyond the letters of those classes.
func layoutWarnings(p []byte) []string {
	var yz, azerty, digits, punct, nonASCII bool
	for _, r := range string(p) {
		switch {
		case strings.ContainsRune("yzYZ", r):
			yz = true
		case strings.ContainsRune("aqwmAQWM", r):
			azerty = true
		case r >= '0' && r <= '9':
			digits = true
		case r >= 0x80:
			nonASCII = true
		case r != ' ' && !unicode.IsLetter(r):
			punct = true
		}
	}
	var w []string
	if yz {
		w = append(w, "y or z (swapped on QWERTZ)")
	}
	if azerty {
		w = append(w, "a, q, w or m (moved on AZERTY)")
	}
	if digits {
		w = append(w, "digits (need Shift on AZERTY's top row)")
	}
	if punct {
		w = append(w, "punctuation such as @ \" ' / \\ | ; : # (placed differently on most layouts)")
	}
	if nonASCII {
		w = append(w, "non-ASCII characters (may be impossible to type at a boot prompt)")
	}
	return w
}
