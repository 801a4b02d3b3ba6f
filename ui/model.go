// Package ui is luksdock's wizard: a bubbletea state machine that walks from
// "dock a disk" to a verified backup disk. It shows what discovery found and
// what the pipeline does; it does no disk work of its own. Every write goes
// through pipeline.Plan.Run, after the user has typed the target's name.
package ui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/spinner"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"luksdock/disk"
	"luksdock/luks"
	"luksdock/pipeline"
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
	// (pipeline.DeviceTarget(disk.Sys{Root:"/"}, "/dev/"+name)).
	DeviceTarget func(name string) (*pipeline.Target, error)
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

type screen int

const (
	screenDisks screen = iota
	screenDetails
	screenOptions
	screenPassphrase
	screenPlan
	screenConfirm
	screenProgress
	screenDone
	screenError
)

var screenNames = map[screen]string{
	screenDisks: "disks", screenDetails: "details", screenOptions: "options", screenPassphrase: "passphrase",
	screenPlan: "plan", screenConfirm: "confirm", screenProgress: "progress", screenDone: "done", screenError: "error",
}

// String names the screen (for tests and debugging).
func (s screen) String() string { return screenNames[s] }

// Model is the wizard. Use it as a *Model with tea.NewProgram; call Close
// after the program has ended.
type Model struct {
	cfg      Config
	keys     keyMap
	help     help.Model
	spin     spinner.Model
	spinning bool // a spinner tick is scheduled
	width    int
	height   int
	screen   screen
	scroll   int // first body line shown on scrollable screens
	showHelp bool

	// Disks screen.
	disks     []disk.Disk
	scanErr   error
	logErr    error
	arrivals  []disk.Arrival
	latest    string          // kernel name of the most recently docked disk (kernel log / hotplug)
	liveAdded map[string]bool // disks that arrived while the wizard ran
	rows      []row
	cursor    int
	selKey    string // key of the selected row, kept across rescans
	scanned   bool
	scanning  bool
	rescanDue bool   // another scan is wanted once the running one ends
	wantSel   string // a disk just docked, to select once it is listed and eligible

	// The chosen target.
	sel        row
	target     *pipeline.Target
	targetErr  error
	targetGone bool // the chosen disk left (or changed) after it was chosen

	// Options screen.
	label       field
	header      field
	table       disk.TableType // gpt or mbr
	luks1       bool
	pbkdfChoice int
	optFocus    int
	optErr      string
	suggestion  string
	plan        *pipeline.Plan

	// Passphrase screen.
	pass      [2]secret
	passFocus int
	passErr   string

	// Confirm screen.
	confirm field

	// Progress, Done, Error.
	run     *runState
	result  *pipeline.Result
	runErr  *pipeline.Error
	results []*pipeline.Result

	quitting bool
}

// row is one line of the disk list.
type row struct {
	key     string
	image   bool
	name    string // kernel name, or the image's file name
	path    string // /dev/NAME or the image path
	size    int64
	create  bool // image to be created
	disk    *disk.Disk
	verdict disk.Verdict
	ok      bool
	reasons []string
	summary string
	img     Image
}

// New makes the wizard from cfg.
func New(cfg Config) *Model {
	if cfg.Scan == nil {
		cfg.Scan = func() ([]disk.Disk, error) { return nil, nil }
	}
	if cfg.DeviceTarget == nil {
		cfg.DeviceTarget = func(name string) (*pipeline.Target, error) {
			return pipeline.DeviceTarget(disk.Sys{Root: "/"}, "/dev/"+name)
		}
	}
	m := &Model{
		cfg:       cfg,
		keys:      newKeyMap(),
		help:      help.New(),
		spin:      spinner.New(spinner.WithSpinner(spinner.Line)),
		width:     80,
		height:    24,
		table:     "gpt",
		liveAdded: map[string]bool{},
	}
	m.label = newField()
	m.label.Prompt = ""
	m.label.CharLimit = 64
	m.header = newField()
	m.header.Prompt = ""
	m.header.Placeholder = "none (recommended: a path on another disk)"
	m.confirm = newField()
	m.confirm.Prompt = "> "
	m.confirm.CharLimit = 128
	if cfg.PBKDF != (luks.PBKDF{}) {
		m.pbkdfChoice = pbkdfFromFlags
	}
	return m
}

// Results are the disks prepared and verified in this session.
func (m *Model) Results() []*pipeline.Result { return m.results }

// LastError is the error of the last run when it did not succeed (and no
// later run did), else nil.
func (m *Model) LastError() error {
	if m.runErr == nil {
		return nil
	}
	return m.runErr
}

