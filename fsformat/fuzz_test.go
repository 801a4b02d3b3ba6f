package fsformat

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidateLabel: an accepted label fits ext4's 16-byte field, is valid
// printable UTF-8 without white space, control characters or '/', and does
// not start with '-' or '.'; ValidateLabel never panics.
func FuzzValidateLabel(f *testing.F) {
	for _, s := range []string{"backups01", "", "abcdefghijklmnopq", "ÄÖÜäöüßéè", "a/b", "two words", "tab\tx", "-dash", ".dot", "zw\u200bsp", "bad\xffutf8", "日本語ラベル", "😀😀😀😀", "a\u00a0b", "ok-label_1.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, label string) {
		if ValidateLabel(label) != nil {
			return
		}
		switch {
		case label == "", len(label) > MaxLabel, !utf8.ValidString(label),
			strings.ContainsRune(label, '/'), label[0] == '-', label[0] == '.':
			t.Fatalf("accepted %q", label)
		}
		for _, r := range label {
			if unicode.IsControl(r) || unicode.IsSpace(r) || !unicode.IsPrint(r) {
				t.Fatalf("accepted %q with %U", label, r)
			}
		}
	})
}
