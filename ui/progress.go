package ui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/progress"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/pipeline"
)

type (
	runEventMsg pipeline.Event
	runDoneMsg  struct {
		res      *pipeline.Result
		err      error
		recorded string // what recording the disk in the inventory did
	}
)

// progressScreen is 7: the run, drawn from the pipeline's events (the
// steps of its plan event, the command of each start event). A stop asks
// first, then cancels the run's context: the pipeline lets the step in
// progress finish and starts no other (pipeline.Plan.Run).
type progressScreen struct {
	c         *shared
	asking    bool // "stop?" question shown
	quitAfter bool // quit once the run has ended
	stopAt    string
	keys      struct{ stop, stopQuit, yes, no, quit key.Binding }
}

func newProgress(c *shared) screen {
	s := &progressScreen{c: c}
	s.keys.stop = key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "stop safely"))
	s.keys.stopQuit = key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "stop and quit"))
	s.keys.yes = key.NewBinding(key.WithKeys("y", "ctrl+c"), key.WithHelp("y", "yes, stop"))
	s.keys.no = key.NewBinding(key.WithKeys("n", "esc"), key.WithHelp("n/esc", "no, go on"))
	s.keys.quit = key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit once stopped"))
	return s
}

func (s *progressScreen) Title() string {
	if t := s.c.target; t != nil {
		return "Preparing " + t.Path
	}
	return "Preparing"
}
func (s *progressScreen) Typing() bool { return false }
func (s *progressScreen) Busy() bool   { return s.c.run != nil && !s.c.run.finished }

func (s *progressScreen) ShortHelp() []key.Binding {
	switch {
	case s.asking:
		return []key.Binding{s.keys.yes, s.keys.no}
	case s.stopAt != "":
		return []key.Binding{s.keys.quit}
	}
	return []key.Binding{s.keys.stop, s.keys.stopQuit}
}
func (s *progressScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }

// stepView is one step as the events tell it.
type stepView struct {
	step    pipeline.Step
	state   string // pending, running, done, failed, not started
	command string // from the start event
	started time.Time
	elapsed time.Duration
	msg     string
}

// Enter starts the run: the plan in a goroutine, its events forwarded as
// messages. The passphrase is copied for the run (and cleared when it
// ends); the input fields are cleared at once.
func (s *progressScreen) Enter() tea.Cmd {
	c := s.c
	pass := make([]byte, len(c.pass[0].Bytes()))
	copy(pass, c.pass[0].Bytes())
	c.clearSecrets()
	s.asking, s.quitAfter, s.stopAt = false, false, ""
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runState{cancel: cancel, msgs: make(chan tea.Msg), done: make(chan struct{})}
	c.run, c.result, c.runErr, c.events, c.stopTime = rs, nil, nil, nil, time.Time{}
	c.runStart, c.runTarget = time.Now(), c.target.Path
	plan, word, invPath := c.plan, c.confirmed, c.cfg.InventoryPath
	c.runSteps = append([]pipeline.Step(nil), plan.Steps...)
	c.confirmed = ""
	rs.wg.Add(1)
	go func() {
		defer rs.wg.Done()
		send := func(msg tea.Msg) {
			select {
			case rs.msgs <- msg:
			case <-rs.done:
			}
		}
		// the same run as prepare's: the plan, then the inventory (file
		// I/O, here in the run's goroutine)
		res, recErr, err := core.RunPlan(ctx, plan, invPath, word, pass, func(e pipeline.Event) {
			// The pipeline goes on changing its plan's steps (it learns
			// mkfs's block size in luks-format): the UI keeps a copy.
			e.Steps = append([]pipeline.Step(nil), e.Steps...)
			send(runEventMsg(e))
		})
		clear(pass)
		recorded := ""
		switch {
		case err != nil || res == nil || invPath == "":
		case recErr != nil:
			recorded = "not recorded: " + recErr.Error()
		default:
			recorded = "recorded in " + invPath
		}
		rs.finalRes, rs.finalErr = res, err
		send(runDoneMsg{res: res, err: err, recorded: recorded})
	}()
	return s.next()
}

func (s *progressScreen) next() tea.Cmd {
	rs := s.c.run
	return func() tea.Msg {
		select {
		case msg := <-rs.msgs:
			return msg
		case <-rs.done:
			return nil
		}
	}
}

