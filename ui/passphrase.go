package ui

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	lsecret "luksdock/internal/secret"
	"luksdock/pipeline"
)

// passphraseScreen is 4: the passphrase, typed twice and never shown, with
// zxcvbn's verdict; a weak one needs an explicit acknowledgement.
type passphraseScreen struct {
	c     *shared
	focus int    // 0, 1: the entries; 2: the weak-passphrase acknowledgement
	err   string // shown under the fields
	ack   bool   // "use this weak passphrase anyway" ticked
	// zxcvbn judges the passphrase off the keystroke path: an edit bumps
	// gen and asks for a judgement after strengthDelay; a tick or a
	// verdict of an older gen is dropped (stale).
	gen     int
	judging bool // the verdict shown is not of the passphrase as it is now
	keys    struct{ enter, back, next, prev, accept key.Binding }
}

// strengthDelay is how long typing must pause before zxcvbn runs.
const strengthDelay = 150 * time.Millisecond

type (
	strengthTick struct{ gen int }
	strengthMsg  struct {
		gen int
		v   verdict
	}
)

func newPassphrase(c *shared) screen {
	s := &passphraseScreen{c: c}
	s.keys.enter = keyEnter("next/continue")
	s.keys.back = keyBack("back (clears it)")
	s.keys.next = key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab/↓", "next field"))
	s.keys.prev = key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab/↑", "previous"))
	s.keys.accept = key.NewBinding(key.WithKeys("space"), key.WithHelp("space", "accept a weak passphrase"))
	return s
}

func (s *passphraseScreen) Title() string { return "Passphrase" }
func (s *passphraseScreen) Typing() bool  { return s.focus < 2 }
func (s *passphraseScreen) Masked() bool  { return s.focus < 2 }
func (s *passphraseScreen) fields() int {
	if s.c.strength.weak() {
		return 3
	}
	return 2
}

func (s *passphraseScreen) ShortHelp() []key.Binding {
	b := []key.Binding{s.keys.enter, s.keys.back, s.keys.next}
	if s.focus == 2 {
		b = append(b, s.keys.accept)
	}
	return b
}

func (s *passphraseScreen) FullHelp() [][]key.Binding {
	g := []key.Binding{s.keys.enter, s.keys.back, s.keys.next, s.keys.prev}
	if s.focus == 2 {
		return [][]key.Binding{g, {s.keys.accept}}
	}
	return [][]key.Binding{g, fieldKeys.list()}
}

func (s *passphraseScreen) Enter() tea.Cmd {
	if s.c.pass[0].Len() == 0 {
		s.focus, s.ack, s.err = 0, false, ""
	}
	return nil
}

func (s *passphraseScreen) Update(msg tea.Msg) tea.Cmd {
	c := s.c
	switch msg := msg.(type) {
	case strengthTick:
		if msg.gen != s.gen || !s.judging {
			return nil // typed on since: a later tick judges
		}
		// The command's own copy, in secret memory (locked, wiped by
		// Free), not on the heap: the field may change while it runs.
		p := lsecret.Clone(judged(c.pass[0].Bytes()))
		in, gen, total := s.userInputs(), s.gen, c.pass[0].Len()
		return func() tea.Msg {
			v := assess(p, in, total)
			lsecret.Free(p)
			return strengthMsg{gen: gen, v: v}
		}
	case strengthMsg:
		if msg.gen == s.gen && s.judging {
			c.strength, s.judging = msg.v, false
		}
	case tea.PasteMsg:
		if s.focus < 2 {
			c.pass[s.focus].Insert(c.in, msg.Content)
			return s.changed()
		}
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, s.keys.back):
			c.clearSecrets()
			c.strength = verdict{}
			s.err, s.focus, s.ack, s.judging = "", 0, false, false
			s.gen++
			c.back(scrPassphrase)
		case key.Matches(msg, s.keys.next):
			s.focus = (s.focus + 1) % s.fields()
		case key.Matches(msg, s.keys.prev):
			s.focus = (s.focus + s.fields() - 1) % s.fields()
		case key.Matches(msg, s.keys.enter):
			s.enter()
		case s.focus == 2:
			if key.Matches(msg, s.keys.accept) {
				s.ack = !s.ack
			}
		case key.Matches(msg, fieldKeys.Delete):
			c.pass[s.focus].Backspace()
			return s.changed()
		case key.Matches(msg, fieldKeys.Clear):
			c.pass[s.focus].Clear()
			return s.changed()
		case key.Matches(msg, fieldKeys.Word):
			c.pass[s.focus].BackspaceWord()
			return s.changed()
		case printable(msg):
			c.pass[s.focus].Insert(c.in, msg.Text)
			return s.changed()
		}
	}
	return nil
}

