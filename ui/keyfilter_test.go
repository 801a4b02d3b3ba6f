package ui

import (
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	tea "charm.land/bubbletea/v2"
)

// filterRig is a keyFilter reading a pipe in place of the terminal.
type filterRig struct {
	t *testing.T
	k *keyFilter
	w *os.File
}

func newFilterRig(t *testing.T) *filterRig {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	k := newKeyFilter(r)
	t.Cleanup(func() { k.wipe(); r.Close(); w.Close() })
	return &filterRig{t: t, k: k, w: w}
}

// read writes what the terminal sends as one write and returns what one
// Read gives bubbletea.
func (f *filterRig) read(sent string) string {
	f.t.Helper()
	if _, err := f.w.WriteString(sent); err != nil {
		f.t.Fatal(err)
	}
	var p [4096]byte
	n, err := f.k.Read(p[:])
	if err != nil {
		f.t.Fatal(err)
	}
	return string(p[:n])
}

// resolve is what a masked field makes of out: each placeholder replaced
// by the character the FIFO gives for it (dropped when it gives none),
// other characters as they are.
func (f *filterRig) resolve(out string) string {
	var b strings.Builder
	for _, r := range out {
		if isPlaceholder(r) {
			c, ok := f.k.take(r)
			if !ok {
				continue
			}
			r = c
		}
		b.WriteRune(r)
	}
	return b.String()
}

// placeholders counts the placeholders in s and checks it holds no other
// character outside escape sequences that is printable (a leak).
func placeholders(s string) int {
	n := 0
	for _, r := range s {
		if isPlaceholder(r) {
			n++
		}
	}
	return n
}

func TestKeyFilterPassesThroughUnmasked(t *testing.T) {
	f := newFilterRig(t)
	for _, in := range []string{"abc", "héllo wörld ✓", "\x1b[A", "q", "\x1b[200~paste\x1b[201~", "x\ry"} {
		if got := f.read(in); got != in {
			t.Errorf("unmasked %q: bubbletea got %q, want it unchanged", in, got)
		}
	}
}

func TestKeyFilterMasksCharacters(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	in := "Ab c9~é✓🔑"
	out := f.read(in)
	if n := placeholders(out); n != utf8.RuneCountInString(in) || utf8.RuneCountInString(out) != n {
		t.Fatalf("masked %q: bubbletea got %q (%d placeholders), want one placeholder per character and nothing else", in, out, n)
	}
	if got := f.resolve(out); got != in {
		t.Errorf("the field makes %q of it, want %q", got, in)
	}
	if f.k.n != 0 {
		t.Errorf("the FIFO keeps %d entries after every placeholder was taken", f.k.n)
	}
}

func TestKeyFilterControlsPassMasked(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	// Enter, Backspace (DEL and ^H), Ctrl+U, Ctrl+W, Tab, Shift+Tab, an
	// arrow, F1, Esc as kitty sends it, a focus report, a terminal reply.
	for _, in := range []string{"\r", "\x7f", "\x08", "\x15", "\x17", "\t", "\x1b[Z", "\x1b[B", "\x1bOP", "\x1b[27u", "\x1b[I", "\x1b]11;rgb:0000/0000/0000\x07", "\x1b[?1u", "\x1b[1;5A"} {
		if got := f.read(in); got != in {
			t.Errorf("masked %q: bubbletea got %q, want it unchanged", in, got)
		}
	}
	// Around characters: the controls pass, the characters do not.
	out := f.read("ab\rcd\x7fe\x1b[Df")
	want := "PP\rPP\x7fP\x1b[DP"
	if got := shape(out); got != want {
		t.Errorf("bubbletea got %q, want %q (P: a placeholder)", got, want)
	}
	if got := f.resolve(out); got != "ab\rcd\x7fe\x1b[Df" {
		t.Errorf("the field makes %q of it", got)
	}
}

