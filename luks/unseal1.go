package luks

import (
	"bytes"
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"io"

	"golang.org/x/crypto/xts"

	"luksdock/internal/secret"
)

// unsealLUKS1 opens a keyslot of a LUKS1 header with luksdock's own code,
// the pieces of the LUKS2 unseal: PBKDF2 of the passphrase (pbkdf2.go, with
// the header's hash), the key material decrypted with aes-xts-plain64
// (sector numbers from 0 at the material's start, as cryptsetup writes it),
// the anti-forensic merge (afMerge, the header's hash) and the header's
// digest, PBKDF2 of the key compared with its 20 bytes. Every buffer that
// holds key material is secret memory, wiped before return, except the
// decrypted stripes (cleared; see docs/secrets.md). Headers that are not
// aes-xts-plain64 with sha1, sha256 or sha512 (older cryptsetup wrote
// aes-cbc-essiv:sha256; ripemd160 was possible) are errUnsupported: the
// caller gives them to github.com/anatol/luks.go. InspectHeader has judged
// the header first (costs, where the key material lies).
func unsealLUKS1(r io.ReaderAt, passphrase []byte) (slot int, key []byte, err error) {
	var h [592]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return -1, nil, fmt.Errorf("reading the LUKS1 header: %w", err)
	}
	if !bytes.Equal(h[:6], []byte("LUKS\xba\xbe")) || binary.BigEndian.Uint16(h[6:8]) != 1 {
		return -1, nil, ErrNotLUKS
	}
	cipherName, cipherMode, hashSpec := cstr(h[8:40]), cstr(h[40:72]), cstr(h[72:104])
	hf := hashByName(hashSpec)
	if cipherName != "aes" || cipherMode != "xts-plain64" || hf == nil {
		return -1, nil, fmt.Errorf("%w: LUKS1 %s-%s with %s", errUnsupported, cipherName, cipherMode, hashSpec)
	}
	keyBytes := int(binary.BigEndian.Uint32(h[108:112]))
	if keyBytes != 32 && keyBytes != 64 {
		return -1, nil, fmt.Errorf("%w: LUKS1 key of %d bytes", errUnsupported, keyBytes)
	}
	mkDigest, mkSalt := h[112:132], h[132:164]
	mkIter := int(binary.BigEndian.Uint32(h[164:168]))
	if mkIter < 1 {
		return -1, nil, fmt.Errorf("LUKS1 digest: %d iterations", mkIter)
	}
	tried := false
	for i := 0; i < 8; i++ {
		ks := h[208+i*48 : 208+(i+1)*48]
		if binary.BigEndian.Uint32(ks) != 0x00AC71F3 { // LUKS_KEY_ENABLED
			continue
		}
		tried = true
		iter := int(binary.BigEndian.Uint32(ks[4:8]))
		salt := ks[8:40]
		off := int64(binary.BigEndian.Uint32(ks[40:44])) * 512
		stripes := int(binary.BigEndian.Uint32(ks[44:48]))
		if iter < 1 || stripes < 1 || stripes > 1<<16 || off < 4096 {
			return -1, nil, fmt.Errorf("LUKS1 keyslot %d: %d iterations, %d stripes at %d", i, iter, stripes, off)
		}
		mk, err := openLUKS1Slot(r, passphrase, hf, keyBytes, iter, salt, off, stripes)
		if err != nil {
			return -1, nil, fmt.Errorf("LUKS1 keyslot %d: %w", i, err)
		}
		got := secret.New(len(mkDigest))
		pbkdf2Key(mk, mkSalt, mkIter, got, hf)
		ok := subtle.ConstantTimeCompare(got, mkDigest) == 1
		secret.Free(got)
		if ok {
			return i, mk, nil
		}
		secret.Free(mk)
	}
	if !tried {
		return -1, nil, fmt.Errorf("the LUKS header has no active keyslot")
	}
	return -1, nil, ErrWrongPassphrase
}

// openLUKS1Slot derives the keyslot's key, decrypts its key material and
// merges the stripes into a candidate volume key (secret memory).
func openLUKS1Slot(r io.ReaderAt, passphrase []byte, hf func() hash.Hash, keyBytes, iter int, salt []byte, off int64, stripes int) ([]byte, error) {
	slotKey := secret.New(keyBytes)
	defer secret.Free(slotKey)
	pbkdf2Key(passphrase, salt, iter, slotKey, hf)
	c, err := xts.NewCipher(aes.NewCipher, slotKey)
	if err != nil {
		return nil, err
	}
	n := (int64(keyBytes)*int64(stripes) + 511) / 512 * 512
	material := make([]byte, n)
	defer clear(material)
	if _, err := r.ReadAt(material, off); err != nil {
		return nil, fmt.Errorf("reading the key material: %w", err)
	}
	for s := int64(0); s < n/512; s++ {
		sec := material[s*512 : (s+1)*512]
		c.Decrypt(sec, sec, uint64(s))
	}
	return afMerge(material, keyBytes, stripes, hf), nil
}
