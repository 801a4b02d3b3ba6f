package ui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/pipeline"
)

// discovery is what the disk list knows: the last scan, the kernel log's
// arrivals and the disks docked while the wizard runs. The disks screen
// owns it; Details and Options read it.
type discovery struct {
	disks     []disk.Disk
	scanErr   error
	logErr    error
	arrivals  []disk.Arrival
	latest    string          // kernel name of the most recently docked disk
	liveAdded map[string]bool // disks that arrived while the wizard ran
	rows      []row
	scanned   bool
	scanning  bool
	rescanDue bool // another scan is wanted once the running one ends
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
	ok      bool
	reasons []disk.Reason
	summary string
	img     Image
	luks    string // the LUKS UUID of the volume it holds ("": none)
	// open is set when luksdock open has the disk or image open and that
	// is its only use (core.AssessOpen; for an image, core.Opens): the
	// list says where, and the Actions screen offers Close, never
	// preparing.
	open *core.OwnOpen
}

// arrivalOf is the kernel log's latest account of a disk still attached.
func (d *discovery) arrivalOf(name string) (disk.Arrival, bool) {
	for i := len(d.arrivals) - 1; i >= 0; i-- {
		if a := d.arrivals[i]; a.Disk == name && !a.Gone {
			return a, true
		}
	}
	return disk.Arrival{}, false
}

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

// disksScreen is 1: the list of disks and images to choose from.
type disksScreen struct {
	c       *shared
	cursor  int
	selKey  string // key of the selected row, kept across rescans
	wantSel string // a disk just docked, to select once it is listed and eligible
	started bool
	// A list change that moves the selection (a disk docked or gone) must
	// not turn a press of Enter meant for the row shown into a choice of
	// another: a row the user chose within settle of a change stays
	// chosen, and Enter within settle after the selection moved is
	// ignored, with the reason (moved) on screen.
	userAt  time.Time // when the user last moved the selection
	movedAt time.Time // when a list change last moved it
	moved   string    // why, while Enter is held back
	keys    struct{ up, down, enter key.Binding }
}

// settle is how long a selection is protected from, and Enter held back
// after, a list change.
const settle = time.Second

func newDisks(c *shared) screen {
	s := &disksScreen{c: c, cursor: -1}
	s.keys.up, s.keys.down = keyUp, keyDown
	s.keys.enter = keyEnter("details")
	return s
}

func (s *disksScreen) Title() string { return "Choose the disk to prepare" }
func (s *disksScreen) Typing() bool  { return false }
func (s *disksScreen) Busy() bool    { return !s.c.disc.scanned || s.eligible() == 0 }
func (s *disksScreen) ShortHelp() []key.Binding {
	return []key.Binding{s.keys.up, s.keys.down, s.keys.enter}
}
func (s *disksScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }

// Enter starts discovery the first time, and rescans on every return.
func (s *disksScreen) Enter() tea.Cmd {
	if !s.started {
		s.started = true
		s.c.disc.scanning = true
		return tea.Batch(s.scanCmd(), s.waitHotplug(), s.rescanCmd())
	}
	s.selKey = ""
	if s.c.row.key != "" {
		s.selKey = s.c.row.key
	}
	return s.rescan()
}

func (s *disksScreen) scanCmd() tea.Cmd {
	cfg := s.c.cfg
	return func() tea.Msg {
		var m scanMsg
		m.disks, m.err = cfg.Scan()
		if cfg.KernelLog != nil {
			m.lines, m.logErr = cfg.KernelLog()
		}
		for _, im := range cfg.Images {
			m.imageRow = append(m.imageRow, imageRow(im))
		}
		return m
	}
}

// rescan starts a scan, or when one is already running, makes sure another
// follows it (the running one may have read sysfs before the change).
func (s *disksScreen) rescan() tea.Cmd {
	d := &s.c.disc
	if d.scanning {
		d.rescanDue = true
		return nil
	}
	d.scanning, d.rescanDue = true, false
	return s.scanCmd()
}

