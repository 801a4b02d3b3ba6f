package ui

import (
	"context"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
)

// closeScreen flushes, unmounts, locks and (on USB) powers off a disk that
// is open (core.Close, as luksdock close does). While a process uses the
// filesystem it changes nothing and names the processes, as core does.
type closeScreen struct {
	c    *shared
	run  actionRun
	res  *core.Closed
	keys struct{ enter, back key.Binding }
}

func newClose(c *shared) screen {
	s := &closeScreen{c: c}
	s.keys.enter = keyEnter("close it")
	s.keys.back = keyBack("back")
	return s
}

func (s *closeScreen) Title() string { return "Close: unmount, lock, power off" }
func (s *closeScreen) Typing() bool  { return false }
func (s *closeScreen) Skip() bool    { return s.c.action != actClose }
func (s *closeScreen) Busy() bool    { return s.run.Busy() }
func (s *closeScreen) ShortHelp() []key.Binding {
	if s.run.done {
		return []key.Binding{keyEnter("disk list")}
	}
	return []key.Binding{s.keys.enter, s.keys.back}
}
func (s *closeScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }

func (s *closeScreen) Enter() tea.Cmd {
	s.run.reset()
	s.res = nil
	return nil
}

func (s *closeScreen) Update(msg tea.Msg) tea.Cmd {
	c := s.c
	switch msg := msg.(type) {
	case actionDoneMsg:
		if s.run.finish(msg) && msg.res != nil {
			s.res = msg.res.(*core.Closed)
		}
	case tea.KeyPressMsg:
		switch {
		case s.run.running:
		case s.run.done && key.Matches(msg, s.keys.enter, s.keys.back):
			c.finishAction()
		case key.Matches(msg, s.keys.back):
			c.goTo(scrActions)
		case key.Matches(msg, s.keys.enter):
			done := s.run.start(scrClose)
			sel := c.selector()
			return func() tea.Msg {
				res, err := core.Close(context.Background(), core.CloseOptions{Selector: sel})
				if err != nil && res == nil {
					return done(nil, err)
				}
				return done(res, err)
			}
		}
	}
	return nil
}

func (s *closeScreen) Status() string {
	return s.run.status(s.c, "Flushing, unmounting and locking…")
}

func (s *closeScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	if r := s.res; s.run.done && r != nil {
		switch {
		case r.Unmounted || r.Locked:
			b.WriteString(para(st.ok, "✓ "+r.Target+": unmounted "+r.Mountpoint+" and locked.", c.width, "  "))
		default:
			b.WriteString(para(st.ok, "✓ "+r.Target+" was not open.", c.width, "  "))
		}
		if r.PowerOff != "" {
			b.WriteString(c.kv("Power", r.PowerOff, lipglossPlain))
		}
		if r.PoweredOff {
			b.WriteString("\n" + para(st.key, "You can pull the disk now.", c.width, ""))
		}
		return b.String(), -1
	}
	where := c.knownDisk.mounted
	if where == "" {
		where = "its mountpoint"
	}
	b.WriteString(para(lipglossPlain, "Enter flushes the filesystem of "+c.target.Path+", unmounts it from "+where+", locks the volume and, for a disk on USB, powers it off so it can be pulled.", c.width, ""))
	b.WriteString("\n" + para(st.faint, "While a program still uses the filesystem nothing is changed: the programs are named here, so you can close them and press Enter again.", c.width, ""))
	return b.String(), -1
}
