package ui

import (
	"testing"

	tea "charm.land/bubbletea/v2"
)

// The screens that take one secret (secretAction: Open, Enroll this host)
// refuse Enter with nothing typed, each with its own message and without
// running anything; typing clears the message; Esc wipes what was typed
// and goes back to the Actions screen.
func TestActionSecretEntry(t *testing.T) {
	m := New(Config{})
	for _, tc := range []struct {
		id    screenID
		empty string
	}{
		{scrOpen, "type the passphrase or the recovery key first"},
		{scrEnroll, "type the disk's passphrase first: it authorises the new keyslot"},
	} {
		var s *secretAction
		switch sc := m.screens[tc.id].(type) {
		case *openScreen:
			s = &sc.secretAction
		case *enrollScreen:
			s = &sc.secretAction
		default:
			t.Fatalf("%s is a %T, not a secretAction", tc.id, sc)
		}
		s.Enter()
		if cmd := s.Update(tea.KeyPressMsg{Code: tea.KeyEnter}); cmd != nil || s.run.running {
			t.Errorf("%s: Enter with nothing typed started a run", tc.id)
		}
		if s.run.err != tc.empty {
			t.Errorf("%s: Enter with nothing typed says %q, want %q", tc.id, s.run.err, tc.empty)
		}
		s.Update(tea.KeyPressMsg{Code: 'x', Text: "x"})
		if s.pass.Len() != 1 || s.run.err != "" {
			t.Errorf("%s: after typing x: %d typed, error %q; want 1 and none", tc.id, s.pass.Len(), s.run.err)
		}
		m.c.next = ""
		s.Update(tea.KeyPressMsg{Code: tea.KeyEscape})
		if all := s.pass.Bytes()[:cap(s.pass.Bytes())]; s.pass.Len() != 0 || string(all) != string(make([]byte, len(all))) {
			t.Errorf("%s: Esc left the typed secret (%d bytes)", tc.id, s.pass.Len())
		}
		if m.c.next != scrActions {
			t.Errorf("%s: Esc goes to %q, want %q", tc.id, m.c.next, scrActions)
		}
	}
}
