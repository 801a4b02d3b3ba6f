package luks

import (
	"bytes"
	"crypto/aes"
	"testing"

	"golang.org/x/crypto/xts"
)

// TestSegmentCipherMatchesXTS: what the erase writes (SegmentCipher.Encrypt
// of zeros at a segment offset) is golang.org/x/crypto/xts under plain64
// IVs (512-byte units from the segment's start, plus iv_tweak), in both
// sector sizes, and Decrypt inverts it.
func TestSegmentCipherMatchesXTS(t *testing.T) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i*37 + 11)
	}
	ref, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, sector := range []int{512, 4096} {
		for _, tweak := range []uint64{0, 1 << 40} {
			c, err := NewSegmentCipher(key, Segment{Cipher: "aes-xts-plain64", SectorSize: sector, IVTweak: tweak})
			if err != nil {
				t.Fatal(err)
			}
			const off = 3 << 20
			buf := make([]byte, 2<<20) // large enough to be spread over cores
			c.Encrypt(buf, buf, off)
			want := make([]byte, sector)
			for s := 0; s < len(buf); s += sector {
				clear(want)
				ref.Encrypt(want, want, uint64((off+s)/512)+tweak)
				if !bytes.Equal(buf[s:s+sector], want) {
					t.Fatalf("sector %d, tweak %d: ciphertext at %d differs from x/crypto/xts", sector, tweak, off+s)
				}
			}
			c.Decrypt(buf, buf, off)
			if !bytes.Equal(buf, make([]byte, len(buf))) {
				t.Fatalf("sector %d: Decrypt does not invert Encrypt", sector)
			}
			c.Wipe()
		}
	}
	if _, err := NewSegmentCipher(key, Segment{Cipher: "aes-cbc-essiv:sha256", SectorSize: 512}); err == nil {
		t.Error("a cipher other than aes-xts-plain64 was accepted")
	}
}