// shape writes each placeholder of s as P.
func shape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if isPlaceholder(r) {
			r = 'P'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func TestKeyFilterPasteMarkers(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	out := f.read("\x1b[200~Pelican amber\nx\x1b[201~")
	if want := "\x1b[200~" + strings.Repeat("P", 13) + "\nP\x1b[201~"; shape(out) != want {
		t.Fatalf("bubbletea got %q, want %q", shape(out), want)
	}
	if got := f.resolve(out); got != "\x1b[200~Pelican amber\nx\x1b[201~" {
		t.Errorf("the field makes %q of it", got)
	}
	// A paste whose markers and text come in several reads.
	var got strings.Builder
	for _, part := range []string{"\x1b[20", "0~Peli", "can\x1b[2", "01~"} {
		got.WriteString(f.read(part))
	}
	if want := "\x1b[200~PPPPPPP\x1b[201~"; shape(got.String()) != want {
		t.Errorf("split paste: bubbletea got %q, want %q", shape(got.String()), want)
	}
	if s := f.resolve(got.String()); s != "\x1b[200~Pelican\x1b[201~" {
		t.Errorf("split paste: the field makes %q of it", s)
	}
}

func TestKeyFilterSplitRune(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	var out strings.Builder
	// é is c3 a9, ✓ is e2 9c 93, 🔑 is f0 9f 94 91: each split between reads.
	for _, part := range []string{"a\xc3", "\xa9\xe2", "\x9c", "\x93\xf0\x9f", "\x94", "\x91b"} {
		out.WriteString(f.read(part))
	}
	if got := shape(out.String()); got != "PPPPP" {
		t.Fatalf("bubbletea got %q, want 5 placeholders", got)
	}
	if got := f.resolve(out.String()); got != "aé✓🔑b" {
		t.Errorf("the field makes %q of it, want %q", got, "aé✓🔑b")
	}
	// Not UTF-8: passed as it is (bubbletea drops it), nothing held.
	if got := f.read("\xff\xc3z"); !strings.HasPrefix(got, "\xff\xc3") || shape(got[2:]) != "P" {
		t.Errorf("invalid UTF-8: bubbletea got %q", shape(got))
	}
	f.k.take(phBase) // drop what is left
}

func TestKeyFilterSplitEscape(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	var out strings.Builder
	for _, part := range []string{"x\x1b", "[1;", "5Ay\x1b", "]11;rgb:1", "/2/3\x1b", "\\z\x1bO", "Pw"} {
		out.WriteString(f.read(part))
	}
	want := "P\x1b[1;5AP\x1b]11;rgb:1/2/3\x1b\\P\x1bOPP"
	if got := shape(out.String()); got != want {
		t.Errorf("bubbletea got %q, want %q", got, want)
	}
	if got := f.resolve(out.String()); got != "x\x1b[1;5Ay\x1b]11;rgb:1/2/3\x1b\\z\x1bOPw" {
		t.Errorf("the field makes %q of it", got)
	}
	// Alt+character passes as it is (bubbletea gives it no text).
	if got := f.read("\x1baé\x1bé"); shape(got) != "\x1baP\x1bé" {
		t.Errorf("Alt+a, é, Alt+é: bubbletea got %q", shape(got))
	}
	f.k.setMasked(false)
	// An ESC whose sequence never came: after escGap the next read is
	// characters again, not the sequence's rest.
	f.k.setMasked(true)
	f.read("\x1b]")
	f.k.last = time.Now().Add(-time.Second)
	if got := shape(f.read("ab")); got != "PP" {
		t.Errorf("after an unfinished sequence and a pause: bubbletea got %q, want PP", got)
	}
}

func TestKeyFilterFocusClearsFIFO(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	old := f.read("secret")
	f.k.setMasked(false) // Esc left the screen: its placeholders find nothing
	if f.k.n != 0 {
		t.Fatalf("the FIFO keeps %d entries after the focus left the masked field", f.k.n)
	}
	for i := range 4 * len(f.k.q) / 4 {
		if f.k.q[i] != 0 {
			t.Fatalf("the FIFO's memory is not wiped at %d", i)
		}
	}
	if got := f.read("plain"); got != "plain" {
		t.Errorf("unmasked: bubbletea got %q", got)
	}
	f.k.setMasked(true)
	out := f.read("new")
	// The old placeholders, still on their way, arrive first: nothing.
	if got := f.resolve(old); got != "" {
		t.Errorf("placeholders from before the focus left give %q, want nothing", got)
	}
	if got := f.resolve(out); got != "new" {
		t.Errorf("the field makes %q of the new ones, want %q", got, "new")
	}
}

func TestKeyFilterSkipsUntakenPlaceholders(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	out := []rune(f.read("abc"))
	// bubbletea folded the first into another key (never taken): the
	// second gives its own character, not the first's.
	if r, ok := f.k.take(out[1]); !ok || r != 'b' {
		t.Errorf("second placeholder gives %q %v, want 'b'", r, ok)
	}
	if r, ok := f.k.take(out[0]); ok {
		t.Errorf("the skipped first placeholder gives %q after a later one was taken, want nothing", r)
	}
	if r, ok := f.k.take(out[2]); !ok || r != 'c' {
		t.Errorf("third placeholder gives %q %v, want 'c'", r, ok)
	}
}

func TestKeyFilterFullFIFO(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	var out strings.Builder
	for out.Len() < 4*(fifoCap+10) {
		out.WriteString(f.read(strings.Repeat("x", 1000)))
	}
	rs := []rune(out.String())
	if rs[fifoCap-1] == phOver || rs[fifoCap] != phOver {
		t.Fatalf("the FIFO takes %d characters, then phOver: got %U at %d, %U at %d", fifoCap, rs[fifoCap-1], fifoCap-1, rs[fifoCap], fifoCap)
	}
	var s secret
	defer s.Clear()
	s.Insert(f.k, out.String())
	if s.Over() == 0 || s.Len() != len(rs) {
		t.Errorf("the field counts %d characters (%d over), want %d, some over", s.Len(), s.Over(), len(rs))
	}
}

func TestSecretInsertTakesPlaceholders(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	var s secret
	defer s.Clear()
	s.Insert(f.k, f.read("pass"))
	s.Insert(f.k, f.read("wörd"))
	s.Backspace()
	s.Insert(f.k, f.read("D"))
	if got := string(s.Bytes()); got != "passwörD" {
		t.Errorf("the field holds %q, want %q", got, "passwörD")
	}
}

func TestKeyFilterWipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	k := newKeyFilter(r)
	k.setMasked(true)
	w.WriteString("abc\xc3")
	var p [4096]byte
	if _, err := k.Read(p[:]); err != nil {
		t.Fatal(err)
	}
	k.wipe()
	for i, b := range k.q[:cap(k.q)] {
		if b != 0 {
			t.Fatalf("FIFO byte %d is not wiped", i)
		}
	}
	for i, b := range k.buf[:cap(k.buf)] {
		if b != 0 {
			t.Fatalf("read buffer byte %d is not wiped", i)
		}
	}
	if n, err := k.Read(p[:]); n != 0 || err == nil {
		t.Errorf("a read after wipe gives %d, %v; want io.EOF", n, err)
	}
}

