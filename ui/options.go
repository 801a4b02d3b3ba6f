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
	"luksdock/fsformat"
	lsecret "luksdock/internal/secret"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
	"luksdock/recovery"
)

// option is one field of the Options screen. The screen is the list built
// in newOptions; a new field is one more entry there (a textOption or a
// choiceOption with a set func that writes it into pipeline.Options).
type option interface {
	title() string
	heading() string // shown above the field ("" none)
	value(c *shared, focused bool) string
	note(c *shared) string
	typing() bool
	keys() []key.Binding // what the field does with keys while focused
	update(msg tea.Msg) bool
	focus(on bool)
	apply(o *pipeline.Options)
}

// textOption is a one-line text field.
type textOption struct {
	name, head string
	f          field
	help       func(c *shared) string
	set        func(o *pipeline.Options, v string)
}

func (t *textOption) title() string   { return t.name }
func (t *textOption) heading() string { return t.head }
func (t *textOption) value(_ *shared, _ bool) string {
	return t.f.View()
}
func (t *textOption) note(c *shared) string     { return t.help(c) }
func (t *textOption) typing() bool              { return true }
func (t *textOption) keys() []key.Binding       { return fieldKeys.list() }
func (t *textOption) focus(on bool)             { t.f.focused = on }
func (t *textOption) apply(o *pipeline.Options) { t.set(o, t.f.Value()) }
func (t *textOption) update(msg tea.Msg) bool {
	before := t.f.Value()
	t.f, _ = t.f.Update(msg)
	return t.f.Value() != before
}

// choiceOption is a choice among a few values, changed with ←/→/space.
type choiceOption struct {
	name, head string
	choices    func(c *shared) []string
	cur        int
	c          *shared
	help       func(c *shared, cur int) string
	set        func(o *pipeline.Options, cur int)
}

var keyChange = key.NewBinding(key.WithKeys("left", "h", "right", "l", "space"), key.WithHelp("←/→/space", "change"))

func (ch *choiceOption) title() string   { return ch.name }
func (ch *choiceOption) heading() string { return ch.head }
func (ch *choiceOption) value(c *shared, _ bool) string {
	var parts []string
	all := ch.choices(c)
	plain := 0
	for i, o := range all {
		plain += len([]rune(o)) + 3
		if i == ch.cur {
			parts = append(parts, c.st.sel.Render("["+o+"]"))
		} else {
			parts = append(parts, " "+o+" ")
		}
	}
	if plain > c.width-20 && len(all) > 0 {
		// too narrow for every choice: the current one, and where it is
		return fmt.Sprintf("‹ %s › %d/%d", c.st.sel.Render("["+all[ch.cur]+"]"), ch.cur+1, len(all))
	}
	return strings.Join(parts, " ")
}
func (ch *choiceOption) note(c *shared) string     { return ch.help(c, ch.cur) }
func (ch *choiceOption) typing() bool              { return false }
func (ch *choiceOption) keys() []key.Binding       { return []key.Binding{keyChange} }
func (ch *choiceOption) focus(bool)                {}
func (ch *choiceOption) apply(o *pipeline.Options) { ch.set(o, ch.cur) }
func (ch *choiceOption) update(msg tea.Msg) bool {
	k, ok := msg.(tea.KeyPressMsg)
	if !ok || !key.Matches(k, keyChange) {
		return false
	}
	n := len(ch.choices(ch.c))
	if n == 0 {
		return false
	}
	dir := 1
	if s := k.String(); s == "left" || s == "h" {
		dir = -1
	}
	ch.cur = (ch.cur + dir + n) % n
	return true
}

func fixed(v ...string) func(*shared) []string { return func(*shared) []string { return v } }

