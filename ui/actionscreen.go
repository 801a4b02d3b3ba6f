package ui

import (
	"strings"
	"sync"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"luksdock/core"
	lsecret "luksdock/internal/secret"
)

// actionBase is what every action screen (open.go, close.go, …) has: the
// action it serves, its run and core's result, and its Enter (go on) and
// Esc (back) keys. A screen embeds it and adds what differs.
type actionBase struct {
	c       *shared
	act     action
	title   string
	working string // the status line while core runs
	run     actionRun
	res     any // core's result, once the run is done
	keys    struct{ enter, back key.Binding }
}

// newActionBase is an action screen's base; enter is Enter's help.
func newActionBase(c *shared, act action, title, working, enter string) actionBase {
	s := actionBase{c: c, act: act, title: title, working: working}
	s.keys.enter = keyEnter(enter)
	s.keys.back = keyBack("back")
	return s
}

func (s *actionBase) Title() string  { return s.title }
func (s *actionBase) Typing() bool   { return !s.run.done }
func (s *actionBase) Skip() bool     { return s.c.action != s.act }
func (s *actionBase) Busy() bool     { return s.run.Busy() }
func (s *actionBase) Status() string { return s.run.status(s.c, s.working) }
func (s *actionBase) ShortHelp() []key.Binding {
	if s.run.done {
		return []key.Binding{keyEnter("disk list")}
	}
	return []key.Binding{s.keys.enter, s.keys.back}
}
func (s *actionBase) FullHelp() [][]key.Binding {
	return [][]key.Binding{s.ShortHelp(), fieldKeys.list()}
}

// begin starts the screen afresh (its Enter).
func (s *actionBase) begin() {
	s.run.reset()
	s.res = nil
}

// start marks core's run begun; its done makes the message that ends it.
// The program does not end under a running action: Model.Close waits
// for it (s.c.actions).
func (s *actionBase) start() func(res any, err error) tea.Msg {
	done := s.run.start(actionScreens[s.act])
	s.c.actions.Add(1)
	var once sync.Once
	return func(res any, err error) tea.Msg {
		once.Do(s.c.actions.Done)
		return done(res, err)
	}
}

// actionNouns name what each action does, for "the … in progress".
var actionNouns = map[action]string{
	actOpen: "unlock and mount", actClose: "close", actPasswd: "passphrase change",
	actRecoveryKey: "recovery key replacement", actEnroll: "host enrollment", actRetire: "retire (crypto-erase)",
}

// doing names what the action does (Model.StopNote).
func (s *actionBase) doing() string {
	if n := actionNouns[s.act]; n != "" {
		return n
	}
	return string(s.act)
}

// running is the action's run while core runs (nil when it does not).
func (s *actionBase) running() *actionRun {
	if s.run.running {
		return &s.run
	}
	return nil
}

// runCore starts core's run: work runs in the returned command, and what
// it returns (no result when it fails) ends the run.
func (s *actionBase) runCore(work func() (any, error)) tea.Cmd {
	done := s.start()
	return func() tea.Msg {
		res, err := work()
		if err != nil {
			return done(nil, err)
		}
		return done(res, nil)
	}
}

// took takes core's outcome, keeping its result; it reports false for a
// stale message.
func (s *actionBase) took(m actionDoneMsg) bool {
	if !s.run.finish(m) {
		return false
	}
	if m.res != nil {
		s.res = m.res
		s.c.done = noteAction(s.c.done, s.act, m.res)
	}
	return true
}

// press handles the keys every action screen treats alike, for a key
// pressed while core is not running: once the action is done, Enter or Esc
// goes back to the disk list (other keys do nothing); before, Esc calls
// back (if any) and goes back to the Actions screen, and Enter calls enter.
// It reports whether k was handled.
func (s *actionBase) press(k tea.KeyPressMsg, back func(), enter func() tea.Cmd) (tea.Cmd, bool) {
	switch {
	case s.run.done && key.Matches(k, s.keys.enter, s.keys.back):
		s.c.finishAction()
		return nil, true
	case s.run.done:
		return nil, true
	case key.Matches(k, s.keys.back):
		if back != nil {
			back()
		}
		s.c.goTo(scrActions)
		return nil, true
	case key.Matches(k, s.keys.enter):
		return enter(), true
	}
	return nil, false
}

// update is the Update of an action screen with (at most) one entry:
// core's outcome is taken, nothing is done while core runs, the shared
// keys go to press, and anything else to edit (if any) until the action
// is done; an edit clears the last error.
func (s *actionBase) update(msg tea.Msg, back func(), enter func() tea.Cmd, edit func(tea.Msg) bool) tea.Cmd {
	if m, ok := msg.(actionDoneMsg); ok {
		s.took(m)
		return nil
	}
	if s.run.running {
		return nil
	}
	if k, ok := msg.(tea.KeyPressMsg); ok {
		if cmd, ok := s.press(k, back, enter); ok {
			return cmd
		}
	}
	if !s.run.done && edit != nil && edit(msg) {
		s.run.err = ""
	}
	return nil
}

// secretAction is an action screen that takes one secret (the passphrase,
// or the recovery key, which unlocks as well) and then runs core with it
// in a command: Open and Enroll this host. A screen embeds it and gives
// what differs: the refusal of an empty entry, the work, and its View.
type secretAction struct {
	actionBase
	pass  secret
	empty string // why Enter with nothing typed is refused
	// work is called on Enter with the secret unlocked into locked
	// memory (core.UnlockSecret's; isKey: it is a recovery key); it reads what
	// it needs of the shared state then and returns what the command does.
	// The secret is freed when the command ends.
	work func(sec []byte, isKey bool) func() (any, error)
}

func (s *secretAction) Enter() tea.Cmd {
	s.pass.Clear()
	s.begin()
	return nil
}

func (s *secretAction) clearSecrets() { s.pass.Clear() }
func (s *secretAction) Masked() bool  { return !s.run.done && !s.run.running }

func (s *secretAction) Update(msg tea.Msg) tea.Cmd {
	return s.update(msg, s.pass.Clear, s.submit, func(msg tea.Msg) bool { return editSecret(s.c.in, &s.pass, msg) })
}

// submit checks the typed secret and runs the work with it.
func (s *secretAction) submit() tea.Cmd {
	if s.run.refused(&s.pass, s.empty) {
		return nil
	}
	sec, isKey := core.UnlockSecret(s.pass.Bytes())
	s.pass.Clear()
	work := s.work(sec, isKey)
	return s.runCore(func() (any, error) {
		defer lsecret.Free(sec)
		return work()
	})
}

// entryView is the screen before the run: intro, then the masked secret
// under label (the focused line).
func (s *secretAction) entryView(b *strings.Builder, intro, label string) (string, int) {
	b.WriteString(para(lipglossPlain, intro, s.c.width, "") + "\n")
	focus := strings.Count(b.String(), "\n")
	b.WriteString(maskedLine(s.c, label, &s.pass, true))
	return b.String(), focus
}

// refused reports whether the typed secret is refused before anything is
// run, and says why: nothing typed (empty), or not a passphrase at all
// (passphraseErr).
func (r *actionRun) refused(s *secret, empty string) bool {
	if s.Len() == 0 {
		r.err = empty
		return true
	}
	if err := passphraseErr(s); err != nil {
		r.err = err.Error()
		return true
	}
	return false
}