// keysOf is what bubbletea makes of the filter's output s (characters,
// placeholders, Enter, Tab, Esc only).
func keysOf(s string) []tea.Msg {
	var msgs []tea.Msg
	for _, r := range s {
		switch r {
		case '\r':
			msgs = append(msgs, tea.KeyPressMsg{Code: tea.KeyEnter})
		case '\t':
			msgs = append(msgs, tea.KeyPressMsg{Code: tea.KeyTab})
		case 0x1b:
			msgs = append(msgs, tea.KeyPressMsg{Code: tea.KeyEscape})
		default:
			msgs = append(msgs, tea.KeyPressMsg{Code: r, Text: string(r)})
		}
	}
	return msgs
}

// The model tells the filter when a masked field has the focus; a burst
// with Enter in it fills both fields of the Passphrase screen in order
// (type-ahead into the next masked field), and Esc, leaving the screen,
// wipes the FIFO: what was typed after it, read while the field still had
// the focus, is dropped.
func TestKeyFilterFollowsFocus(t *testing.T) {
	f := newFilterRig(t)
	m, _ := passphraseModel(t)
	m.c.in = f.k
	defer m.c.clearSecrets()
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	if !f.k.masked {
		t.Fatal("on the Passphrase screen's first field, the filter does not mask")
	}
	out := f.read("Quokka-velvet\rQuokka-velvet")
	if strings.Contains(out, "Quokka") || strings.Contains(out, "velvet") {
		t.Fatalf("bubbletea got the passphrase: %q", out)
	}
	for _, msg := range keysOf(out) {
		m.Update(msg)
	}
	if got := string(m.c.pass[0].Bytes()); got != "Quokka-velvet" {
		t.Errorf("Passphrase holds %q", got)
	}
	if got := string(m.c.pass[1].Bytes()); got != "Quokka-velvet" {
		t.Errorf("Again holds %q", got)
	}
	// Esc and more typing, read before the model saw the Esc.
	out = f.read("\x1b")
	f.k.last = time.Now().Add(-time.Second) // a pause: the Esc is a key of its own
	out += f.read("xyz")
	if f.k.n != 3 {
		t.Fatalf("the FIFO holds %d entries, want 3", f.k.n)
	}
	msgs := keysOf(out)
	m.Update(msgs[0])
	if m.cur == scrPassphrase || f.k.masked {
		t.Fatalf("after Esc: screen %s, masked %v", m.cur, f.k.masked)
	}
	if f.k.n != 0 {
		t.Errorf("after Esc left the masked field the FIFO holds %d entries", f.k.n)
	}
	for _, msg := range msgs[1:] {
		m.Update(msg)
	}
}