// optionsScreen is 3: label, partition table, LUKS version, header backup
// and key-derivation cost.
type optionsScreen struct {
	c *shared
	// PgUp/PgDn scroll the screen freely (free) until the focus moves;
	// otherwise the frame keeps the focused field and its whole note in
	// view (focusSpan).
	pager
	free       bool
	fields     []option
	label      *textOption
	pbkdf      *choiceOption
	rec        *choiceOption
	set        *textOption
	focus      int
	suggestion string
	owner      string // what the owner field resolves to, and why
	err        string // what is wrong with the choices, "" when ready
	seq        int    // of the last check or plan asked for
	checking   bool   // a plan is being made (Enter)
	session    int    // the choice (shared.session) the fields were set up for
	keys       struct{ next, prev, enter, back key.Binding }

	// saved is the chosen disk's interrupted erase, whose options are
	// proposed (pipeline.SavedErase); nil when there is none.
	saved *pipeline.Resume
}

func newOptions(c *shared) screen {
	s := &optionsScreen{c: c}
	s.keys.next = key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab/↓", "next field"))
	s.keys.prev = key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab/↑", "previous"))
	s.keys.enter = keyEnter("continue")
	s.keys.back = keyBack("back")

	s.label = &textOption{name: "Label", f: field{}, // no limit here: a long label is refused whole, with its length
		help: func(*shared) string {
			if s.saved != nil && s.suggestion == s.saved.Label {
				return "suggested: " + s.suggestion + ", the label of this disk's interrupted erase (" + s.saved.String() + "); keep it and the same options to continue the erase"
			}
			if s.suggestion != "" {
				return "suggested: " + s.suggestion + ", the next in your series; ext4 and LUKS2 label, at most 16 bytes"
			}
			return "ext4 and LUKS2 label, at most 16 bytes"
		},
		set: func(o *pipeline.Options, v string) { o.Label = v }}
	header := &textOption{name: "Header backup", f: field{Placeholder: "none (better: a path on another disk)"},
		help: func(c *shared) string {
			return "a file for cryptsetup luksHeaderBackup (mode 0600); keep it off this disk. Relative paths are from " + c.cwd
		},
		set: func(o *pipeline.Options, v string) { o.HeaderBackup = strings.TrimSpace(v) }}
	s.pbkdf = &choiceOption{name: "PBKDF", head: "Advanced: key derivation cost", c: c,
		choices: func(c *shared) []string {
			var names []string
			for _, p := range pbkdfChoices(c.cfg.PBKDF) {
				names = append(names, p.name)
			}
			return names
		},
		help: func(c *shared, cur int) string {
			luks1 := false
			for _, f := range s.fields {
				if co, ok := f.(*choiceOption); ok && co.name == "LUKS version" {
					luks1 = co.cur == 1
				}
			}
			ch := pbkdfChoices(c.cfg.PBKDF)
			return pbkdfNote(ch[cur].pbkdf, luks1, c.memTotal)
		},
		set: func(o *pipeline.Options, cur int) { o.PBKDF = pbkdfChoices(c.cfg.PBKDF)[cur].pbkdf }}
	if c.cfg.PBKDF != (luks.PBKDF{}) {
		s.pbkdf.cur = 2 // what the command line said
	}
	s.set = &textOption{name: "Set", f: field{Placeholder: "none (e.g. offsite)"},
		help: func(*shared) string {
			return "the rotation set this disk belongs to, kept in its LUKS2 header and luksdock's inventory; the label is suggested from the set"
		},
		set: func(o *pipeline.Options, v string) { o.Set = strings.TrimSpace(v) }}
	s.rec = &choiceOption{name: "Recovery key", choices: fixed("on", "off"), c: c,
		help: func(_ *shared, cur int) string {
			if cur == 1 {
				return "off: only the passphrase opens the disk; if it is forgotten, the backup is gone"
			}
			return "a second way in if the passphrase is lost; shown once, write it on paper"
		},
		// the key itself is made with the plan
		set: func(_ *pipeline.Options, cur int) { c.noRecovery = cur == 1 }}
	s.fields = []option{
		s.label,
		&choiceOption{name: "Partition table", choices: fixed("GPT", "none", "MBR"), c: c,
			help: tableNote,
			set: func(o *pipeline.Options, cur int) {
				o.Table = []disk.TableType{disk.TableGPT, disk.TableNone, disk.TableMBR}[cur]
			}},
		&choiceOption{name: "LUKS version", choices: fixed("LUKS2", "LUKS1"), c: c,
			help: func(*shared, int) string { return "LUKS1 only for systems older than cryptsetup 2.0 (2017)" },
			set:  func(o *pipeline.Options, cur int) { o.LUKS1 = cur == 1 }},
		header,
		s.rec,
		s.set,
		&textOption{name: "Owner", f: field{Placeholder: "you (the user behind sudo or pkexec)"},
			help: func(*shared) string {
				if s.owner == "" {
					return "who owns the filesystem's top directory: USER or UID:GID"
				}
				return "who owns the filesystem's top directory (USER or UID:GID); now " + s.owner
			},
			set: func(o *pipeline.Options, v string) { o.Owner = strings.TrimSpace(v) }},
		&choiceOption{name: "Overwrite first", head: "Before the filesystem", choices: fixed("off", "on"), c: c,
			help: func(c *shared, cur int) string {
				n := "overwrite the whole disk with encrypted zeros first, so old data is gone and the disk holds only ciphertext"
				if t := c.target; t != nil {
					n += fmt.Sprintf("; hours on a big disk (%s: about %s at 150 MB/s)", pipeline.HumanSize(t.Size), fmtDur(time.Duration(float64(t.Size)/150e6*float64(time.Second))))
				}
				return n + "; Ctrl+C stops it and preparing the disk again continues where it stopped"
			},
			set: func(o *pipeline.Options, cur int) { o.Erase = cur == 1 }},
		&choiceOption{name: "Read it all back", choices: fixed("off", "on"), c: c,
			help: func(*shared, int) string {
				return "after the overwrite, read every byte back and check it decrypts to zeros: finds failing and fake-capacity disks; as long again; only with the overwrite"
			},
			set: func(o *pipeline.Options, cur int) { o.SurfaceCheck = cur == 1 }},
		s.pbkdf,
	}
	return s
}

