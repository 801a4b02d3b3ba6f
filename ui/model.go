// Package ui is luksdock's wizard: it walks from "dock a disk" to a verified
// backup disk. It shows what discovery found and what the pipeline does; it
// does no disk work of its own. Every write goes through pipeline.Plan.Run,
// after the user has typed the target's name.
//
// Each screen is a component (the screen interface below) with its own
// model, Update, View and keys, in its own file. The root Model routes
// messages to them and holds only what they share (the shared context:
// theme, size, discovery, the chosen target, the plan, the run). The order
// of the screens is the flow table in this file; screen numbers are
// computed from it.
package ui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/spinner"
	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"luksdock/core"
	"luksdock/disk"
	lsecret "luksdock/internal/secret"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
	"luksdock/recovery"
)

// Image is an image file offered in the disk list (--image, --size).
type Image struct {
	Path string
	Size int64 // size to create it with when it does not exist; 0 otherwise
}

// Config is what the wizard is given: where disks come from and the choices
// made on the command line. Tests inject fakes for discovery; preparation
// always runs the real pipeline.
type Config struct {
	// Scan lists the disks (disk.Sys{Root:"/"}.Scan in production).
	Scan func() ([]disk.Disk, error)
	// Hotplug delivers kernel block events (disk.WatchHotplug); each one
	// triggers a rescan. nil when not available.
	Hotplug <-chan disk.Hotplug
	// KernelLog reads the kernel log for arrival evidence (disk.ReadKernelLog).
	// nil: no evidence shown.
	KernelLog func() ([]disk.KernelLine, error)
	// DeviceTarget turns a disk's kernel name into a pipeline target
	// (pipeline.DeviceTarget(disk.Sys{Root:"/"}, "/dev/"+name)). It runs in
	// a tea.Cmd, never in Update.
	DeviceTarget func(name string) (*pipeline.Target, error)
	// CheckHeaderBackup checks the Options screen's header-backup path
	// against the target and returns it absolute (nil: checkHeaderBackup).
	CheckHeaderBackup func(target, backup string) (string, error)
	// Keyboard reads this machine's configured keymaps (nil:
	// ReadKeyboardLayouts). It runs in a tea.Cmd.
	Keyboard func() []string
	// Inventory reads luksdock's inventory of the disks it prepared (nil:
	// inventory.Load(inventory.Path())). It runs in a tea.Cmd at start.
	Inventory func() (*inventory.File, error)
	// InventoryPath is the inventory a verified disk is recorded in, as
	// prepare records it (core.RunPlan; inventory.Path() in production).
	// "": nothing recorded.
	InventoryPath string
	// Images are image files listed alongside the disks.
	Images []Image
	// AllowInternal offers disks not on USB (with the louder confirmation).
	AllowInternal bool
	// PBKDF are keyslot costs from the command line; zero means
	// cryptsetup's benchmarked defaults unless chosen otherwise on the
	// Options screen.
	PBKDF luks.PBKDF
	// Engine is passed to pipeline.Options ("" = auto).
	Engine string
	// Rescan, when > 0, rescans this often while the disk list is shown, a
	// backstop for missed or unavailable hotplug events.
	Rescan time.Duration
}

// screenID names a screen.
type screenID string

// The screens.
const (
	scrDisks      screenID = "disks"
	scrDetails    screenID = "details"
	scrUnhealthy  screenID = "unhealthy"
	scrOptions    screenID = "options"
	scrPassphrase screenID = "passphrase"
	scrRecovery   screenID = "recovery"
	scrPlan       screenID = "plan"
	scrConfirm    screenID = "confirm"
	scrProgress   screenID = "progress"
	scrDone       screenID = "done"
	scrFailed     screenID = "failed"

	// A known disk's actions (actions.go): the menu after Details, and
	// one screen per action, reached from the menu only.
	scrActions screenID = "actions"
	scrOpen    screenID = "open"
	scrClose   screenID = "close"
	scrPasswd  screenID = "passwd"
	scrNewKey  screenID = "recovery-key"
	scrEnroll  screenID = "enroll"
	scrRetire  screenID = "retire"
)

