package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/disk"
	"luksdock/pipeline"
)

// doneScreen is 8: the verified disk and how to unlock it by hand.
type doneScreen struct {
	c *shared
	pager
	keys struct{ another, back, quit key.Binding }
}

func newDone(c *shared) screen {
	s := &doneScreen{c: c}
	s.keys.another = key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "prepare another disk"))
	s.keys.back = keyBack("disk list")
	s.keys.quit = key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "quit"))
	return s
}

func (s *doneScreen) Title() string { return "Done: a verified backup disk" }
func (s *doneScreen) Typing() bool  { return false }
func (s *doneScreen) ShortHelp() []key.Binding {
	return []key.Binding{s.keys.another, s.keys.back, s.keys.quit, keyScroll}
}
func (s *doneScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }
func (s *doneScreen) Enter() tea.Cmd            { s.top = 0; return nil }

func (s *doneScreen) Update(msg tea.Msg) tea.Cmd {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil
	}
	switch {
	case key.Matches(k, s.keys.another), key.Matches(k, s.keys.back):
		s.c.restart()
	case key.Matches(k, s.keys.quit):
		s.c.quitting = true
		return tea.Quit
	default:
		s.scroll(s.c, k, bodyLines(s.c, s))
	}
	return nil
}

// eventMessage is the message of the run's last event of kind k for step.
func (c *shared) eventMessage(k pipeline.EventKind, step pipeline.StepID) string {
	for i := len(c.events) - 1; i >= 0; i-- {
		if e := c.events[i]; e.Kind == k && e.Step == step {
			return e.Message
		}
	}
	return ""
}

// unlockCommands are the commands that unlock and mount r by hand.
func unlockCommands(r *pipeline.Result, p *pipeline.Plan) []string {
	name := r.FSLabel
	if p != nil && p.Target.Image {
		l := p.Layout
		return []string{
			fmt.Sprintf("LOOP=$(losetup --find --show --offset %d --sizelimit %d %s)", l.Start, l.Size, r.Target),
			"cryptsetup open $LOOP " + name,
			"mount /dev/mapper/" + name + " /mnt",
			"umount /mnt && cryptsetup close " + name + " && losetup -d $LOOP",
		}
	}
	part := r.Partition
	if p != nil {
		part = "/dev/" + disk.PartitionName(p.Target.Name, 1)
	}
	return []string{
		"cryptsetup open " + part + " " + name,
		"mount /dev/mapper/" + name + " /mnt",
		"umount /mnt && cryptsetup close " + name,
	}
}

func (s *doneScreen) View() (string, int) {
	c := s.c
	st := &c.st
	r := c.result
	if r == nil {
		return "", -1
	}
	var b strings.Builder
	kv := func(k, v string) { b.WriteString(c.kv(k, v, lipglossPlain)) }
	b.WriteString(para(st.ok, "✓ "+r.Target+" is a verified backup disk.", c.width, "  ") + "\n")
	verify := c.eventMessage(pipeline.EventDone, pipeline.StepVerify)
	if verify == "" {
		verify = "passed"
	}
	kv("Verification", verify)
	kv("Label", r.FSLabel+" (ext4; LUKS2 label "+orNone(r.LUKS.Label)+")")
	if p := c.plan; p != nil && p.Opts.Set != "" {
		kv("Set", p.Opts.Set+" (in the LUKS2 header's subsystem field and the inventory)")
	}
	kv("LUKS", fmt.Sprintf("LUKS%d, %s, %d-byte sectors, data at %s", r.LUKS.Version, r.LUKS.Cipher, r.LUKS.SectorSize, disk.SizeString(r.LUKS.DataOffset)))
	kv("LUKS UUID", r.LUKS.UUID)
	kv("Size", fmt.Sprintf("%s disk, %s usable inside", disk.SizeString(r.Size), disk.SizeString(r.LUKS.DataSize)))
	kv("Partition", r.Partition)
	if r.HeaderBackup != "" {
		kv("Header backup", r.HeaderBackup+" (keep it safe and off this disk)")
	} else {
		kv("Header backup", "none made (cryptsetup luksHeaderBackup can make one later; with any passphrase valid then, it opens the disk forever)")
	}
	kv("Passphrase", c.strength.summary())
	if r.RecoveryKey && len(r.RemovedKeyslots) > 0 {
		kv("Recovery key", "the one shown in this run opens this disk too (verify proved it); the interrupted run's no longer does (its keyslot was removed): throw that paper away")
	} else if r.RecoveryKey {
		kv("Recovery key", "opens this disk too (verify proved it); keep the paper apart from the disk")
	} else if len(r.RemovedKeyslots) > 0 {
		kv("Recovery key", "none: only the passphrase opens this disk (the interrupted run's recovery key no longer does)")
	} else {
		kv("Recovery key", "none: only the passphrase opens this disk")
	}
	if r.Owner != "" {
		kv("Owner", "the top directory belongs to "+r.Owner+" (uid:gid)")
	}
	kv("Sectors", sectorViews(r))
	if c.recorded != "" {
		kv("Inventory", c.recorded)
	}
	b.WriteString("\n" + st.title.Render("Unlock it by hand:") + "\n")
	for _, cmd := range unlockCommands(r, c.plan) {
		b.WriteString(c.command("  ", cmd))
	}
	if r.HeaderBackup != "" {
		b.WriteString(para(st.warn, "⚠ The header backup plus any passphrase valid when it was made opens this disk forever, even after the passphrase is changed: keep it as safe as the disk.", c.width, "  ") + "\n")
	}
	b.WriteString(para(st.faint, "A desktop asks for the passphrase when it is docked and mounts it as \""+r.FSLabel+"\".", c.width, ""))
	return b.String(), -1
}