// Running reports whether a preparation is in progress.
func (m *Model) Running() bool { return m.run != nil && !m.run.finished }

// Close stops a run still in progress (it finishes the current step, closes
// the volume and releases the disk) and waits for it. Call it after the
// program has ended.
func (m *Model) Close() {
	rs := m.run
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
	if rs.finalErr != nil {
		var pe *pipeline.Error
		if !errors.As(rs.finalErr, &pe) {
			pe = &pipeline.Error{Kind: pipeline.KindStep, Err: rs.finalErr}
		}
		m.runErr = pe
	} else if rs.finalRes != nil {
		m.results = append(m.results, rs.finalRes)
		m.runErr = nil
	}
}

// messages
type (
	scanMsg struct {
		disks    []disk.Disk
		err      error
		lines    []disk.KernelLine
		logErr   error
		imageRow []row
	}
	hotplugMsg    disk.Hotplug
	hotplugClosed struct{}
	rescanTick    struct{}
)

// Init scans, starts listening for hotplug and the spinner.
func (m *Model) Init() tea.Cmd {
	m.scanning = true
	return tea.Batch(m.scanCmd(), m.waitHotplug(), m.rescanCmd())
}

func (m *Model) scanCmd() tea.Cmd {
	cfg := m.cfg
	return func() tea.Msg {
		var s scanMsg
		s.disks, s.err = cfg.Scan()
		if cfg.KernelLog != nil {
			s.lines, s.logErr = cfg.KernelLog()
		}
		for _, im := range cfg.Images {
			s.imageRow = append(s.imageRow, imageRow(im))
		}
		return s
	}
}

// rescan starts a scan, or when one is already running, makes sure another
// follows it (the running one may have read sysfs before the change).
func (m *Model) rescan() tea.Cmd {
	if m.scanning {
		m.rescanDue = true
		return nil
	}
	m.scanning, m.rescanDue = true, false
	return m.scanCmd()
}

func (m *Model) waitHotplug() tea.Cmd {
	ch := m.cfg.Hotplug
	if ch == nil {
		return nil
	}
	return func() tea.Msg {
		h, ok := <-ch
		if !ok {
			return hotplugClosed{}
		}
		return hotplugMsg(h)
	}
}

func (m *Model) rescanCmd() tea.Cmd {
	if m.cfg.Rescan <= 0 {
		return nil
	}
	return tea.Tick(m.cfg.Rescan, func(time.Time) tea.Msg { return rescanTick{} })
}

func imageRow(im Image) row {
	r := row{key: "image:" + im.Path, image: true, path: im.Path, img: im}
	t, err := pipeline.ImageTarget(im.Path, im.Size)
	if err != nil {
		r.name = im.Path[strings.LastIndexByte(im.Path, '/')+1:]
		r.reasons = []string{unwrapMsg(err)}
		r.summary = "image file"
		return r
	}
	r.name, r.path, r.size, r.create, r.ok = t.Name, t.Path, t.Size, t.Create, true
	switch {
	case t.Create:
		r.summary = "image file, to be created (sparse)"
	default:
		r.summary = "image file: " + t.Content.String()
		for _, p := range t.Parts {
			r.summary += fmt.Sprintf("; %d: %s", p.Number, p.Content)
		}
	}
	if t.Size < pipeline.MinSize {
		r.ok = false
		r.reasons = []string{fmt.Sprintf("smaller than %s", pipeline.HumanSize(pipeline.MinSize))}
	}
	return r
}

func unwrapMsg(err error) string {
	if pe, ok := err.(*pipeline.Error); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// Update handles a message.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	cmd := m.update(msg)
	if m.needSpin() && !m.spinning {
		m.spinning = true
		cmd = tea.Batch(cmd, m.spin.Tick)
	}
	return m, cmd
}

// needSpin reports whether something on screen is waiting: the first scan,
// "Dock a disk now…", or a step in progress.
func (m *Model) needSpin() bool {
	if m.quitting {
		return false
	}
	switch m.screen {
	case screenDisks:
		return !m.scanned || m.eligible() == 0
	case screenProgress:
		return m.run != nil && !m.run.finished
	}
	return false
}

