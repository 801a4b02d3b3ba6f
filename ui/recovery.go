package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"luksdock/recovery"
)

// recoveryScreen shows the recovery key once (with a QR code when the
// terminal is big enough), then hides it and asks for groups of it, chosen
// at random, typed back from the paper: a disk whose recovery key was never
// written down is not done. Skipped when the Options screen turned the key
// off.
type recoveryScreen struct {
	c      *shared
	typing bool // the key is hidden and the groups are asked for
	f      field
	err    string
	keys   struct{ enter, back key.Binding }
}

func newRecovery(c *shared) screen {
	s := &recoveryScreen{c: c, f: field{Prompt: "> ", CharLimit: 2 * recovery.Len}}
	s.keys.enter = keyEnter("continue")
	s.keys.back = keyBack("back")
	return s
}

func (s *recoveryScreen) Title() string { return "Recovery key: write it down" }
func (s *recoveryScreen) Typing() bool  { return s.typing }
func (s *recoveryScreen) Skip() bool    { return s.c.noRecovery }
func (s *recoveryScreen) ShortHelp() []key.Binding {
	return []key.Binding{s.keys.enter, s.keys.back}
}
func (s *recoveryScreen) FullHelp() [][]key.Binding {
	if s.typing {
		return [][]key.Binding{s.ShortHelp(), fieldKeys.list()}
	}
	return [][]key.Binding{s.ShortHelp()}
}

func (s *recoveryScreen) Enter() tea.Cmd {
	s.typing, s.err = false, ""
	s.f.SetValue("")
	s.f.focused = false
	if s.c.recConfirmed {
		s.keys.enter.SetHelp("enter", "continue")
	} else {
		s.keys.enter.SetHelp("enter", "I wrote it down")
	}
	s.keys.back.SetHelp("esc", "back")
	return nil
}

func (s *recoveryScreen) Update(msg tea.Msg) tea.Cmd {
	c := s.c
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch {
		case key.Matches(k, s.keys.back):
			if s.typing {
				// show the key again
				s.Enter()
				return nil
			}
			c.back(scrRecovery)
			return nil
		case key.Matches(k, s.keys.enter):
			switch {
			case c.recConfirmed:
				c.forward(scrRecovery)
			case !s.typing:
				s.typing, s.err = true, ""
				s.f.focused = true
				s.keys.enter.SetHelp("enter", "check")
				s.keys.back.SetHelp("esc", "show the key again")
			case c.recChallenge.Check(c.recKey, []byte(s.f.Value())):
				c.recConfirmed = true
				s.f.SetValue("")
				s.typing = false
				c.forward(scrRecovery)
			default:
				s.err = "that is not " + groupsText(c.recChallenge) + " of the key: look at your paper again (Esc shows the key again)"
				s.f.SetValue("")
			}
			return nil
		}
	}
	if s.typing {
		before := s.f.Value()
		s.f, _ = s.f.Update(msg)
		if s.f.Value() != before {
			s.err = ""
		}
	}
	return nil
}

// groupsText is "groups 3 and 7" for a challenge.
func groupsText(ch recovery.Challenge) string {
	p := ch.Prompt() // "Type groups 3 and 7 of the recovery key"
	p = strings.TrimPrefix(p, "Type ")
	return strings.TrimSuffix(p, " of the recovery key")
}

// keyLines are the key's groups, numbered, two to a line.
func keyLines(k []byte) []string {
	var out []string
	for g := 1; g <= recovery.Groups; g += 2 {
		out = append(out, fmt.Sprintf("%d %s   %d %s", g, recovery.Group(k, g), g+1, recovery.Group(k, g+1)))
	}
	return out
}

// typedLines is the key as typed at the unlock prompt, broken only between
// groups (after a dash) where the line is too narrow for it all.
func typedLines(st *styles, k []byte, w int) string {
	var b strings.Builder
	line := "  "
	for g := 1; g <= recovery.Groups; g++ {
		part := string(recovery.Group(k, g))
		if g < recovery.Groups {
			part += "-"
		}
		if len(line)+len(part) > w && line != "  " {
			b.WriteString(st.command.Render(line) + "\n")
			line = "  "
		}
		line += part
	}
	b.WriteString(st.command.Render(line) + "\n")
	return b.String()
}

// qrStyle draws the code dark on light whatever the terminal's colours.
var qrStyle = lipgloss.NewStyle().Foreground(lipgloss.Color("0")).Background(lipgloss.Color("15"))

func (s *recoveryScreen) View() (string, int) {
	c := s.c
	st := &c.st
	w := c.width
	k := c.recKey
	if k == nil {
		return "", -1
	}
	var b strings.Builder
	if s.typing {
		b.WriteString(para(lipglossPlain, "The key is hidden now. From what you wrote down, "+strings.ToLower(c.recChallenge.Prompt()[:1])+c.recChallenge.Prompt()[1:]+" (dashes and spaces do not matter):", w, "") + "\n")
		b.WriteString(s.f.View() + "\n")
		if s.err != "" {
			b.WriteString("\n" + para(st.err, "✗ "+s.err, w, "  "))
		}
		return b.String(), -1
	}
	intro := "A second way into this disk if the passphrase is lost. It is shown only now and stored nowhere but in the disk's header: write it on paper and keep the paper apart from the disk."
	var left strings.Builder
	head := "Recovery key"
	if c.recConfirmed {
		head += st.ok.Render(" ✓ typed back")
	}
	left.WriteString(st.title.Render(head) + "\n\n")
	for _, l := range keyLines(k) {
		left.WriteString("  " + st.key.Render(l) + "\n")
	}
	qr, qw, err := recovery.QR(k, false)
	qrLines := (qw + 1) / 2
	leftW := 34
	// the title, the footer (status and help) and the key's line below
	room := c.height - 7
	typed := "\n" + st.faint.Render("As typed at the unlock prompt:") + "\n" + typedLines(st, k, w)
	switch {
	case err == nil && w >= leftW+qw+2 && room >= qrLines:
		// the key and what it is for beside its QR code
		var q []string
		for _, l := range strings.Split(qr, "\n") {
			q = append(q, qrStyle.Render(l))
		}
		left.WriteString("\n" + para(lipglossPlain, intro, leftW-2, ""))
		b.WriteString(lipgloss.JoinHorizontal(lipgloss.Top, lipgloss.NewStyle().Width(leftW).Render(left.String()), strings.Join(q, "\n")) + "\n")
		b.WriteString(typed)
	default:
		// the key first, so a small terminal shows it without scrolling
		b.WriteString(left.String() + typed + "\n")
		if err != nil {
			b.WriteString(para(st.err, "No QR code: "+err.Error(), w, "  "))
		} else {
			b.WriteString(para(st.faint, fmt.Sprintf("(The terminal is too small for its QR code: it needs %d×%d; enlarge it to see the code.)", leftW+qw+2, qrLines+7), w, ""))
		}
		b.WriteString(para(lipglossPlain, intro, w, ""))
	}
	return b.String(), -1
}

// Status says what Enter does next, pinned above the footer.
func (s *recoveryScreen) Status() string {
	c := s.c
	switch {
	case c.recConfirmed:
		return c.st.ok.Render("✓ recovery key typed back") + " — Enter shows the plan"
	case s.typing:
		return para(c.st.faint, "Enter checks; the disk is not prepared without it", c.width, "  ")
	}
	// which groups is said only once the key is hidden
	return para(c.st.warn, "Enter hides the key and asks for two of its groups", c.width, "  ")
}