// flow is the routing table: the screens in the order the wizard walks
// them, each with its constructor. Enter on a screen goes to the next one
// in this table (skipping screens whose Skip says so), Esc to the previous
// one. Screens numbered "i/N" are those with numbered set.
var flow = []struct {
	id       screenID
	numbered bool
	make     func(*shared) screen
}{
	{scrDisks, true, newDisks},
	{scrDetails, true, newDetails},
	{scrActions, true, newActions},
	{scrUnhealthy, true, newUnhealthy},
	{scrOptions, true, newOptions},
	{scrPassphrase, true, newPassphrase},
	{scrRecovery, true, newRecovery},
	{scrPlan, true, newPlanScreen},
	{scrConfirm, true, newConfirm},
	{scrProgress, true, newProgress},
	{scrDone, true, newDone},
	{scrFailed, false, newFailed},
	// The actions on a known disk: each skipped unless it is the one
	// chosen on the Actions screen.
	{scrOpen, false, newOpen},
	{scrClose, false, newClose},
	{scrPasswd, false, newPasswd},
	{scrNewKey, false, newNewKey},
	{scrEnroll, false, newEnroll},
	{scrRetire, false, newRetire},
}

// screen is one page of the wizard.
type screen interface {
	// Enter is called each time the screen becomes the current one.
	Enter() tea.Cmd
	// Update handles a message while the screen is current (and the
	// messages it owns: see owner in Model.Update).
	Update(msg tea.Msg) tea.Cmd
	// Title is the screen's title, without its number.
	Title() string
	// View draws the body. focus is a body line to keep visible (-1: none).
	View() (body string, focus int)
	// ShortHelp and FullHelp are the screen's key bindings; the root adds
	// the global ones.
	ShortHelp() []key.Binding
	FullHelp() [][]key.Binding
	// Typing reports whether keys go to a text field now: then q and ? are
	// text, not commands.
	Typing() bool
}

// skipper is a screen that is not shown in some cases (a screen that
// applies only to some disks or options).
type skipper interface{ Skip() bool }

// statusLiner is a screen with a status (what is wrong, or that it is
// ready) that the frame pins above the footer, so it is on screen however
// the body scrolls.
type statusLiner interface{ Status() string }

// spinning is a screen that shows a spinner now.
type spinning interface{ Busy() bool }

// shared is what the screens share (the program context): the theme and
// size, what discovery found, the chosen target and options, the plan, the
// passphrase, the run and its outcome.
type shared struct {
	cfg    Config
	st     styles
	keys   globalKeys
	width  int
	height int
	spin   spinner.Model

	// Facts read once, in a tea.Cmd at start.
	memTotal int64           // bytes of RAM (0: unknown)
	cwd      string          // where relative paths start
	layouts  []string        // configured keymaps ("de", "fr(bepo)"); nil: unknown
	inv      *inventory.File // the inventory (nil: not read, or unreadable)
	invErr   error

	disc discovery // the disk list (owned by the disks screen)

	// The choice, in the order the screens make it.
	row        row
	target     *pipeline.Target
	targetErr  error
	targetGone bool // the chosen disk left (or changed) after it was chosen
	// knownDisk is what is known of the target's LUKS volume (read with
	// the target); action is the one chosen on the Actions screen.
	knownDisk knownDisk
	action    action
	// acceptUnhealthy: "yes" was typed for a failing or degrading disk
	acceptUnhealthy bool
	opts            pipeline.Options
	plan            *pipeline.Plan
	pass            [2]secret
	// in is the terminal's input filter (ui.Run's; nil in tests that
	// drive the model directly): the masked fields take the characters
	// its placeholders stand for from it, and Update tells it whether a
	// masked field has the focus.
	in       *keyFilter
	strength verdict // of pass[0], shown on Passphrase and Confirm
	// The recovery key (printed form) while the wizard shows and checks
	// it, the groups asked back, and whether they were typed back. The
	// plan holds its own copy, cleared when the run ends.
	recKey       []byte
	recChallenge recovery.Challenge
	recConfirmed bool
	noRecovery   bool // the Options screen turned the recovery key off

	session int // counts restarts: screens set up afresh for a new choice

	confirmed string // the name typed on Confirm, for the run
	run       *runState
	events    []pipeline.Event // of the last run, as the pipeline sent them
	runSteps  []pipeline.Step  // the plan's steps when the run began (a copy)
	runStart  time.Time
	runTarget string    // the path the run prepares
	stopTime  time.Time // when a stop was asked for (zero: none)
	result    *pipeline.Result
	recorded  string // what recording the last result in the inventory did
	runErr    *pipeline.Error
	results   []*pipeline.Result
	done      []actionDone // what the actions did, for the exit summary

	// bodyAvail is how many body lines the frame shows (Model.avail),
	// kept up to date by Model.Update for the screens' scrolling.
	bodyAvail int

	next     screenID            // set by goTo, applied by the root after Update
	skip     func(screenID) bool // the root's: whether a screen is skipped now
	quitting bool

	// actions counts the actions (open, passwd, …) whose core call is
	// running, so that Close waits for them: a passphrase change is never
	// cut off halfway by the program's end (a hang-up).
	actions sync.WaitGroup
}

