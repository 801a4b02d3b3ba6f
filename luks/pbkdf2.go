package luks

import (
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"hash"
)

// pbkdf2Key is PBKDF2 (RFC 8018, section 5.2) with HMAC over h, filling out.
// It exists because golang.org/x/crypto/pbkdf2.Key (and crypto/pbkdf2)
// take the password as a string: x/crypto converts the []byte to one, a
// copy of the passphrase (or, for the digest check, of the volume key)
// in the heap that nothing can wipe. Here the password goes only into
// crypto/hmac, which keeps it XORed with its pads, and every intermediate
// block is cleared before returning.
func pbkdf2Key(password, salt []byte, iter int, out []byte, h func() hash.Hash) {
	prf := hmac.New(h, password)
	hLen := prf.Size()
	u := make([]byte, 0, hLen)
	t := make([]byte, hLen)
	defer clear(t)
	defer func() { clear(u[:cap(u)]) }()
	var ctr [4]byte
	for block := 1; (block-1)*hLen < len(out); block++ {
		prf.Reset()
		prf.Write(salt)
		binary.BigEndian.PutUint32(ctr[:], uint32(block))
		prf.Write(ctr[:])
		u = prf.Sum(u[:0])
		copy(t, u)
		for n := 2; n <= iter; n++ {
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			subtle.XORBytes(t, t, u)
		}
		copy(out[(block-1)*hLen:], t)
	}
	prf.Reset()
}
