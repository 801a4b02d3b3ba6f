package ui

import (
	"context"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
)

// retireScreen crypto-erases a known disk (core.Retire, as luksdock retire
// does) once its name is typed, as prepare's Confirm screen asks, and shows
// what core proved afterwards.
type retireScreen struct {
	c    *shared
	f    field
	run  actionRun
	res  *core.Retired
	keys struct{ enter, back key.Binding }
}

func newRetire(c *shared) screen {
	s := &retireScreen{c: c, f: field{Prompt: "> ", CharLimit: 256}}
	s.keys.enter = keyEnter("retire it")
	s.keys.back = keyBack("back")
	return s
}

func (s *retireScreen) Title() string { return "Retire: crypto-erase the disk" }
func (s *retireScreen) Typing() bool  { return !s.run.done }
func (s *retireScreen) Skip() bool    { return s.c.action != actRetire }
func (s *retireScreen) Busy() bool    { return s.run.Busy() }
func (s *retireScreen) ShortHelp() []key.Binding {
	if s.run.done {
		return []key.Binding{keyEnter("disk list")}
	}
	return []key.Binding{s.keys.enter, s.keys.back}
}
func (s *retireScreen) FullHelp() [][]key.Binding {
	return [][]key.Binding{s.ShortHelp(), fieldKeys.list()}
}

// word is what must be typed: the disk's kernel name (internal:NAME for a
// disk not on USB), or the image's file name, as core.Retire checks it.
func (s *retireScreen) word() string {
	t := s.c.target
	if !t.Image && t.Verdict.Internal {
		return "internal:" + t.Name
	}
	return t.Name
}

func (s *retireScreen) Enter() tea.Cmd {
	s.f.SetValue("")
	s.f.focused = true
	s.run.reset()
	s.res = nil
	return nil
}

func (s *retireScreen) Update(msg tea.Msg) tea.Cmd {
	c := s.c
	if m, ok := msg.(actionDoneMsg); ok {
		if s.run.finish(m) && m.err == nil {
			s.res = m.res.(*core.Retired)
		}
		return nil
	}
	if s.run.running {
		return nil
	}
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch {
		case s.run.done && key.Matches(k, s.keys.enter, s.keys.back):
			c.finishAction()
			return nil
		case s.run.done:
			return nil
		case key.Matches(k, s.keys.back):
			c.goTo(scrActions)
			return nil
		case key.Matches(k, s.keys.enter):
			typed := strings.TrimSpace(s.f.Value())
			if typed != s.word() {
				s.run.err = "that is not " + s.word() + ": nothing was written. Type the name exactly, or press Esc"
				s.f.SetValue("")
				return nil
			}
			done := s.run.start(scrRetire)
			sel := c.selector()
			return func() tea.Msg {
				res, err := core.Retire(context.Background(), core.RetireOptions{Selector: sel, Confirm: typed})
				if err != nil {
					return done(nil, err)
				}
				return done(res, nil)
			}
		}
	}
	if !s.run.done {
		before := s.f.Value()
		s.f, _ = s.f.Update(msg)
		if s.f.Value() != before {
			s.run.err = ""
		}
	}
	return nil
}

func (s *retireScreen) Status() string {
	return s.run.status(s.c, "Erasing the keyslots and the header, proving it…")
}

func (s *retireScreen) View() (string, int) {
	c := s.c
	st := &c.st
	w := c.width
	var b strings.Builder
	if r := s.res; s.run.done && r != nil {
		b.WriteString(para(st.ok, "✓ "+r.Target+" is retired: no passphrase, recovery key or host key opens it any more.", w, "  "))
		b.WriteString(st.title.Render("Proved") + "\n")
		for _, p := range r.Proved {
			b.WriteString(para(lipglossPlain, "✓ "+p, w, "    "))
		}
		if r.HeaderBackupNote != "" {
			b.WriteString(para(st.warn, "⚠ header backup: "+r.HeaderBackupNote, w, "  "))
		}
		if r.Recorded {
			b.WriteString(para(st.faint, "The inventory shows it retired; its label is free again.", w, ""))
		}
		return b.String(), -1
	}
	label := c.knownDisk.label
	if label == "" {
		label = "this disk"
	}
	b.WriteString(para(st.danger, "⚠ Retiring "+c.target.Path+" ("+label+") wipes every keyslot and the LUKS header: what is on it is gone for good, for every passphrase, recovery key and host key.", w, "  ") + "\n")
	b.WriteString(para(lipglossPlain, "To retire it, type exactly: "+s.word(), w, "") + "\n")
	b.WriteString(s.f.View() + "\n")
	return b.String(), -1
}