// goTo asks the root to show screen id once the current Update returns.
func (c *shared) goTo(id screenID) { c.next = id }

// forward goes to the screen after from in the flow, skipping screens
// that say so; back goes to the one before.
func (c *shared) forward(from screenID) { c.next = c.step(from, +1) }
func (c *shared) back(from screenID)    { c.next = c.step(from, -1) }

func (c *shared) step(from screenID, dir int) screenID {
	i := flowIndex(from) + dir
	for ; i >= 0 && i < len(flow); i += dir {
		if !c.skipped(flow[i].id) {
			return flow[i].id
		}
	}
	return from
}

func (c *shared) skipped(id screenID) bool { return c.skip != nil && c.skip(id) }

func flowIndex(id screenID) int {
	for i, f := range flow {
		if f.id == id {
			return i
		}
	}
	return -1
}

func (c *shared) clearSecrets() {
	c.pass[0].Clear()
	c.pass[1].Clear()
	c.clearRecoveryKey()
}

func (c *shared) clearRecoveryKey() {
	lsecret.Free(c.recKey)
	c.recKey, c.recChallenge, c.recConfirmed = nil, recovery.Challenge{}, false
}

// dropPlan forgets the plan, clearing its copy of the recovery key unless
// a run is using it.
func (c *shared) dropPlan() {
	if c.plan != nil && (c.run == nil || c.run.finished) {
		lsecret.Free(c.plan.Opts.RecoveryKey)
	}
	c.plan = nil
}

// restart forgets the choice and goes back to the disk list.
func (c *shared) restart() {
	c.dropPlan()
	c.row, c.target, c.targetErr, c.targetGone, c.acceptUnhealthy = row{}, nil, nil, false, false
	c.knownDisk, c.action = knownDisk{}, ""
	c.opts = pipeline.Options{}
	c.clearSecrets()
	c.strength = verdict{}
	c.session++
	c.goTo(scrDisks)
}

// Model is the wizard. Use it as a *Model with tea.NewProgram; call Close
// after the program has ended.
type Model struct {
	c        *shared
	screens  map[screenID]screen
	cur      screenID
	showHelp bool
	spinning bool // a spinner tick is scheduled
	// PgUp/PgDn scroll a screen that does not scroll itself: from top,
	// freely (free) until another key brings its focus back into view.
	top  int
	free bool
}

// New makes the wizard from cfg.
func New(cfg Config) *Model {
	if cfg.Scan == nil {
		cfg.Scan = func() ([]disk.Disk, error) { return nil, nil }
	}
	if cfg.DeviceTarget == nil {
		cfg.DeviceTarget = func(name string) (*pipeline.Target, error) {
			return core.DeviceTarget("/dev/"+name, false)
		}
	}
	if cfg.CheckHeaderBackup == nil {
		cfg.CheckHeaderBackup = checkHeaderBackup
	}
	if cfg.Keyboard == nil {
		cfg.Keyboard = ReadKeyboardLayouts
	}
	if cfg.Inventory == nil {
		cfg.Inventory = func() (*inventory.File, error) { return inventory.Load(inventory.Path()) }
	}
	c := &shared{cfg: cfg, st: newStyles(), keys: newGlobalKeys(), width: 80, height: 24,
		spin: spinner.New(spinner.WithSpinner(spinner.Line))}
	c.disc.liveAdded = map[string]bool{}
	c.session = 1
	m := &Model{c: c, screens: map[screenID]screen{}, cur: scrDisks}
	for _, f := range flow {
		m.screens[f.id] = f.make(c)
	}
	c.skip = func(id screenID) bool {
		sk, ok := m.screens[id].(skipper)
		return ok && sk.Skip()
	}
	return m
}

