package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/disk"
	"luksdock/pipeline"
)

func (m *Model) planView() string {
	var b strings.Builder
	p, t := m.plan, m.target
	what := t.Path
	if t.Disk != nil {
		if model := strings.TrimSpace(t.Disk.Vendor + " " + t.Disk.Model); model != "" {
			what += " — " + model
		}
	}
	fmt.Fprintf(&b, "Target: %s, %s\n", what, pipeline.HumanSize(t.Size))
	fmt.Fprintf(&b, "Label %q, %s, LUKS%s; engine %s (%s)\n", p.Opts.Label, strings.ToUpper(string(p.Opts.Table)), map[bool]string{true: "1", false: "2"}[p.Opts.LUKS1], p.Engine, p.EngineWhy)
	b.WriteString("\n" + stDanger.Render("This destroys everything on it:") + "\n")
	for _, d := range t.Destroys() {
		b.WriteString(stDanger.Render("  ✗ "+d) + "\n")
	}
	for _, w := range p.Warnings {
		b.WriteString(stWarn.Render("  ⚠ "+w) + "\n")
	}
	b.WriteString("\n" + stTitle.Render("Steps, each with the command you would type by hand:") + "\n")
	for i, s := range p.Steps {
		fmt.Fprintf(&b, "%2d. %s\n", i+1, s.Title)
		b.WriteString(stCommand.Render("    $ "+s.Command) + "\n")
	}
	b.WriteString("\nEnter: go to the confirmation. Nothing has been written yet.\n")
	return b.String()
}

func (m *Model) planKey(msg tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(msg, m.keys.Back):
		m.goTo(screenPassphrase)
	case key.Matches(msg, m.keys.Enter):
		m.goTo(screenConfirm)
		m.confirm.SetValue("")
		return m.confirm.Focus()
	default:
		m.scrollKey(msg)
	}
	return nil
}

func (m *Model) confirmView() string {
	var b strings.Builder
	t := m.target
	word := t.ConfirmWord()
	b.WriteString(stDanger.Render("Everything on "+t.Path+" ("+pipeline.HumanSize(t.Size)+") will be destroyed:") + "\n")
	for _, d := range t.Destroys() {
		b.WriteString(stDanger.Render("  ✗ "+d) + "\n")
	}
	if t.Verdict.Internal {
		b.WriteString("\n" + stErr.Render("This is an INTERNAL disk ("+t.Verdict.InternalReason+"), not a disk in the dock.") + "\n")
	}
	what := "the disk's kernel name"
	if t.Image {
		what = "the image's file name"
	}
	fmt.Fprintf(&b, "\nTo go ahead, type %s exactly: %s\n\n", what, stKey.Render(word))
	b.WriteString(m.confirm.View() + "\n\n")
	if m.confirm.Value() == word {
		b.WriteString(stDanger.Render("Enter destroys "+t.Path+" and prepares it.") + "\n")
	} else {
		b.WriteString(stFaint.Render("Enter stays disabled until the name matches. Esc goes back.") + "\n")
	}
	return b.String()
}

func (m *Model) confirmKey(msg tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(msg, m.keys.Back):
		m.confirm.SetValue("")
		m.goTo(screenPlan)
		return nil
	case key.Matches(msg, m.keys.Enter):
		if m.confirm.Value() != m.target.ConfirmWord() {
			return nil
		}
		return m.startRun()
	}
	return m.updateInput(msg)
}