func (m *Model) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.help.SetWidth(msg.Width)
		return nil
	case scanMsg:
		m.applyScan(msg)
		if m.rescanDue {
			return m.rescan()
		}
		return nil
	case hotplugMsg:
		if msg.Action == "add" && !msg.Partition {
			m.liveAdded[msg.Name] = true
			m.latest = msg.Name
			m.wantSel = msg.Name // select the new disk once it is listed and eligible
		}
		return tea.Batch(m.waitHotplug(), m.rescan())
	case hotplugClosed:
		return nil
	case rescanTick:
		var cmd tea.Cmd
		if m.screen == screenDisks {
			cmd = m.rescan()
		}
		return tea.Batch(cmd, m.rescanCmd())
	case spinner.TickMsg:
		if !m.needSpin() {
			m.spinning = false
			return nil
		}
		var cmd tea.Cmd
		m.spin, cmd = m.spin.Update(msg)
		return cmd
	case runEventMsg:
		return m.onEvent(pipeline.Event(msg))
	case runDoneMsg:
		return m.onRunDone(msg)
	case tea.PasteMsg:
		return m.updateInput(msg)
	case tea.KeyPressMsg:
		return m.onKey(msg)
	}
	// Cursor blinks and other messages for the focused input.
	return m.updateInput(msg)
}

func (m *Model) onKey(msg tea.KeyPressMsg) tea.Cmd {
	k := m.keys
	if m.screen == screenProgress {
		return m.progressKey(msg)
	}
	if key.Matches(msg, k.Interrupt) {
		return m.quit()
	}
	typing := m.typing()
	if key.Matches(msg, k.Help) && (!typing || msg.String() == "f1") {
		m.showHelp = !m.showHelp
		m.help.ShowAll = m.showHelp
		return nil
	}
	if !typing && key.Matches(msg, k.Quit) {
		return m.quit()
	}
	switch m.screen {
	case screenDisks:
		return m.disksKey(msg)
	case screenDetails:
		return m.detailsKey(msg)
	case screenOptions:
		return m.optionsKey(msg)
	case screenPassphrase:
		return m.passKey(msg)
	case screenPlan:
		return m.planKey(msg)
	case screenConfirm:
		return m.confirmKey(msg)
	case screenDone:
		return m.doneKey(msg)
	case screenError:
		return m.errorKey(msg)
	}
	return nil
}

// typing reports whether keys go to a text field on this screen.
func (m *Model) typing() bool {
	switch m.screen {
	case screenOptions:
		return m.optFocus == optLabel || m.optFocus == optHeader
	case screenPassphrase, screenConfirm:
		return true
	}
	return false
}

func (m *Model) quit() tea.Cmd {
	m.quitting = true
	m.clearSecrets()
	return tea.Quit
}

func (m *Model) clearSecrets() {
	m.pass[0].Clear()
	m.pass[1].Clear()
}

// go switches screens and resets per-screen scrolling.
func (m *Model) goTo(s screen) {
	m.screen = s
	m.scroll = 0
	m.label.Blur()
	m.header.Blur()
	m.confirm.Blur()
}

func (m *Model) updateInput(msg tea.Msg) tea.Cmd {
	var cmd tea.Cmd
	switch m.screen {
	case screenOptions:
		switch m.optFocus {
		case optLabel:
			m.label, cmd = m.label.Update(msg)
			m.validateOptions()
		case optHeader:
			m.header, cmd = m.header.Update(msg)
			m.validateOptions()
		}
	case screenConfirm:
		m.confirm, cmd = m.confirm.Update(msg)
	case screenPassphrase:
		if p, ok := msg.(tea.PasteMsg); ok {
			m.pass[m.passFocus].Insert(p.Content)
			m.checkPass()
		}
	}
	return cmd
}

// View draws the current screen.
func (m *Model) View() tea.View {
	var v tea.View
	v.AltScreen = true
	v.WindowTitle = "luksdock"
	if m.quitting {
		v.SetContent("")
		return v
	}
	title, body := m.render()
	v.SetContent(m.frame(title, body))
	return v
}

// render returns the screen's title and body.
func (m *Model) render() (string, string) {
	switch m.screen {
	case screenDisks:
		return "1/8 Choose the disk to prepare", m.disksView()
	case screenDetails:
		return "2/8 Is this the disk you just docked?", m.detailsView()
	case screenOptions:
		return "3/8 Options", m.optionsView()
	case screenPassphrase:
		return "4/8 Passphrase", m.passView()
	case screenPlan:
		return "5/8 Plan: what will happen", m.planView()
	case screenConfirm:
		return "6/8 Confirm", m.confirmView()
	case screenProgress:
		return "7/8 Preparing " + m.targetName(), m.progressView()
	case screenDone:
		return "8/8 Done: a verified backup disk", m.doneView()
	case screenError:
		return "Stopped: the preparation did not finish", m.errorView()
	}
	return "", ""
}

