package ui

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"luksdock/disk"
	"luksdock/fsformat"
	"luksdock/luks"
	"luksdock/pipeline"
)

// Fields of the Options screen, in order.
const (
	optLabel = iota
	optTable
	optLUKS
	optHeader
	optPBKDF
	optCount
)

// PBKDF choices on the Options screen.
const (
	pbkdfDefault   = iota // cryptsetup's benchmarked defaults
	pbkdfLowMemory        // argon2id with 256 MiB, for small restore machines
	pbkdfFromFlags        // what --pbkdf* said (only offered when given)
)

// DefaultLabel is suggested when no disk in a series is docked.
const DefaultLabel = "backups01"

var seriesRe = regexp.MustCompile(`^(.*?)(\d+)$`)

// SuggestLabel returns the next free name in the user's series of labels:
// given labels seen on docked disks ("backups01", "backups02", "photos"),
// it finds the numbered series with the most members (ties: the one with the
// highest number, then alphabetical) and returns its prefix with the next
// number, keeping the digits' width ("backups03"). Without any numbered
// label it returns DefaultLabel. The result is always a valid label; when the
// next name would be too long, it falls back to DefaultLabel (or the next free
// backupsNN).
func SuggestLabel(labels []string) string {
	type series struct {
		prefix string
		width  int
		count  int
		max    int
	}
	byKey := map[string]*series{}
	used := map[string]bool{}
	for _, l := range labels {
		used[l] = true
		m := seriesRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		k := m[1] + "\x00" + strconv.Itoa(len(m[2]))
		s := byKey[k]
		if s == nil {
			s = &series{prefix: m[1], width: len(m[2])}
			byKey[k] = s
		}
		s.count++
		s.max = max(s.max, n)
	}
	var all []*series
	for _, s := range byKey {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.count != b.count {
			return a.count > b.count
		}
		if a.max != b.max {
			return a.max > b.max
		}
		return a.prefix < b.prefix
	})
	for _, s := range all {
		next := fmt.Sprintf("%s%0*d", s.prefix, s.width, s.max+1)
		if fsformat.ValidateLabel(next) == nil && !used[next] {
			return next
		}
	}
	for n := 1; n < 100; n++ {
		l := fmt.Sprintf("backups%02d", n)
		if !used[l] {
			return l
		}
	}
	return DefaultLabel
}

// seenLabels are the LUKS and filesystem labels on everything discovery
// sees, and on the chosen image.
func (m *Model) seenLabels() []string {
	var out []string
	add := func(s disk.Signature) {
		if s.Label != "" {
			out = append(out, s.Label)
		}
	}
	for _, d := range m.disks {
		add(d.Content)
		for _, p := range d.Partitions {
			add(p.Content)
		}
	}
	if m.target != nil && m.target.Image {
		add(m.target.Content)
		for _, p := range m.target.Parts {
			add(p.Content)
		}
	}
	for _, r := range m.results {
		out = append(out, r.FSLabel)
	}
	return out
}

type pbkdfChoice struct {
	name  string
	pbkdf luks.PBKDF
}

func (m *Model) pbkdfChoices() []pbkdfChoice {
	c := []pbkdfChoice{
		{"cryptsetup's default (measured on this machine)", luks.PBKDF{}},
		{"argon2id, 256 MiB (small restore machines)", luks.PBKDF{Type: "argon2id", MemoryKiB: 256 << 10}},
	}
	if m.cfg.PBKDF != (luks.PBKDF{}) {
		c = append(c, pbkdfChoice{"from the command line: " + strings.Join(m.cfg.PBKDF.Args(), " "), m.cfg.PBKDF})
	}
	return c
}

// enterOptions shows the Options screen, suggesting a label the first time.
func (m *Model) enterOptions() tea.Cmd {
	m.suggestion = SuggestLabel(m.seenLabels())
	if m.label.Value() == "" {
		m.label.SetValue(m.suggestion)
		m.label.CursorEnd()
	}
	m.goTo(screenOptions)
	m.optFocus = optLabel
	m.validateOptions()
	return m.focusOption()
}