// startRun runs the plan in a goroutine, forwarding its events as messages.
// The passphrase is copied for the run (and cleared when it ends); the input
// fields are cleared at once.
func (m *Model) startRun() tea.Cmd {
	pass := make([]byte, len(m.pass[0].Bytes()))
	copy(pass, m.pass[0].Bytes())
	m.clearSecrets()
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runState{cancel: cancel, msgs: make(chan tea.Msg), done: make(chan struct{}), start: time.Now()}
	for _, s := range m.plan.Steps {
		rs.steps = append(rs.steps, stepState{step: s, state: "pending"})
	}
	m.run, m.result, m.runErr = rs, nil, nil
	plan, word := m.plan, m.confirm.Value()
	m.confirm.SetValue("")
	m.goTo(screenProgress)
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		send := func(msg tea.Msg) {
			select {
			case rs.msgs <- msg:
			case <-rs.done:
			}
		}
		res, err := plan.Run(ctx, word, pass, func(e pipeline.Event) { send(runEventMsg(e)) })
		clear(pass)
		rs.finalRes, rs.finalErr = res, err
		send(runDoneMsg{res: res, err: err})
	}()
	return m.nextRunMsg()
}

func (m *Model) nextRunMsg() tea.Cmd {
	rs := m.run
	return func() tea.Msg {
		select {
		case msg := <-rs.msgs:
			return msg
		case <-rs.done:
			return nil
		}
	}
}

func (m *Model) onEvent(e pipeline.Event) tea.Cmd {
	rs := m.run
	if rs == nil {
		return nil
	}
	idx := func(id pipeline.StepID) int {
		for i := range rs.steps {
			if rs.steps[i].step.ID == id {
				return i
			}
		}
		return -1
	}
	switch e.Kind {
	case pipeline.EventPlan:
		rs.engine, rs.why = e.Engine, e.Message
	case pipeline.EventWarning:
		rs.warnings = append(rs.warnings, e.Message)
	case pipeline.EventStart:
		if i := idx(e.Step); i >= 0 {
			rs.steps[i].state, rs.steps[i].started = "running", e.Time
		}
	case pipeline.EventDone:
		if i := idx(e.Step); i >= 0 {
			rs.steps[i].state, rs.steps[i].elapsed, rs.steps[i].msg = "done", e.Elapsed, e.Message
		}
		if e.Step == pipeline.StepVerify {
			rs.verify = e.Message
		}
	case pipeline.EventFailed:
		if i := idx(e.Step); i >= 0 && rs.steps[i].state != "done" {
			st := "failed"
			if rs.stopping && rs.steps[i].state == "pending" {
				st = "stopped"
			}
			rs.steps[i].state, rs.steps[i].elapsed, rs.steps[i].msg = st, e.Elapsed, e.Message
		}
	}
	return m.nextRunMsg()
}

func (m *Model) onRunDone(d runDoneMsg) tea.Cmd {
	rs := m.run
	rs.finished, rs.asking = true, false
	if d.err == nil && d.res != nil {
		m.result = d.res
		m.results = append(m.results, d.res)
		m.runErr = nil
		m.goTo(screenDone)
	} else {
		var pe *pipeline.Error
		if !errors.As(d.err, &pe) {
			pe = &pipeline.Error{Code: pipeline.ExitStepFailed, Err: d.err}
		}
		m.runErr = pe
		m.goTo(screenError)
	}
	if rs.quitAfter {
		return m.quit()
	}
	return nil
}

func (m *Model) progressKey(msg tea.KeyPressMsg) tea.Cmd {
	rs := m.run
	if rs == nil || rs.finished {
		return nil
	}
	s := msg.String()
	if rs.asking {
		switch s {
		case "y", "Y", "ctrl+c":
			rs.asking = false
			rs.stopping = true
			rs.cancel()
		default:
			rs.asking, rs.quitAfter = false, false
		}
		return nil
	}
	switch {
	case s == "ctrl+c":
		if !rs.stopping {
			rs.asking = true
		}
	case s == "q":
		if !rs.stopping {
			rs.asking, rs.quitAfter = true, true
		} else {
			rs.quitAfter = true
		}
	case key.Matches(msg, m.keys.Help):
		m.showHelp = !m.showHelp
		m.help.ShowAll = m.showHelp
	}
	return nil
}

