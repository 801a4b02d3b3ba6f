package ui

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/disk"
	"luksdock/pipeline"
)

// targetMsg is the chosen row's target, read in a command (for a disk this
// also closes dm-crypt mappings a killed luksdock left on it).
type targetMsg struct {
	key   string
	t     *pipeline.Target
	err   error
	known knownDisk
}

// detailsScreen is 2: everything about the chosen disk or image, so the
// user can tell it is the one they mean; for a refused disk, why and how
// to fix it.
type detailsScreen struct {
	c *shared
	pager
	loading bool
	keys    struct{ enter, back key.Binding }
}

func newDetails(c *shared) screen {
	s := &detailsScreen{c: c}
	s.keys.enter = keyEnter("choose it")
	s.keys.back = keyBack("disk list")
	return s
}

func (s *detailsScreen) Typing() bool { return false }
func (s *detailsScreen) Busy() bool   { return s.loading }

func (s *detailsScreen) Title() string {
	r := s.c.row
	switch {
	case !r.ok:
		return "Why " + r.name + " cannot be prepared"
	case r.image:
		return "Is this the image file you mean?"
	}
	return "Is this the disk you just docked?"
}

func (s *detailsScreen) ShortHelp() []key.Binding {
	if !s.c.row.ok || s.c.targetErr != nil {
		return []key.Binding{s.keys.back, keyScroll}
	}
	return []key.Binding{s.keys.enter, s.keys.back, keyScroll}
}
func (s *detailsScreen) FullHelp() [][]key.Binding { return [][]key.Binding{s.ShortHelp()} }

func (s *detailsScreen) Enter() tea.Cmd {
	s.top = 0
	r := s.c.row
	if !r.ok || s.c.target != nil {
		return nil
	}
	s.loading = true
	dt := s.c.cfg.DeviceTarget
	inv := s.c.inv
	return func() tea.Msg {
		m := targetMsg{key: r.key}
		if r.image {
			m.t, m.err = pipeline.ImageTarget(r.img.Path, r.img.Size)
		} else {
			m.t, m.err = dt(r.name)
		}
		if m.err == nil {
			m.known = readKnown(m.t, inv)
		}
		return m
	}
}

func (s *detailsScreen) Update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case targetMsg:
		if msg.key == s.c.row.key && s.loading {
			s.loading = false
			s.c.target, s.c.targetErr, s.c.knownDisk = msg.t, msg.err, msg.known
		}
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, s.keys.back):
			s.loading = false
			s.c.target, s.c.targetErr = nil, nil
			s.c.back(scrDetails)
		case key.Matches(msg, s.keys.enter):
			if s.c.row.ok && s.c.target != nil && s.c.targetErr == nil {
				s.c.forward(scrDetails)
			}
		default:
			s.scroll(s.c, msg, bodyLines(s.c, s))
		}
	}
	return nil
}

