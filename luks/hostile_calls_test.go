package luks

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// TestCryptsetupCallsRefuseHostile: every call that makes cryptsetup (or
// systemd-cryptenroll) derive a key from a keyslot of a disk refuses a
// header no tool writes before the tool starts: the commands other than
// verify (passwd, recovery-key, open, host enroll, dock) go through these,
// and a keyslot asking for 2^31 argon2 passes would keep the tool computing
// for years. Each call gets 10 s; the refusal comes in milliseconds with
// the header's numbers. A call that started the tool runs into the 10 s
// and fails with the tool's error (or its killing), not a HeaderError.
func TestCryptsetupCallsRefuseHostile(t *testing.T) {
	img := hostileImage(t)
	testkit.EditLUKS2(t, img, 0, func(m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "kdf")["time"] = 1 << 31 })
	keyFile := t.TempDir() + "/key"
	if err := os.WriteFile(keyFile, []byte("pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, key := []byte("pw"), []byte(strings.Repeat("k", 40))
	d := Device{Path: img}
	for _, c := range []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Open", func(ctx context.Context) error { return Open(ctx, img, "luksdock-hostile-test", pw) }},
		{"OpenReadOnly", func(ctx context.Context) error { return OpenReadOnly(ctx, img, "luksdock-hostile-test", pw) }},
		{"OpenKeyFile", func(ctx context.Context) error { return OpenKeyFile(ctx, img, "luksdock-hostile-test", keyFile) }},
		{"TestPassphrase", func(ctx context.Context) error { return TestPassphrase(ctx, img, pw) }},
		{"TestPassphraseSlot", func(ctx context.Context) error { _, err := TestPassphraseSlot(ctx, img, pw); return err }},
		{"AddKey", func(ctx context.Context) error {
			return AddKey(ctx, img, pw, key, PBKDF{Type: "pbkdf2", ForceIterations: 1000})
		}},
		{"AddKeySlot", func(ctx context.Context) error {
			return AddKeySlot(ctx, img, pw, key, 3, PBKDF{Type: "pbkdf2", ForceIterations: 1000})
		}},
		{"AddKeyFastDevice", func(ctx context.Context) error { _, err := AddKeyFastDevice(ctx, d, pw, key); return err }},
		{"KillSlot", func(ctx context.Context) error { return KillSlot(ctx, img, 1, pw) }},
		{"DumpVolumeKey", func(ctx context.Context) error { k, err := DumpVolumeKey(ctx, img, pw); clear(k); return err }},
		{"EnrollTPM2Device", func(ctx context.Context) error { _, err := EnrollTPM2Device(ctx, d, pw, "7"); return err }},
		{"OpenTPM2", func(ctx context.Context) error { return OpenTPM2(ctx, img, "luksdock-hostile-test") }},
		{"TestTPM2Device", func(ctx context.Context) error { return TestTPM2Device(ctx, d) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := testkit.SHA256File(t, img)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			t0 := time.Now()
			err := c.call(ctx)
			took := time.Since(t0)
			var he *HeaderError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), "keyslot 0 asks for 2147483648 argon2 passes") {
				t.Errorf("got %v after %s, want the header refused before the tool starts", err, took.Round(time.Millisecond))
			}
			if took > 3*time.Second {
				t.Errorf("the refusal took %s", took)
			}
			if testkit.SHA256File(t, img) != before {
				t.Errorf("the image changed")
			}
		})
	}
}