func (m *Model) progressView() string {
	var b strings.Builder
	rs := m.run
	if rs == nil {
		return ""
	}
	if rs.engine != "" {
		b.WriteString(stFaint.Render(truncate("engine: "+rs.engine+" — "+rs.why, m.width)) + "\n\n")
	}
	for _, s := range rs.steps {
		var mark, t string
		switch s.state {
		case "pending":
			mark = stFaint.Render("·")
		case "running":
			mark = m.spin.View()
			t = fmtDur(time.Since(s.started))
		case "done":
			mark = stOK.Render("✓")
			t = fmtDur(s.elapsed)
		case "failed":
			mark = stErr.Render("✗")
		case "stopped":
			mark = stWarn.Render("■")
		}
		title := fmt.Sprintf("%-44s %7s  %s", s.step.Title, t, s.state)
		b.WriteString(mark + " " + truncate(title, m.width-2) + "\n")
		if s.state == "running" {
			b.WriteString(stCommand.Render(truncate("    $ "+s.step.Command, m.width)) + "\n")
			if s.step.Slow != "" {
				b.WriteString(stFaint.Render("    why it takes time: "+s.step.Slow) + "\n")
			}
		}
		if s.state == "failed" && s.msg != "" {
			b.WriteString(stErr.Render("    "+s.msg) + "\n")
		}
	}
	for _, w := range rs.warnings {
		b.WriteString(stWarn.Render("⚠ "+w) + "\n")
	}
	b.WriteString(fmt.Sprintf("\nelapsed %s\n", fmtDur(time.Since(rs.start))))
	switch {
	case rs.asking && rs.quitAfter:
		b.WriteString(stWarn.Render("Stop and quit? The step in progress finishes, then the volume is closed and\nthe disk released; the disk will need preparing again. y = stop, n = go on") + "\n")
	case rs.asking:
		b.WriteString(stWarn.Render("Stop now? The step in progress finishes, then the volume is closed and the\ndisk released; the disk will need preparing again. y = stop, n = go on") + "\n")
	case rs.stopping:
		b.WriteString(stWarn.Render("Stopping after the current step: closing the volume and releasing the disk…") + "\n")
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func (m *Model) doneView() string {
	var b strings.Builder
	r := m.result
	kv := func(k, v string) {
		if v != "" {
			b.WriteString(m.kvLine(k, v))
		}
	}
	b.WriteString(stOK.Render("✓ "+r.Target+" is a verified backup disk.") + "\n\n")
	verify := "passed"
	if m.run != nil && m.run.verify != "" {
		verify = m.run.verify
	}
	kv("Verification", verify)
	kv("Label", r.FSLabel+" (ext4; LUKS2 label "+orNone(r.LUKS.Label)+")")
	kv("LUKS", fmt.Sprintf("LUKS%d, %s, %d-byte sectors, data at %s", r.LUKS.Version, r.LUKS.Cipher, r.LUKS.SectorSize, pipeline.HumanSize(r.LUKS.DataOffset)))
	kv("LUKS UUID", r.LUKS.UUID)
	kv("Size", fmt.Sprintf("%s disk, %s usable inside", pipeline.HumanSize(r.Size), pipeline.HumanSize(r.LUKS.DataSize)))
	kv("Partition", r.Partition)
	if r.HeaderBackup != "" {
		kv("Header backup", r.HeaderBackup+" (keep it safe and off this disk)")
	} else {
		kv("Header backup", "none made (cryptsetup luksHeaderBackup can make one later)")
	}
	name := r.FSLabel
	b.WriteString("\n" + stTitle.Render("Unlock it by hand:") + "\n")
	var cmds []string
	if m.plan != nil && m.plan.Target.Image {
		l := m.plan.Layout
		cmds = []string{
			fmt.Sprintf("LOOP=$(losetup --find --show --offset %d --sizelimit %d %s)", l.Start, l.Size, r.Target),
			"cryptsetup open $LOOP " + name,
			"mount /dev/mapper/" + name + " /mnt",
			"umount /mnt && cryptsetup close " + name + " && losetup -d $LOOP",
		}
	} else {
		part := r.Partition
		if m.plan != nil {
			part = "/dev/" + disk.PartitionName(m.plan.Target.Name, 1)
		}
		cmds = []string{
			"cryptsetup open " + part + " " + name,
			"mount /dev/mapper/" + name + " /mnt",
			"umount /mnt && cryptsetup close " + name,
		}
	}
	for _, c := range cmds {
		b.WriteString(stCommand.Render("  $ "+c) + "\n")
	}
	b.WriteString(stFaint.Render("A desktop asks for the passphrase when it is docked and mounts it as \""+name+"\".") + "\n")
	b.WriteString("\n" + stKey.Render("n") + ": prepare another disk    " + stKey.Render("q") + ": quit\n")
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// another resets the wizard for the next disk and returns to the disk list.
func (m *Model) another() tea.Cmd {
	m.target, m.targetErr, m.plan = nil, nil, nil
	m.label.SetValue("")
	m.header.SetValue("")
	m.confirm.SetValue("")
	m.clearSecrets()
	m.selKey = ""
	m.goTo(screenDisks)
	return m.rescan()
}

func (m *Model) doneKey(msg tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(msg, m.keys.Another), key.Matches(msg, m.keys.Back):
		return m.another()
	case key.Matches(msg, m.keys.Enter):
		return m.quit()
	default:
		m.scrollKey(msg)
	}
	return nil
}

func (m *Model) errorView() string {
	var b strings.Builder
	e := m.runErr
	if e == nil {
		return ""
	}
	kv := func(k, v string) { b.WriteString(m.kvLine(k, v)) }
	title := string(e.Step)
	var cmd string
	if m.plan != nil {
		for _, s := range m.plan.Steps {
			if s.ID == e.Step {
				title = s.Title + " (" + string(s.ID) + ")"
				cmd = s.Command
			}
		}
	}
	kv("Target", m.targetName())
	switch {
	case e.Code == pipeline.ExitInterrupted && strings.HasPrefix(e.State, "ready"):
		kv("Stopped after", title+", the last step")
		cmd = ""
	case e.Code == pipeline.ExitInterrupted:
		kv("Stopped before", title)
		cmd = ""
	default:
		kv("Step", title)
	}
	b.WriteString(m.kvLine("What happened", stErr.Render(e.Err.Error())))
	state := e.State
	if state == "" {
		state = "unknown: check it with luksdock list"
	}
	kv("Disk state", state)
	if cmd != "" {
		b.WriteString(m.kvLine("The step was", stCommand.Render("$ "+cmd)))
	}
	b.WriteString("\n" + stTitle.Render("What to do next") + "\n")
	switch e.Code {
	case pipeline.ExitRefused:
		b.WriteString("Nothing was written. Fix the cause above and start again from the disk list.\n")
	case pipeline.ExitInterrupted:
		if strings.HasPrefix(e.State, "ready") {
			b.WriteString("You stopped the run as its last step finished: the disk was made and verified\nand is usable. Check it with luksdock verify if in doubt.\n")
			break
		}
		b.WriteString("You stopped the run. The step in progress finished, the volume was closed and\nthe disk released. The disk is not a finished backup disk: prepare it again.\n")
	case pipeline.ExitVerifyFail:
		b.WriteString("Do NOT use this disk. Prepare it again; if verification fails again, suspect\nthe disk or the dock (look at the kernel log: dmesg).\n")
	default:
		b.WriteString("Prepare it again. If the same step fails, the tool's message above says why;\nyou can run the step's command by hand to see more. Then check the disk with\nluksdock list.\n")
	}
	b.WriteString("\n" + stKey.Render("Esc") + ": disk list    " + stKey.Render("q") + ": quit\n")
	return b.String()
}

func (m *Model) errorKey(msg tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(msg, m.keys.Back), key.Matches(msg, m.keys.Another):
		return m.another()
	default:
		m.scrollKey(msg)
	}
	return nil
}
