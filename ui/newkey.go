package ui

import (
	"context"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	lsecret "luksdock/internal/secret"
	"luksdock/recovery"
)

// newKeyScreen replaces a known disk's recovery key: the passphrase
// (checked before anything is shown), then the new key, shown once and
// typed back from the paper as on prepare's Recovery screen, then
// core.ReplaceRecoveryKeyWith adds it, proves it and removes the old
// key's keyslot. The key is never written to a file.
type newKeyScreen struct {
	actionBase
	pass  secret
	phase int // 0: passphrase; 1: the key shown; 2: groups typed back
	key   []byte
	ch    recovery.Challenge
	f     field
}

// keyChecked is the result of the passphrase check that comes before the
// new key is shown.
type keyChecked struct{}

func newNewKey(c *shared) screen {
	s := &newKeyScreen{f: field{Prompt: "> ", CharLimit: 2 * recovery.Len}}
	s.actionBase = newActionBase(c, actRecoveryKey, "New recovery key", "", "continue")
	return s
}

func (s *newKeyScreen) Typing() bool { return !s.run.done && s.phase != 1 }
func (s *newKeyScreen) Masked() bool { return !s.run.done && !s.run.running && s.phase == 0 }

func (s *newKeyScreen) forget() {
	s.pass.Clear()
	lsecret.Free(s.key)
	s.key, s.ch, s.phase = nil, recovery.Challenge{}, 0
	s.f.SetValue("")
	s.f.focused = false
}

func (s *newKeyScreen) Enter() tea.Cmd {
	s.forget()
	s.begin()
	s.help()
	return nil
}

func (s *newKeyScreen) help() {
	switch s.phase {
	case 0:
		s.keys.enter.SetHelp("enter", "check it")
		s.keys.back.SetHelp("esc", "back")
	case 1:
		s.keys.enter.SetHelp("enter", "I wrote it down")
		s.keys.back.SetHelp("esc", "back (drops this key)")
	case 2:
		s.keys.enter.SetHelp("enter", "check and replace")
		s.keys.back.SetHelp("esc", "show the key again")
	}
}

func (s *newKeyScreen) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case actionDoneMsg:
		if !s.run.finish(msg) {
			return nil
		}
		switch {
		case msg.err != nil && s.phase == 0:
			s.pass.Clear()
		case msg.err != nil:
			s.phase = 2 // the key stays: the same key finishes an interrupted change
		case s.phase == 0:
			s.run.done = false
			return s.showKey()
		default:
			s.res = msg.res
			s.forget()
		}
		s.help()
		return nil
	case tea.KeyPressMsg:
		if s.run.running {
			return nil
		}
		if s.run.done {
			if key.Matches(msg, s.keys.enter, s.keys.back) {
				s.c.finishAction()
			}
			return nil
		}
		switch {
		case key.Matches(msg, s.keys.back):
			s.back()
			return nil
		case key.Matches(msg, s.keys.enter):
			return s.enter()
		}
	}
	switch s.phase {
	case 0:
		if editSecret(s.c.in, &s.pass, msg) {
			s.run.err = ""
		}
	case 2:
		before := s.f.Value()
		s.f, _ = s.f.Update(msg)
		if s.f.Value() != before {
			s.run.err = ""
		}
	}
	return nil
}

func (s *newKeyScreen) back() {
	s.run.err = ""
	switch s.phase {
	case 0, 1:
		s.forget()
		s.c.goTo(scrActions)
	case 2:
		s.phase = 1
		s.f.SetValue("")
		s.f.focused = false
	}
	s.help()
}

