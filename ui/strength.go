package ui

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
)

// verdict is zxcvbn's judgement of a passphrase: how many guesses an
// attacker who knows common passwords, words, names, dates and keyboard
// patterns needs, and what makes it guessable. It never holds the
// passphrase or pieces of it.
type verdict struct {
	set      bool
	partial  int // > 0: only the first partial characters were judged
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
	s := fmt.Sprintf("%s (zxcvbn score %d/4): about %s guesses to find it", v.rating(), v.score, g)
	if v.partial > 0 {
		s += fmt.Sprintf(" (judged on its first %d characters)", v.partial)
	}
	return s
}

// judgeMax bounds what zxcvbn judges: its time grows steeply with length
// (0.37 s at 200 characters, 5.8 s at 512 on the machine that found it),
// and a passphrase whose first 64 bytes are strong is strong.
const judgeMax = 64

// judged is the part of p that zxcvbn judges: at most judgeMax bytes, cut
// at a character boundary.
func judged(p []byte) []byte {
	if len(p) <= judgeMax {
		return p
	}
	n := judgeMax
	for n > 0 && !utf8.RuneStart(p[n]) {
		n--
	}
	return p[:n]
}

// assess runs zxcvbn on p, with the label and the target's name as words an
// attacker would try first. p is judged(the passphrase); total is the
// passphrase's length in characters, so a verdict on a part says so.
func assess(p []byte, userInputs []string, total int) verdict {
	r := zxcvbn.PasswordStrength(string(p), userInputs)
	v := verdict{set: true, score: r.Score, log10: math.Log10(math.Max(r.Guesses, 1))}
	if n := utf8.RuneCount(p); n < total {
		v.partial = n
	}
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
	if v.score < weakScore && total < 12 {
		add("it is short: add more words")
	}
	if v.score < weakScore {
		add("four or more random words make a strong passphrase that is easy to type")
	}
	return v
}
