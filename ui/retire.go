package ui

import (
	"context"
	"strings"

	tea "charm.land/bubbletea/v2"

	"luksdock/core"
)

// retireScreen crypto-erases a known disk (core.Retire, as luksdock retire
// does) once its name is typed, as prepare's Confirm screen asks, and shows
// what core proved afterwards.
type retireScreen struct {
	actionBase
	f field
}

func newRetire(c *shared) screen {
	s := &retireScreen{f: field{Prompt: "> ", CharLimit: 256}}
	s.actionBase = newActionBase(c, actRetire, "Retire: crypto-erase the disk", "Erasing the keyslots and the header, proving it…", "retire it")
	return s
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
	s.begin()
	return nil
}

func (s *retireScreen) Update(msg tea.Msg) tea.Cmd {
	if m, ok := msg.(actionDoneMsg); ok && m.err == nil && s.run.running && m.gen == s.run.gen {
		// retired: no verified result of this disk stays in the summary
		s.c.dropResults(s.c.target.Path)
	}
	return s.update(msg, nil, s.retire, func(msg tea.Msg) bool {
		before := s.f.Value()
		s.f, _ = s.f.Update(msg)
		return s.f.Value() != before
	})
}

// retire checks the typed name and runs core.Retire in a command.
func (s *retireScreen) retire() tea.Cmd {
	typed := strings.TrimSpace(s.f.Value())
	if typed != s.word() {
		s.run.err = "that is not " + s.word() + ": nothing was written. Type the name exactly, or press Esc"
		s.f.SetValue("")
		return nil
	}
	sel := s.c.selector()
	return s.runCore(func() (any, error) {
		return core.Retire(context.Background(), core.RetireOptions{Selector: sel, Confirm: typed})
	})
}

func (s *retireScreen) View() (string, int) {
	c := s.c
	st := &c.st
	w := c.width
	var b strings.Builder
	if r, _ := s.res.(*core.Retired); s.run.done && r != nil {
		b.WriteString(para(st.ok, "✓ "+r.Target+" is retired: no passphrase, recovery key or host key opens it any more.", w, "  "))
		b.WriteString(st.title.Render("Proved") + "\n")
		for _, p := range r.Proved {
			b.WriteString(para(lipglossPlain, "✓ "+p, w, "    "))
		}
		if r.HeaderBackupNote != "" {
			b.WriteString(para(st.warn, "⚠ header backup: "+r.HeaderBackupNote, w, "  "))
		}
		if r.HostKeyRemoved != "" {
			b.WriteString(para(lipglossPlain, "This host's key "+r.HostKeyRemoved+" is removed.", w, "  "))
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
