package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	lsecret "luksdock/internal/secret"
	"luksdock/luks"
	"luksdock/pipeline"
)

// enrollScreen lets this machine unlock a known disk on its own when it is
// docked (core.Enroll, as luksdock host enroll does): the passphrase
// authorises a keyslot for a random key kept in this host's key file.
type enrollScreen struct {
	c    *shared
	pass secret
	run  actionRun
	res  *enrolled
	keys struct{ enter, back key.Binding }
}

// enrolled is what enrolling did.
type enrolled struct {
	slot    luks.HostSlot
	keyFile string
}

func newEnroll(c *shared) screen {
	s := &enrollScreen{c: c}
	s.keys.enter = keyEnter("enroll")
	s.keys.back = keyBack("back")
	return s
}

func (s *enrollScreen) Title() string { return "Enroll this host" }
func (s *enrollScreen) Typing() bool  { return !s.run.done }
func (s *enrollScreen) Skip() bool    { return s.c.action != actEnroll }
func (s *enrollScreen) Busy() bool    { return s.run.Busy() }
func (s *enrollScreen) ShortHelp() []key.Binding {
	if s.run.done {
		return []key.Binding{keyEnter("disk list")}
	}
	return []key.Binding{s.keys.enter, s.keys.back}
}
func (s *enrollScreen) FullHelp() [][]key.Binding {
	return [][]key.Binding{s.ShortHelp(), fieldKeys.list()}
}

func (s *enrollScreen) Enter() tea.Cmd {
	s.pass.Clear()
	s.run.reset()
	s.res = nil
	return nil
}

func (s *enrollScreen) Update(msg tea.Msg) tea.Cmd {
	c := s.c
	if m, ok := msg.(actionDoneMsg); ok {
		if s.run.finish(m) && m.err == nil {
			s.res = m.res.(*enrolled)
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
			return s.enroll()
		}
	}
	if !s.run.done && editSecret(&s.pass, msg) {
		s.run.err = ""
	}
	return nil
}

func (s *enrollScreen) enroll() tea.Cmd {
	if s.pass.Len() == 0 {
		s.run.err = "type the disk's passphrase first: it authorises the new keyslot"
		return nil
	}
	if err := passphraseErr(&s.pass); err != nil {
		s.run.err = err.Error()
		return nil
	}
	p, _ := unlockSecret(&s.pass)
	s.pass.Clear()
	t := s.c.target
	done := s.run.start(scrEnroll)
	return func() tea.Msg {
		defer lsecret.Free(p)
		d, ok := core.LUKSDevice(t.Path, t.Content, t.Parts)
		if !ok {
			return done(nil, fmt.Errorf("%s holds no LUKS volume (it holds %s)", t.Path, t.Content))
		}
		info, err := luks.ReadHeaderDevice(d)
		if err != nil {
			return done(nil, err)
		}
		h, err := core.Enroll(context.Background(), d, p)
		var ce *luks.Error
		if errors.Is(err, luks.ErrWrongPassphrase) || (errors.As(err, &ce) && ce.Code == 2) {
			err = &pipeline.Error{Kind: pipeline.KindWrongPassphrase, Err: errors.New("the passphrase (or recovery key) opens no keyslot of " + t.Path)}
		}
		if err != nil {
			return done(nil, err)
		}
		return done(&enrolled{slot: h, keyFile: core.KeyFile(info.UUID)}, nil)
	}
}

func (s *enrollScreen) Status() string { return s.run.status(s.c, "Adding this host's keyslot…") }

func (s *enrollScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	if r := s.res; s.run.done && r != nil {
		b.WriteString(para(st.ok, fmt.Sprintf("✓ %s is enrolled on %s: keyslot %d.", r.slot.Name, c.target.Path, r.slot.Keyslot), c.width, "  "))
		b.WriteString(c.kv("Key file", r.keyFile+" (0400 root)", lipglossPlain))
		b.WriteString("\n" + para(lipglossPlain, "Docked here again, the disk is unlocked with this key and its backup runs (luksdock dock). luksdock host forget undoes it.", c.width, ""))
		return b.String(), -1
	}
	b.WriteString(para(lipglossPlain, "This host gets a keyslot of its own on "+c.target.Path+": a random key in "+core.ConfigDir()+"/keys (root only), named in the disk's token. Type the passphrase to authorise it.", c.width, "") + "\n")
	focus := strings.Count(b.String(), "\n")
	b.WriteString(maskedLine(c, "Passphrase", &s.pass, true))
	return b.String(), focus
}
