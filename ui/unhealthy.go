package ui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// unhealthyScreen is the extra confirmation for a disk whose SMART health
// is failing or degrading: the word "yes" typed, which sets
// Options.AcceptUnhealthy. Skipped for a healthy disk, an unreadable
// health, and image files.
type unhealthyScreen struct {
	c    *shared
	f    field
	err  string
	keys struct{ enter, back key.Binding }
}

func newUnhealthy(c *shared) screen {
	s := &unhealthyScreen{c: c, f: field{Prompt: "> ", CharLimit: 16}}
	s.keys.enter = keyEnter("use it anyway")
	s.keys.back = keyBack("back")
	return s
}

func (s *unhealthyScreen) Title() string { return "Unhealthy disk: use it anyway?" }
func (s *unhealthyScreen) Typing() bool  { return true }
func (s *unhealthyScreen) Skip() bool {
	t := s.c.target
	return t == nil || t.Health == nil || !t.Health.Bad()
}
func (s *unhealthyScreen) ShortHelp() []key.Binding { return []key.Binding{s.keys.enter, s.keys.back} }
func (s *unhealthyScreen) FullHelp() [][]key.Binding {
	return [][]key.Binding{s.ShortHelp(), fieldKeys.list()}
}

func (s *unhealthyScreen) Enter() tea.Cmd {
	s.f.SetValue("")
	s.f.focused, s.err = true, ""
	return nil
}

func (s *unhealthyScreen) Update(msg tea.Msg) tea.Cmd {
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch {
		case key.Matches(k, s.keys.back):
			s.c.acceptUnhealthy = false
			s.c.back(scrUnhealthy)
			return nil
		case key.Matches(k, s.keys.enter):
			if strings.TrimSpace(s.f.Value()) != "yes" {
				s.err = `type "yes" to use this disk, or Esc to choose another`
				s.f.SetValue("")
				return nil
			}
			s.c.acceptUnhealthy = true
			s.c.forward(scrUnhealthy)
			return nil
		}
	}
	before := s.f.Value()
	s.f, _ = s.f.Update(msg)
	if s.f.Value() != before {
		s.err = ""
	}
	return nil
}

func (s *unhealthyScreen) View() (string, int) {
	c := s.c
	st := &c.st
	t := c.target
	if t == nil || t.Health == nil {
		return "", -1
	}
	h := t.Health
	var b strings.Builder
	b.WriteString(para(st.err, "⚠ "+t.Path+" is not a disk to trust with backups: "+h.Summary(), c.width, "  ") + "\n")
	for _, p := range h.Problems {
		b.WriteString(para(st.warn, "  · "+p, c.width, "    "))
	}
	b.WriteString("\n" + para(lipglossPlain, "A backup on a disk that is wearing out fails silently later, often when it is needed. Use another disk if you can.", c.width, "") + "\n")
	b.WriteString(para(lipglossPlain, `To use it anyway, type "yes":`, c.width, "") + "\n")
	b.WriteString(s.f.View() + "\n")
	if s.err != "" {
		b.WriteString("\n" + para(st.err, "✗ "+s.err, c.width, "  "))
	}
	return b.String(), -1
}
