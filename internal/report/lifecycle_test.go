package report

import (
	"bytes"
	"strings"
	"testing"

	"luksdock/core"
	"luksdock/luks"
)

// TestEnrolledSaysWhereTheKeyIs: host enroll's result names the key file
// for a key-file enrollment and the TPM2 (never a key file that does not
// exist) for a TPM2 one.
func TestEnrolledSaysWhereTheKeyIs(t *testing.T) {
	const uuid = "0b8f3a52-5e4c-4f7e-9d7e-3d1c2b4a5f60"
	for _, c := range []struct {
		method    string
		want, not string
	}{
		{core.MethodKeyFile, core.KeyFile(uuid) + " (0400 root)", "TPM2"},
		{core.MethodTPM2, "sealed to this host's TPM2", core.KeyFile(uuid)},
	} {
		var b bytes.Buffer
		Enrolled(&b, luks.HostSlot{Name: "home", Keyslot: 2, Method: c.method}, uuid)
		if s := b.String(); !strings.Contains(s, c.want) || strings.Contains(s, c.not) {
			t.Errorf("%s: %q: want %q in it and not %q", c.method, s, c.want, c.not)
		}
	}
}
