package ui

import "luksdock/core"

// verdict is zxcvbn's judgement of a passphrase (core.AssessPart, the
// estimate prepare warns with too). It never holds the passphrase or
// pieces of it.
type verdict struct {
	core.Strength
	set      bool
	feedback []string
}

func (v verdict) weak() bool      { return v.Weak() }
func (v verdict) summary() string { return v.Summary() }

// judged is the part of p that zxcvbn judges (core.Judged).
func judged(p []byte) []byte { return core.Judged(p) }

// assess runs core.AssessPart on p = judged(the passphrase), with the label
// and the target's name as words an attacker would try first; total is the
// passphrase's length in characters, so a verdict on a part says so.
func assess(p []byte, userInputs []string, total int) verdict {
	s := core.AssessPart(p, userInputs, total)
	return verdict{Strength: s, set: s.Set, feedback: s.Feedback}
}
