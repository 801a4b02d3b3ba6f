package pipeline

import (
	"bytes"
	"hash/fnv"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"luksdock/internal/testkit"
)

// FuzzParseSize: ParseSize never panics, and a size it accepts is in
// (0, 1 EiB]; plain decimal integers parse to themselves, and a binary
// suffix multiplies exactly.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512M", "64G", "1T", "1.5T", "0", "1k", "10E", "abc", "", " 7 ", "1EiB", "1E", "9223372036854775807", "1.0000000001K", "-1", "1..5G", "0.0001K", "1024KiB", "18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n <= 0 || n > 1<<60 {
			t.Fatalf("ParseSize(%q) = %d, outside (0, 1 EiB]", s, n)
		}
		trimmed := strings.TrimSpace(s)
		if v, perr := strconv.ParseInt(trimmed, 10, 64); perr == nil && trimmed != "" && trimmed[0] != '+' && n != v {
			t.Fatalf("ParseSize(%q) = %d, want %d", s, n, v)
		}
		for suffix, mult := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
			if v, perr := strconv.ParseInt(strings.TrimSuffix(trimmed, suffix), 10, 64); perr == nil && strings.HasSuffix(trimmed, suffix) && v > 0 && v <= (1<<60)/mult {
				if n != v*mult {
					t.Fatalf("ParseSize(%q) = %d, want %d", s, n, v*mult)
				}
			}
		}
	})
}

// FuzzReadPassphrase: ReadPassphrase never panics and returns only what
// ValidatePassphrase accepts: the first line of the input, at most
// MaxPassphrase bytes of typeable UTF-8, without its line ending.
func FuzzReadPassphrase(f *testing.F) {
	for _, s := range []string{"pw\n", "pw", "pw\r\n", "\n", "", "abc\x00def\n", "first\nsecond\n", "pässwört€\n", "p\xe4ss\n", "a\rb\n", strings.Repeat("x", 512) + "\n", strings.Repeat("x", 513), strings.Repeat("y", 4096), "\t\n", "😀\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := ReadPassphrase(bytes.NewReader(in))
		if err != nil {
			if p != nil {
				t.Fatalf("error %v with a passphrase returned", err)
			}
			return
		}
		if verr := ValidatePassphrase(p); verr != nil {
			t.Fatalf("ReadPassphrase(%q) = %q, which ValidatePassphrase refuses: %v", in, p, verr)
		}
		if !bytes.HasPrefix(in, p) {
			t.Fatalf("ReadPassphrase(%q) = %q, not a prefix of the input", in, p)
		}
		rest := in[len(p):]
		// the line ending: \n, \r\n, or a lone \r at the very end
		if len(rest) > 0 && !bytes.HasPrefix(rest, []byte("\n")) && !bytes.HasPrefix(rest, []byte("\r\n")) && string(rest) != "\r" {
			t.Fatalf("ReadPassphrase(%q) = %q, which is not the whole first line", in, p)
		}
		// accepted: nothing but line endings may follow the first line
		if len(bytes.Trim(rest, "\r\n")) > 0 && len(in) < 64<<10 {
			t.Fatalf("ReadPassphrase(%q) accepted a file of more than one line", in)
		}
	})
}

// FuzzValidatePassphrase: an accepted passphrase is non-empty, at most
// MaxPassphrase bytes, valid UTF-8, and has no control character; and, on a
// sample (every seed, then one input in 64), cryptsetup — the outside
// oracle — takes it exactly as typed at its prompt: a LUKS1 header made
// with the passphrase as a key file opens when it is typed on a terminal
// (cryptsetup open --test-passphrase on a pseudo-terminal), and does not
// open when its last character is left off (so nothing was cut short).
func FuzzValidatePassphrase(f *testing.F) {
	for _, s := range []string{"pw", "", "a\x00b", "a\nb", "a\x7fb", "pässwört", "\xff", strings.Repeat("z", 513), "\u0085", "tab\there",
		strings.Repeat("y", MaxPassphrase), "pässwört-€-日本語-😀", "trailing space ", " leading", "a\u00a0b", `quote"'\back`} {
		f.Add([]byte(s))
	}
	calls := 0
	f.Fuzz(func(t *testing.T, p []byte) {
		if ValidatePassphrase(p) != nil {
			return
		}
		if len(p) == 0 || len(p) > MaxPassphrase || !utf8.Valid(p) {
			t.Fatalf("accepted %q", p)
		}
		for _, r := range string(p) {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("accepted %q with control character %U", p, r)
			}
		}
		calls++
		h := fnv.New32a()
		h.Write(p)
		if calls > 32 && h.Sum32()%64 != 0 {
			return
		}
		cryptsetupTakesAtPrompt(t, p)
	})
}

// cryptsetupTakesAtPrompt fails unless stock cryptsetup, reading from a
// terminal, opens a keyslot made with exactly p, and does not open it with
// p's last character left off.
func cryptsetupTakesAtPrompt(t *testing.T, p []byte) {
	t.Helper()
	testkit.NeedTools(t, "cryptsetup") // the oracle of this fuzz target
	img := filepath.Join(t.TempDir(), "luks1.img")
	testkit.SparseFile(t, img, 4<<20)
	testkit.Run(t, string(p), "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks1", "--key-size", "256",
		"--hash", "sha256", "--pbkdf-force-iterations", "1000", "--key-file=-", img)
	open := func(typed string) (string, error) {
		return testkit.RunOnPTY(30*time.Second, "Enter passphrase", []string{typed}, "cryptsetup", "open", "--test-passphrase", "--tries", "1", img)
	}
	if out, err := open(string(p)); err != nil {
		t.Fatalf("accepted %q, but cryptsetup does not take it typed at its prompt: %v\n%s", p, err, out)
	}
	if r := []rune(string(p)); len(r) > 1 {
		out, err := open(string(r[:len(r)-1]))
		if err == nil {
			t.Fatalf("cryptsetup opened the keyslot of %q with its last character left off: it does not read the whole passphrase\n%s", p, out)
		}
		if !strings.Contains(out, "No key available with this passphrase") {
			t.Fatalf("cryptsetup with %q's last character left off failed, but not for the passphrase: %v\n%s", p, err, out)
		}
	}
}
