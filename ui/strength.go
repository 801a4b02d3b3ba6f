package ui

import (
	"fmt"
	"math"
	"strings"

	"github.com/trustelem/zxcvbn"
)

// verdict is zxcvbn's judgement of a passphrase: how many guesses an
// attacker who knows common passwords, words, names, dates and keyboard
// patterns needs, and what makes it guessable. It never holds the
// passphrase or pieces of it.
type verdict struct {
	set      bool
	score    int // 0..4 (zxcvbn)
	log10    float64
	feedback []string
}

// weakScore: below it (fewer than 10^10 guesses) a passphrase is weak and
// needs an explicit acknowledgement.
const weakScore = 3

func (v verdict) weak() bool { return v.set && v.score < weakScore }

// rating is the verdict in words.
func (v verdict) rating() string {
	return [...]string{"very weak", "weak", "weak", "good", "strong"}[v.score]
}

// summary is one line: "weak (zxcvbn score 1/4): about 10^5 guesses".
func (v verdict) summary() string {
	g := fmt.Sprintf("10^%.0f", v.log10)
	if v.log10 < 4 {
		g = fmt.Sprintf("%.0f", math.Pow(10, v.log10))
	}
	return fmt.Sprintf("%s (zxcvbn score %d/4): about %s guesses to find it", v.rating(), v.score, g)
}

// assess runs zxcvbn on p, with the label and the target's name as words an
// attacker would try first.
func assess(p []byte, userInputs []string) verdict {
	r := zxcvbn.PasswordStrength(string(p), userInputs)
	v := verdict{set: true, score: r.Score, log10: math.Log10(math.Max(r.Guesses, 1))}
	seen := map[string]bool{}
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			v.feedback = append(v.feedback, s)
		}
	}
	for _, m := range r.Sequence {
		switch m.Pattern {
		case "dictionary":
			switch {
			case m.DictionaryName == "passwords":
				add("contains one of the most common passwords")
			case m.DictionaryName == "user_inputs":
				add("contains the disk's label or name")
			case strings.HasSuffix(m.DictionaryName, "names"):
				add("contains a common name")
			default:
				add("contains a common word on its own (a few random words together are much stronger)")
			}
			if m.L33t {
				add("letter-to-symbol swaps (a→@, o→0) are predictable")
			}
			if m.Reversed {
				add("reversed words are as easy to guess")
			}
		case "spatial":
			add("contains a keyboard pattern")
		case "repeat":
			add("contains repeated characters or groups")
		case "sequence":
			add("contains a sequence such as abc or 123")
		case "date", "regex":
			add("contains a date or year")
		}
	}
	if v.score < weakScore && len(p) < 12 {
		add("it is short: add more words")
	}
	if v.score < weakScore {
		add("four or more random words make a strong passphrase that is easy to type")
	}
	return v
}
