package core

import (
	"fmt"
	"math"

	"github.com/trustelem/zxcvbn"
)

// WeakScore is the zxcvbn score below which a passphrase is weak (fewer
// than 10^10 guesses), as in the wizard (ui/strength.go).
const WeakScore = 3

// Strength is zxcvbn's verdict on a passphrase, with the disk's label and
// name as words an attacker tries first. It holds no part of the passphrase.
type Strength struct {
	Score   int     `json:"score"` // 0..4
	Log10   float64 `json:"log10_guesses"`
	Summary string  `json:"summary"`
}

// Weak reports whether the passphrase needs an explicit acknowledgement.
func (s Strength) Weak() bool { return s.Score < WeakScore }

// Assess runs zxcvbn on p.
func Assess(p []byte, userInputs []string) Strength {
	r := zxcvbn.PasswordStrength(string(p), userInputs)
	s := Strength{Score: r.Score, Log10: math.Log10(math.Max(r.Guesses, 1))}
	rating := [...]string{"very weak", "weak", "weak", "good", "strong"}[s.Score]
	g := fmt.Sprintf("10^%.0f", s.Log10)
	if s.Log10 < 4 {
		g = fmt.Sprintf("%.0f", math.Pow(10, s.Log10))
	}
	s.Summary = fmt.Sprintf("%s (zxcvbn score %d/4): about %s guesses to find it", rating, s.Score, g)
	return s
}