// Results are the disks prepared and verified in this session.
func (m *Model) Results() []*pipeline.Result { return m.c.results }

// ActionsDone are the exit summary's lines for what the actions did (and
// left: a disk still open).
func (m *Model) ActionsDone() []string { return actionLines(m.c.done) }

// LastError is the error of the last run when it did not succeed (and no
// later run did), else nil.
func (m *Model) LastError() error {
	if m.c.runErr == nil {
		return nil
	}
	return m.c.runErr
}

// Running reports whether a preparation is in progress.
func (m *Model) Running() bool {
	return m.c.run != nil && !m.c.run.finished || m.runningAction() != nil
}

// StopNote is what a run still in progress does before the wizard ends
// (for "stopping safely: …" when the program was ended by a signal); ""
// when nothing runs. A prepare finishes its step; an action finishes
// (it is never cut off halfway).
func (m *Model) StopNote() string {
	if m.c.run != nil && !m.c.run.finished {
		return "the step in progress finishes, then the volume is closed and the disk released…"
	}
	if m.runningAction() == nil {
		return ""
	}
	if a, ok := m.screens[m.cur].(interface{ doing() string }); ok {
		return "the " + a.doing() + " in progress finishes first…"
	}
	return "the action in progress finishes first…"
}

// runningAction is the current screen's action run while core runs it
// (nil when none runs).
func (m *Model) runningAction() *actionRun {
	if a, ok := m.screens[m.cur].(interface{ running() *actionRun }); ok {
		return a.running()
	}
	return nil
}

// Close stops a run still in progress (the pipeline finishes the current
// step, closes the volume and releases the disk) and waits for it. Call it
// after the program has ended.
func (m *Model) Close() {
	m.c.actions.Wait()
	rs := m.c.run
	if rs == nil {
		return
	}
	rs.cancel()
	rs.closeOnce.Do(func() { close(rs.done) })
	rs.wg.Wait()
	if rs.finished {
		return
	}
	// The program ended before the run's last message was handled.
	rs.finished = true
	m.c.settle(rs.finalRes, rs.finalErr)
}

// factsMsg carries what is read once at start.
type factsMsg struct {
	memTotal int64
	layouts  []string
	cwd      string
	inv      *inventory.File
	invErr   error
}

// Init starts discovery and reads the machine's facts, all in commands.
func (m *Model) Init() tea.Cmd {
	kb, inv := m.c.cfg.Keyboard, m.c.cfg.Inventory
	facts := func() tea.Msg {
		cwd, err := os.Getwd()
		if err != nil {
			cwd = "the current directory"
		}
		f, invErr := inv()
		return factsMsg{memTotal: memTotal(), layouts: kb(), cwd: cwd, inv: f, invErr: invErr}
	}
	return tea.Batch(facts, m.screens[scrDisks].Enter())
}

// owner says which screen handles a message that is not for the current
// screen only: discovery belongs to the disk list, run events to the
// progress screen, whatever screen is shown.
func owner(msg tea.Msg) (screenID, bool) {
	switch msg.(type) {
	case scanMsg, hotplugMsg, hotplugClosed, rescanTick:
		return scrDisks, true
	case runEventMsg, runDoneMsg:
		return scrProgress, true
	case targetMsg:
		return scrDetails, true
	case restartMsg:
		return scrPlan, true
	}
	return "", false
}

// Update routes a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	m.c.bodyAvail = m.avail() // as drawn when the message came
	cmd := m.update(msg)
	for m.c.next != "" && !m.c.quitting {
		to := m.c.next
		m.c.next = ""
		m.cur, m.top, m.free = to, 0, false
		cmd = tea.Batch(cmd, m.screens[to].Enter())
	}
	if m.busy() && !m.spinning {
		m.spinning = true
		cmd = tea.Batch(cmd, m.c.spin.Tick)
	}
	m.c.bodyAvail = m.avail()
	m.c.in.setMasked(m.masked())
	return m, cmd
}

// masker is a screen with masked fields (a passphrase, a recovery key).
type masker interface {
	// Masked reports whether a masked field has the focus and takes
	// keys now.
	Masked() bool
}

