package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/luks"
)

// keyCheckImage is a LUKS2 file cryptsetup formatted with volume key key
// and passphrase "first", plus a second keyslot for "second".
func keyCheckImage(t *testing.T, key []byte) string {
	t.Helper()
	img := testkit.SparseFile(t, filepath.Join(t.TempDir(), "luks.img"), 20<<20)
	if err := luks.Format(context.Background(), img, []byte("first"), key, luks.FormatOptions{PBKDF: luks.PBKDF{Type: "argon2id", MemoryKiB: 8192, ForceIterations: 4}}); err != nil {
		t.Fatal(err)
	}
	testkit.RunFD3(t, "second", []byte("first"), "cryptsetup", "luksAddKey", "--batch-mode", "--pbkdf", "argon2id", "--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4", "--key-file=/proc/self/fd/3", img, "-")
	return img
}

// TestKeyCheck: the early keyslot check passes only when every secret opens
// a keyslot, with luksdock's code and with cryptsetup, to the volume key the
// run generated; it hands the verify step the key cryptsetup recovered.
func TestKeyCheck(t *testing.T) {
	key := bytes.Repeat([]byte{0x5a}, 64)
	img := keyCheckImage(t, key)
	part := luks.Device{Path: img}
	ctx := context.Background()
	c := startKeyCheck(ctx, part, [][]byte{[]byte("first"), []byte("second")}, key)
	info, got, summary, err := c.wait(part)
	if err != nil || !bytes.Equal(got, key) || info.Version != 2 || !strings.Contains(summary, "cryptsetup's") {
		t.Fatalf("both passphrases: %v, key ok %v, %+v, %q", err, bytes.Equal(got, key), info, summary)
	}
	c.stop()
	for _, tc := range []struct {
		secrets [][]byte
		want    []byte
		err     string
	}{
		{[][]byte{[]byte("first"), []byte("third")}, key, "the recovery key does not unlock any keyslot"},
		{[][]byte{[]byte("second")}, bytes.Repeat([]byte{0x5b}, 64), "holds a volume key other than the one this run generated"},
	} {
		c := startKeyCheck(ctx, part, tc.secrets, tc.want)
		_, got, _, err := c.wait(part)
		if err == nil || !strings.Contains(err.Error(), tc.err) || got != nil {
			t.Errorf("%q: %v (key returned: %v), want %q", tc.secrets, err, got != nil, tc.err)
		}
		c.stop()
	}
	// A header area that changes after the checks read it (as a stray write
	// during mkfs would) fails the check.
	c = startKeyCheck(ctx, part, [][]byte{[]byte("first")}, key)
	<-c.done
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Inside the keyslot area, after the keyslots. cryptsetup fills that
	// area with random bytes: flip the byte found there, so the write
	// always changes it (writing a fixed value left it unchanged one run
	// in 256).
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 8<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{^b[0]}, 8<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, _, err := c.wait(part); err == nil || !strings.Contains(err.Error(), "header area changed") {
		t.Errorf("header changed after the check: %v", err)
	}
	c.stop()
}
