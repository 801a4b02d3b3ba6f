package ui

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	lsecret "luksdock/internal/secret"
)

// passwdScreen changes a known disk's passphrase (core.Passwd, as luksdock
// passwd does): the old secret (the passphrase, or the recovery key when
// that is lost), then the new passphrase twice, with the Passphrase
// screen's limit (512 bytes) and strength check (a weak one needs the box
// ticked).
type passwdScreen struct {
	actionBase
	sec   [3]secret // old, new, again
	focus int       // 0-2: the entries; 3: the weak-passphrase box
	ack   bool
	v     verdict // of the new passphrase, once judged
	vgen  int
	more  struct{ next, prev, accept key.Binding }
}

// passwdVerdict is zxcvbn's verdict on the new passphrase, judged in a
// command when Enter asks for the change.
type passwdVerdict struct {
	gen int
	v   verdict
}

var passwdLabels = [3]string{"Old secret", "New passphrase", "Again"}

func newPasswd(c *shared) screen {
	s := &passwdScreen{}
	s.actionBase = newActionBase(c, actPasswd, "Change the passphrase", "Adding the new passphrase, proving it, removing the old one…", "next/change")
	s.keys.back = keyBack("back (clears it)")
	s.more.next = key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab/↓", "next field"))
	s.more.prev = key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab/↑", "previous"))
	s.more.accept = key.NewBinding(key.WithKeys("space"), key.WithHelp("space", "accept a weak passphrase"))
	return s
}

func (s *passwdScreen) Typing() bool { return !s.run.done && s.focus < 3 }
func (s *passwdScreen) Masked() bool { return !s.run.done && !s.run.running && s.focus < 3 }
func (s *passwdScreen) fields() int {
	if s.v.weak() {
		return 4
	}
	return 3
}

func (s *passwdScreen) ShortHelp() []key.Binding {
	if s.run.done {
		return []key.Binding{keyEnter("disk list")}
	}
	b := []key.Binding{s.keys.enter, s.keys.back, s.more.next}
	if s.focus == 3 {
		b = append(b, s.more.accept)
	}
	return b
}
func (s *passwdScreen) FullHelp() [][]key.Binding {
	if s.run.done {
		return [][]key.Binding{s.ShortHelp()}
	}
	return [][]key.Binding{{s.keys.enter, s.keys.back, s.more.next, s.more.prev, s.more.accept}, fieldKeys.list()}
}

func (s *passwdScreen) clear() {
	for i := range s.sec {
		s.sec[i].Clear()
	}
	s.focus, s.ack, s.v = 0, false, verdict{}
	s.vgen++
}

func (s *passwdScreen) Enter() tea.Cmd {
	s.clear()
	s.begin()
	return nil
}

func (s *passwdScreen) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case actionDoneMsg:
		if s.took(msg) {
			if msg.err == nil {
				s.clear()
			} else {
				s.focus = 0
			}
		}
		return nil
	case passwdVerdict:
		if msg.gen != s.vgen || s.run.running {
			return nil
		}
		s.v = msg.v
		if s.v.weak() && !s.ack {
			s.focus = 3
			s.run.err = "the new passphrase is weak: tick the box with space to use it anyway, or change it"
			return nil
		}
		return s.change()
	}
	if s.run.running {
		return nil
	}
	if k, ok := msg.(tea.KeyPressMsg); ok {
		if cmd, ok := s.press(k, func() { s.clear(); s.run.reset() }, s.enter); ok {
			return cmd
		}
		switch {
		case key.Matches(k, s.more.next):
			s.focus = (s.focus + 1) % s.fields()
			return nil
		case key.Matches(k, s.more.prev):
			s.focus = (s.focus + s.fields() - 1) % s.fields()
			return nil
		case s.focus == 3:
			if key.Matches(k, s.more.accept) {
				s.ack = !s.ack
			}
			return nil
		}
	}
	if s.focus < 3 && !s.run.done && editSecret(s.c.in, &s.sec[s.focus], msg) {
		s.run.err = ""
		if s.focus == 1 {
			s.ack, s.v = false, verdict{}
			s.vgen++
		}
		s.check()
	}
	return nil
}

// check says at once what is wrong with the new entries.
func (s *passwdScreen) check() {
	p1, p2 := s.sec[1].Bytes(), s.sec[2].Bytes()
	switch {
	case s.sec[1].Len() == 0:
	case passphraseErr(&s.sec[1]) != nil:
		s.run.err = passphraseErr(&s.sec[1]).Error()
	case s.sec[2].Over() > 0 || (len(p2) > 0 && !bytes.HasPrefix(p1, p2)):
		s.run.err = "the two entries of the new passphrase do not match"
	}
}

