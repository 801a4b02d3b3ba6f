package ui

import (
	"fmt"
	"os"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// The actions on a known disk. A LUKS disk the inventory or its own
// luksdock token knows gets, after Details, the Actions screen: what fits
// its state (open or close, change passphrase, new recovery key, enroll
// this host, retire, prepare again). Each action is a screen of its own
// (open.go, close.go, …) at the end of the flow table, skipped unless it is
// the action chosen; it does its disk work through core in a tea.Cmd and
// ends with Enter back on the disk list.

// action names an action offered on a known disk.
type action string

const (
	actPrepare     action = "prepare"
	actOpen        action = "open"
	actClose       action = "close"
	actPasswd      action = "passwd"
	actRecoveryKey action = "recovery-key"
	actEnroll      action = "enroll"
	actRetire      action = "retire"
)

// actionScreens are the screens of the actions (prepare goes on in the
// flow instead).
var actionScreens = map[action]screenID{
	actOpen: scrOpen, actClose: scrClose, actPasswd: scrPasswd,
	actRecoveryKey: scrNewKey, actEnroll: scrEnroll, actRetire: scrRetire,
}

// knownDisk is what the wizard knows of a chosen LUKS disk, read with its
// target (in the Details screen's command).
type knownDisk struct {
	uuid      string
	known     bool   // the inventory or the disk's token knows it
	desc      string // core.RecogniseToken's description
	luks2     bool
	open      bool   // luksdock open has it open (core.Opens, core.OpenOnly)
	mounted   string // where it is mounted then ("": unlocked only, or not open)
	enrolled  bool   // this host holds a key for it
	inventory bool   // the inventory has a record of it
	label     string // its label (the inventory's, else its token's)
	set       string // its rotation set (the inventory's, else its token's)
	// stopped is where an interrupted preparation of it stopped (its erase
	// position is saved: pipeline.SavedErase), "" when none did: it is
	// not a finished backup disk, and preparing it again continues.
	stopped string
}

// readKnown is the state of the target's LUKS volume (in a tea.Cmd).
func readKnown(t *pipeline.Target, inv *inventory.File) knownDisk {
	var k knownDisk
	if t == nil {
		return k
	}
	uuid, set := disk.LUKSOn(t.Content, t.Parts)
	if uuid == "" {
		return k
	}
	k.uuid = uuid
	if r := pipeline.SavedErase(t); r != nil {
		k.stopped = r.String()
	}
	meta := core.DiskMetadata(t.Path, t.Content, t.Parts)
	k.desc, k.known = core.RecogniseToken(inv, uuid, set, meta, time.Now())
	var r *inventory.Record
	if inv != nil {
		r = inv.Find(uuid)
	}
	switch {
	case r != nil:
		k.inventory, k.label, k.set = true, r.Label, r.Set
	case meta != nil:
		k.label, k.set = meta.Label, meta.Set
	}
	if d, ok := core.LUKSDevice(t.Path, t.Content, t.Parts); ok {
		if info, err := luks.ReadHeaderDevice(d); err == nil {
			k.luks2 = info.Version == 2
		}
	}
	for _, o := range core.Opens() {
		if strings.EqualFold(o.LUKSUUID, uuid) {
			k.open, k.mounted = true, o.Mountpoint
		}
	}
	if !k.open && t.Disk != nil {
		// a dm-crypt mapping of it (luks-UUID) without luksdock open's
		// record: opened by a luksdock whose record is gone, or by the
		// desktop; closed the same way
		if o := core.OpenOnly(*t.Disk); o != nil && strings.EqualFold(o.LUKSUUID, uuid) {
			k.open, k.mounted = true, o.Mountpoint
		}
	}
	if _, err := os.Stat(core.KeyFile(uuid)); err == nil {
		k.enrolled = true
	}
	return k
}

// selector names the chosen target for core.
func (c *shared) selector() core.Selector {
	if c.target.Image {
		return core.Selector{Image: c.target.Path}
	}
	return core.Selector{Device: c.target.Path}
}

// actionItem is one line of the Actions screen.
type actionItem struct {
	act  action
	name string
	what string
}

// actionsScreen offers what fits a known disk.
type actionsScreen struct {
	c      *shared
	cursor int
	keys   struct{ up, down, enter, back key.Binding }
}

func newActions(c *shared) screen {
	s := &actionsScreen{c: c}
	s.keys.up, s.keys.down = keyUp, keyDown
	s.keys.enter = keyEnter("do it")
	s.keys.back = keyBack("back")
	return s
}

func (s *actionsScreen) Title() string { return "What to do with this disk" }
func (s *actionsScreen) Typing() bool  { return false }

// Skip: only a known LUKS disk has actions, and an open one (Close); any
// other goes on to prepare.
func (s *actionsScreen) Skip() bool {
	return s.c.target == nil || s.c.targetErr != nil || !s.c.knownDisk.known && !s.c.knownDisk.open
}
func (s *actionsScreen) ShortHelp() []key.Binding {
	return []key.Binding{s.keys.up, s.keys.down, s.keys.enter, s.keys.back}
}
func (s *actionsScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }

func (s *actionsScreen) Enter() tea.Cmd {
	s.c.action = ""
	if s.cursor >= len(s.items()) {
		s.cursor = 0
	}
	return nil
}

// items are the actions that fit the disk's state now.
func (s *actionsScreen) items() []actionItem {
	k := s.c.knownDisk
	var out []actionItem
	lock := "lock it and power it off, so it can be pulled"
	if t := s.c.target; t != nil && t.Image {
		lock = "lock it" // an image file has no drive to power off
	}
	if k.stopped != "" && !k.open {
		out = append(out, actionItem{actPrepare, "Continue preparing", "finish it: the erase goes on where it stopped, with the same label and options"})
	}
	switch {
	case k.open && k.mounted == "":
		out = append(out, actionItem{actClose, "Close", lock})
	case k.open:
		out = append(out, actionItem{actClose, "Close", "unmount " + k.mounted + ", " + lock})
	default:
		out = append(out, actionItem{actOpen, "Open", "unlock it and mount its filesystem"})
	}
	if !k.known {
		// open, but neither the inventory nor a token knows it: Close only
		return out
	}
	out = append(out,
		actionItem{actPasswd, "Change passphrase", "the old passphrase (or the recovery key), then the new one twice"},
		actionItem{actRecoveryKey, "New recovery key", "a new key, shown once and typed back; the old one's keyslot is removed"})
	if k.luks2 && !k.enrolled {
		out = append(out, actionItem{actEnroll, "Enroll this host", "a keyslot only this machine can use, so it unlocks the disk when docked"})
	}
	if !k.open {
		// never while it is open: prepare and retire write over it
		out = append(out,
			actionItem{actRetire, "Retire", "crypto-erase it: no passphrase or key opens it again"},
			actionItem{actPrepare, "Prepare again", "start over: a new volume replaces everything on it"})
	}
	return out
}

func (s *actionsScreen) Update(msg tea.Msg) tea.Cmd {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil
	}
	items := s.items()
	switch {
	case key.Matches(k, s.keys.up):
		s.cursor = max(s.cursor-1, 0)
	case key.Matches(k, s.keys.down):
		s.cursor = min(s.cursor+1, len(items)-1)
	case key.Matches(k, s.keys.back):
		s.c.back(scrActions)
	case key.Matches(k, s.keys.enter):
		it := items[s.cursor]
		s.c.action = it.act
		if to, ok := actionScreens[it.act]; ok {
			s.c.goTo(to)
		} else {
			s.c.forward(scrActions)
		}
	}
	return nil
}

