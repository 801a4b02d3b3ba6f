package ui

import (
	"unicode/utf8"

	lsecret "luksdock/internal/secret"
	"luksdock/pipeline"
)

// secret is a masked input that keeps its bytes in one fixed buffer of
// secret memory (luksdock/internal/secret: locked, out of core dumps), so
// Clear really removes the passphrase from memory (no copies left behind by
// growing a slice or a string).
type secret struct{ b []byte }

// Insert appends typed or pasted text; control characters are dropped and
// nothing beyond pipeline.MaxPassphrase bytes is kept.
func (s *secret) Insert(t string) {
	if s.b == nil {
		s.b = lsecret.New(pipeline.MaxPassphrase + utf8.UTFMax)[:0]
	}
	for _, r := range t {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if len(s.b)+utf8.RuneLen(r) > pipeline.MaxPassphrase {
			return
		}
		s.b = utf8.AppendRune(s.b, r)
	}
}

// Backspace removes the last character.
func (s *secret) Backspace() {
	if len(s.b) == 0 {
		return
	}
	_, n := utf8.DecodeLastRune(s.b)
	clear(s.b[len(s.b)-n:])
	s.b = s.b[:len(s.b)-n]
}

// BackspaceWord removes the last word and the spaces after it.
func (s *secret) BackspaceWord() {
	for len(s.b) > 0 && s.b[len(s.b)-1] == ' ' {
		s.Backspace()
	}
	for len(s.b) > 0 && s.b[len(s.b)-1] != ' ' {
		s.Backspace()
	}
}

// Clear zeroes the buffer.
func (s *secret) Clear() {
	clear(s.b[:cap(s.b)])
	s.b = s.b[:0]
}

// Bytes is the secret (not a copy).
func (s *secret) Bytes() []byte { return s.b }

// Len is the number of characters typed.
func (s *secret) Len() int { return utf8.RuneCount(s.b) }