// masked reports whether the keys typed now go to a masked field: the
// input filter then keeps the characters out of bubbletea (keyFilter).
func (m *Model) masked() bool {
	s, ok := m.screens[m.cur].(masker)
	return ok && !m.c.quitting && s.Masked()
}

func (m *Model) busy() bool {
	b, ok := m.screens[m.cur].(spinning)
	return !m.c.quitting && ok && b.Busy()
}

func (m *Model) update(msg tea.Msg) tea.Cmd {
	c := m.c
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		c.width, c.height = msg.Width, msg.Height
		return nil
	case factsMsg:
		c.memTotal, c.layouts, c.cwd = msg.memTotal, msg.layouts, msg.cwd
		c.inv, c.invErr = msg.inv, msg.invErr
		return nil
	case spinner.TickMsg:
		if !m.busy() {
			m.spinning = false
			return nil
		}
		var cmd tea.Cmd
		c.spin, cmd = c.spin.Update(msg)
		return cmd
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	if id, ok := owner(msg); ok {
		return m.screens[id].Update(msg)
	}
	if a, ok := msg.(actionDoneMsg); ok {
		return m.screens[a.to].Update(msg)
	}
	return m.screens[m.cur].Update(msg)
}

// key handles the global keys, then gives the key to the current screen.
func (m *Model) key(msg tea.KeyPressMsg) tea.Cmd {
	c, s := m.c, m.screens[m.cur]
	if _, own := s.(scrollable); !own {
		if key.Matches(msg, keyPage) {
			m.page(msg)
			return nil
		}
		m.free = false
	}
	if r := m.runningAction(); r != nil {
		// An action is never cut off halfway: Ctrl+C says so and the
		// action finishes, its outcome shown; the screen ignores the rest.
		switch {
		case key.Matches(msg, c.keys.Interrupt):
			r.stopAsked = true
			return nil
		case key.Matches(msg, m.helpKey()):
			m.showHelp = !m.showHelp
			return nil
		}
		return s.Update(msg)
	}
	if m.cur != scrProgress {
		switch {
		case key.Matches(msg, c.keys.Interrupt):
			return m.quit()
		case key.Matches(msg, m.helpKey()):
			m.showHelp = !m.showHelp
			return nil
		case !s.Typing() && key.Matches(msg, c.keys.Quit):
			return m.quit()
		}
	} else if key.Matches(msg, m.helpKey()) {
		m.showHelp = !m.showHelp
		return nil
	}
	return s.Update(msg)
}

// helpKey is F1 while a text field has the focus, else ? and F1.
func (m *Model) helpKey() key.Binding {
	if m.screens[m.cur].Typing() {
		return m.c.keys.HelpTyping
	}
	return m.c.keys.Help
}

func (m *Model) quit() tea.Cmd {
	m.c.quitting = true
	m.c.clearSecrets()
	for _, s := range m.screens {
		if h, ok := s.(secretHolder); ok {
			h.clearSecrets()
		}
	}
	m.c.dropPlan()
	return tea.Quit
}

// bindings are the current screen's bindings plus the global ones: the
// short help names one way to quit, the full help every key once.
func (m *Model) bindings() ([]key.Binding, [][]key.Binding) {
	s := m.screens[m.cur]
	k := m.c.keys
	short := append([]key.Binding(nil), s.ShortHelp()...)
	full := append([][]key.Binding(nil), s.FullHelp()...)
	switch {
	case m.runningAction() != nil:
		// nothing the screen offers works while core runs
		short = []key.Binding{m.helpKey(), keyFinishing}
		full = [][]key.Binding{short}
	case m.cur == scrProgress:
		short = append(short, m.helpKey())
		full = append(full, []key.Binding{m.helpKey()})
	case s.Typing():
		short = append(short, m.helpKey(), k.Interrupt)
		full = append(full, []key.Binding{m.helpKey(), k.Interrupt})
	default:
		short = append(short, m.helpKey(), k.Quit)
		full = append(full, []key.Binding{m.helpKey(), k.Quit, k.Interrupt})
	}
	return short, full
}

