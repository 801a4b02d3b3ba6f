package ui

import (
	"unicode/utf8"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// field is a one-line text input (label, header backup path, confirmation).
// It edits at the end of the line: typing appends, Backspace deletes the
// last character, Ctrl+U clears, Ctrl+W deletes a word, pastes are
// inserted. Every printable key is text. (bubbles' textinput needs a
// clipboard module that is not among luksdock's dependencies.)
type field struct {
	value       []rune
	Prompt      string
	Placeholder string
	CharLimit   int
	focused     bool
}

// textKeys are the editing keys of a text field (and of the passphrase).
type textKeys struct{ Delete, Clear, Word key.Binding }

var fieldKeys = textKeys{
	Delete: key.NewBinding(key.WithKeys("backspace", "ctrl+h"), key.WithHelp("backspace", "delete")),
	Clear:  key.NewBinding(key.WithKeys("ctrl+u"), key.WithHelp("ctrl+u", "clear")),
	Word:   key.NewBinding(key.WithKeys("ctrl+w"), key.WithHelp("ctrl+w", "delete word")),
}

func (k textKeys) list() []key.Binding { return []key.Binding{k.Delete, k.Clear, k.Word} }

func (f *field) Value() string     { return string(f.value) }
func (f *field) SetValue(s string) { f.value = []rune(s) }
func (f *field) insert(s string) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || isPlaceholder(r) {
			continue // isPlaceholder: typed ahead into a masked field that had the focus
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
		switch {
		case key.Matches(msg, fieldKeys.Delete):
			if len(f.value) > 0 {
				f.value = f.value[:len(f.value)-1]
			}
		case key.Matches(msg, fieldKeys.Clear):
			f.value = nil
		case key.Matches(msg, fieldKeys.Word):
			for len(f.value) > 0 && f.value[len(f.value)-1] == ' ' {
				f.value = f.value[:len(f.value)-1]
			}
			for len(f.value) > 0 && f.value[len(f.value)-1] != ' ' {
				f.value = f.value[:len(f.value)-1]
			}
		default:
			if printable(msg) {
				f.insert(msg.Text)
			}
		}
	case tea.PasteMsg:
		f.insert(msg.Content)
	}
	return f, nil
}

// printable reports whether a key press is text (a character, with at most
// Shift held).
func printable(msg tea.KeyPressMsg) bool { return msg.Text != "" && msg.Mod&^tea.ModShift == 0 }

// View renders the prompt, the value and a cursor when focused.
func (f field) View() string {
	v := f.Prompt + string(f.value)
	if len(f.value) == 0 && f.Placeholder != "" {
		if f.focused {
			return f.Prompt + "▏" + lipglossFaint.Render(f.Placeholder)
		}
		return f.Prompt + lipglossFaint.Render(f.Placeholder)
	}
	if f.focused {
		v += "▏"
	}
	return v
}
