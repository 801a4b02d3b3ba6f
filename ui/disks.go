package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/disk"
	"luksdock/pipeline"
)

// applyScan replaces the disk list with a fresh scan, keeping the selection
// where it can and pre-selecting the most recently docked disk otherwise.
func (m *Model) applyScan(s scanMsg) {
	m.scanning, m.scanned = false, true
	m.disks, m.scanErr, m.logErr = s.disks, s.err, s.logErr
	if s.lines != nil {
		m.arrivals = disk.ParseKernelLog(s.lines)
	}
	present := map[string]bool{}
	for _, d := range s.disks {
		present[d.Name] = true
	}
	if m.latest != "" && !m.liveAdded[m.latest] {
		m.latest = ""
	}
	if m.latest != "" && !present[m.latest] {
		m.latest = ""
	}
	if m.latest == "" {
		if a, ok := disk.LatestArrival(m.arrivals); ok && present[a.Disk] {
			m.latest = a.Disk
		}
	}
	var rows []row
	rows = append(rows, s.imageRow...)
	for i := range s.disks {
		d := s.disks[i]
		v := disk.Assess(d)
		rows = append(rows, row{
			key: "disk:" + d.Name + "|" + d.MajMin, name: d.Name, path: d.Path, size: d.Size,
			disk: &d, verdict: v, ok: v.OK(m.cfg.AllowInternal), reasons: v.Reasons(m.cfg.AllowInternal), summary: d.Summary(),
		})
	}
	m.rows = rows
	if t := m.target; t != nil && !t.Image && m.screen < screenProgress {
		m.targetGone = true
		for _, d := range s.disks {
			if d.Name == t.Name && t.Disk != nil && d.MajMin == t.Disk.MajMin && d.Size == t.Size {
				m.targetGone = false
			}
		}
	}
	m.cursor = -1
	if m.wantSel != "" {
		for i, r := range rows {
			if !r.image && r.name == m.wantSel && r.ok {
				m.selKey, m.wantSel = r.key, ""
				m.cursor = i
			}
		}
	}
	if m.cursor < 0 && m.selKey != "" {
		for i, r := range rows {
			if r.key == m.selKey {
				m.cursor = i
			}
		}
	}
	if m.cursor < 0 {
		m.cursor = m.preselect()
	}
	if m.cursor >= 0 && m.cursor < len(rows) {
		m.selKey = rows[m.cursor].key
	}
}

// preselect picks the row to start on: a disk docked while the wizard runs,
// else the image given on the command line, else the most recently docked
// disk in the kernel log, else the first eligible row.
func (m *Model) preselect() int {
	find := func(pred func(row) bool) int {
		for i, r := range m.rows {
			if r.ok && pred(r) {
				return i
			}
		}
		return -1
	}
	if m.latest != "" && m.liveAdded[m.latest] {
		if i := find(func(r row) bool { return !r.image && r.name == m.latest }); i >= 0 {
			return i
		}
	}
	if i := find(func(r row) bool { return r.image }); i >= 0 {
		return i
	}
	if m.latest != "" {
		if i := find(func(r row) bool { return !r.image && r.name == m.latest }); i >= 0 {
			return i
		}
	}
	if i := find(func(row) bool { return true }); i >= 0 {
		return i
	}
	if len(m.rows) > 0 {
		return 0
	}
	return -1
}

func (m *Model) eligible() int {
	n := 0
	for _, r := range m.rows {
		if r.ok {
			n++
		}
	}
	return n
}