// title numbers the screen from its place in the flow.
func (m *Model) title() string {
	t := m.screens[m.cur].Title()
	n, i := 0, 0
	for _, f := range flow {
		if !f.numbered || m.c.skipped(f.id) {
			continue
		}
		n++
		if f.id == m.cur {
			i = n
		}
	}
	if i == 0 {
		return t
	}
	return fmt.Sprintf("%d/%d %s", i, n, t)
}

// View draws the current screen in the frame. It only draws.
func (m *Model) View() tea.View {
	var v tea.View
	v.AltScreen = true
	v.WindowTitle = "luksdock"
	if m.c.quitting {
		v.SetContent("")
		return v
	}
	v.SetContent(m.frame())
	return v
}

// frame lays out title, body and the help footer in the terminal's size.
// A body taller than the space left scrolls: the screen's scroll offset, or
// so that the focused line is visible.
func (m *Model) frame() string {
	c := m.c
	w := max(c.width, 20)
	s := m.screens[m.cur]
	body, focus := s.View()
	if c.targetGone && c.target != nil && flowIndex(m.cur) > flowIndex(scrDisks) && flowIndex(m.cur) < flowIndex(scrProgress) {
		warn := para(c.st.err, fmt.Sprintf("⚠ %s is no longer attached as it was (undocked or replaced?). Going on would be refused; press Esc to choose again.", c.target.Path), w, "  ") + "\n"
		body = warn + body
		if focus >= 0 {
			focus += strings.Count(warn, "\n")
		}
	}
	foot := m.footer()
	head := c.st.title.Render(truncate("luksdock · "+m.title(), w))
	avail := m.avail()
	lines, focus := fitLines(body, focus, w)
	if len(lines) > avail {
		start := m.top
		if p, ok := s.(scrollable); ok {
			start = p.offset()
		} else if m.free {
			focus = -1
		}
		start = window(len(lines), start, focus, focusSpan(s), avail)
		end := min(start+avail, len(lines))
		shown := append([]string(nil), lines[start:end]...)
		if start > 0 {
			shown[0] = c.st.faint.Render("  ↑ more above")
		}
		if end < len(lines) {
			shown[len(shown)-1] = c.st.faint.Render(fmt.Sprintf("  ↓ %d more lines (pgdn)", len(lines)-end+1))
		}
		lines = shown
	}
	for len(lines) < avail {
		lines = append(lines, "")
	}
	return head + "\n" + strings.Join(lines, "\n") + "\n\n" + foot
}

// page scrolls a screen that does not scroll itself by a page, from where
// it is shown now.
func (m *Model) page(msg tea.KeyPressMsg) {
	s, avail := m.screens[m.cur], m.avail()
	body, focus := s.View()
	lines, focus := fitLines(body, focus, max(m.c.width, 20))
	n := len(lines)
	if m.free {
		focus = -1
	}
	top := window(n, m.top, focus, focusSpan(s), avail)
	if msg.String() == "pgup" {
		top -= max(avail-2, 1)
	} else {
		top += max(avail-2, 1)
	}
	m.top, m.free = max(min(top, n-avail), 0), true
}

// fitLines splits body into lines of at most w cells: a line too long
// (a word wider than the terminal, such as a long path) continues on the
// next, never cut. focus is moved with the lines it follows.
func fitLines(body string, focus, w int) ([]string, int) {
	var out []string
	f := focus
	for i, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if ansi.StringWidth(l) <= w {
			out = append(out, l)
			continue
		}
		parts := strings.Split(ansi.Hardwrap(l, w, true), "\n")
		if i < focus {
			f += len(parts) - 1
		}
		out = append(out, parts...)
	}
	return out, f
}

// footer is the status line (when the screen has one) and the help.
func (m *Model) footer() string {
	c := m.c
	short, full := m.bindings()
	foot := renderHelp(&c.st, short, full, m.showHelp, max(c.width, 20))
	if sl, ok := m.screens[m.cur].(statusLiner); ok {
		if st := strings.TrimRight(sl.Status(), "\n"); st != "" {
			foot = clampStatus(&c.st, st, c.height, strings.Count(foot, "\n")+1) + "\n" + foot
		}
	}
	return foot
}

