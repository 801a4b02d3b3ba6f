package ui

import (
	"unicode/utf8"

	tea "charm.land/bubbletea/v2"
)

// field is a one-line text input (label, header backup path, confirmation).
// It edits at the end of the line: typing appends, Backspace deletes the
// last character, Ctrl+U clears, pastes are inserted. (bubbles' textinput
// needs a clipboard module that is not among luksdock's dependencies.)
type field struct {
	value       []rune
	Prompt      string
	Placeholder string
	CharLimit   int
	focused     bool
}

func newField() field { return field{} }

func (f *field) Value() string     { return string(f.value) }
func (f *field) SetValue(s string) { f.value = []rune(s) }
func (f *field) CursorEnd()        {}
func (f *field) Focus() tea.Cmd    { f.focused = true; return nil }
func (f *field) Blur()             { f.focused = false }
func (f *field) insert(s string) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if f.CharLimit > 0 && len(f.value) >= f.CharLimit {
			return
		}
		f.value = append(f.value, r)
	}
}

// Update edits the value for key presses and pastes when focused.
func (f field) Update(msg tea.Msg) (field, tea.Cmd) {
	if !f.focused {
		return f, nil
	}
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch msg.String() {
		case "backspace", "ctrl+h":
			if len(f.value) > 0 {
				f.value = f.value[:len(f.value)-1]
			}
		case "ctrl+u":
			f.value = nil
		case "ctrl+w":
			for len(f.value) > 0 && f.value[len(f.value)-1] == ' ' {
				f.value = f.value[:len(f.value)-1]
			}
			for len(f.value) > 0 && f.value[len(f.value)-1] != ' ' {
				f.value = f.value[:len(f.value)-1]
			}
		default:
			if msg.Text != "" && msg.Mod&^tea.ModShift == 0 {
				f.insert(msg.Text)
			}
		}
	case tea.PasteMsg:
		f.insert(msg.Content)
	}
	return f, nil
}

// View renders the prompt, the value and a cursor when focused.
func (f field) View() string {
	v := f.Prompt + string(f.value)
	if len(f.value) == 0 && f.Placeholder != "" {
		if f.focused {
			return f.Prompt + "▏" + stFaint.Render(f.Placeholder)
		}
		return f.Prompt + stFaint.Render(f.Placeholder)
	}
	if f.focused {
		v += "▏"
	}
	return v
}