func (m *Model) focusOption() tea.Cmd {
	m.label.Blur()
	m.header.Blur()
	switch m.optFocus {
	case optLabel:
		return m.label.Focus()
	case optHeader:
		return m.header.Focus()
	}
	return nil
}

// options are the pipeline options as chosen on the screen.
func (m *Model) options() pipeline.Options {
	ch := m.pbkdfChoices()
	if m.pbkdfChoice >= len(ch) {
		m.pbkdfChoice = 0
	}
	return pipeline.Options{
		Label:         m.label.Value(),
		Table:         disk.TableType(m.table),
		LUKS1:         m.luks1,
		Engine:        m.cfg.Engine,
		PBKDF:         ch[m.pbkdfChoice].pbkdf,
		HeaderBackup:  strings.TrimSpace(m.header.Value()),
		AllowInternal: m.cfg.AllowInternal,
	}
}

// validateOptions checks the choices as they are typed.
func (m *Model) validateOptions() {
	o := m.options()
	m.optErr = ""
	if err := pipeline.ValidateOptions(&o); err != nil {
		m.optErr = unwrapMsg(err)
	}
}

func (m *Model) optionsKey(msg tea.KeyPressMsg) tea.Cmd {
	k := m.keys
	switch {
	case key.Matches(msg, k.Back):
		m.goTo(screenDetails)
		return nil
	case key.Matches(msg, k.Enter):
		m.validateOptions()
		if m.optErr != "" {
			return nil
		}
		p, err := pipeline.NewPlan(m.target, m.options())
		if err != nil {
			m.optErr = unwrapMsg(err)
			return nil
		}
		m.plan = p
		m.goTo(screenPassphrase)
		m.passFocus = 0
		m.checkPass()
		return nil
	case msg.String() == "tab" || msg.String() == "down":
		m.optFocus = (m.optFocus + 1) % optCount
		return m.focusOption()
	case msg.String() == "shift+tab" || msg.String() == "up":
		m.optFocus = (m.optFocus + optCount - 1) % optCount
		return m.focusOption()
	}
	switch m.optFocus {
	case optLabel, optHeader:
		return m.updateInput(msg)
	}
	dir := 0
	switch msg.String() {
	case "right", "space", "l":
		dir = 1
	case "left", "h":
		dir = -1
	default:
		return nil
	}
	switch m.optFocus {
	case optTable:
		if m.table == "gpt" {
			m.table = "mbr"
		} else {
			m.table = "gpt"
		}
	case optLUKS:
		m.luks1 = !m.luks1
	case optPBKDF:
		n := len(m.pbkdfChoices())
		m.pbkdfChoice = (m.pbkdfChoice + dir + n) % n
	}
	m.validateOptions()
	return nil
}