// tableNote explains the partition-table choice for the chosen disk.
func tableNote(c *shared, cur int) string {
	switch cur {
	case 0:
		return "GPT: valid whether a dock shows the disk with 512- or 4096-byte sectors (the portable default)"
	case 1:
		return "none: LUKS on the whole disk, no partition table (the cryptsetup FAQ's advice for external disks); opens in any dock"
	}
	n := "MBR: for very old restore machines; readable only through docks with this dock's sector size"
	if t := c.target; t != nil && t.Disk != nil && t.Disk.LogicalSector == 4096 {
		n += ". ⚠ " + screenWords(pipeline.MBRNotPortable)
	}
	return n
}

type pbkdfChoice struct {
	name  string
	pbkdf luks.PBKDF
}

func pbkdfChoices(flags luks.PBKDF) []pbkdfChoice {
	c := []pbkdfChoice{
		{"cryptsetup's default", luks.PBKDF{}},
		{"argon2id 256 MiB", luks.PBKDF{Type: "argon2id", MemoryKiB: 256 << 10}},
	}
	if flags != (luks.PBKDF{}) {
		c = append(c, pbkdfChoice{"command line", flags})
	}
	return c
}

func (s *optionsScreen) Title() string { return "Options" }
func (s *optionsScreen) Typing() bool  { return s.fields[s.focus].typing() }
func (s *optionsScreen) Busy() bool    { return s.checking }

func (s *optionsScreen) ShortHelp() []key.Binding {
	b := []key.Binding{s.keys.enter, s.keys.back, s.keys.next, s.keys.prev}
	if !s.Typing() {
		b = append(b, keyChange)
	}
	return b
}

func (s *optionsScreen) FullHelp() [][]key.Binding {
	return [][]key.Binding{{s.keys.enter, s.keys.back, s.keys.next, s.keys.prev, keyPage}, s.fields[s.focus].keys()}
}