func (s *disksScreen) waitHotplug() tea.Cmd {
	ch := s.c.cfg.Hotplug
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

func (s *disksScreen) rescanCmd() tea.Cmd {
	if s.c.cfg.Rescan <= 0 {
		return nil
	}
	return tea.Tick(s.c.cfg.Rescan, func(time.Time) tea.Msg { return rescanTick{} })
}

func imageRow(im Image) row {
	r := row{key: "image:" + im.Path, image: true, path: im.Path, img: im}
	t, err := pipeline.ImageTarget(im.Path, im.Size)
	if err != nil {
		r.name = im.Path[strings.LastIndexByte(im.Path, '/')+1:]
		r.reasons = []disk.Reason{{Text: unwrapMsg(err)}}
		r.summary = "image file"
		return r
	}
	r.name, r.path, r.size, r.create, r.ok = t.Name, t.Path, t.Size, t.Create, true
	r.luks, _ = disk.LUKSOn(t.Content, t.Parts)
	for _, o := range core.Opens() {
		if r.luks != "" && strings.EqualFold(o.LUKSUUID, r.luks) {
			r.open = &core.OwnOpen{LUKSUUID: o.LUKSUUID, Engine: o.Engine, Device: o.LUKS, Mountpoint: o.Mountpoint, Recorded: true}
		}
	}
	switch {
	case t.Create:
		r.summary = "nothing yet: the image file is to be created (sparse)"
	default:
		r.summary = "image file: " + t.Content.String()
		for _, p := range t.Parts {
			r.summary += fmt.Sprintf("; %d: %s", p.Number, p.Content)
		}
	}
	if t.Size < pipeline.MinSize {
		r.ok = false
		r.reasons = []disk.Reason{{Text: fmt.Sprintf("smaller than %s", disk.SizeString(pipeline.MinSize)), Fix: "give a larger --size, or choose another image."}}
	}
	return r
}

func (s *disksScreen) Update(msg tea.Msg) tea.Cmd {
	d := &s.c.disc
	switch msg := msg.(type) {
	case scanMsg:
		s.apply(msg)
		if d.rescanDue {
			return s.rescan()
		}
	case hotplugMsg:
		if msg.Action == "add" && !msg.Partition {
			d.liveAdded[msg.Name] = true
			d.latest = msg.Name
			if time.Since(s.userAt) >= settle {
				s.wantSel = msg.Name // select the new disk once it is listed and eligible
			}
		}
		return tea.Batch(s.waitHotplug(), s.rescan())
	case rescanTick:
		var cmd tea.Cmd
		if s.c.run == nil || s.c.run.finished {
			cmd = s.rescan()
		}
		return tea.Batch(cmd, s.rescanCmd())
	case tea.KeyPressMsg:
		return s.key(msg)
	}
	return nil
}

func (s *disksScreen) key(msg tea.KeyPressMsg) tea.Cmd {
	rows := s.c.disc.rows
	held := s.moved
	if key.Matches(msg, s.keys.up, s.keys.down, s.keys.enter) {
		// only a key the list takes ends the hold: a stray key (Home, Tab,
		// a letter) just before Enter must not let that Enter through
		s.moved = ""
	}
	switch {
	case key.Matches(msg, s.keys.up):
		if s.cursor > 0 {
			s.cursor--
		}
		s.wantSel = "" // the user chooses now
		s.userAt = time.Now()
	case key.Matches(msg, s.keys.down):
		if s.cursor < len(rows)-1 {
			s.cursor++
		}
		s.wantSel = ""
		s.userAt = time.Now()
	case key.Matches(msg, s.keys.enter):
		if s.cursor < 0 || s.cursor >= len(rows) {
			return nil
		}
		if held != "" && time.Since(s.movedAt) < settle {
			// meant for the row shown a moment ago, perhaps
			s.moved = held + " Enter was not taken: press it again to choose " + rows[s.cursor].name + "."
			return nil
		}
		// Details shows an eligible row's target (read in a command) or a
		// refused row's reasons and their fixes.
		s.c.row = rows[s.cursor]
		s.c.target, s.c.targetErr, s.c.targetGone = nil, nil, false
		s.c.forward(scrDisks)
	}
	if s.cursor >= 0 && s.cursor < len(rows) {
		s.selKey = rows[s.cursor].key
	}
	return nil
}

// apply replaces the disk list with a fresh scan, keeping the selection
// where it can and pre-selecting the most recently docked disk otherwise.
func (s *disksScreen) apply(m scanMsg) {
	c := s.c
	d := &c.disc
	d.scanning, d.scanned = false, true
	if time.Since(s.movedAt) >= settle {
		s.moved = "" // said long enough; Enter is taken again
	}
	d.disks, d.scanErr, d.logErr = m.disks, m.err, m.logErr
	if m.lines != nil {
		d.arrivals = disk.ParseKernelLog(m.lines)
	}
	d.updateLatest(m.disks)
	prev := d.rows
	rows := append([]row(nil), m.imageRow...)
	for i := range m.disks {
		rows = append(rows, diskRow(m.disks[i], c.cfg.AllowInternal))
	}
	d.rows = rows
	prevKey, prevName, prevOK := s.selKey, "", false
	for _, r := range prev {
		if r.key == prevKey {
			prevName, prevOK = r.name, r.ok
		}
	}
	defer func() {
		if !prevOK || s.cursor < 0 || s.cursor >= len(rows) || rows[s.cursor].key == prevKey || !rows[s.cursor].ok {
			// from a refused row, or none (the wizard was waiting for a
			// disk to choose, and this is it), or to a refused one (Enter
			// only says why): nothing to hold back
			return
		}
		why := prevName + " is gone from the list;"
		for _, r := range rows {
			if r.key == prevKey {
				why = "The list changed (" + rows[s.cursor].name + " was docked):"
			}
		}
		s.movedAt = time.Now()
		s.moved = why + " the selection moved to " + rows[s.cursor].name + "."
	}()
	c.checkTargetGone(m.disks)
	s.reselect(rows)
}

// reselect puts the cursor on the new list: on a disk just docked once it
// is eligible, else on the row selected before, else on preselect's.
func (s *disksScreen) reselect(rows []row) {
	s.cursor = -1
	if s.wantSel != "" {
		for i, r := range rows {
			if !r.image && r.name == s.wantSel && r.ok {
				s.selKey, s.wantSel = r.key, ""
				s.cursor = i
			}
		}
	}
	if s.cursor < 0 && s.selKey != "" {
		for i, r := range rows {
			if r.key == s.selKey {
				s.cursor = i
			}
		}
	}
	if s.cursor < 0 {
		s.cursor = s.preselect()
	}
	if s.cursor >= 0 && s.cursor < len(rows) {
		s.selKey = rows[s.cursor].key
	}
}

// updateLatest forgets a most recently docked disk that is gone (or was
// only in the kernel log), and takes the kernel log's latest arrival among
// the disks present when there is none.
func (d *discovery) updateLatest(disks []disk.Disk) {
	present := map[string]bool{}
	for _, x := range disks {
		present[x.Name] = true
	}
	if d.latest != "" && (!d.liveAdded[d.latest] || !present[d.latest]) {
		d.latest = ""
	}
	if d.latest == "" {
		if a, ok := disk.LatestArrival(d.arrivals); ok && present[a.Disk] {
			d.latest = a.Disk
		}
	}
}

// diskRow is the disk list's row of a scanned disk. A disk whose only use
// is luksdock open's (core.AssessOpen) is offered when nothing else refuses
// it, marked open.
func diskRow(x disk.Disk, allowInternal bool) row {
	v, open := core.AssessOpen(x, allowInternal)
	uuid, _ := disk.LUKSOn(x.Content, x.Partitions)
	return row{
		key: "disk:" + x.Name + "|" + x.MajMin, name: x.Name, path: x.Path, size: x.Size,
		disk: &x, ok: v.OK(allowInternal), reasons: v.Reasons(allowInternal), summary: x.Summary(), luks: uuid, open: open,
	}
}

// checkTargetGone notes whether the chosen disk is still attached as it
// was (not while a run holds it).
func (c *shared) checkTargetGone(disks []disk.Disk) {
	t := c.target
	if t == nil || t.Image || (c.run != nil && !c.run.finished) {
		return
	}
	c.targetGone = true
	for _, x := range disks {
		if x.Name == t.Name && t.Disk != nil && x.MajMin == t.Disk.MajMin && x.Size == t.Size {
			c.targetGone = false
		}
	}
}

// preselect picks the row to start on: a disk docked while the wizard runs,
// else the image given on the command line, else the most recently docked
// disk in the kernel log, else the first eligible row.
func (s *disksScreen) preselect() int {
	d := &s.c.disc
	find := func(pred func(row) bool) int {
		for i, r := range d.rows {
			if r.ok && pred(r) {
				return i
			}
		}
		return -1
	}
	if d.latest != "" && d.liveAdded[d.latest] {
		if i := find(func(r row) bool { return !r.image && r.name == d.latest }); i >= 0 {
			return i
		}
	}
	if i := find(func(r row) bool { return r.image }); i >= 0 {
		return i
	}
	if d.latest != "" {
		if i := find(func(r row) bool { return !r.image && r.name == d.latest }); i >= 0 {
			return i
		}
	}
	if i := find(func(row) bool { return true }); i >= 0 {
		return i
	}
	if len(d.rows) > 0 {
		return 0
	}
	return -1
}

// Status says why the selection moved, pinned above the footer while
// Enter is held back.
func (s *disksScreen) Status() string {
	if s.moved == "" {
		return ""
	}
	return para(s.c.st.warn, "⚠ "+s.moved, s.c.width, "  ")
}

func (s *disksScreen) eligible() int {
	n := 0
	for _, r := range s.c.disc.rows {
		if r.ok {
			n++
		}
	}
	return n
}

func (s *disksScreen) View() (string, int) {
	c, d := s.c, &s.c.disc
	st := &c.st
	var b strings.Builder
	if !d.scanned {
		return c.spin.View() + " Looking for disks…", -1
	}
	if d.scanErr != nil {
		b.WriteString(para(st.err, "Discovery failed: "+d.scanErr.Error(), c.width, "  ") + "\n")
	}
	focus := -1
	for i, r := range d.rows {
		sel := i == s.cursor
		marker := "  "
		if sel {
			marker = "› "
			focus = strings.Count(b.String(), "\n")
		}
		size := disk.SizeString(r.size)
		if r.size == 0 && r.image {
			size = "-"
		}
		kind, model := "image", ""
		if r.disk != nil {
			kind = r.disk.Transport
			model = r.disk.VendorModel()
			if r.disk.Serial != "" {
				model += " #" + r.disk.Serial
			}
		}
		line := fmt.Sprintf("%s%-8s %10s  %-11s %s", marker, r.name, size, kind, model)
		tag := ""
		switch {
		case !r.image && r.name == d.latest && d.liveAdded[r.name]:
			tag = "  ★ just docked"
		case !r.image && r.name == d.latest:
			tag = "  ★ last docked"
		}
		line = truncate(line, max(c.width-len([]rune(tag)), 20))
		switch {
		case !r.ok:
			// the whole reason, wrapped: Enter shows it with the fix
			b.WriteString(st.grey.Render(line+tag) + "\n")
			b.WriteString(para(st.grey, "    refused: "+strings.Join(disk.Texts(r.reasons), "; "), c.width, "      "))
		case sel:
			b.WriteString(st.sel.Render(line) + st.new.Render(tag) + "\n")
			b.WriteString(para(st.faint, "    holds: "+r.summary, c.width, "      "))
			if r.open != nil {
				b.WriteString(para(st.ok, "    "+openLine(r.open)+": Enter offers Close", c.width, "      "))
			} else if r.luks != "" && c.inv != nil && c.inv.Find(r.luks) != nil {
				b.WriteString(para(st.ok, "    known disk: Enter offers open or close, passphrase, recovery key, enroll, retire", c.width, "      "))
			}
		default:
			b.WriteString(line + st.new.Render(tag) + "\n")
			b.WriteString(para(st.faint, "    holds: "+r.summary, c.width, "      "))
			if r.open != nil {
				b.WriteString(para(st.faint, "    "+openLine(r.open), c.width, "      "))
			}
		}
	}
	w := c.width
	if s.eligible() == 0 {
		b.WriteString("\n" + st.warn.Render(c.spin.View()+" Dock a disk now… ") + "luksdock is waiting for the kernel to report it.\n")
		b.WriteString(para(st.faint, "No disk here can be prepared. Disks that hold the running system or anything mounted are refused; disks not on USB need --allow-internal. For a demo, run luksdock --image demo.img --size 1G.", w, ""))
	} else {
		b.WriteString("\n" + para(st.faint, "Docking another disk adds it here within a second.", w, ""))
	}
	if s.cursor >= 0 && s.cursor < len(d.rows) && !d.rows[s.cursor].ok {
		b.WriteString(para(st.faint, "Enter shows why the selected disk is refused and how to fix it.", w, ""))
	}

	if d.latest != "" && !d.liveAdded[d.latest] {
		b.WriteString(para(st.faint, "★ last docked: the kernel log says "+d.latest+" arrived after every other disk listed.", w, ""))
	}
	if d.logErr != nil {
		b.WriteString(para(st.faint, "(kernel log not readable: "+d.logErr.Error()+")", w, ""))
	}
	return b.String(), focus
}

// openLine says how a disk is open (core.OwnOpen), for the list: "open:
// luks-… mounted at /media/alice/backups01".
func openLine(o *core.OwnOpen) string {
	if o.Mountpoint == "" {
		return "open: unlocked as " + o.Mapping + ", not mounted"
	}
	return "open: mounted at " + o.Mountpoint
}