func (s *progressScreen) Update(msg tea.Msg) tea.Cmd {
	c := s.c
	switch msg := msg.(type) {
	case runEventMsg:
		c.events = append(c.events, pipeline.Event(msg))
		return s.next()
	case runDoneMsg:
		c.run.finished = true
		s.asking = false
		c.recorded = msg.recorded
		c.settle(msg.res, msg.err)
		if c.runErr == nil {
			c.goTo(scrDone)
		} else {
			c.goTo(scrFailed)
		}
		if s.quitAfter {
			c.quitting = true
			c.clearSecrets()
			return tea.Quit
		}
		return nil
	case tea.KeyPressMsg:
		if c.run == nil || c.run.finished {
			return nil
		}
		switch {
		case s.asking && key.Matches(msg, s.keys.yes):
			s.asking = false
			s.stopAt = s.running()
			c.stopTime = time.Now()
			c.run.cancel()
		case s.asking && key.Matches(msg, s.keys.no):
			s.asking, s.quitAfter = false, false
		case s.asking:
		case s.stopAt != "" && key.Matches(msg, s.keys.quit):
			s.quitAfter = true
		case s.stopAt == "" && key.Matches(msg, s.keys.stop):
			s.asking = true
		case s.stopAt == "" && key.Matches(msg, s.keys.stopQuit):
			s.asking, s.quitAfter = true, true
		}
	}
	return nil
}

// Status is the stop dialog, pinned above the footer so it is on screen
// however the steps scroll.
func (s *progressScreen) Status() string {
	c := s.c
	st, w := &c.st, c.width
	switch {
	case s.asking:
		return para(st.warn, c.stopQuestion(s.quitAfter), w, "")
	case s.stopAt != "":
		out := para(st.warn, c.stoppingWords(s.stopAt), w, "")
		if late := s.lateStarts(); len(late) > 0 {
			out += para(st.err, "⚠ Started after the stop was asked for: "+strings.Join(late, ", ")+".", w, "  ")
		}
		return out
	}
	return ""
}

// running is the title of the step in progress ("" between steps).
func (s *progressScreen) running() string {
	for _, st := range s.c.steps() {
		if st.state == "running" {
			return st.step.Title
		}
	}
	return "the current step"
}

// steps are the run's steps as its events tell them, folded by
// pipeline.Progress as prepare's text output folds them: a step the run
// never started (a stop at the boundary before it, or a run that ended
// first) is "not started".
func (c *shared) steps() []stepView {
	var p pipeline.Progress
	for _, st := range c.runSteps {
		p.Steps = append(p.Steps, pipeline.StepProgress{Step: st, State: pipeline.StepPending})
	}
	for _, e := range c.events {
		p.Apply(e)
	}
	notStarted := func(st pipeline.StepProgress) bool {
		return (st.State == pipeline.StepFailed || st.State == pipeline.StepStopped) && st.Started.IsZero()
	}
	ended := (c.run != nil && c.run.finished) || slices.ContainsFunc(p.Steps, notStarted)
	out := make([]stepView, 0, len(p.Steps))
	for _, st := range p.Steps {
		v := stepView{step: st.Step, command: st.Ran, started: st.Started, elapsed: st.Elapsed, msg: st.Message}
		if v.command == "" {
			v.command = st.Command
		}
		switch {
		case st.State == pipeline.StepPending && ended, notStarted(st):
			v.state = "not started"
		case st.State == pipeline.StepStopped:
			v.state = "failed" // stopped inside (an erase at its next request)
		default:
			v.state = string(st.State)
		}
		out = append(out, v)
	}
	return out
}