// keyPage scrolls a screen whose arrows move between fields.
var keyPage = key.NewBinding(key.WithKeys("pgup", "pgdown"), key.WithHelp("pgup/pgdn", "scroll"))

// focusSpan is the focused field's line and its note's lines.
func (s *optionsScreen) focusSpan() int {
	n := s.fields[s.focus].note(s.c)
	if n == "" {
		return 1
	}
	return 1 + strings.Count(strings.TrimRight(para(s.c.st.faint, "    "+strings.ReplaceAll(n, "\n", " "), s.c.width, "    "), "\n"), "\n") + 1
}

// page scrolls the screen from where it is shown now.
func (s *optionsScreen) page(msg tea.KeyPressMsg) {
	body, focus := s.View()
	n := strings.Count(strings.TrimRight(body, "\n"), "\n") + 1
	s.top = window(n, s.top, focus, s.focusSpan(), s.c.bodyAvail)
	s.free = true
	s.scroll(s.c, msg, n)
}

// seenLabels are the LUKS and filesystem labels on everything discovery
// sees, on the chosen image, and of the disks prepared in this session.
func (s *optionsScreen) seenLabels() []string {
	var out []string
	add := func(sig disk.Signature) {
		if sig.Label != "" {
			out = append(out, sig.Label)
		}
	}
	for _, d := range s.c.disc.disks {
		add(d.Content)
		for _, p := range d.Partitions {
			add(p.Content)
		}
	}
	if t := s.c.target; t != nil && t.Image {
		add(t.Content)
		for _, p := range t.Parts {
			add(p.Content)
		}
	}
	for _, r := range s.c.results {
		out = append(out, r.FSLabel)
	}
	return out
}

// suggest is the label for the next disk: the one rule of
// inventory.SuggestLabel (the set's numbering, no label any known or
// attached disk has; without an inventory, the first free backupsNN). A
// known disk prepared again keeps its own label in its own set: its old
// volume is the one being replaced (inventory.CheckLabel does not count
// it), as with luksdock prepare --label over it.
func (s *optionsScreen) suggest() string {
	if s.saved != nil {
		return s.saved.Label
	}
	if k := s.c.knownDisk; k.known && k.label != "" && strings.TrimSpace(s.set.f.Value()) == k.set {
		return k.label
	}
	return inventory.SuggestLabel(s.c.inv, strings.TrimSpace(s.set.f.Value()), s.seenLabels())
}

// Enter suggests a label when there is none yet.
func (s *optionsScreen) Enter() tea.Cmd {
	if s.session != s.c.session {
		s.session = s.c.session
		// a new choice: start from the top with a fresh suggestion
		s.saved = pipeline.SavedErase(s.c.target)
		if k := s.c.knownDisk; k.known && k.label != "" && s.saved == nil {
			s.set.f.SetValue(k.set)
		}
		s.suggestion = s.suggest()
		s.label.f.SetValue(s.suggestion)
		s.proposeSaved()
		s.focus = 0
	}
	s.checking = false
	s.setFocus(s.focus)
	return s.check()
}

// proposeSaved sets the options an interrupted erase of the chosen disk
// was started with (its label is the suggestion), so that the plan
// continues it.
func (s *optionsScreen) proposeSaved() {
	r := s.saved
	if r == nil {
		return
	}
	for _, f := range s.fields {
		co, ok := f.(*choiceOption)
		if !ok {
			continue
		}
		switch co.name {
		case "Partition table":
			co.cur = map[string]int{string(disk.TableGPT): 0, string(disk.TableNone): 1, string(disk.TableMBR): 2}[r.Table]
		case "LUKS version":
			co.cur = map[bool]int{false: 0, true: 1}[r.LUKS1]
		case "Overwrite first":
			co.cur = 1
		case "Read it all back":
			co.cur = map[bool]int{false: 0, true: 1}[r.SurfaceCheck]
		}
	}
}

