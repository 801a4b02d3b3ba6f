package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"luksdock/core"
	"luksdock/luks"
	"luksdock/pipeline"
)

// enrollScreen lets this machine unlock a known disk on its own when it is
// docked (core.Enroll, as luksdock host enroll does): the passphrase
// authorises a keyslot for a random key kept in this host's key file.
type enrollScreen struct{ secretAction }

// enrolled is what enrolling did.
type enrolled struct {
	slot  luks.HostSlot
	where string // core.HostKeyWhere
}

func newEnroll(c *shared) screen {
	s := &enrollScreen{}
	s.actionBase = newActionBase(c, actEnroll, "Enroll this host", "Adding this host's keyslot…", "enroll")
	s.empty = "type the disk's passphrase first: it authorises the new keyslot"
	s.work = func(p []byte, _ bool) func() (any, error) {
		t := c.target
		return func() (any, error) {
			d, ok := core.LUKSDevice(t.Path, t.Content, t.Parts)
			if !ok {
				return nil, fmt.Errorf("%s holds no LUKS volume (it holds %s)", t.Path, t.Content)
			}
			info, err := luks.ReadHeaderDevice(d)
			if err != nil {
				return nil, err
			}
			h, err := core.Enroll(context.Background(), d, p)
			if core.IsWrongPassphrase(err) {
				err = &pipeline.Error{Kind: pipeline.KindWrongPassphrase, Err: errors.New("the passphrase (or recovery key) opens no keyslot of " + t.Path)}
			}
			if err != nil {
				return nil, err
			}
			return &enrolled{slot: h, where: core.HostKeyWhere(h, info.UUID)}, nil
		}
	}
	return s
}

func (s *enrollScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	if r, _ := s.res.(*enrolled); s.run.done && r != nil {
		b.WriteString(para(st.ok, fmt.Sprintf("✓ %s is enrolled on %s: keyslot %d.", r.slot.Name, c.target.Path, r.slot.Keyslot), c.width, "  "))
		b.WriteString(c.kv("Host key", r.where, lipglossPlain))
		b.WriteString("\n" + para(lipglossPlain, "Docked here again, the disk is unlocked with this key and its backup runs (luksdock dock). luksdock host forget undoes it.", c.width, ""))
		return b.String(), -1
	}
	return s.entryView(&b, "This host gets a keyslot of its own on "+c.target.Path+": sealed to its TPM2 where it has one, else a random key in "+core.ConfigDir()+"/keys (root only), named in the disk's token. Type the passphrase to authorise it.", "Passphrase")
}
