package core

import (
	"strings"
	"testing"

	"luksdock/internal/secret"
	"luksdock/recovery"
)

// UnlockSecret: a recovery key typed in any form recovery.Parse takes is
// the key in its printed form; anything else is the passphrase exactly as
// typed, copied (the typed buffer can be wiped at once).
func TestUnlockSecret(t *testing.T) {
	key, err := recovery.Generate()
	if err != nil {
		t.Fatal(err)
	}
	defer secret.Free(key)
	printed := string(key)
	flat := strings.ReplaceAll(printed, "-", "")
	for _, c := range []struct {
		name, typed, want string
		isKey             bool
	}{
		{"printed", printed, printed, true},
		{"upper case", strings.ToUpper(printed), printed, true},
		{"spaces", strings.ReplaceAll(printed, "-", " "), printed, true},
		{"no separators", flat, printed, true},
		{"with a newline", printed + "\n", printed, true},
		{"a passphrase", "correct-Horse-battery-9-staple", "correct-Horse-battery-9-staple", false},
		{"a passphrase with spaces kept", " two  spaces ", " two  spaces ", false},
		{"one character short", flat[1:], flat[1:], false},
		{"one character over", flat + "c", flat + "c", false},
		{"a character outside the alphabet", "a" + flat[1:], "a" + flat[1:], false},
	} {
		t.Run(c.name, func(t *testing.T) {
			typed := []byte(c.typed)
			b, isKey := UnlockSecret(typed)
			defer secret.Free(b)
			if string(b) != c.want || isKey != c.isKey {
				t.Fatalf("UnlockSecret(%q) = %q, %v; want %q, %v", c.typed, b, isKey, c.want, c.isKey)
			}
			clear(typed)
			if string(b) != c.want {
				t.Errorf("wiping what was typed changed the secret: %q", b)
			}
		})
	}
	if b, isKey := UnlockSecret(nil); b != nil || isKey {
		t.Errorf("nothing typed: %q, %v", b, isKey)
	}
}