func (s *progressScreen) View() (string, int) {
	c := s.c
	st := &c.st
	w := c.width
	var b strings.Builder
	var warnings []string
	preflightDone := false
	for _, e := range c.events {
		switch {
		case e.Kind == pipeline.EventPlan:
			b.WriteString(para(st.faint, "engine: "+string(e.Engine)+" — "+e.Message, w, "  ") + "\n")
		case e.Kind == pipeline.EventDone && e.Step == pipeline.StepPreflight:
			preflightDone = true
		case e.Kind == pipeline.EventWarning:
			warnings = append(warnings, e.Message)
		}
	}
	focus := -1
	for _, sv := range c.steps() {
		if sv.state == "running" {
			focus = strings.Count(b.String(), "\n")
		}
		var mark, t string
		switch sv.state {
		case "pending":
			mark = st.faint.Render("·")
		case "running":
			mark = c.spin.View()
			t = fmtDur(time.Since(sv.started))
		case "done":
			mark = st.ok.Render("✓")
			t = fmtDur(sv.elapsed)
		case "failed":
			mark = st.err.Render("✗")
		case "not started":
			mark = st.warn.Render("■")
		}
		// title, time and state in columns where they fit, else one after
		// the other, wrapped
		line := fmt.Sprintf("%-*s %7s  %s", min(44, w-23), sv.step.Title, t, sv.state)
		if len([]rune(line)) > w-2 {
			line = strings.TrimSpace(sv.step.Title + "  " + t + "  " + sv.state)
		}
		b.WriteString(mark + " " + para(lipglossPlain, line, w-2, "  "))
		if sv.state == "running" {
			if a := c.advance(sv.step.ID); a != nil {
				// the bar is the line kept in sight (with the title
				// above it and the rate below)
				focus = strings.Count(b.String(), "\n")
				b.WriteString(progressLines(c, a))
			}
			b.WriteString(c.command("    ", sv.command))
			if sv.step.Slow != "" {
				b.WriteString(para(st.faint, "    why it takes time: "+inWizard(sv.step.Slow), w, "      "))
			}
		}
		if sv.state == "failed" && sv.msg != "" {
			b.WriteString(para(st.err, "    "+sv.msg, w, "      "))
		}
	}
	// The plan's warnings were shown before the confirmation; they stay
	// only until the preflight check is done (after it an image "to be
	// created" exists).
	if !preflightDone {
		for _, x := range warnings {
			b.WriteString(para(st.warn, "⚠ "+x, w, "  "))
		}
	}
	if !c.runStart.IsZero() {
		fmt.Fprintf(&b, "\nelapsed %s\n", fmtDur(time.Since(c.runStart)))
	}
	return b.String(), focus
}

// advance is the last progress event of step (nil: none yet).
func (c *shared) advance(step pipeline.StepID) *pipeline.Advance {
	for i := len(c.events) - 1; i >= 0; i-- {
		if e := c.events[i]; e.Kind == pipeline.EventProgress && e.Step == step && e.Progress != nil {
			return e.Progress
		}
	}
	return nil
}

// progressLines draws a long step's progress: a bar with the percentage,
// the line no wider than the screen (4 spaces, the bar, " 100.0%"),
// then the rate, the time left and what a surface check found.
func progressLines(c *shared, a *pipeline.Advance) string {
	bar := progress.New(progress.WithWidth(max(min(c.width-12, 60), 10)), progress.WithoutPercentage())
	line := fmt.Sprintf("    %s %5.1f%%", bar.ViewAs(a.Fraction), a.Fraction*100)
	var parts []string
	parts = append(parts, disk.SizeString(a.Done)+" of "+disk.SizeString(a.Total))
	if a.Rate > 0 {
		parts = append(parts, fmt.Sprintf("%.1f MB/s", a.Rate/1e6))
	}
	if a.ETA > 0 {
		parts = append(parts, "about "+fmtDur(time.Duration(a.ETA*float64(time.Second)))+" left")
	}
	if a.Resumed > 0 {
		parts = append(parts, "continued from "+disk.SizeString(a.Resumed))
	}
	out := line + "\n" + para(c.st.faint, "    "+strings.Join(parts, " · "), c.width, "    ")
	if a.Bad > 0 {
		out += para(c.st.err, fmt.Sprintf("    ✗ %d bad sectors so far", a.Bad), c.width, "    ")
	}
	return out
}

// lateStarts are the steps the pipeline started after the stop (it should
// start none: shown so the screen never claims more than happened).
func (s *progressScreen) lateStarts() []string {
	var late []string
	for _, sv := range s.c.steps() {
		if sv.state != "pending" && sv.state != "not started" && sv.step.Title != s.stopAt && sv.started.After(s.c.stopTime) && !s.c.stopTime.IsZero() {
			late = append(late, sv.step.Title)
		}
	}
	return late
}

func fmtDur(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}
