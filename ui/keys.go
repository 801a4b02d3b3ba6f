package ui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// Every key the wizard acts on is a key.Binding matched with key.Matches,
// and every binding a screen acts on is in its ShortHelp or FullHelp, so the
// help shown is the behaviour. Screens with a text field in focus use
// bindings without printable keys: what is typed there is text, never a
// command.

// globalKeys are handled by the root model on every screen but Progress
// (which has its own stop question).
type globalKeys struct {
	Help       key.Binding // ? and F1 where nothing is typed
	HelpTyping key.Binding // F1 only, while a text field has the focus
	Quit       key.Binding // q where nothing is typed
	Interrupt  key.Binding // ctrl+c: quit (progress: stop safely)
}

func newGlobalKeys() globalKeys {
	return globalKeys{
		Help:       key.NewBinding(key.WithKeys("?", "f1"), key.WithHelp("?/F1", "more help")),
		HelpTyping: key.NewBinding(key.WithKeys("f1"), key.WithHelp("F1", "more help")),
		Quit:       key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
		Interrupt:  key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit")),
	}
}

// Bindings shared by several screens (each screen picks its own).
func keyEnter(desc string) key.Binding {
	return key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", desc))
}
func keyBack(desc string) key.Binding {
	return key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", desc))
}

var (
	keyUp   = key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up"))
	keyDown = key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down"))
	// while an action's core call runs: Ctrl+C does not cut it off
	keyFinishing = key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "stop (it finishes first)"))
	keyScroll    = key.NewBinding(key.WithKeys("up", "k", "down", "j", "pgup", "pgdown"), key.WithHelp("↑↓/jk/pgup/pgdn", "scroll"))
)

// renderHelp draws the footer: the short help wrapped onto as many lines as
// the width needs (never cut), or, when asked for, every binding one per
// line in columns. Bindings with the same keys are listed once.
func renderHelp(st *styles, short []key.Binding, full [][]key.Binding, all bool, w int) string {
	seen := map[string]bool{}
	item := func(b key.Binding) string {
		if !b.Enabled() || b.Help().Key == "" {
			return ""
		}
		id := strings.Join(b.Keys(), ",")
		if seen[id] {
			return ""
		}
		seen[id] = true
		return st.key.Render(b.Help().Key) + " " + st.faint.Render(b.Help().Desc)
	}
	if !all {
		var lines []string
		line := ""
		for _, b := range short {
			it := item(b)
			if it == "" {
				continue
			}
			switch {
			case line == "":
				line = it
			case ansi.StringWidth(line)+3+ansi.StringWidth(it) <= w:
				line += st.faint.Render(" • ") + it
			default:
				lines = append(lines, line)
				line = it
			}
		}
		if line != "" {
			lines = append(lines, line)
		}
		return strings.Join(lines, "\n")
	}
	var items []string
	for _, g := range full {
		for _, b := range g {
			if it := item(b); it != "" {
				items = append(items, it)
			}
		}
	}
	colW := 0
	for _, it := range items {
		colW = max(colW, ansi.StringWidth(it))
	}
	colW += 3
	cols := max(w/colW, 1)
	var b strings.Builder
	for i, it := range items {
		b.WriteString(it)
		switch {
		case (i+1)%cols == 0 || i == len(items)-1:
			b.WriteString("\n")
		default:
			b.WriteString(strings.Repeat(" ", colW-ansi.StringWidth(it)))
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// styles is the wizard's theme. Colour is never the only signal: selection
// has a "›" marker, refused rows say "refused:", states are words; NO_COLOR
// strips colours (bubbletea's renderer downsamples to the terminal's colour
// profile).
type styles struct {
	title, faint, grey, sel, new, warn, err, ok, key, danger, label, command lipgloss.Style
}

func newStyles() styles {
	return styles{
		title:   lipgloss.NewStyle().Bold(true),
		faint:   lipgloss.NewStyle().Faint(true),
		grey:    lipgloss.NewStyle().Foreground(lipgloss.Color("8")),
		sel:     lipgloss.NewStyle().Bold(true).Reverse(true),
		new:     lipgloss.NewStyle().Foreground(lipgloss.Color("2")).Bold(true),
		warn:    lipgloss.NewStyle().Foreground(lipgloss.Color("3")),
		err:     lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		ok:      lipgloss.NewStyle().Foreground(lipgloss.Color("2")),
		key:     lipgloss.NewStyle().Bold(true),
		danger:  lipgloss.NewStyle().Foreground(lipgloss.Color("1")),
		label:   lipgloss.NewStyle().Width(18),
		command: lipgloss.NewStyle().Foreground(lipgloss.Color("6")),
	}
}

// lipglossPlain renders text unstyled (for para and kv).
var lipglossPlain = lipgloss.NewStyle()
var lipglossFaint = lipgloss.NewStyle().Faint(true)
