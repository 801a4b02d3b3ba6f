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
type closeScreen struct{ actionBase }

func newClose(c *shared) screen {
	s := &closeScreen{}
	s.actionBase = newActionBase(c, actClose, "Close: unmount, lock, power off", "Flushing, unmounting and locking…", "close it")
	return s
}

func (s *closeScreen) Typing() bool              { return false }
func (s *closeScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }

func (s *closeScreen) Enter() tea.Cmd {
	s.begin()
	return nil
}

func (s *closeScreen) Update(msg tea.Msg) tea.Cmd { return s.update(msg, nil, s.close, nil) }

// close runs core.Close in a command; what it did is shown even when it
// then failed (a process still using the filesystem).
func (s *closeScreen) close() tea.Cmd {
	done := s.start()
	sel := s.c.selector()
	return func() tea.Msg {
		res, err := core.Close(context.Background(), core.CloseOptions{Selector: sel})
		if err != nil && res == nil {
			return done(nil, err)
		}
		return done(res, err)
	}
}

func (s *closeScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	if r, _ := s.res.(*core.Closed); s.run.done && r != nil {
		switch {
		case r.Unmounted:
			b.WriteString(para(st.ok, "✓ "+r.Target+": unmounted "+r.Mountpoint+" and locked.", c.width, "  "))
		case r.Locked:
			b.WriteString(para(st.ok, "✓ "+r.Target+": locked.", c.width, "  "))
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
	if where := c.knownDisk.mounted; where != "" {
		b.WriteString(para(lipglossPlain, "Enter flushes the filesystem of "+c.target.Path+", unmounts it from "+where+", locks the volume and, for a disk on USB, powers it off so it can be pulled.", c.width, ""))
	} else {
		b.WriteString(para(lipglossPlain, "Enter locks the volume of "+c.target.Path+" (it is unlocked, not mounted) and, for a disk on USB, powers it off so it can be pulled.", c.width, ""))
	}
	b.WriteString("\n" + para(st.faint, "While a program still uses the filesystem nothing is changed: the programs are named here, so you can close them and press Enter again.", c.width, ""))
	return b.String(), -1
}
