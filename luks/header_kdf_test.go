package luks

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// TestUnsealRefusesHugeKDFMemory: a LUKS2 header whose argon2 keyslot asks
// for more memory than cryptsetup ever sets is refused before luks.go runs
// the key derivation (which would allocate it); the same header with its
// real cost unseals.
func TestUnsealRefusesHugeKDFMemory(t *testing.T) {
	img := testkit.LUKSImage(t, "pw", "--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4")
	if _, err := Unseal(Device{Path: img}, []byte("pw")); err != nil {
		t.Fatalf("control: the real header does not unseal: %v", err)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	// Both header copies (primary at 0, secondary at 16 KiB).
	huge := bytes.ReplaceAll(b[:32<<10], []byte(`"memory":32768`), []byte(`"memory":99999999`))
	if bytes.Equal(huge, b[:32<<10]) {
		t.Fatalf("setup: no \"memory\":32768 in the header")
	}
	copy(b, huge)
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Unseal(Device{Path: img}, []byte("pw"))
	if err == nil || !strings.Contains(err.Error(), "asks for 99999999 KiB") {
		t.Fatalf("Unseal of a header asking for 95 GiB: %v", err)
	}
	t.Logf("refused: %v", err)
}

// TestUnsealNoHeader: Unseal of something without a LUKS header says so
// (ErrNotLUKS), not "invalid LUKS header".
func TestUnsealNoHeader(t *testing.T) {
	img := filepath.Join(t.TempDir(), "zero.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Unseal(Device{Path: img}, []byte("pw")); err != ErrNotLUKS {
		t.Fatalf("Unseal of zeros: %v, want ErrNotLUKS", err)
	}
}
