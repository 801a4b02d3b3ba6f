package ui

import (
	"charm.land/bubbles/v2/key"
	"charm.land/lipgloss/v2"
)

// keyMap holds every key binding of the wizard. Which ones apply depends on
// the screen; bindings() picks them for the help line.
type keyMap struct {
	Up, Down, Enter, Back, Quit, Help, Interrupt key.Binding
	NextField, PrevField, Toggle                 key.Binding
	Another, Scroll                              key.Binding
	Yes, No                                      key.Binding
}

func newKeyMap() keyMap {
	return keyMap{
		Up:        key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:      key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		Enter:     key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "continue")),
		Back:      key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Quit:      key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
		Help:      key.NewBinding(key.WithKeys("?", "f1"), key.WithHelp("?/F1", "help")),
		Interrupt: key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "stop/quit")),
		NextField: key.NewBinding(key.WithKeys("tab", "down"), key.WithHelp("tab/↓", "next field")),
		PrevField: key.NewBinding(key.WithKeys("shift+tab", "up"), key.WithHelp("shift+tab/↑", "previous field")),
		Toggle:    key.NewBinding(key.WithKeys("left", "right", "space"), key.WithHelp("←/→/space", "change choice")),
		Another:   key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "prepare another disk")),
		Scroll:    key.NewBinding(key.WithKeys("up", "k", "down", "j", "pgup", "pgdown"), key.WithHelp("↑↓/jk", "scroll")),
		Yes:       key.NewBinding(key.WithKeys("y", "ctrl+c"), key.WithHelp("y", "yes, stop")),
		No:        key.NewBinding(key.WithKeys("n", "esc"), key.WithHelp("n/esc", "no, go on")),
	}
}

// helpKeys adapts a list of bindings to help.KeyMap.
type helpKeys struct {
	short []key.Binding
	full  [][]key.Binding
}

func (h helpKeys) ShortHelp() []key.Binding  { return h.short }
func (h helpKeys) FullHelp() [][]key.Binding { return h.full }

// bindings returns the keys that do something on the current screen.
func (m *Model) bindings() helpKeys {
	k := m.keys
	helpF1 := key.NewBinding(key.WithKeys("f1"), key.WithHelp("F1", "help"))
	ctrlQuit := key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit"))
	var s []key.Binding
	switch m.screen {
	case screenDisks:
		s = []key.Binding{k.Up, k.Down, withHelp(k.Enter, "details"), k.Quit, k.Help}
	case screenDetails:
		s = []key.Binding{withHelp(k.Enter, "choose this disk"), k.Back, k.Scroll, k.Quit, k.Help}
	case screenOptions:
		s = []key.Binding{k.NextField, k.PrevField, k.Toggle, k.Enter, k.Back, ctrlQuit, helpF1}
	case screenPassphrase:
		s = []key.Binding{withHelp(k.Enter, "next/continue"), key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "other field")), k.Back, ctrlQuit, helpF1}
	case screenPlan:
		s = []key.Binding{withHelp(k.Enter, "confirm…"), k.Back, k.Scroll, k.Quit, k.Help}
	case screenConfirm:
		s = []key.Binding{withHelp(k.Enter, "destroy and prepare"), k.Back, ctrlQuit, helpF1}
	case screenProgress:
		switch {
		case m.run != nil && m.run.asking:
			s = []key.Binding{k.Yes, k.No}
		case m.run != nil && m.run.stopping:
			s = []key.Binding{withHelp(k.Quit, "quit once stopped")}
		default:
			s = []key.Binding{withHelp(k.Interrupt, "stop safely"), withHelp(k.Quit, "stop and quit"), k.Help}
		}
	case screenDone:
		s = []key.Binding{k.Another, withHelp(k.Back, "disk list"), k.Scroll, withHelp(k.Quit, "quit"), k.Help}
	case screenError:
		s = []key.Binding{withHelp(k.Back, "disk list"), k.Scroll, k.Quit, k.Help}
	}
	return helpKeys{short: s, full: [][]key.Binding{s, {k.Help, k.Interrupt}}}
}

func withHelp(b key.Binding, desc string) key.Binding {
	b.SetHelp(b.Help().Key, desc)
	return b
}

// styles. Colour is never the only signal: selection has a "›" marker,
// refused rows say "refused:", states are words; NO_COLOR strips colours
// (bubbletea's renderer downsamples to the terminal's colour profile).
var (
	stTitle   = lipgloss.NewStyle().Bold(true)
	stFaint   = lipgloss.NewStyle().Faint(true)
	stGrey    = lipgloss.NewStyle().Foreground(lipgloss.Color("8"))
	stSel     = lipgloss.NewStyle().Bold(true).Reverse(true)
	stNew     = lipgloss.NewStyle().Foreground(lipgloss.Color("2")).Bold(true)
	stWarn    = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	stErr     = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	stOK      = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	stKey     = lipgloss.NewStyle().Bold(true)
	stDanger  = lipgloss.NewStyle().Foreground(lipgloss.Color("1"))
	stLabel   = lipgloss.NewStyle().Width(18)
	stCommand = lipgloss.NewStyle().Foreground(lipgloss.Color("6"))
)