// xterm's modifyOtherKeys (level 2, which bubbletea asks for) may send a
// key with Shift as CSI 27;2;c~: bubbletea gives it the text c, so while
// masked it is a character like any other. Keys with other modifiers,
// and everything else in CSI form, pass.
func TestKeyFilterModifyOtherKeys(t *testing.T) {
	f := newFilterRig(t)
	f.k.setMasked(true)
	var out strings.Builder
	for _, part := range []string{"a\x1b[27;2;65~", "\x1b[27;2", ";246~b\x1b[27;1;", "33~"} {
		out.WriteString(f.read(part))
	}
	if got := shape(out.String()); got != "PPPPP" {
		t.Fatalf("bubbletea got %q, want 5 placeholders", got)
	}
	if got := f.resolve(out.String()); got != "aAöb!" {
		t.Errorf("the field makes %q of it, want %q", got, "aAöb!")
	}
	for _, in := range []string{"\x1b[27;5;97~", "\x1b[27;2;13~", "\x1b[27;2;127~", "\x1b[97;2u", "\x1b[3~", "\x1b[15;2~", "\x1b[1;2A", "\x1b[27;2;65;1~", "\x1b[27;2;99999999999~"} {
		if got := f.read(in); got != in {
			t.Errorf("masked %q: bubbletea got %q, want it unchanged", in, got)
		}
	}
	f.k.setMasked(false)
	if got := f.read("\x1b[27;2;65~"); got != "\x1b[27;2;65~" {
		t.Errorf("unmasked: bubbletea got %q", got)
	}
}

// TestKeyFilterUnmaskedCharacterIsNoControl: a character typed outside a
// masked field whose UTF-8 holds a byte of the C1 range ("ğ" is C4 9F,
// 0x9F being the start of an APC string as a lone byte) passes whole and
// leaves the filter in its ground state, so what is typed next into a
// masked field is masked. Read as a C1 control it left the filter inside a
// "string" that passed the passphrase typed next as it came.
func TestKeyFilterUnmaskedCharacterIsNoControl(t *testing.T) {
	f := newFilterRig(t)
	for _, c := range []string{"ğ", "Û", "ď", "ŝ"} {
		if got := f.read(c); got != c {
			t.Fatalf("unmasked %q: bubbletea got %q", c, got)
		}
	}
	f.k.setMasked(true)
	out := f.read("secret")
	if n := placeholders(out); n != 6 || utf8.RuneCountInString(out) != 6 {
		t.Errorf("typed into a masked field after ğ, Û, ď, ŝ elsewhere: bubbletea got %q, want 6 placeholders", out)
	}
}