func (m *Model) disksView() string {
	var b strings.Builder
	if !m.scanned {
		return m.spin.View() + " Looking for disks…"
	}
	if m.scanErr != nil {
		fmt.Fprintf(&b, "%s\n\n", stErr.Render("Discovery failed: "+m.scanErr.Error()))
	}
	for i, r := range m.rows {
		sel := i == m.cursor
		marker := "  "
		if sel {
			marker = "› "
		}
		size := pipeline.HumanSize(r.size)
		if r.size == 0 && r.image {
			size = "-"
		}
		kind := "image"
		model := ""
		if r.disk != nil {
			kind = r.disk.Transport
			model = strings.TrimSpace(r.disk.Vendor + " " + r.disk.Model)
			if r.disk.Serial != "" {
				model += " #" + r.disk.Serial
			}
		}
		line := fmt.Sprintf("%s%-8s %10s  %-11s %s", marker, r.name, size, kind, model)
		tag := ""
		switch {
		case !r.image && r.name == m.latest && m.liveAdded[r.name]:
			tag = "  ★ just docked"
		case !r.image && r.name == m.latest:
			tag = "  ★ last docked"
		}
		line = truncate(line, max(m.width-lenCells(tag), 20))
		detail := "    holds: " + r.summary
		if !r.ok {
			detail = "    refused: " + strings.Join(r.reasons, "; ")
		}
		detail = truncate(detail, m.width)
		switch {
		case !r.ok:
			b.WriteString(stGrey.Render(line+tag) + "\n" + stGrey.Render(detail) + "\n")
		case sel:
			b.WriteString(stSel.Render(line) + stNew.Render(tag) + "\n" + detail + "\n")
		default:
			b.WriteString(line + stNew.Render(tag) + "\n" + stFaint.Render(detail) + "\n")
		}
	}
	if m.eligible() == 0 {
		b.WriteString("\n" + stWarn.Render(m.spin.View()+" Dock a disk now… ") + "luksdock is waiting for the kernel to report it.\n")
		b.WriteString(stFaint.Render("No disk here can be prepared. Disks that hold the running system or anything\nmounted are refused; disks not on USB need --allow-internal. For a demo, run\nluksdock --image demo.img --size 1G.") + "\n")
	} else {
		b.WriteString("\n" + stFaint.Render("Docking another disk adds it here within a second.") + "\n")
	}
	if m.latest != "" && !m.liveAdded[m.latest] {
		b.WriteString(stFaint.Render("★ last docked: the kernel log says "+m.latest+" arrived after every other disk listed.") + "\n")
	}
	if m.logErr != nil {
		b.WriteString(stFaint.Render("(kernel log not readable: "+m.logErr.Error()+")") + "\n")
	}
	return b.String()
}

func lenCells(s string) int { return len([]rune(s)) }

func (m *Model) disksKey(msg tea.KeyPressMsg) tea.Cmd {
	k := m.keys
	switch {
	case key.Matches(msg, k.Up):
		if m.cursor > 0 {
			m.cursor--
		}
		m.wantSel = "" // the user chooses now
	case key.Matches(msg, k.Down):
		if m.cursor < len(m.rows)-1 {
			m.cursor++
		}
		m.wantSel = ""
	case key.Matches(msg, k.Enter):
		if m.cursor < 0 || m.cursor >= len(m.rows) {
			return nil
		}
		r := m.rows[m.cursor]
		if !r.ok {
			return nil
		}
		m.sel = r
		m.target, m.targetErr, m.targetGone = nil, nil, false
		if r.image {
			m.target, m.targetErr = pipeline.ImageTarget(r.img.Path, r.img.Size)
		} else {
			m.target, m.targetErr = m.cfg.DeviceTarget(r.name)
		}
		m.goTo(screenDetails)
		return nil
	}
	if m.cursor >= 0 && m.cursor < len(m.rows) {
		m.selKey = m.rows[m.cursor].key
	}
	return nil
}

// arrivalOf is the kernel log's latest account of a disk still attached.
func (m *Model) arrivalOf(name string) (disk.Arrival, bool) {
	for i := len(m.arrivals) - 1; i >= 0; i-- {
		if a := m.arrivals[i]; a.Disk == name && !a.Gone {
			return a, true
		}
	}
	return disk.Arrival{}, false
}

