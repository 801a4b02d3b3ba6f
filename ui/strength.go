package ui

import "luksdock/core"

// verdict is zxcvbn's judgement of a passphrase (core.AssessPassphrase,
// the estimate prepare warns with too). It never holds the passphrase or
// pieces of it.
type verdict struct {
	core.Strength
	set      bool
	feedback []string
}

func (v verdict) weak() bool      { return v.Weak() }
func (v verdict) summary() string { return v.Summary() }

// assess runs core.AssessPassphrase on p, with the label and the target's
// name as words an attacker would try first.
func assess(p []byte, userInputs []string) verdict {
	s := core.AssessPassphrase(p, userInputs)
	return verdict{Strength: s, set: s.Set, feedback: s.Feedback}
}