func (m *Model) optionsView() string {
	var b strings.Builder
	field := func(i int, name, value, note string) {
		marker := "  "
		if m.optFocus == i {
			marker = "› "
			name = stKey.Render(name)
		}
		fmt.Fprintf(&b, "%s%s%s\n", marker, stLabel.Render(name), value)
		if note != "" {
			b.WriteString(stFaint.Render("    "+note) + "\n")
		}
	}
	choice := func(opts []string, cur int) string {
		var parts []string
		for i, o := range opts {
			if i == cur {
				parts = append(parts, stSel.Render(" "+o+" "))
			} else {
				parts = append(parts, " "+o+" ")
			}
		}
		return strings.Join(parts, " ") + stFaint.Render("  ←/→")
	}
	labelNote := "ext4 and LUKS2 label, at most 16 bytes"
	if m.suggestion != "" {
		labelNote = "suggested: " + m.suggestion + ", the next in your series; at most 16 bytes"
	}
	field(optLabel, "Label", m.label.View(), labelNote)
	tbl := 0
	if m.table == "mbr" {
		tbl = 1
	}
	field(optTable, "Partition table", choice([]string{"GPT", "MBR"}, tbl), "GPT unless the restore machine is very old (MBR = type 83, as in the manual)")
	lv := 0
	if m.luks1 {
		lv = 1
	}
	field(optLUKS, "LUKS version", choice([]string{"LUKS2", "LUKS1"}, lv), "LUKS1 only for systems older than cryptsetup 2.0 (2017)")
	field(optHeader, "Header backup", m.header.View(), "a file for cryptsetup luksHeaderBackup (mode 0600); keep it off this disk")
	b.WriteString("\n" + stTitle.Render("  Advanced: key derivation cost") + "\n")
	ch := m.pbkdfChoices()
	if m.pbkdfChoice >= len(ch) {
		m.pbkdfChoice = 0
	}
	field(optPBKDF, "PBKDF", truncate(ch[m.pbkdfChoice].name, max(m.width-26, 10))+stFaint.Render("  ←/→"), "")
	note := strings.ReplaceAll(pbkdfNote(ch[m.pbkdfChoice].pbkdf, m.luks1), "\n", " ")
	for _, l := range strings.Split(lipgloss.Wrap(note, max(m.width-5, 20), " "), "\n") {
		b.WriteString(stFaint.Render("    "+l) + "\n")
	}
	b.WriteString("\n")
	if m.optErr != "" {
		b.WriteString(stErr.Render("✗ "+m.optErr) + "\n")
	} else {
		b.WriteString(stOK.Render("✓ ready") + " — Enter continues to the passphrase\n")
	}
	return b.String()
}

// pbkdfNote says in plain words what a keyslot cost means for the weakest
// machine that will unlock the disk.
func pbkdfNote(p luks.PBKDF, luks1 bool) string {
	ram := memTotal()
	ramNote := ""
	if ram > 0 {
		ramNote = fmt.Sprintf(" (this machine has %s)", pipeline.HumanSize(ram))
	}
	switch {
	case p == (luks.PBKDF{}) && luks1:
		return "pbkdf2, calibrated so unlocking takes about 2 s on this machine; little\n" +
			"memory. A machine half as fast takes about 4 s to unlock."
	case p == (luks.PBKDF{}):
		return "argon2id, calibrated so unlocking takes about 2 s on this machine, using up to 1 GiB of memory (at most half the RAM" + ramNote + ") and up to 4 threads. " +
			"A restore machine half as fast needs about 4 s; one with less free memory than that cannot unlock the disk at all."
	case p.Type == "pbkdf2" && p.ForceIterations > 0 && p.ForceIterations < 100000:
		return fmt.Sprintf("pbkdf2 with only %d iterations: unlocks instantly anywhere, and guessing\n"+
			"passphrases is just as cheap. For tests, not for real backups.", p.ForceIterations)
	}
	var parts []string
	kdf := p.Type
	if kdf == "" {
		kdf = "cryptsetup's default KDF"
	}
	parts = append(parts, kdf)
	if p.MemoryKiB > 0 {
		parts = append(parts, fmt.Sprintf("needs %s of free memory to unlock", pipeline.HumanSize(int64(p.MemoryKiB)<<10)))
	}
	switch {
	case p.ForceIterations > 0:
		parts = append(parts, fmt.Sprintf("%d fixed iterations (not calibrated: unlock time depends on the machine)", p.ForceIterations))
	case p.IterTimeMS > 0:
		parts = append(parts, fmt.Sprintf("calibrated to about %.1f s on this machine", float64(p.IterTimeMS)/1000))
	default:
		parts = append(parts, "calibrated to about 2 s on this machine; a machine half as fast takes about 4 s")
	}
	if p.MemoryKiB > 0 && p.MemoryKiB < 64<<10 {
		parts = append(parts, "little memory: cheaper to attack")
	}
	return strings.Join(parts, "; ") + "."
}

// memTotal is the machine's RAM in bytes from /proc/meminfo (0 if unknown).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}
