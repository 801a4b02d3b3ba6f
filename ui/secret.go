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
//
// It keeps at most pipeline.MaxPassphrase bytes. What is typed or pasted
// beyond that is not kept but counted (over), so the field shows it, says
// the passphrase is too long and refuses it until it is shortened: the
// disk never silently gets the first 512 bytes of a longer passphrase.
type secret struct {
	b    []byte
	over int // characters typed beyond MaxPassphrase bytes, not kept
}

// Insert appends typed or pasted text; control characters are dropped.
// The input filter's placeholders in t (see keyFilter) are replaced by the
// characters they stand for, taken from in's FIFO; one in no longer has is
// dropped, and phOver (a character the FIFO had no room for) is counted as
// one beyond the limit.
func (s *secret) Insert(in *keyFilter, t string) {
	if s.b == nil {
		s.b = lsecret.New(pipeline.MaxPassphrase + utf8.UTFMax)[:0]
	}
	for _, r := range t {
		if isPlaceholder(r) {
			if r == phOver {
				s.over++
				continue
			}
			var ok bool
			if r, ok = in.take(r); !ok {
				continue
			}
		}
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if s.over > 0 || len(s.b)+utf8.RuneLen(r) > pipeline.MaxPassphrase {
			s.over++
			continue
		}
		s.b = utf8.AppendRune(s.b, r)
	}
}

// Backspace removes the last character (one typed beyond the limit first).
func (s *secret) Backspace() {
	if s.over > 0 {
		s.over--
		return
	}
	if len(s.b) == 0 {
		return
	}
	_, n := utf8.DecodeLastRune(s.b)
	clear(s.b[len(s.b)-n:])
	s.b = s.b[:len(s.b)-n]
}

// BackspaceWord removes the last word and the spaces after it; beyond the
// limit (where the characters are not kept) it removes what is beyond.
func (s *secret) BackspaceWord() {
	if s.over > 0 {
		s.over = 0
		return
	}
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
	s.over = 0
}

// Bytes is the secret (not a copy); when Over, only its first
// MaxPassphrase bytes.
func (s *secret) Bytes() []byte { return s.b }

// Over is the number of characters typed beyond MaxPassphrase bytes.
func (s *secret) Over() int { return s.over }

// Len is the number of characters typed (kept or not).
func (s *secret) Len() int { return utf8.RuneCount(s.b) + s.over }