// changed checks the entries after an edit and asks for a new verdict
// (zxcvbn runs in a command once typing pauses: on a long passphrase it
// takes far longer than a frame); an edit withdraws the acknowledgement of
// a weak one.
func (s *passphraseScreen) changed() tea.Cmd {
	c := s.c
	s.err = ""
	var cmd tea.Cmd
	if s.focus == 0 {
		s.ack = false
		s.gen++
		s.judging = c.pass[0].Len() > 0
		if !s.judging {
			c.strength = verdict{}
		} else {
			gen := s.gen
			cmd = tea.Tick(strengthDelay, func(time.Time) tea.Msg { return strengthTick{gen: gen} })
		}
	}
	p1, p2 := c.pass[0].Bytes(), c.pass[1].Bytes()
	switch {
	case c.pass[0].Len() == 0:
	case passphraseErr(&c.pass[0]) != nil:
		s.err = passphraseErr(&c.pass[0]).Error()
	case c.pass[1].Over() > 0 || (len(p2) > 0 && !bytes.HasPrefix(p1, p2)):
		s.err = "the two entries do not match"
	}
	return cmd
}

// passphraseErr is why the passphrase p cannot be used (nil: it can): one
// longer than cryptsetup takes at its prompt is refused, as the command
// line refuses it, never cut.
func passphraseErr(p *secret) error {
	if p.Over() > 0 {
		return fmt.Errorf("too long: a passphrase is at most %d bytes (what cryptsetup takes at its prompt; luksdock prepare refuses a longer one too). Delete the %d characters past the limit, or choose a shorter one",
			pipeline.MaxPassphrase, p.Over())
	}
	return pipeline.ValidatePassphrase(p.Bytes())
}

// judge gives the verdict now, when Enter needs it before the command's
// verdict has arrived.
func (s *passphraseScreen) judge() {
	if !s.judging {
		return
	}
	s.gen++ // a verdict still on its way is stale now
	s.c.strength = assess(judged(s.c.pass[0].Bytes()), s.userInputs(), s.c.pass[0].Len())
	s.judging = false
}

func (s *passphraseScreen) userInputs() []string {
	name := ""
	if s.c.target != nil {
		name = s.c.target.Name
	}
	return core.StrengthInputs(s.c.opts.Label, name)
}

func (s *passphraseScreen) enter() {
	c := s.c
	p1, p2 := c.pass[0].Bytes(), c.pass[1].Bytes()
	if c.pass[0].Len() == 0 {
		s.err = "type a passphrase first: it is what unlocks this disk"
		s.focus = 0
		return
	}
	if err := passphraseErr(&c.pass[0]); err != nil {
		s.err = err.Error()
		s.focus = 0
		return
	}
	if s.focus == 0 {
		s.focus = 1
		return
	}
	if c.pass[1].Len() == 0 {
		s.err = "type the passphrase again under Again, so a typing mistake is caught now and not when you unlock the disk"
		s.focus = 1
		return
	}
	if c.pass[1].Over() > 0 || !bytes.Equal(p1, p2) {
		s.err = "the two entries do not match"
		return
	}
	s.judge()
	if c.strength.weak() && !s.ack {
		s.focus = 2
		s.err = "this passphrase is weak: tick the box with space to use it anyway, or change it"
		return
	}
	c.forward(scrPassphrase)
}

