// Package recovery makes and checks luksdock's recovery keys: a second way
// into a backup disk, for the day the passphrase is forgotten.
//
// A recovery key is 256 bits from the system's CSPRNG (crypto/rand), written
// as 8 groups of 8 "modhex" characters separated by dashes, e.g.
//
//	fvbjhrlu-ectbrckk-nkknbdtc-dbthfhtn-rlvgjckr-jvnblnrh-dlukbnjr-gktkktcf
//
// This is the format of systemd-cryptenroll --recovery-key, chosen for the
// same reasons: the 16 letters c b d e f g h i j k l n r t u v are on the same
// keys on the common Latin keyboard layouts (QWERTY, QWERTZ, AZERTY, and
// more), so the key types correctly even when the unlock prompt assumes the
// wrong layout (an initramfs, a rescue system); there are no digits, no
// shifted characters and none of the pairs people confuse on paper (0/O,
// 1/l/I, 5/S, 8/B). Each character carries 4 bits, so 64 characters carry
// 256 bits; the dashes make it easy to keep one's place.
//
// The key as printed, dashes included and lower case, is the LUKS passphrase
// of its keyslot: exactly what is typed at cryptsetup's prompt. Parse
// accepts looser input (upper case, spaces or no separators) where luksdock
// itself reads a key, and turns it into that exact form.
//
// Keys are []byte, never strings, and Generate, Parse and ReadFile return
// them in secret memory (luksdock/internal/secret: locked, out of core
// dumps): the caller frees them with secret.Free. The QR renderer says
// where copies are made that cannot be cleared.
package recovery

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"luksdock/internal/secret"
)

// Alphabet is modhex: the character for each 4-bit value, in order.
const Alphabet = "cbdefghijklnrtuv"

// The shape of a key.
const (
	Groups     = 8
	GroupChars = 8
	Bits       = Groups * GroupChars * 4        // 256
	Len        = Groups*GroupChars + Groups - 1 // 71: the printed form with its dashes
)

// Generate returns a new recovery key in its printed form, from crypto/rand.
func Generate() ([]byte, error) { return generate(rand.Reader) }

func generate(r io.Reader) ([]byte, error) {
	raw := secret.New(Bits / 8)
	defer secret.Free(raw)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("reading random bytes: %w", err)
	}
	key := secret.New(Len)
	k := 0
	for i, b := range raw {
		if i > 0 && i%(GroupChars/2) == 0 {
			key[k] = '-'
			k++
		}
		key[k], key[k+1] = Alphabet[b>>4], Alphabet[b&0xf]
		k += 2
	}
	return key, nil
}

// ErrInvalid is wrapped by every error Parse returns.
var ErrInvalid = errors.New("not a recovery key")

// Parse turns typed or read input into the exact form of a recovery key.
// Case does not matter; dashes, spaces, tabs, line breaks, dots, colons and
// underscores between characters are ignored, so "FVBJ HRLU ectb..." and the
// key without dashes are accepted. Anything else is an error that says which
// character was wrong (and never echoes the key). The returned slice is new,
// in secret memory (free it with secret.Free); the input is not modified.
func Parse(in []byte) ([]byte, error) {
	chars := secret.New(Groups * GroupChars)[:0] // appends stay in its capacity
	defer secret.Free(chars)
	for i, c := range in {
		switch {
		case c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '.' || c == ':' || c == '_':
			continue
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		}
		if strings.IndexByte(Alphabet, c) < 0 {
			if c >= 0x20 && c < 0x7f {
				return nil, fmt.Errorf("%w: character %d (%q) is not one of %s", ErrInvalid, i+1, c, Alphabet)
			}
			return nil, fmt.Errorf("%w: character %d is not one of %s", ErrInvalid, i+1, Alphabet)
		}
		if len(chars) == Groups*GroupChars {
			return nil, fmt.Errorf("%w: more than %d characters", ErrInvalid, Groups*GroupChars)
		}
		chars = append(chars, c)
	}
	if len(chars) != Groups*GroupChars {
		return nil, fmt.Errorf("%w: %d characters, want %d (%d groups of %d)", ErrInvalid, len(chars), Groups*GroupChars, Groups, GroupChars)
	}
	key := secret.New(Len)[:0]
	for i, c := range chars {
		if i > 0 && i%GroupChars == 0 {
			key = append(key, '-')
		}
		key = append(key, c)
	}
	return key, nil
}

// Valid reports whether key is a recovery key in its exact printed form.
func Valid(key []byte) bool {
	k, err := Parse(key)
	if err != nil {
		return false
	}
	defer secret.Free(k)
	return subtle.ConstantTimeCompare(k, key) == 1
}

// Group returns group n (1-based) of a key in its printed form.
func Group(key []byte, n int) []byte {
	if n < 1 || n > Groups || len(key) != Len {
		return nil
	}
	start := (n - 1) * (GroupChars + 1)
	return key[start : start+GroupChars]
}

