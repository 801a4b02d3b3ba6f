package pipeline

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/fsformat"
	"luksdock/internal/testkit"
	"luksdock/luks"
)

// TestVerifyDeviceOwnerAndLabel: the verify step's own rules on the
// filesystem inside, each tested directly rather than through a later
// check: the top directory's owner must be the one the run set, and the
// ext4 label the one it asked for. The volume is made outside luksdock's
// code path: cryptsetup formats, mkfs.ext4 writes a plaintext file,
// `cryptsetup reencrypt --encrypt` encrypts it into the data segment.
func TestVerifyDeviceOwnerAndLabel(t *testing.T) {
	// The userspace engine's FUSE mount; the reliability suite proves the
	// same rules end to end.
	testkit.NeedRoot(t)
	key := make([]byte, 64)
	rand.Read(key)
	img := keyCheckImage(t, key)
	ctx := context.Background()
	plain := testkit.SparseFile(t, filepath.Join(t.TempDir(), "plain"), 4<<20) // 20 MiB - the 16 MiB header area
	owner := fsformat.Owner{UID: 1234, GID: 2345}
	if err := fsformat.Mkfs(ctx, plain, "vd01", 4096, owner); err != nil {
		t.Fatal(err)
	}
	testkit.EncryptCryptsetup(t, plain, key, 4096)
	cipher, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(cipher, 16<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	part := luks.Device{Path: img, Size: 20 << 20}
	verify := func(label string, o *fsformat.Owner) (*Result, error) {
		kc := startKeyCheck(ctx, part, [][]byte{[]byte("first")}, key)
		defer kc.stop()
		res, _, err := verifyDevice(ctx, part, img, kc, EngineUserspace, label, o)
		return res, err
	}
	if res, err := verify("vd01", &owner); err != nil || res.Owner != "1234:2345" || res.FSLabel != "vd01" {
		t.Fatalf("control: %+v, %v", res, err)
	}
	for _, c := range []struct {
		label string
		owner fsformat.Owner
		want  string
	}{
		{"vd01", fsformat.Owner{UID: 0, GID: 0}, "the top directory is owned by 1234:2345, expected 0:0"},
		{"vd01", fsformat.Owner{UID: 1234, GID: 0}, "expected 1234:0"},
		{"other01", owner, `the ext4 label is "vd01", expected "other01"`},
	} {
		res, err := verify(c.label, &c.owner)
		if err == nil || !strings.Contains(err.Error(), c.want) || res != nil {
			t.Errorf("label %s, owner %s: %v, want %q", c.label, c.owner, err, c.want)
		}
	}
}