func (s *newKeyScreen) enter() tea.Cmd {
	switch s.phase {
	case 0:
		if s.run.refused(&s.pass, "type the disk's passphrase first: it authorises the new key") {
			return nil
		}
		k, isKey := core.UnlockSecret(s.pass.Bytes())
		lsecret.Free(k)
		if isKey {
			s.run.err = "that is a recovery key: type the passphrase here (the key is what is replaced)"
			s.pass.Clear()
			return nil
		}
		p := lsecret.Clone(s.pass.Bytes())
		sel := s.c.selector()
		return s.runCore(func() (any, error) {
			defer lsecret.Free(p)
			return keyChecked{}, core.CheckSecret(sel, p, false)
		})
	case 1:
		s.phase = 2
		s.f.focused = true
	case 2:
		if !s.ch.Check(s.key, []byte(s.f.Value())) {
			s.run.err = "that is not " + groupsText(s.ch) + " of the key: look at your paper again (Esc shows the key again)"
			s.f.SetValue("")
			return nil
		}
		s.f.SetValue("")
		return s.replace()
	}
	s.help()
	return nil
}

// showKey makes the new key once the passphrase is known to open the disk.
func (s *newKeyScreen) showKey() tea.Cmd {
	k, err := recovery.Generate()
	if err == nil {
		s.ch, err = recovery.NewChallenge(2)
	}
	if err != nil {
		lsecret.Free(k)
		s.run.err = "making the recovery key: " + err.Error()
		return nil
	}
	s.key, s.phase = k, 1
	s.help()
	return nil
}

// replace runs core.ReplaceRecoveryKeyWith in a command.
func (s *newKeyScreen) replace() tea.Cmd {
	p, k := lsecret.Clone(s.pass.Bytes()), lsecret.Clone(s.key)
	o := core.RecoveryKeyOptions{Selector: s.c.selector(), Passphrase: p, PBKDF: s.c.cfg.PBKDF}
	return s.runCore(func() (any, error) {
		defer lsecret.Free(p)
		defer lsecret.Free(k)
		return core.ReplaceRecoveryKeyWith(context.Background(), o, k)
	})
}

func (s *newKeyScreen) Status() string {
	w := "Checking the passphrase…"
	if s.phase == 2 {
		w = "Adding the new key, proving it, removing the old one…"
	}
	return s.run.status(s.c, w)
}

func (s *newKeyScreen) View() (string, int) {
	c := s.c
	st := &c.st
	w := c.width
	var b strings.Builder
	if r, _ := s.res.(*core.KeyChange); s.run.done && r != nil {
		b.WriteString(para(st.ok, "✓ "+r.Target+" has a new recovery key; the one you wrote down before no longer opens it.", w, "  "))
		b.WriteString(para(lipglossPlain, "Proved: "+r.Proved, w, "  "))
		b.WriteString("\n" + para(lipglossPlain, "Destroy the old paper; keep the new one apart from the disk.", w, ""))
		return b.String(), -1
	}
	switch s.phase {
	case 0:
		b.WriteString(para(lipglossPlain, "Type the passphrase of "+c.target.Path+". It authorises the new recovery key; the key is then shown once, for you to write down and type back. Only then is it added and the old key's keyslot removed.", w, "") + "\n")
		focus := strings.Count(b.String(), "\n")
		b.WriteString(maskedLine(c, "Passphrase", &s.pass, true))
		return b.String(), focus
	case 2:
		b.WriteString(para(lipglossPlain, "The key is hidden now. From what you wrote down, "+strings.ToLower(s.ch.Prompt()[:1])+s.ch.Prompt()[1:]+" (dashes and spaces do not matter):", w, "") + "\n")
		b.WriteString(s.f.View() + "\n")
		return b.String(), -1
	}
	b.WriteString(st.title.Render("New recovery key") + "\n\n")
	for _, l := range keyLines(s.key) {
		b.WriteString("  " + st.key.Render(l) + "\n")
	}
	b.WriteString("\n" + st.faint.Render("As typed at the unlock prompt:") + "\n" + typedLines(st, s.key, w) + "\n")
	b.WriteString(para(lipglossPlain, "Shown only now and stored nowhere but in the disk's header: write it on paper and keep the paper apart from the disk.", w, ""))
	return b.String(), -1
}