func (m *Model) targetName() string {
	if m.target != nil {
		return m.target.Path
	}
	return m.sel.path
}

// frame lays out title, body (clipped and scrollable) and the help footer in
// the terminal's size.
func (m *Model) frame(title, body string) string {
	w := max(m.width, 20)
	head := stTitle.Render(truncate("luksdock · "+title, w))
	foot := m.help.View(m.bindings())
	if m.targetGone && m.screen >= screenDetails && m.screen <= screenConfirm {
		body = stErr.Render(fmt.Sprintf("⚠ %s is no longer attached as it was (undocked or replaced?). Going on would be refused; press Esc to choose again.", m.target.Path)) + "\n\n" + body
	}
	footLines := strings.Split(foot, "\n")
	avail := max(m.height-2-len(footLines), 3)
	lines := wrapLines(body, w)
	if m.scroll > len(lines)-avail {
		m.scroll = max(len(lines)-avail, 0)
	}
	if len(lines) > avail {
		start := m.scroll
		end := min(start+avail, len(lines))
		shown := append([]string(nil), lines[start:end]...)
		if start > 0 {
			shown[0] = stFaint.Render("  ↑ more above (↑/k)")
		}
		if end < len(lines) {
			shown[len(shown)-1] = stFaint.Render(fmt.Sprintf("  ↓ %d more lines (↓/j)", len(lines)-end+1))
		}
		lines = shown
	}
	for len(lines) < avail {
		lines = append(lines, "")
	}
	return head + "\n" + strings.Join(lines, "\n") + "\n\n" + foot
}

// scrollKey scrolls a long body; it reports whether msg was a scroll key.
func (m *Model) scrollKey(msg tea.KeyPressMsg) bool {
	switch msg.String() {
	case "up", "k":
		if m.scroll > 0 {
			m.scroll--
		}
	case "down", "j":
		m.scroll++
	case "pgup":
		m.scroll = max(m.scroll-10, 0)
	case "pgdown":
		m.scroll += 10
	default:
		return false
	}
	return true
}

// wrapLines wraps every line of s to width w (ANSI-aware); continuation
// lines are indented two cells past the line's own indentation.
func wrapLines(s string, w int) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if lipgloss.Width(l) <= w {
			out = append(out, l)
			continue
		}
		plain := ansi.Strip(l)
		indent := min(len(plain)-len(strings.TrimLeft(plain, " "))+2, w/3)
		parts := strings.Split(lipgloss.Wrap(l, w-indent, " "), "\n")
		for i, p := range parts {
			if i > 0 {
				p = strings.Repeat(" ", indent) + strings.TrimLeft(p, " ")
			}
			// Wrap may leave a breakpoint character past the width.
			out = append(out, strings.Split(ansi.Hardwrap(p, w, true), "\n")...)
		}
	}
	return out
}

// kvLine is "key  value" with the value wrapped to the terminal's width and
// continuation lines aligned under it.
func (m *Model) kvLine(k, v string) string {
	const col = 18
	lines := strings.Split(lipgloss.Wrap(v, max(m.width-col, 20), " "), "\n")
	for i := 1; i < len(lines); i++ {
		lines[i] = strings.Repeat(" ", col) + strings.TrimLeft(lines[i], " ")
	}
	return stLabel.Render(k) + strings.Join(lines, "\n") + "\n"
}

// truncate shortens s to w cells with an ellipsis.
func truncate(s string, w int) string {
	if lipgloss.Width(s) <= w {
		return s
	}
	r := []rune(s)
	for len(r) > 0 && lipgloss.Width(string(r))+1 > w {
		r = r[:len(r)-1]
	}
	return string(r) + "…"
}

// runState is a preparation in progress.
type runState struct {
	cancel    context.CancelFunc
	msgs      chan tea.Msg
	done      chan struct{} // closed when the UI no longer reads events
	wg        sync.WaitGroup
	steps     []stepState
	warnings  []string
	engine    pipeline.Engine
	why       string
	start     time.Time
	asking    bool // "stop?" question shown
	stopping  bool // cancellation requested
	quitAfter bool
	finished  bool
	verify    string
	closeOnce sync.Once
	// Set by the run goroutine before its last message; read after wg.Wait.
	finalRes *pipeline.Result
	finalErr error
}

type stepState struct {
	step    pipeline.Step
	state   string // pending, running, done, failed, skipped
	started time.Time
	elapsed time.Duration
	msg     string
}

type (
	runEventMsg pipeline.Event
	runDoneMsg  struct {
		res *pipeline.Result
		err error
	}
)
