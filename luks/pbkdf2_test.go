package luks

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"testing"

	"golang.org/x/crypto/pbkdf2"
)

// TestPBKDF2: RFC 6070's PBKDF2-HMAC-SHA1 vectors, and agreement with
// x/crypto/pbkdf2 for the hashes LUKS uses, at lengths that end inside a
// block and span several.
func TestPBKDF2(t *testing.T) {
	for _, v := range []struct {
		pass, salt string
		iter, n    int
		want       string
	}{
		{"password", "salt", 1, 20, "0c60c80f961f0e71f3a9b524af6012062fe037a6"},
		{"password", "salt", 2, 20, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"},
		{"password", "salt", 4096, 20, "4b007901b765489abead49d926f721d065a429c1"},
		{"passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 25, "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038"},
	} {
		out := make([]byte, v.n)
		pbkdf2Key([]byte(v.pass), []byte(v.salt), v.iter, out, sha1.New)
		if hex.EncodeToString(out) != v.want {
			t.Errorf("PBKDF2-SHA1(%q, %q, %d) = %x, want %s", v.pass, v.salt, v.iter, out, v.want)
		}
	}
	for _, h := range []func() hash.Hash{sha1.New, sha256.New, sha512.New} {
		for _, n := range []int{1, 32, 64, 65, 130} {
			pass := bytes.Repeat([]byte("k"), n+7) // some longer than a block
			out := make([]byte, n)
			pbkdf2Key(pass, []byte("salty"), 17, out, h)
			if want := pbkdf2.Key(pass, []byte("salty"), 17, n, h); !bytes.Equal(out, want) {
				t.Errorf("length %d: %x, want %x", n, out, want)
			}
		}
	}
}
