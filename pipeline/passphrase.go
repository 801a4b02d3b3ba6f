package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"luksdock/internal/secret"
	"luksdock/internal/tty"
)

// MaxPassphrase is the longest passphrase cryptsetup accepts when it is typed
// at its prompt (its interactive limit). A longer one could be set through a
// key file but never typed back, so luksdock refuses it.
const MaxPassphrase = 512

// ReadPassphrase returns the first line of r without its line ending (\n or
// \r\n): exactly what a person would type. It reads at most MaxPassphrase+8
// bytes of that line and refuses anything a person could not type back at an
// unlock prompt. It also refuses input with more after the first line (other
// than empty lines): such a file is a key file or a mistake, and cutting it
// at its first line break would silently make a much weaker passphrase than
// the file holds.
//
// What is read goes straight into secret memory (package secret), never
// through a heap buffer: the returned slice lies there, and the caller
// frees it with secret.Free when done.
func ReadPassphrase(r io.Reader) ([]byte, error) {
	buf := secret.New(MaxPassphrase + 8)
	fail := func(err error) ([]byte, error) {
		secret.Free(buf)
		return nil, err
	}
	n, nl := 0, -1
	var rerr error
	for nl < 0 && n < len(buf) {
		m, err := r.Read(buf[n:])
		if i := bytes.IndexByte(buf[n:n+m], '\n'); i >= 0 {
			nl = n + i
		}
		n += m
		if err != nil {
			rerr = err
			break
		}
	}
	if rerr != nil && !errors.Is(rerr, io.EOF) {
		return fail(fmt.Errorf("reading the passphrase: %w", rerr))
	}
	if nl < 0 && rerr == nil { // the buffer is full and the line goes on
		return fail(fmt.Errorf("the passphrase is longer than %d bytes, the most cryptsetup accepts at its prompt", MaxPassphrase))
	}
	end := n
	if nl >= 0 {
		end = nl
	}
	p := buf[:end]
	p = bytes.TrimSuffix(p, []byte("\r"))
	if verr := ValidatePassphrase(p); verr != nil {
		return fail(verr)
	}
	if nl >= 0 && !tty.Is(r) { // a line ending: only line endings may follow
		more := errors.New("the passphrase file has more than one line; the passphrase is its first line, and a file with more (a key file, or a line break in the middle) is refused rather than cut short")
		if len(bytes.Trim(buf[nl+1:n], "\r\n")) > 0 {
			return fail(more)
		}
		if rerr == nil {
			// What follows is read into secret memory too: if it is
			// not empty lines, it may be part of a secret.
			rest := secret.New(4096)
			defer secret.Free(rest)
			for total := 0; total < 64<<10; {
				m, err := r.Read(rest)
				if len(bytes.Trim(rest[:m], "\r\n")) > 0 {
					return fail(more)
				}
				total += m
				if err != nil || m == 0 {
					break
				}
			}
		}
	}
	clear(buf[len(p):]) // the line ending and whatever came after it
	return p, nil
}

// ValidatePassphrase refuses passphrases that cannot be typed back at an
// unlock prompt.
func ValidatePassphrase(p []byte) error {
	switch {
	case len(p) == 0:
		return errors.New("the passphrase is empty")
	case len(p) > MaxPassphrase:
		return fmt.Errorf("the passphrase is longer than %d bytes, the most cryptsetup accepts at its prompt", MaxPassphrase)
	case bytes.IndexByte(p, 0) >= 0:
		return errors.New("the passphrase contains a NUL byte, which cannot be typed")
	case bytes.ContainsAny(p, "\r\n"):
		return errors.New("the passphrase contains a line break, which cannot be typed at a prompt")
	case !utf8.Valid(p):
		return errors.New("the passphrase is not valid UTF-8, so it could not be typed on a keyboard")
	}
	// Rune by rune over the bytes: "range string(p)" would copy the
	// passphrase into a heap string (any longer than 32 bytes), which
	// nothing can wipe.
	for i := 0; i < len(p); {
		r, n := utf8.DecodeRune(p[i:])
		i += n
		if r < 0x20 || r == 0x7f {
			return errors.New("the passphrase contains a control character, which cannot be typed at a prompt")
		}
	}
	return nil
}