func (s *actionsScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	t := c.target
	if c.knownDisk.known {
		b.WriteString(para(st.ok, "Known disk: "+c.knownDisk.desc, c.width, "  "))
	} else {
		b.WriteString(para(st.warn, "⚠ This is "+c.knownDisk.desc+".", c.width, "  "))
	}
	b.WriteString(openNowLine(c))
	b.WriteString(stoppedLine(c))
	b.WriteString(para(st.faint, t.Path+", "+disk.SizeString(t.Size), c.width, "  ") + "\n")
	focus := -1
	for i, it := range s.items() {
		if i == s.cursor {
			focus = strings.Count(b.String(), "\n")
			b.WriteString(st.sel.Render("› "+it.name) + "\n")
		} else {
			b.WriteString("  " + it.name + "\n")
		}
		b.WriteString(para(st.faint, "    "+it.what, c.width, "    "))
	}
	return b.String(), focus
}

// secretHolder is a screen that keeps typed secrets of its own (an
// action's); quitting clears them.
type secretHolder interface{ clearSecrets() }

// actionDoneMsg is an action's outcome, for the screen that started it.
type actionDoneMsg struct {
	to  screenID
	gen int
	res any
	err error
}

// actionRun is the state an action screen shares: whether its command is
// running, and what it said last.
type actionRun struct {
	running bool
	gen     int
	err     string // why the last try was refused or failed
	done    bool   // the action succeeded; its result is shown
	// stopAsked: Ctrl+C was pressed while core ran. The change is not
	// abandoned halfway (the wizard does not quit under it): it finishes
	// and its outcome is shown.
	stopAsked bool
}