// Challenge asks the user to type back some groups of the key, chosen at
// random, to prove it was written down: a disk whose recovery key was never
// confirmed is not done.
type Challenge struct {
	Groups []int // 1-based, ascending
}

// NewChallenge picks n distinct groups at random (crypto/rand).
func NewChallenge(n int) (Challenge, error) {
	if n < 1 || n > Groups {
		return Challenge{}, fmt.Errorf("cannot ask for %d of %d groups", n, Groups)
	}
	perm := make([]int, Groups)
	for i := range perm {
		perm[i] = i + 1
	}
	for i := Groups - 1; i > 0; i-- { // Fisher-Yates with crypto/rand
		j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
		if err != nil {
			return Challenge{}, err
		}
		perm[i], perm[j.Int64()] = perm[j.Int64()], perm[i]
	}
	g := perm[:n]
	for i := 1; i < len(g); i++ { // ascending, for the prompt
		for j := i; j > 0 && g[j] < g[j-1]; j-- {
			g[j], g[j-1] = g[j-1], g[j]
		}
	}
	return Challenge{Groups: g}, nil
}

// Prompt is the question for the user, e.g. "Type groups 3 and 7 of the
// recovery key".
func (c Challenge) Prompt() string {
	names := make([]string, len(c.Groups))
	for i, g := range c.Groups {
		names[i] = fmt.Sprint(g)
	}
	if len(names) == 1 {
		return "Type group " + names[0] + " of the recovery key"
	}
	return "Type groups " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " of the recovery key"
}

// Check reports whether typed holds the challenged groups of key, in order.
// As with Parse, case and separators between characters do not matter. The
// comparison takes the same time wherever a mismatch is.
func (c Challenge) Check(key, typed []byte) bool {
	if len(c.Groups) == 0 || len(key) != Len {
		return false
	}
	want := secret.New(len(c.Groups) * GroupChars)[:0]
	defer secret.Free(want)
	for _, g := range c.Groups {
		want = append(want, Group(key, g)...)
	}
	got := secret.New(len(typed))[:0]
	defer secret.Free(got)
	for _, ch := range typed {
		switch {
		case ch == '-' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '.' || ch == ':' || ch == '_':
			continue
		case ch >= 'A' && ch <= 'Z':
			ch += 'a' - 'A'
		}
		got = append(got, ch)
	}
	return len(got) == len(want) && subtle.ConstantTimeCompare(got, want) == 1
}

// ReadFile reads a recovery key from path ("-": r) and returns it in its
// exact form (see Parse). The file may hold other lines (a comment such as
// WriteFile's); the key is the first line that parses.
func ReadFile(path string, r io.Reader) ([]byte, error) {
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("recovery key file: %w", err)
		}
		defer f.Close()
		r = f
	}
	// Read straight into secret memory, of a fixed size (a growing buffer
	// would leave copies behind): the first maxFile bytes, as many as a
	// key file holds many times over.
	buf := secret.New(maxFile)
	defer secret.Free(buf)
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("recovery key file: %w", err)
	}
	b := buf[:n]
	var firstErr error
	for line := range splitLines(b) {
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, err := Parse(line)
		if err == nil {
			return k, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%w: the file holds no key", ErrInvalid)
	}
	return nil, fmt.Errorf("recovery key file %s: %w", path, firstErr)
}

func splitLines(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			i := 0
			for i < len(b) && b[i] != '\n' {
				i++
			}
			line := b[:i]
			if i < len(b) {
				i++
			}
			b = b[i:]
			if !yield(line) {
				return
			}
		}
	}
}

// maxFile is how much of a recovery key file ReadFile reads.
const maxFile = 16 << 10

// FileHeader is the comment WriteFile puts above the key.
const FileHeader = "# luksdock recovery key: type the next line exactly (lower case, with the dashes) at the disk's passphrase prompt.\n"

// WriteFile writes key to a new file at path, mode 0600: a comment line
// (FileHeader, naming what it is for, with about) and the key on a line of
// its own. It never overwrites: an existing path (even a dangling symlink)
// is an error. The data and the directory entry are synced before it
// returns, so the key is on stable storage before a disk is given a keyslot
// for it. On any error nothing is left at path.
func WriteFile(path string, key []byte, about string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("recovery key file %s already exists; refusing to overwrite it", path)
		}
		return fmt.Errorf("recovery key file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path)
		}
	}()
	if err := f.Chmod(0o600); err != nil { // whatever the umask
		return fmt.Errorf("recovery key file: %w", err)
	}
	buf := secret.New(len(FileHeader) + len(about) + len(key) + 4)[:0]
	defer secret.Free(buf)
	buf = append(buf, FileHeader...)
	if about != "" {
		buf = append(buf, "# "+strings.ReplaceAll(about, "\n", " ")+"\n"...)
	}
	buf = append(buf, key...)
	buf = append(buf, '\n')
	if _, err := f.Write(buf); err != nil {
		return fmt.Errorf("recovery key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("recovery key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("recovery key file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