func (s *optionsScreen) setFocus(i int) {
	s.free = false
	s.fields[s.focus].focus(false)
	s.focus = (i + len(s.fields)) % len(s.fields)
	s.fields[s.focus].focus(true)
}

// options are the pipeline options as chosen on the screen.
func (s *optionsScreen) options() pipeline.Options {
	o := pipeline.Options{Engine: pipeline.Engine(s.c.cfg.Engine), AllowInternal: s.c.cfg.AllowInternal, AcceptUnhealthy: s.c.acceptUnhealthy}
	for _, f := range s.fields {
		f.apply(&o)
	}
	return o
}

type (
	optCheckMsg struct {
		seq   int
		err   error
		owner string // "1000:1000 (SUDO_UID...)"; "" when the owner is wrong
	}
	planMsg struct {
		seq  int
		opts pipeline.Options
		plan *pipeline.Plan
		err  error
		// the recovery key shown and checked (nil: none), its challenge,
		// and whether it is new (else it is the one already shown)
		recKey []byte
		recCh  recovery.Challenge
		recNew bool
	}
)

// check validates the choices in a command (the header-backup path is
// checked against the target on disk); the label alone is checked at once.
func (s *optionsScreen) check() tea.Cmd {
	s.seq++
	o, seq, t, checkHdr := s.options(), s.seq, s.c.target, s.c.cfg.CheckHeaderBackup
	if err := fsformat.ValidateLabel(o.Label); err != nil {
		s.err = err.Error()
	}
	return func() tea.Msg {
		owner := ""
		if ow, why, err := pipeline.ResolveOwner(o.Owner, os.Getenv); err == nil {
			why = strings.TrimPrefix(screenWords(why), "Owner ")
			owner = ow.String()
			if why != ow.String() {
				owner += " (" + why + ")"
			}
		}
		if err := pipeline.ValidateOptions(&o); err != nil {
			return optCheckMsg{seq: seq, err: err, owner: owner}
		}
		if o.HeaderBackup != "" && t != nil {
			if _, err := checkHdr(t.Path, o.HeaderBackup); err != nil {
				return optCheckMsg{seq: seq, err: err, owner: owner}
			}
		}
		return optCheckMsg{seq: seq, owner: owner}
	}
}

// makePlan checks the header-backup path against the target and makes the
// plan (which looks at device-mapper, /dev/fuse and the tools) in a
// command.
func (s *optionsScreen) makePlan() tea.Cmd {
	s.seq++
	s.checking = true
	o, seq, t, checkHdr := s.options(), s.seq, s.c.target, s.c.cfg.CheckHeaderBackup
	wantKey := s.rec.cur == 0
	oldKey, oldCh := lsecret.Clone(s.c.recKey), s.c.recChallenge
	inv, seen := s.c.inv, s.seenLabels()
	if inv == nil {
		inv = &inventory.File{} // not read (or damaged): no set to check against
	}
	return func() tea.Msg {
		if o.HeaderBackup != "" {
			abs, err := checkHdr(t.Path, o.HeaderBackup)
			if err != nil {
				lsecret.Free(oldKey)
				return planMsg{seq: seq, err: err}
			}
			o.HeaderBackup = abs
		}
		// keep the key already shown (going back and forth must not
		// change what is on the user's paper); core makes a new one
		var key []byte
		if wantKey {
			key = oldKey
		} else {
			lsecret.Free(oldKey)
		}
		// the same prepare as the CLI's: the plan, the set's label rule,
		// the recovery key
		prep, err := core.PlanPrepare(core.PrepareRequest{Target: t, Options: o, WantRecoveryKey: wantKey, RecoveryKey: key,
			Inventory: inv, Labels: append([]string{}, seen...)})
		lsecret.Free(oldKey) // core keeps its own copy
		m := planMsg{seq: seq}
		var p *pipeline.Plan
		if err == nil {
			p = prep.Plan
			if prep.Warning != "" {
				p.Warnings = append(p.Warnings, prep.Warning)
			}
			if wantKey {
				m.recKey, m.recCh, m.recNew = lsecret.Clone(p.Opts.RecoveryKey), oldCh, oldKey == nil
				if m.recNew {
					if m.recCh, err = recovery.NewChallenge(2); err != nil {
						lsecret.Free(p.Opts.RecoveryKey)
						p, err = nil, fmt.Errorf("making the recovery key: %w", err)
					}
				}
			}
		}
		m.opts, m.plan, m.err = o, p, err
		if err != nil {
			lsecret.Free(o.RecoveryKey)
			if m.recNew {
				lsecret.Free(m.recKey)
			}
			m.recKey = nil
		}
		return m
	}
}