// start marks the run begun and returns the message maker for its end.
func (r *actionRun) start(to screenID) func(res any, err error) tea.Msg {
	r.running, r.err = true, ""
	r.gen++
	gen := r.gen
	return func(res any, err error) tea.Msg { return actionDoneMsg{to: to, gen: gen, res: res, err: err} }
}

// finish takes the outcome; it reports false for a stale message.
func (r *actionRun) finish(m actionDoneMsg) bool {
	if m.gen != r.gen || !r.running {
		return false
	}
	r.running = false
	if m.err != nil {
		r.err = unwrapMsg(m.err)
		return true
	}
	r.done = true
	return true
}

func (r *actionRun) reset() { r.running, r.err, r.done, r.stopAsked = false, "", false, false; r.gen++ }

// Busy: a spinner while the command runs.
func (r *actionRun) Busy() bool { return r.running }

// status is the line pinned above the footer: the error, or "working".
func (r *actionRun) status(c *shared, working string) string {
	switch {
	case r.running && r.stopAsked:
		return para(lipglossPlain, c.spin.View()+" "+working+" Ctrl+C: luksdock does not stop this halfway; it finishes in a moment and shows what it did, then q quits.", c.width, "  ")
	case r.running:
		return para(lipglossPlain, c.spin.View()+" "+working, c.width, "  ")
	case r.err != "":
		return para(c.st.err, "✗ "+r.err, c.width, "  ")
	}
	return ""
}

// maskedLine is a secret's line: its name and a dot per character.
func maskedLine(c *shared, label string, s *secret, focused bool) string {
	st := &c.st
	marker, name := "  ", label
	if focused {
		marker, name = "› ", st.key.Render(label)
	}
	over := ""
	if s.Over() > 0 {
		over = fmt.Sprintf(" ✗ %d over", s.Over())
	}
	n := s.Len()
	dots := strings.Repeat("•", min(n, max(c.width-24-len(over), 5)))
	if len(dots)/len("•") < n {
		dots += "…"
	}
	cursor := ""
	if focused {
		cursor = "▏"
	}
	if over != "" {
		cursor += st.err.Render(over)
	}
	return marker + st.label.Render(name) + dots + cursor + "\n"
}

// editSecret applies an editing key or a paste to s; it reports whether
// msg was one.
func editSecret(in *keyFilter, s *secret, msg tea.Msg) bool {
	switch msg := msg.(type) {
	case tea.PasteMsg:
		s.Insert(in, msg.Content)
		return true
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, fieldKeys.Delete):
			s.Backspace()
		case key.Matches(msg, fieldKeys.Clear):
			s.Clear()
		case key.Matches(msg, fieldKeys.Word):
			s.BackspaceWord()
		case printable(msg):
			s.Insert(in, msg.Text)
		default:
			return false
		}
		return true
	}
	return false
}

// finishAction leaves an action's screen for the disk list, where the
// disk's new state is read again.
func (c *shared) finishAction() {
	c.action = ""
	c.knownDisk = knownDisk{}
	c.restart()
}

func (s *passwdScreen) clearSecrets() { s.clear() }
func (s *newKeyScreen) clearSecrets() { s.forget() }

// stoppedLine says that the chosen disk's preparation was interrupted
// ("" when it was not).
func stoppedLine(c *shared) string {
	if c.knownDisk.stopped == "" {
		return ""
	}
	return para(c.st.warn, "⚠ Not a finished backup disk: its preparation was interrupted ("+c.knownDisk.stopped+"). Continue preparing finishes it.", c.width, "  ")
}

// openNowLine says where the chosen disk is open ("" when it is not).
func openNowLine(c *shared) string {
	k := c.knownDisk
	switch {
	case k.open && k.mounted != "":
		return para(lipglossPlain, "Open now: mounted at "+k.mounted, c.width, "  ")
	case k.open:
		return para(lipglossPlain, "Open now: unlocked, not mounted", c.width, "  ")
	}
	return ""
}
