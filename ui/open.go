package ui

import (
	"context"
	"os"
	"strings"

	"luksdock/core"
	"luksdock/pipeline"
)

// openScreen unlocks a known disk with its passphrase or recovery key and
// mounts its filesystem (core.Open, as luksdock open does), then says
// where.
type openScreen struct{ secretAction }

func newOpen(c *shared) screen {
	s := &openScreen{}
	s.actionBase = newActionBase(c, actOpen, "Open: unlock and mount", "Unlocking and mounting…", "open")
	s.empty = "type the passphrase or the recovery key first"
	s.work = func(sec []byte, isKey bool) func() (any, error) {
		sel, engine := c.selector(), pipeline.Engine(c.cfg.Engine)
		return func() (any, error) {
			user, err := core.MountUser(os.Getenv)
			if err != nil {
				return nil, err
			}
			return core.Open(context.Background(), core.OpenOptions{Selector: sel, Secret: sec, SecretIsRecoveryKey: isKey, User: user, Engine: engine})
		}
	}
	return s
}

func (s *openScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	if r, _ := s.res.(*core.Opened); s.run.done && r != nil {
		if r.Already {
			b.WriteString(para(st.ok, "✓ "+r.Target+" was already open.", c.width, "  "))
		} else {
			b.WriteString(para(st.ok, "✓ "+r.Target+" ("+r.Label+") is unlocked ("+string(r.Engine)+" engine) and mounted.", c.width, "  "))
		}
		b.WriteString(c.kv("Mounted at", r.Mountpoint, st.key))
		after := ", so it can be pulled."
		if t := c.target; t != nil && t.Image {
			after = "." // an image file has no drive to pull
		}
		b.WriteString("\n" + para(lipglossPlain, "Use it there. When you are done, choose the disk again and Close it (or run luksdock close --mountpoint "+r.Mountpoint+")"+after, c.width, ""))
		return b.String(), -1
	}
	return s.entryView(&b, "Type the passphrase of "+c.target.Path+", or its recovery key. It unlocks the disk and mounts its filesystem under /media, as the desktop does. Nothing on the disk is changed.", "Passphrase or key")
}
