package pipeline

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"luksdock/internal/tty"
	"unicode/utf8"
)

// MaxPassphrase is the longest passphrase cryptsetup accepts when it is typed
// at its prompt (its interactive limit). A longer one could be set through a
// key file but never typed back, so luksdock refuses it.
const MaxPassphrase = 512

// ReadPassphrase returns the first line of r without its line ending (\n or
// \r\n): exactly what a person would type. It reads at most MaxPassphrase+2
// bytes of that line and refuses anything a person could not type back at an
// unlock prompt. It also refuses input with more after the first line (other
// than empty lines): such a file is a key file or a mistake, and cutting it
// at its first line break would silently make a much weaker passphrase than
// the file holds. The caller clears the returned slice when done.
func ReadPassphrase(r io.Reader) ([]byte, error) {
	br := bufio.NewReaderSize(r, MaxPassphrase+8)
	line, err := br.ReadSlice('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, bufio.ErrBufferFull) {
			clear(line)
			return nil, fmt.Errorf("the passphrase is longer than %d bytes, the most cryptsetup accepts at its prompt", MaxPassphrase)
		}
		return nil, fmt.Errorf("reading the passphrase: %w", err)
	}
	p := make([]byte, len(line))
	copy(p, line)
	clear(line)
	p = bytes.TrimSuffix(p, []byte("\n"))
	p = bytes.TrimSuffix(p, []byte("\r"))
	if verr := ValidatePassphrase(p); verr != nil {
		clear(p)
		return nil, verr
	}
	if err == nil && !tty.Is(r) { // a line ending: only line endings may follow
		for i := 0; i < 64<<10; i++ {
			c, rerr := br.ReadByte()
			if rerr != nil {
				break
			}
			if c != '\n' && c != '\r' {
				clear(p)
				return nil, errors.New("the passphrase file has more than one line; the passphrase is its first line, and a file with more (a key file, or a line break in the middle) is refused rather than cut short")
			}
		}
	}
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
	for _, r := range string(p) {
		if r < 0x20 || r == 0x7f {
			return errors.New("the passphrase contains a control character, which cannot be typed at a prompt")
		}
	}
	return nil
}