func (s *detailsScreen) View() (string, int) {
	c := s.c
	st := &c.st
	var b strings.Builder
	kv := func(k, v string) { b.WriteString(c.kv(k, v, lipglossPlain)) }
	r := c.row
	if !r.ok {
		kv("Disk", r.path)
		b.WriteString("\n" + st.title.Render("Refused because") + "\n")
		for _, reason := range r.reasons {
			fix := reason.Fix
			if fix == "" {
				fix = "resolve the reason above for " + r.path + ", then go back to the list; luksdock checks again."
			}
			b.WriteString(para(st.err, "✗ "+reason.Text, c.width, "  "))
			b.WriteString(para(lipglossPlain, "  fix: "+fix, c.width, "       "))
		}
		b.WriteString("\n" + para(st.faint, "luksdock rescans when you go back; a fixed disk becomes selectable.", c.width, ""))
		return b.String(), -1
	}
	if s.loading {
		return c.spin.View() + " Reading " + r.path + "…", -1
	}
	if c.targetErr != nil {
		b.WriteString(st.err.Render("This target cannot be prepared:") + "\n")
		b.WriteString(para(lipglossPlain, unwrapMsg(c.targetErr), c.width, ""))
		b.WriteString("\nPress Esc to choose another.\n")
		return b.String(), -1
	}
	t := c.target
	if t == nil {
		return "", -1
	}
	if t.Image {
		kv("Image file", t.Path)
		if t.Create {
			kv("Size", disk.SizeString(t.Size)+" (to be created as a sparse file)")
			kv("Holds", "nothing yet: the file is to be created")
		} else {
			kv("Size", fmt.Sprintf("%s (%d bytes)", disk.SizeString(t.Size), t.Size))
			kv("Holds", t.Content.String())
		}
	} else if t.Disk != nil {
		writeDiskRows(&b, c, t)
	}
	for _, p := range t.Parts {
		name := p.Name
		if name == "" { // an image file: no partition nodes
			name = fmt.Sprintf("partition %d", p.Number)
		}
		kv("  "+name, fmt.Sprintf("%s, %s%s", p.Content, disk.SizeString(p.Size), uuidSuffix(p.Content)))
	}
	if k := c.knownDisk; k.uuid != "" {
		// read with the target (readKnown), not here: View only draws
		switch {
		case k.known && (k.open || k.stopped != ""):
			b.WriteString(para(st.ok, "Known disk: "+k.desc, c.width, "  "))
		case k.known:
			b.WriteString(para(st.ok, "Known disk: "+k.desc+" (preparing it again replaces it)", c.width, "  "))
		default:
			b.WriteString(para(st.warn, "⚠ This is "+k.desc+".", c.width, "  "))
		}
		b.WriteString(openNowLine(c))
		b.WriteString(stoppedLine(c))
	}
	for _, w := range t.Verdict.Warnings {
		b.WriteString(para(st.warn, "⚠ "+w, c.width, "  "))
	}
	if t.Verdict.Internal {
		b.WriteString(para(st.danger, "⚠ This disk is NOT on USB ("+t.Verdict.InternalReason+"). Backup disks come through the dock.", c.width, "  "))
	}
	if !t.Image {
		b.WriteString("\n" + st.title.Render("Kernel log of its arrival") + "\n")
		if a, ok := c.disc.arrivalOf(t.Name); ok {
			for _, l := range a.Lines {
				b.WriteString(para(st.faint, l.String(), c.width, "  "))
			}
			if c.disc.liveAdded[t.Name] {
				b.WriteString(st.new.Render("★ docked while luksdock was running") + "\n")
			}
		} else if c.disc.liveAdded[t.Name] {
			b.WriteString(st.new.Render("★ docked while luksdock was running") + " (no kernel-log lines for it)\n")
		} else {
			b.WriteString(para(st.warn, "No arrival in the kernel log for "+t.Name+": it may have been attached since boot. Make sure it is the disk you mean.", c.width, ""))
		}
	}
	switch {
	case c.knownDisk.known:
		b.WriteString("\n" + para(lipglossPlain, "Enter shows what can be done with it: open or close, change its passphrase or recovery key, enroll this host, retire it, or prepare it again.", c.width, ""))
	case c.knownDisk.open:
		b.WriteString("\n" + para(lipglossPlain, "Enter offers to close it. It cannot be prepared while it is open.", c.width, ""))
	default:
		b.WriteString("\n" + para(lipglossPlain, "Enter continues to the options; nothing is written until you type the name on the Confirm screen.", c.width, ""))
	}
	return b.String(), -1
}

func uuidSuffix(s disk.Signature) string {
	if s.UUID != "" {
		return ", UUID " + s.UUID
	}
	return ""
}

// writeDiskRows writes what discovery found about the docked disk of t:
// its identity, the dock, its sectors, what it holds and its health.
func writeDiskRows(b *strings.Builder, c *shared, t *pipeline.Target) {
	kv := func(k, v string) { b.WriteString(c.kv(k, v, lipglossPlain)) }
	st := &c.st
	d := t.Disk
	kv("Disk", d.Path+"  ("+d.MajMin+")")
	kv("Model", strings.TrimSpace(d.VendorModel()+" "+d.Revision))
	serial := d.Serial
	if d.WWN != "" {
		serial += "  WWN " + d.WWN
	}
	kv("Serial", serial)
	kv("Size", fmt.Sprintf("%s (%d bytes)", disk.SizeString(d.Size), d.Size))
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
	if h := t.Health; h != nil {
		hs := lipglossPlain
		if h.Bad() {
			hs = st.err
		}
		b.WriteString(c.kv("Health", h.Summary(), hs))
	}
}