// sectorViews says in which docks the disk unlocks, from verify's result.
func sectorViews(r *pipeline.Result) string {
	var v []string
	for _, n := range r.SectorViews {
		v = append(v, fmt.Sprint(n))
	}
	s := fmt.Sprintf("prepared with %d-byte logical sectors", r.LogicalSector)
	if r.PhysicalSector > 0 {
		s += fmt.Sprintf(" (%d physical)", r.PhysicalSector)
	}
	switch len(v) {
	case 0:
		return s + "; no sector view checked"
	case 1:
		return s + "; unlocks only where the disk shows " + v[0] + "-byte sectors"
	}
	return s + "; unlocks in docks showing " + strings.Join(v, " or ") + "-byte sectors"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// failedScreen says where a run stopped, what state the disk is in and
// what to do next. It is not numbered: it replaces Done.
type failedScreen struct {
	c *shared
	pager
	keys struct{ back key.Binding }
}

func newFailed(c *shared) screen {
	s := &failedScreen{c: c}
	s.keys.back = key.NewBinding(key.WithKeys("esc", "n"), key.WithHelp("esc/n", "disk list"))
	return s
}

func (s *failedScreen) Title() string {
	if e := s.c.runErr; e != nil && e.Kind == pipeline.KindInterrupted {
		return "Stopped: the preparation did not finish"
	}
	return "Failed: the preparation did not finish"
}
func (s *failedScreen) Typing() bool              { return false }
func (s *failedScreen) ShortHelp() []key.Binding  { return []key.Binding{s.keys.back, keyScroll} }
func (s *failedScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }
func (s *failedScreen) Enter() tea.Cmd            { s.top = 0; return nil }

func (s *failedScreen) Update(msg tea.Msg) tea.Cmd {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil
	}
	if key.Matches(k, s.keys.back) {
		s.c.restart()
		return nil
	}
	s.scroll(s.c, k, bodyLines(s.c, s))
	return nil
}

func (s *failedScreen) View() (string, int) {
	c := s.c
	st := &c.st
	e := c.runErr
	if e == nil {
		return "", -1
	}
	w := c.width
	var b strings.Builder
	kv := func(k, v string, vs ...any) { b.WriteString(c.kv(k, v, lipglossPlain)) }
	title := string(e.Step)
	var cmd string
	began := false // the step had started: it stopped or failed during it
	for _, sv := range c.steps() {
		if sv.step.ID == e.Step {
			title = sv.step.Title
			cmd = sv.command
			began = sv.state != "not started" && sv.state != "pending"
		}
	}
	if c.target != nil {
		kv("Target", c.target.Path)
	}
	switch {
	case e.Kind == pipeline.KindInterrupted && began:
		kv("Stopped during", title)
		cmd = ""
	case e.Kind == pipeline.KindInterrupted:
		kv("Stopped before", title)
		cmd = ""
	default:
		kv("Step", title)
	}
	b.WriteString(c.kv("What happened", inWizard(e.Err.Error()), st.err))
	state := inWizard(e.State)
	if state == "" {
		state = "unknown: check it with luksdock list"
	}
	kv("Disk state", state)
	var done, notStarted []pipeline.Step
	for _, sv := range c.steps() {
		switch sv.state {
		case "done":
			done = append(done, sv.step)
		case "not started":
			notStarted = append(notStarted, sv.step)
		}
	}
	kv("Steps done", orNone(titles(done)))
	kv("Not started", orNone(titles(notStarted)))
	if cmd != "" {
		b.WriteString(st.label.Render("The step was") + "\n")
		b.WriteString(c.command("  ", cmd))
	}
	b.WriteString("\n" + st.title.Render("What to do next") + "\n")
	switch e.Kind {
	case pipeline.KindRefused:
		b.WriteString(para(lipglossPlain, "Nothing was written. Fix the cause above and start again from the disk list.", w, ""))
	case pipeline.KindInterrupted:
		if began && pipeline.StopsPartWay(e.Step) {
			b.WriteString(para(lipglossPlain, "You stopped the run. "+title+" stopped where it was and its position is saved; no later step started, the volume was closed and the disk released. The disk is not a finished backup disk: choose it again with the same choices (label, set and options) and the wizard continues from where it stopped.", w, ""))
			break
		}
		b.WriteString(para(lipglossPlain, "You stopped the run. The step in progress finished, no later step started, the volume was closed and the disk released. The disk is not a finished backup disk: prepare it again.", w, ""))
	case pipeline.KindNotVerified, pipeline.KindWrongPassphrase:
		b.WriteString(para(lipglossPlain, "Do NOT use this disk. Prepare it again; if verification fails again, suspect the disk or the dock (look at the kernel log: dmesg).", w, ""))
	default:
		b.WriteString(para(lipglossPlain, "Prepare it again. If the same step fails, the tool's message above says why; you can run the step's command by hand to see more. Then check the disk with luksdock list.", w, ""))
	}
	return b.String(), -1
}
