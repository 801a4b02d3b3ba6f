package luks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"

	"luksdock/internal/secret"
	"luksdock/internal/testkit"
)

// TestUnsealKeyMatchesCryptsetup: on headers cryptsetup made with each KDF,
// hash, key size and sector size luksdock offers, luksdock's own LUKS2 code
// recovers exactly the volume key `cryptsetup luksDump --dump-volume-key`
// prints, reports the header as luks.go does, and refuses a wrong
// passphrase.
func TestUnsealKeyMatchesCryptsetup(t *testing.T) {
	for _, args := range [][]string{
		{"--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "65536", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "2"},
		{"--type", "luks2", "--pbkdf", "argon2i", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "5", "--pbkdf-parallel", "3", "--sector-size", "4096"},
		{"--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha512", "--key-size", "256"},
		{"--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--hash", "sha1", "--label", "lbl"},
	} {
		t.Run(strings.Join(args[2:], " "), func(t *testing.T) {
			img := testkit.LUKSImage(t, "pass phrase", args...)
			want, err := DumpVolumeKey(context.Background(), img, []byte("pass phrase"))
			if err != nil {
				t.Fatal(err)
			}
			info, key, err := UnsealKey(Device{Path: img}, []byte("pass phrase"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, want) {
				t.Fatalf("volume key %x, cryptsetup says %x", key, want)
			}
			ref, err := unsealLuksGo(img, []byte("pass phrase"))
			if err != nil && strings.Contains(err.Error(), "Unknown keyslotIdx[0].kdf.hash algorithm: sha1") {
				t.Logf("luks.go cannot open a sha1 PBKDF2 keyslot (cryptsetup and luksdock can): %v", err)
				ref = info
			} else if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(info, ref) {
				t.Fatalf("info %+v, luks.go says %+v", info, ref)
			}
			if _, _, err := UnsealKey(Device{Path: img}, []byte("pass phrasE")); !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("wrong passphrase: %v", err)
			}
		})
	}
}

// TestUnsealKeySecondKeyslot: a passphrase added with luksAddKey opens its
// own keyslot (1), the first one keeps opening keyslot 0, and both give the
// one volume key.
func TestUnsealKeySecondKeyslot(t *testing.T) {
	img := testkit.LUKSImage(t, "first", "--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "32768", "--pbkdf-force-iterations", "4")
	add := exec.Command("cryptsetup", "luksAddKey", "--batch-mode", "--pbkdf", "argon2id", "--pbkdf-memory", "40000", "--pbkdf-force-iterations", "4", "--key-file=/dev/fd/3", img, "-")
	add.Stdin = strings.NewReader("second")
	r, w, _ := os.Pipe()
	add.ExtraFiles = []*os.File{r}
	go func() { w.Write([]byte("first")); w.Close() }()
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("luksAddKey: %v: %s", err, out)
	}
	r.Close()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s0, k0, err := unsealLUKS2(f, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	s1, k1, err := unsealLUKS2(f, []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	if s0 != 0 || s1 != 1 || !bytes.Equal(k0, k1) {
		t.Fatalf("keyslots %d and %d, keys equal: %v", s0, s1, bytes.Equal(k0, k1))
	}
}

// TestUnsealKeyDamagedHeader: one flipped bit in the JSON area fails the
// header checksum, and luksdock's code says so rather than trusting it.
func TestUnsealKeyDamagedHeader(t *testing.T) {
	img := testkit.LUKSImage(t, "pw", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b[4096:], []byte(`"stripes":4000`))
	if i < 0 {
		t.Fatal("setup: no stripes in the JSON")
	}
	b[4096+i+len(`"stripes":400`)] = '1' // 4001 stripes
	if err := os.WriteFile(img, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = UnsealKey(Device{Path: img}, []byte("pw"))
	if err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("damaged header: %v", err)
	}
}

// TestUnsealKeyLUKS1: luksdock's own LUKS1 unseal (unseal1.go) recovers
// from cryptsetup-made LUKS1 headers (sha1, sha256, sha512; 256- and 512-bit
// aes-xts-plain64 keys; the first keyslot and one added with luksAddKey)
// exactly the volume key cryptsetup luksDump --dump-volume-key prints; a
// wrong passphrase is ErrWrongPassphrase. A header it does not handle
// (a hash other than sha1, sha256, sha512: here sha384) still unseals
// through luks.go, without the key.
func TestUnsealKeyLUKS1(t *testing.T) {
	testkit.NeedTools(t, "cryptsetup")
	for _, c := range []struct {
		hash string
		bits int
	}{{"sha256", 512}, {"sha1", 256}, {"sha512", 512}, {"sha256", 256}} {
		t.Run(fmt.Sprintf("%s-%d", c.hash, c.bits), func(t *testing.T) {
			img := testkit.LUKSImage(t, "pw", "--type", "luks1", "--hash", c.hash, "--key-size", fmt.Sprint(c.bits), "--pbkdf-force-iterations", "1000")
			testkit.RunFD3(t, "second", []byte("pw"), "cryptsetup", "luksAddKey", "--batch-mode", "--pbkdf-force-iterations", "1000", "--key-file=/proc/self/fd/3", img, "-")
			want, err := testkit.VolumeKey(t, testkit.Device{Path: img}, "pw")
			if err != nil || len(want) != c.bits/8 {
				t.Fatalf("cryptsetup: %v (%d bytes)", err, len(want))
			}
			for _, pass := range []string{"pw", "second"} {
				info, key, err := UnsealKey(Device{Path: img}, []byte(pass))
				if err != nil || info.Version != 1 || !bytes.Equal(key, want) {
					t.Errorf("%q: %+v, key equal to cryptsetup's: %v, %v", pass, info, bytes.Equal(key, want), err)
				}
				if info.DataSize <= 0 || info.DataOffset <= 0 || fmt.Sprint(info.Keyslots) != "[0 1]" {
					t.Errorf("%q: layout %+v", pass, info)
				}
				secret.Free(key)
			}
			if _, _, err := UnsealKey(Device{Path: img}, []byte("px")); !errors.Is(err, ErrWrongPassphrase) {
				t.Fatalf("wrong passphrase: %v", err)
			}
		})
	}
	t.Run("sha384", func(t *testing.T) {
		img := testkit.LUKSImage(t, "pw", "--type", "luks1", "--hash", "sha384", "--pbkdf-force-iterations", "1000")
		info, key, err := UnsealKey(Device{Path: img}, []byte("pw"))
		if err != nil || info.Version != 1 || key != nil {
			t.Fatalf("sha384 through luks.go: %+v, key %v, %v", info, key != nil, err)
		}
		if _, _, err := UnsealKey(Device{Path: img}, []byte("px")); !errors.Is(err, ErrWrongPassphrase) {
			t.Fatalf("wrong passphrase: %v", err)
		}
	})
}