func (s *passphraseScreen) View() (string, int) {
	c := s.c
	st := &c.st
	w := c.width
	var b strings.Builder
	b.WriteString(para(lipglossPlain, "The passphrase unlocks this disk whenever it is docked. Type it twice; it is never shown, logged or stored, and goes to cryptsetup over a pipe.", w, ""))
	b.WriteString("\n")
	focus := -1
	for i, label := range []string{"Passphrase", "Again"} {
		marker, name := "  ", label
		if s.focus == i {
			marker, name = "› ", st.key.Render(label)
			focus = strings.Count(b.String(), "\n")
		}
		n := c.pass[i].Len()
		over := ""
		if c.pass[i].Over() > 0 {
			over = fmt.Sprintf(" ✗ %d over", c.pass[i].Over())
		}
		dots := strings.Repeat("•", min(n, max(w-24-len(over), 5)))
		if len(dots)/len("•") < n {
			dots += "…"
		}
		cursor := ""
		if s.focus == i {
			cursor = "▏"
		}
		if over != "" {
			cursor += st.err.Render(over)
		}
		b.WriteString(marker + st.label.Render(name) + dots + cursor + "\n")
	}
	p1 := c.pass[0].Bytes()
	v := c.strength
	if v.weak() {
		box := "[ ]"
		if s.ack {
			box = "[x]"
		}
		marker := "  "
		if s.focus == 2 {
			marker = "› "
			focus = strings.Count(b.String(), "\n")
		}
		b.WriteString(marker + box + " use this weak passphrase anyway\n")
	}
	if v.set {
		vs := st.ok
		if v.weak() {
			vs = st.err
		}
		sum := v.summary()
		if s.judging {
			sum += " (judging the change…)"
		}
		b.WriteString("\n" + para(vs, "Strength: "+sum, w, "  "))
		if v.weak() { // as zxcvbn does: advice only for a weak one
			for _, f := range v.feedback {
				b.WriteString(para(st.faint, "  · "+f, w, "    "))
			}
		}
		b.WriteString(s.layoutWarning(p1))
	}
	return b.String(), focus
}

// Status says whether the entries match, pinned above the footer.
func (s *passphraseScreen) Status() string {
	c := s.c
	p1, p2 := c.pass[0].Bytes(), c.pass[1].Bytes()
	switch {
	case s.err != "":
		return para(c.st.err, "✗ "+s.err, c.width, "  ")
	case len(p2) > 0 && bytes.Equal(p1, p2):
		next := "the plan"
		if c.step(scrPassphrase, +1) == scrRecovery {
			next = "the recovery key"
		}
		return c.st.ok.Render("✓ the two entries match") + " — Enter shows " + next
	case len(p2) > 0:
		return c.st.faint.Render("…keep typing")
	}
	return ""
}

// layoutWarning names the characters of p that are typed differently at a
// US-keymap boot prompt than on this machine's configured layouts.
func (s *passphraseScreen) layoutWarning(p []byte) string {
	c := s.c
	st := &c.st
	var b strings.Builder
	diff := layoutDiff(c.layouts, p)
	var names []string
	for l := range diff {
		names = append(names, l)
	}
	sort.Strings(names)
	for _, l := range names {
		name := layoutNames[l]
		if name == "" {
			name = l + " (a layout luksdock has no table for: every character but a–z and 0–9 listed)"
		}
		b.WriteString("\n" + para(st.warn, fmt.Sprintf("⚠ Keyboard: this machine types with %s; boot prompts use the US keymap. These characters of the passphrase are on other keys there: %s", name, spaced(diff[l])), c.width, "  "))
	}
	if len(diff) == 0 {
		if r := nonUS(p); len(r) > 0 {
			b.WriteString("\n" + para(st.warn, "⚠ Keyboard: a boot prompt's US keymap cannot type "+spaced(r)+".", c.width, "  "))
		}
	}
	if b.Len() > 0 {
		b.WriteString(para(st.faint, "Make sure you can type it where you will unlock the disk.", c.width, ""))
	}
	return b.String()
}

func spaced(rs []rune) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, string(r))
	}
	return strings.Join(parts, " ")
}