// clampStatus keeps a status of many lines (a refusal that quotes a
// 600-character entry) to half of what the title and the help leave of
// height, so the help and some of the body stay on screen: its first
// lines, how many are left out, and its last two (where the reason is).
func clampStatus(st *styles, status string, height, helpLines int) string {
	lines := strings.Split(status, "\n")
	most := max((height-2-helpLines)/2, 3)
	if height <= 0 || len(lines) <= most {
		return status
	}
	// the reason is at the end, often over its last two lines
	tail := 2
	head := most - 1 - tail
	keep := append([]string(nil), lines[:head]...)
	keep = append(keep, st.faint.Render(fmt.Sprintf("  [%d more lines of this message]", len(lines)-head-tail)))
	keep = append(keep, lines[len(lines)-tail:]...)
	return strings.Join(keep, "\n")
}

// avail is the number of body lines the frame shows now: the terminal's
// height less the title, the blank line and the footer.
func (m *Model) avail() int {
	return max(m.c.height-2-(strings.Count(m.footer(), "\n")+1), 3)
}

// window is the first body line shown of n, from the screen's offset
// start: with a focus line, moved just enough that the focus line and the
// span-1 lines after it (its note) are visible between the "more" markers,
// the focus line first when not all of them fit.
func window(n, start, focus, span, avail int) int {
	if focus >= 0 {
		start = min(start, max(focus-1, 0))
		start = max(start, focus+span+1-avail)
		start = min(start, max(focus-1, 0))
	}
	return max(min(start, n-avail), 0)
}

// focusSpanner is a screen whose focus line is followed by more lines that
// belong to it (a field's note) than the one line the frame keeps.
type focusSpanner interface{ focusSpan() int }

func focusSpan(s screen) int {
	if f, ok := s.(focusSpanner); ok {
		return max(f.focusSpan(), 1)
	}
	return 2 // the focus line and its note
}

// scrollable is a screen that scrolls its body with keys.
type scrollable interface{ offset() int }

// pager is the scroll state of a screen with a long body; embed it and
// call scroll from Update.
type pager struct{ top int }

func (p *pager) offset() int { return p.top }

// scroll moves the offset for a scroll key; it reports whether msg was
// one. lines is the body's height (View's), so the offset stops at the end.
func (p *pager) scroll(c *shared, msg tea.KeyPressMsg, lines int) bool {
	if !key.Matches(msg, keyScroll) {
		return false
	}
	switch msg.String() {
	case "up", "k":
		p.top--
	case "down", "j":
		p.top++
	case "pgup":
		p.top -= max(c.bodyAvail-2, 1)
	case "pgdown":
		p.top += max(c.bodyAvail-2, 1)
	}
	p.top = max(min(p.top, lines-c.bodyAvail), 0)
	return true
}

// bodyLines counts the lines of a screen's body as the frame draws them.
func bodyLines(c *shared, s screen) int {
	b, _ := s.View()
	lines, _ := fitLines(b, -1, max(c.width, 20))
	return len(lines)
}

// settle records how a run ended.
func (c *shared) settle(res *pipeline.Result, err error) {
	if err == nil && res != nil {
		c.result = res
		c.dropResults(res.Target)
		c.results = append(c.results, res)
		c.runErr = nil
		return
	}
	if err == nil {
		err = errors.New("the run ended without a result")
	}
	var pe *pipeline.Error
	if !errors.As(err, &pe) {
		pe = &pipeline.Error{Kind: pipeline.KindStep, Err: err}
	}
	if !pe.Unchanged() {
		// the run wrote to the disk: what an earlier run verified is gone
		c.dropResults(c.runTarget)
	}
	c.runErr = pe
}

// dropResults forgets the verified results of target (a path): it was
// prepared again or retired, so the summary must not call it a verified
// backup disk.
func (c *shared) dropResults(target string) {
	c.results = slices.DeleteFunc(c.results, func(r *pipeline.Result) bool { return r.Target == target })
}

// runState is a preparation in progress.
type runState struct {
	cancel    context.CancelFunc
	msgs      chan tea.Msg
	done      chan struct{} // closed when the UI no longer reads events
	wg        sync.WaitGroup
	closeOnce sync.Once
	finished  bool
	// Set by the run goroutine before its last message; read after wg.Wait.
	finalRes *pipeline.Result
	finalErr error
}

// unwrapMsg is an error's message in the wizard's words (screenWords).
func unwrapMsg(err error) string {
	if pe, ok := err.(*pipeline.Error); ok {
		return screenWords(pe.Err.Error())
	}
	return screenWords(err.Error())
}
