package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	"luksdock/disk"
	lsecret "luksdock/internal/secret"
	"luksdock/inventory"
	"luksdock/pipeline"
)

// planScreen is 5: what will happen, step by step, with the command of
// each (copyable: wrapped only between words, with \ continuations).
type planScreen struct {
	c *shared
	pager
	remaking bool   // a plan that starts over is being made
	err      string // why it could not be made
	keys     struct{ enter, back, restart key.Binding }
}

// restartMsg is the plan remade to start over instead of continuing an
// interrupted erase.
type restartMsg struct {
	plan *pipeline.Plan
	err  error
}

func newPlanScreen(c *shared) screen {
	s := &planScreen{c: c}
	s.keys.enter = keyEnter("confirm…")
	s.keys.back = keyBack("back")
	s.keys.restart = key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "start the erase over"))
	return s
}

func (s *planScreen) Title() string { return "Plan: what will happen" }
func (s *planScreen) Typing() bool  { return false }
func (s *planScreen) ShortHelp() []key.Binding {
	if p := s.c.plan; p != nil && p.Resume != nil {
		return []key.Binding{s.keys.enter, s.keys.back, s.keys.restart, keyScroll}
	}
	return []key.Binding{s.keys.enter, s.keys.back, keyScroll}
}
func (s *planScreen) Busy() bool                { return s.remaking }
func (s *planScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }
func (s *planScreen) Enter() tea.Cmd {
	s.top, s.err, s.remaking = 0, "", false
	return nil
}

func (s *planScreen) Update(msg tea.Msg) tea.Cmd {
	if m, ok := msg.(restartMsg); ok {
		if !s.remaking {
			if m.plan != nil {
				lsecret.Free(m.plan.Opts.RecoveryKey)
			}
			return nil
		}
		s.remaking = false
		if m.err != nil {
			s.err = unwrapMsg(m.err)
			return nil
		}
		s.c.dropPlan()
		s.c.plan = m.plan
		s.top = 0
		return nil
	}
	k, ok := msg.(tea.KeyPressMsg)
	if !ok || s.remaking {
		return nil
	}
	switch {
	case key.Matches(k, s.keys.restart) && s.c.plan != nil && s.c.plan.Resume != nil:
		// the same choices, with Restart: a new plan in a command
		s.remaking = true
		o, t, inv := s.c.plan.Opts, s.c.target, s.c.inv
		o.Restart = true
		key := lsecret.Clone(o.RecoveryKey) // the one on the user's paper
		o.RecoveryKey = nil
		if inv == nil {
			inv = &inventory.File{}
		}
		return func() tea.Msg {
			// the same prepare as before, started over: core's plan
			prep, err := core.PlanPrepare(core.PrepareRequest{Target: t, Options: o, WantRecoveryKey: key != nil, RecoveryKey: key,
				Inventory: inv, Labels: []string{}})
			lsecret.Free(key) // the plan has its own copy
			if err != nil {
				return restartMsg{err: err}
			}
			return restartMsg{plan: prep.Plan}
		}
	case key.Matches(k, s.keys.back):
		s.c.back(scrPlan)
	case key.Matches(k, s.keys.enter):
		if p := s.c.plan; p != nil && p.Opts.RecoveryKey != nil && !s.c.recConfirmed {
			// not done without the recovery key on paper
			s.c.goTo(scrRecovery)
			return nil
		}
		s.c.forward(scrPlan)
	default:
		s.scroll(s.c, k, bodyLines(s.c, s))
	}
	return nil
}