func (s *optionsScreen) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case optCheckMsg:
		if msg.seq == s.seq && !s.checking {
			s.err, s.owner = "", msg.owner
			if msg.err != nil {
				s.err = unwrapMsg(msg.err)
			}
		}
		return nil
	case planMsg:
		if msg.seq != s.seq || !s.checking {
			return nil
		}
		s.checking = false
		if msg.err != nil {
			s.err = unwrapMsg(msg.err)
			return nil
		}
		s.c.dropPlan()
		s.c.opts, s.c.plan = msg.opts, msg.plan
		s.c.opts.RecoveryKey = nil // the plan holds it
		switch {
		case msg.recKey == nil:
			s.c.clearRecoveryKey()
		case msg.recNew:
			s.c.clearRecoveryKey()
			s.c.recKey, s.c.recChallenge = msg.recKey, msg.recCh
		default:
			lsecret.Free(msg.recKey) // a copy of the one kept
		}
		s.c.forward(scrOptions)
		return nil
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, s.keys.back):
			s.checking = false
			s.c.dropPlan()
			s.c.back(scrOptions)
			return nil
		case key.Matches(msg, s.keys.enter):
			// makePlan checks everything again: Enter does not depend on
			// a check of an earlier value still on its way
			if s.checking {
				return nil
			}
			return s.makePlan()
		case key.Matches(msg, s.keys.next):
			s.setFocus(s.focus + 1)
			return nil
		case key.Matches(msg, s.keys.prev):
			s.setFocus(s.focus - 1)
			return nil
		case key.Matches(msg, keyPage):
			s.page(msg)
			return nil
		}
		s.free = false // typing or changing a field shows it
	}
	if s.checking {
		return nil
	}
	if s.fields[s.focus].update(msg) {
		s.c.dropPlan()
		if s.fields[s.focus] == s.set && s.label.f.Value() == s.suggestion {
			// the label follows the set while it is the suggestion
			s.suggestion = s.suggest()
			s.label.f.SetValue(s.suggestion)
		}
		return s.check()
	}
	return nil
}

func (s *optionsScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	focus := -1
	for i, f := range s.fields {
		if h := f.heading(); h != "" {
			b.WriteString("\n" + st.title.Render("  "+h) + "\n")
		}
		marker, name := "  ", f.title()
		if i == s.focus {
			marker = "› "
			name = st.key.Render(name)
			focus = strings.Count(b.String(), "\n")
		}
		b.WriteString(marker + st.label.Render(name) + f.value(c, i == s.focus) + "\n")
		if n := f.note(c); n != "" {
			b.WriteString(para(st.faint, "    "+strings.ReplaceAll(n, "\n", " "), c.width, "    "))
		}
	}
	if s.free {
		return b.String(), -1 // scrolled with PgUp/PgDn
	}
	return b.String(), focus
}

// Status is the check of the choices, pinned above the footer.
func (s *optionsScreen) Status() string {
	c := s.c
	switch {
	case s.checking:
		return c.spin.View() + " Checking the options and making the plan…"
	case s.err != "":
		return para(c.st.err, "✗ "+s.err, c.width, "  ")
	}
	return c.st.ok.Render("✓ ready") + " — Enter continues to the passphrase"
}