// enter moves on to the next entry, or, on the last, has the new
// passphrase judged (then changed).
func (s *passwdScreen) enter() tea.Cmd {
	switch {
	case s.sec[0].Len() == 0:
		s.focus, s.run.err = 0, "type the disk's passphrase now (or its recovery key, if the passphrase is lost)"
		return nil
	case passphraseErr(&s.sec[0]) != nil:
		s.focus, s.run.err = 0, passphraseErr(&s.sec[0]).Error()
		return nil
	case s.focus == 0:
		s.focus = 1
		return nil
	case s.sec[1].Len() == 0:
		s.focus, s.run.err = 1, "type the new passphrase"
		return nil
	case passphraseErr(&s.sec[1]) != nil:
		s.focus, s.run.err = 1, passphraseErr(&s.sec[1]).Error()
		return nil
	case s.focus == 1:
		s.focus = 2
		return nil
	case s.sec[2].Len() == 0:
		s.focus, s.run.err = 2, "type the new passphrase again under Again, so a typing mistake is caught now"
		return nil
	case s.sec[2].Over() > 0 || !bytes.Equal(s.sec[1].Bytes(), s.sec[2].Bytes()):
		s.run.err = "the two entries of the new passphrase do not match"
		return nil
	case bytes.Equal(s.sec[0].Bytes(), s.sec[1].Bytes()):
		s.focus, s.run.err = 1, "the new passphrase is the old one: choose another"
		return nil
	}
	if s.v.set {
		if s.v.weak() && !s.ack {
			s.focus = 3
			s.run.err = "the new passphrase is weak: tick the box with space to use it anyway, or change it"
			return nil
		}
		return s.change()
	}
	s.vgen++
	gen, total := s.vgen, s.sec[1].Len()
	p := lsecret.Clone(judged(s.sec[1].Bytes()))
	in := core.StrengthInputs(s.c.knownDisk.label, s.c.target.Name)
	return func() tea.Msg {
		defer lsecret.Free(p)
		return passwdVerdict{gen: gen, v: assess(p, in, total)}
	}
}

// change runs core.Passwd in a command.
func (s *passwdScreen) change() tea.Cmd {
	old, isKey := core.UnlockSecret(s.sec[0].Bytes())
	nw := lsecret.Clone(s.sec[1].Bytes())
	o := core.PasswdOptions{Selector: s.c.selector(), Old: old, OldIsRecoveryKey: isKey, New: nw, AcceptWeak: true, PBKDF: s.c.cfg.PBKDF}
	return s.runCore(func() (any, error) {
		defer lsecret.Free(old)
		defer lsecret.Free(nw)
		return core.Passwd(context.Background(), o)
	})
}

func (s *passwdScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	if r, _ := s.res.(*core.KeyChange); s.run.done && r != nil {
		b.WriteString(para(st.ok, "✓ The passphrase of "+r.Target+" is changed (keyslot "+strconv.Itoa(r.NewSlot)+").", c.width, "  "))
		b.WriteString(para(lipglossPlain, "Proved: "+r.Proved, c.width, "  "))
		if r.Strength != nil {
			b.WriteString(para(lipglossPlain, "Strength: "+r.Strength.Summary(), c.width, "  "))
		}
		if r.Recorded {
			b.WriteString(para(st.faint, "The inventory records the change ("+r.Changed.Format("2006-01-02")+").", c.width, "  "))
		}
		return b.String(), -1
	}
	b.WriteString(para(lipglossPlain, "Old secret: the passphrase of "+c.target.Path+", or its recovery key if the passphrase is lost. The new passphrase is added and proved before the old one is removed, so the disk always opens.", c.width, "") + "\n")
	focus := -1
	for i, label := range passwdLabels {
		if s.focus == i {
			focus = strings.Count(b.String(), "\n")
		}
		b.WriteString(maskedLine(c, label, &s.sec[i], s.focus == i))
	}
	if s.v.weak() {
		box, marker := "[ ]", "  "
		if s.ack {
			box = "[x]"
		}
		if s.focus == 3 {
			marker = "› "
			focus = strings.Count(b.String(), "\n")
		}
		b.WriteString(marker + box + " use this weak passphrase anyway\n")
	}
	if s.v.set {
		vs := st.ok
		if s.v.weak() {
			vs = st.err
		}
		b.WriteString("\n" + para(vs, "Strength: "+s.v.summary(), c.width, "  "))
		if s.v.weak() {
			for _, f := range s.v.feedback {
				b.WriteString(para(st.faint, "  · "+f, c.width, "    "))
			}
		}
	}
	return b.String(), focus
}