func (s *planScreen) View() (string, int) {
	c := s.c
	st := &c.st
	p, t := c.plan, c.target
	if p == nil || t == nil {
		return "", -1
	}
	w := c.width
	var b strings.Builder
	what := t.Path
	if t.Disk != nil {
		if model := t.Disk.VendorModel(); model != "" {
			what += " — " + model
		}
	}
	b.WriteString(para(lipglossPlain, fmt.Sprintf("Target: %s, %s", what, disk.SizeString(t.Size)), w, "  "))
	b.WriteString(para(lipglossPlain, fmt.Sprintf("Label %q, %s, LUKS%s; engine %s (%s)", p.Opts.Label, strings.ToUpper(string(p.Opts.Table)), map[bool]string{true: "1", false: "2"}[p.Opts.LUKS1], p.Engine, p.EngineWhy), w, "  "))
	set := "none"
	if p.Opts.Set != "" {
		set = p.Opts.Set
	}
	owner := p.Owner.String()
	if why := strings.TrimPrefix(screenWords(p.OwnerWhy), "Owner "); why != owner {
		owner += " (" + why + ")"
	}
	b.WriteString(para(lipglossPlain, "Set: "+set+"; owner of the top directory: "+owner, w, "  "))
	if p.Opts.HeaderBackup != "" {
		b.WriteString(para(lipglossPlain, "Header backup: "+p.Opts.HeaderBackup, w, "  "))
	}
	b.WriteString(para(lipglossPlain, "Passphrase: "+c.strength.summary(), w, "  "))
	if p.Opts.RecoveryKey != nil {
		b.WriteString(para(lipglossPlain, "Recovery key: a second keyslot, typed back from paper", w, "  "))
	} else {
		b.WriteString(para(st.warn, "Recovery key: none (only the passphrase opens the disk)", w, "  "))
	}
	if p.Opts.Erase {
		what := "Overwrite the whole disk first"
		if p.Opts.SurfaceCheck {
			what += ", then read it all back"
		}
		b.WriteString(para(lipglossPlain, what+" (hours on a big disk; Ctrl+C stops, preparing it again continues)", w, "  "))
	}
	if r := p.Resume; r != nil {
		b.WriteString("\n" + para(st.warn, "↻ An interrupted erase of this disk can be continued: "+r.String()+". This run continues it (the disk keeps its LUKS header and key). Press r to start over instead.", w, "  "))
	} else if p.Opts.Restart {
		b.WriteString("\n" + para(st.warn, "↻ Starting over: the interrupted erase is not continued.", w, "  "))
	}
	if s.remaking {
		b.WriteString(c.spin.View() + " Making the plan that starts over…\n")
	}
	if s.err != "" {
		b.WriteString(para(st.err, "✗ "+s.err, w, "  "))
	}
	b.WriteString("\n" + st.danger.Render("This destroys everything on it:") + "\n")
	for _, d := range t.Destroys() {
		b.WriteString(para(st.danger, "  ✗ "+d, w, "    "))
	}
	for _, x := range p.Warnings {
		b.WriteString(para(st.warn, "  ⚠ "+screenWords(x), w, "    "))
	}
	b.WriteString("\n" + st.title.Render("Steps, each with the command you would type by hand:") + "\n")
	for i, step := range p.Steps {
		fmt.Fprintf(&b, "%2d. %s\n", i+1, step.Title)
		b.WriteString(c.command("    ", step.Command))
	}
	b.WriteString("\n" + para(lipglossPlain, "Enter: go to the confirmation. Nothing has been written yet.", w, ""))
	return b.String(), -1
}

// confirmScreen is 6: type the target's name to destroy it.
type confirmScreen struct {
	c    *shared
	f    field
	keys struct{ enter, back key.Binding }
}

func newConfirm(c *shared) screen {
	s := &confirmScreen{c: c, f: field{Prompt: "> ", CharLimit: 128}}
	s.keys.enter = keyEnter("destroy and prepare")
	s.keys.back = keyBack("back")
	return s
}

func (s *confirmScreen) Title() string { return "Confirm" }
func (s *confirmScreen) Typing() bool  { return true }
func (s *confirmScreen) ShortHelp() []key.Binding {
	return []key.Binding{s.keys.enter, s.keys.back}
}
func (s *confirmScreen) FullHelp() [][]key.Binding {
	return [][]key.Binding{s.ShortHelp(), fieldKeys.list()}
}

func (s *confirmScreen) Enter() tea.Cmd {
	s.f.SetValue("")
	s.f.focused = true
	return nil
}

func (s *confirmScreen) Update(msg tea.Msg) tea.Cmd {
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch {
		case key.Matches(k, s.keys.back):
			s.f.SetValue("")
			s.c.back(scrConfirm)
			return nil
		case key.Matches(k, s.keys.enter):
			if s.f.Value() != s.c.target.ConfirmWord() {
				return nil
			}
			s.c.confirmed = s.f.Value()
			s.f.SetValue("")
			s.c.forward(scrConfirm)
			return nil
		}
	}
	s.f, _ = s.f.Update(msg)
	return nil
}

func (s *confirmScreen) View() (string, int) {
	c := s.c
	st := &c.st
	w := c.width
	t := c.target
	var b strings.Builder
	word := t.ConfirmWord()
	b.WriteString(para(st.danger, "Everything on "+t.Path+" ("+disk.SizeString(t.Size)+") will be destroyed:", w, "  "))
	for _, d := range t.Destroys() {
		b.WriteString(para(st.danger, "  ✗ "+d, w, "    "))
	}
	if t.Verdict.Internal {
		b.WriteString("\n" + para(st.err, "This is an INTERNAL disk ("+t.Verdict.InternalReason+"), not a disk in the dock.", w, ""))
	}
	vs := st.faint
	if c.strength.weak() {
		vs = st.err
	}
	b.WriteString("\n" + para(vs, "Passphrase: "+c.strength.summary()+map[bool]string{true: " — you chose to use it anyway", false: ""}[c.strength.weak()], w, "  "))
	what := "the disk's kernel name"
	if t.Image {
		what = "the image's file name"
	}
	b.WriteString("\n" + para(lipglossPlain, fmt.Sprintf("To go ahead, type %s exactly: %s", what, word), w, "") + "\n")
	b.WriteString(s.f.View() + "\n\n")
	if s.f.Value() == word {
		b.WriteString(para(st.danger, "Enter destroys "+t.Path+" and prepares it.", w, ""))
	} else {
		b.WriteString(para(st.faint, "Enter stays disabled until the name matches. Esc goes back.", w, ""))
	}
	return b.String(), -1
}
