package ui

import (
	"context"
	"os"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	lsecret "luksdock/internal/secret"
	"luksdock/pipeline"
)

// openScreen unlocks a known disk with its passphrase or recovery key and
// mounts its filesystem (core.Open, as luksdock open does), then says
// where.
type openScreen struct {
	c    *shared
	pass secret
	run  actionRun
	res  *core.Opened
	keys struct{ enter, back key.Binding }
}

func newOpen(c *shared) screen {
	s := &openScreen{c: c}
	s.keys.enter = keyEnter("open")
	s.keys.back = keyBack("back")
	return s
}

func (s *openScreen) Title() string { return "Open: unlock and mount" }
func (s *openScreen) Typing() bool  { return !s.run.done }
func (s *openScreen) Skip() bool    { return s.c.action != actOpen }
func (s *openScreen) Busy() bool    { return s.run.Busy() }
func (s *openScreen) ShortHelp() []key.Binding {
	if s.run.done {
		return []key.Binding{keyEnter("disk list")}
	}
	return []key.Binding{s.keys.enter, s.keys.back}
}
func (s *openScreen) FullHelp() [][]key.Binding {
	return [][]key.Binding{s.ShortHelp(), fieldKeys.list()}
}

func (s *openScreen) Enter() tea.Cmd {
	s.pass.Clear()
	s.run.reset()
	s.res = nil
	return nil
}

func (s *openScreen) Update(msg tea.Msg) tea.Cmd {
	c := s.c
	if m, ok := msg.(actionDoneMsg); ok {
		if s.run.finish(m) && m.err == nil {
			s.res = m.res.(*core.Opened)
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
		case key.Matches(k, s.keys.back):
			s.pass.Clear()
			c.goTo(scrActions)
			return nil
		case key.Matches(k, s.keys.enter):
			return s.open()
		}
	}
	if !s.run.done && editSecret(&s.pass, msg) {
		s.run.err = ""
	}
	return nil
}

func (s *openScreen) open() tea.Cmd {
	if s.pass.Len() == 0 {
		s.run.err = "type the passphrase or the recovery key first"
		return nil
	}
	if err := passphraseErr(&s.pass); err != nil {
		s.run.err = err.Error()
		return nil
	}
	sec, isKey := unlockSecret(&s.pass)
	s.pass.Clear()
	done := s.run.start(scrOpen)
	sel, engine := s.c.selector(), pipeline.Engine(s.c.cfg.Engine)
	return func() tea.Msg {
		defer lsecret.Free(sec)
		user, err := core.MountUser(os.Getenv)
		if err != nil {
			return done(nil, err)
		}
		res, err := core.Open(context.Background(), core.OpenOptions{Selector: sel, Secret: sec, SecretIsRecoveryKey: isKey, User: user, Engine: engine})
		if err != nil {
			return done(nil, err)
		}
		return done(res, nil)
	}
}

func (s *openScreen) Status() string { return s.run.status(s.c, "Unlocking and mounting…") }

func (s *openScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	if r := s.res; s.run.done && r != nil {
		if r.Already {
			b.WriteString(para(st.ok, "✓ "+r.Target+" was already open.", c.width, "  "))
		} else {
			b.WriteString(para(st.ok, "✓ "+r.Target+" ("+r.Label+") is unlocked ("+string(r.Engine)+" engine) and mounted.", c.width, "  "))
		}
		b.WriteString(c.kv("Mounted at", r.Mountpoint, st.key))
		b.WriteString("\n" + para(lipglossPlain, "Use it there. When you are done, choose the disk again and Close it (or run luksdock close --mountpoint "+r.Mountpoint+"), so it can be pulled.", c.width, ""))
		return b.String(), -1
	}
	b.WriteString(para(lipglossPlain, "Type the passphrase of "+c.target.Path+", or its recovery key. It unlocks the disk and mounts its filesystem under /media, as the desktop does. Nothing on the disk is changed.", c.width, "") + "\n")
	focus := strings.Count(b.String(), "\n")
	b.WriteString(maskedLine(c, "Passphrase or key", &s.pass, true))
	return b.String(), focus
}