func (m *Model) detailsView() string {
	var b strings.Builder
	kv := func(k, v string) {
		if v != "" {
			b.WriteString(m.kvLine(k, v))
		}
	}
	if m.targetErr != nil {
		b.WriteString(stErr.Render("This target cannot be prepared:") + "\n" + unwrapMsg(m.targetErr) + "\n\nPress Esc to choose another.\n")
		return b.String()
	}
	t := m.target
	if t.Image {
		kv("Image file", t.Path)
		if t.Create {
			kv("Size", pipeline.HumanSize(t.Size)+" (will be created as a sparse file)")
		} else {
			kv("Size", fmt.Sprintf("%s (%d bytes)", pipeline.HumanSize(t.Size), t.Size))
		}
		kv("Holds", t.Content.String())
	} else if d := t.Disk; d != nil {
		kv("Disk", d.Path+"  ("+d.MajMin+")")
		kv("Model", strings.TrimSpace(d.Vendor+" "+d.Model+" "+d.Revision))
		serial := d.Serial
		if d.WWN != "" {
			serial += "  WWN " + d.WWN
		}
		kv("Serial", serial)
		kv("Size", fmt.Sprintf("%s (%d bytes)", pipeline.HumanSize(d.Size), d.Size))
		tr := d.Transport
		if d.USB != nil {
			usb := strings.Join(strings.Fields(fmt.Sprintf("USB %s:%s %s %s", d.USB.VendorID, d.USB.ProductID, d.USB.Manufacturer, d.USB.Product)), " ")
			tr += fmt.Sprintf(" — %s, port %s, %s Mbit/s", usb, d.USB.Port, d.USB.Speed)
		}
		kv("Transport", tr)
		rot := "solid state"
		if d.Rotational {
			rot = "rotational"
		}
		kv("Sectors", fmt.Sprintf("%d-byte logical, %d-byte physical; %s", d.LogicalSector, d.PhysicalSector, rot))
		kv("Holds", t.Content.String())
	}
	for _, p := range t.Parts {
		name := p.Name
		if name == "" { // an image file: no partition nodes
			name = fmt.Sprintf("partition %d", p.Number)
		}
		kv("  "+name, fmt.Sprintf("%s, %s%s", p.Content, pipeline.HumanSize(p.Size), uuidSuffix(p.Content)))
	}
	for _, w := range t.Verdict.Warnings {
		b.WriteString(stWarn.Render("⚠ "+w) + "\n")
	}
	if t.Verdict.Internal {
		b.WriteString(stDanger.Render("⚠ This disk is NOT on USB ("+t.Verdict.InternalReason+"). Backup disks come through the dock.") + "\n")
	}
	if !t.Image {
		b.WriteString("\n" + stTitle.Render("Kernel log of its arrival") + "\n")
		if a, ok := m.arrivalOf(t.Name); ok {
			for _, l := range a.Lines {
				b.WriteString(stFaint.Render(l.String()) + "\n")
			}
			if m.liveAdded[t.Name] {
				b.WriteString(stNew.Render("★ docked while luksdock was running") + "\n")
			}
		} else if m.liveAdded[t.Name] {
			b.WriteString(stNew.Render("★ docked while luksdock was running") + " (no kernel-log lines for it)\n")
		} else {
			b.WriteString(stWarn.Render("No arrival in the kernel log for "+t.Name+": it may have been attached since boot. Make sure it is the disk you mean.") + "\n")
		}
	}
	b.WriteString("\nEnter continues to the options; nothing is written until you type the name on the Confirm screen.\n")
	return b.String()
}

func uuidSuffix(s disk.Signature) string {
	if s.UUID != "" {
		return ", UUID " + s.UUID
	}
	return ""
}

func (m *Model) detailsKey(msg tea.KeyPressMsg) tea.Cmd {
	switch {
	case key.Matches(msg, m.keys.Back):
		m.goTo(screenDisks)
		m.target = nil
		return m.rescan()
	case key.Matches(msg, m.keys.Enter):
		if m.targetErr != nil || m.target == nil {
			return nil
		}
		return m.enterOptions()
	default:
		m.scrollKey(msg)
	}
	return nil
}
