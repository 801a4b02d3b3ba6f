package luks

import (
	"bytes"
	"crypto/aes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"

	"golang.org/x/crypto/xts"

	"luksdock/internal/argon2"
	"luksdock/internal/secret"
)

// This file unseals LUKS2 keyslots with luksdock's own code: the KDF from
// internal/argon2 (or Go's PBKDF2), the keyslot area decrypted with
// x/crypto/xts, the anti-forensic merge and the digest check written here
// from the LUKS2 on-disk format specification. It replaces luks.go for
// LUKS2 because luks.go calls x/crypto/argon2, which takes twice as long as
// cryptsetup's own unlock at cryptsetup's default cost (see internal/argon2)
// and offers no way to plug in another KDF. Nothing here comes from
// cryptsetup, so the check stays independent of it. LUKS1 (PBKDF2 only, no
// speed problem) and keyslot encryptions other than aes-xts-plain64 still go
// through luks.go.

// errUnsupported marks a header this code leaves to luks.go.
var errUnsupported = errors.New("not supported by luksdock's own LUKS code")

type luks2Keyslot struct {
	Type    string `json:"type"`
	KeySize int    `json:"key_size"`
	AF      struct {
		Type    string `json:"type"`
		Stripes int    `json:"stripes"`
		Hash    string `json:"hash"`
	} `json:"af"`
	Area struct {
		Type       string `json:"type"`
		Offset     string `json:"offset"`
		Size       string `json:"size"`
		Encryption string `json:"encryption"`
		KeySize    int    `json:"key_size"`
	} `json:"area"`
	KDF struct {
		Type       string `json:"type"`
		Hash       string `json:"hash"`
		Iterations int    `json:"iterations"`
		Time       uint32 `json:"time"`
		Memory     uint32 `json:"memory"`
		CPUs       int    `json:"cpus"`
		Salt       string `json:"salt"`
	} `json:"kdf"`
}

type luks2Digest struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int      `json:"iterations"`
	Salt       string   `json:"salt"`
	Digest     string   `json:"digest"`
}

func hashByName(name string) func() hash.Hash {
	switch name {
	case "sha1":
		return sha1.New
	case "sha256":
		return sha256.New
	case "sha512":
		return sha512.New
	}
	return nil
}

// readLUKS2Meta reads the primary LUKS2 header and its JSON area, checking
// the header checksum (SHA-256 over header and JSON with the checksum field
// zeroed), as cryptsetup does before it trusts a header.
func readLUKS2Meta(r io.ReaderAt) ([]byte, error) {
	var h [4096]byte
	if _, err := r.ReadAt(h[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if !bytes.Equal(h[:6], []byte("LUKS\xba\xbe")) {
		return nil, ErrNotLUKS
	}
	if binary.BigEndian.Uint16(h[6:8]) != 2 {
		return nil, errUnsupported
	}
	hdrSize := be64(h[8:16])
	if hdrSize < 4096+512 || hdrSize > 4<<20 {
		return nil, fmt.Errorf("LUKS2 header size %d out of range", hdrSize)
	}
	if cstr(h[72:104]) != "sha256" {
		return nil, errUnsupported
	}
	all := make([]byte, hdrSize)
	if _, err := r.ReadAt(all, 0); err != nil {
		return nil, fmt.Errorf("reading LUKS2 metadata: %w", err)
	}
	want := slices.Clone(all[448 : 448+32])
	clear(all[448 : 448+64])
	if sum := sha256.Sum256(all); !bytes.Equal(sum[:], want) {
		return nil, errors.New("the primary LUKS2 header's checksum does not match: the header is damaged")
	}
	return bytes.TrimRight(all[4096:], "\x00"), nil
}

// unsealLUKS2 finds the keyslot that passphrase opens and returns its number
// and the volume key, proven by the header's digest.
func unsealLUKS2(r io.ReaderAt, passphrase []byte) (slot int, key []byte, err error) {
	js, err := readLUKS2Meta(r)
	if err != nil {
		return 0, nil, err
	}
	var meta struct {
		Keyslots map[string]luks2Keyslot `json:"keyslots"`
		Digests  map[string]luks2Digest  `json:"digests"`
	}
	if err := json.Unmarshal(js, &meta); err != nil {
		return 0, nil, fmt.Errorf("LUKS2 metadata: %w", err)
	}
	var nums []int
	for k := range meta.Keyslots {
		n, err := strconv.Atoi(k)
		if err != nil {
			return 0, nil, fmt.Errorf("LUKS2 keyslot name %q", k)
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	if len(nums) == 0 {
		return 0, nil, errors.New("the LUKS header has no active keyslot")
	}
	for _, n := range nums {
		name := strconv.Itoa(n)
		ks := meta.Keyslots[name]
		var dg *luks2Digest
		for _, d := range meta.Digests {
			if slices.Contains(d.Keyslots, name) && slices.Contains(d.Segments, "0") {
				dg = &d
				break
			}
		}
		if dg == nil {
			continue // not a keyslot of the data segment (e.g. a reencryption one)
		}
		key, err := openKeyslot(r, ks, passphrase)
		if err != nil {
			return 0, nil, fmt.Errorf("keyslot %d: %w", n, err)
		}
		ok, err := checkDigest(dg, key)
		if err != nil {
			secret.Free(key)
			return 0, nil, fmt.Errorf("digest of keyslot %d: %w", n, err)
		}
		if ok {
			return n, key, nil
		}
		secret.Free(key)
	}
	return 0, nil, ErrWrongPassphrase
}

func openKeyslot(r io.ReaderAt, ks luks2Keyslot, passphrase []byte) ([]byte, error) {
	if ks.Type != "luks2" || ks.AF.Type != "luks1" || ks.Area.Type != "raw" || ks.Area.Encryption != "aes-xts-plain64" {
		return nil, fmt.Errorf("%w: keyslot type %q, af %q, area %q %q", errUnsupported, ks.Type, ks.AF.Type, ks.Area.Type, ks.Area.Encryption)
	}
	afHash := hashByName(ks.AF.Hash)
	if afHash == nil {
		return nil, fmt.Errorf("%w: AF hash %q", errUnsupported, ks.AF.Hash)
	}
	if ks.KeySize <= 0 || ks.KeySize > 512 || ks.AF.Stripes <= 0 || ks.AF.Stripes > 1<<16 || (ks.Area.KeySize != 32 && ks.Area.KeySize != 64) {
		return nil, fmt.Errorf("key size %d, %d stripes, area key size %d out of range", ks.KeySize, ks.AF.Stripes, ks.Area.KeySize)
	}
	off, err1 := strconv.ParseInt(ks.Area.Offset, 10, 64)
	size, err2 := strconv.ParseInt(ks.Area.Size, 10, 64)
	n := int64(ks.KeySize) * int64(ks.AF.Stripes)
	n = (n + 511) / 512 * 512
	if err1 != nil || err2 != nil || off <= 0 || off%512 != 0 || n > size || size > 128<<20 {
		return nil, fmt.Errorf("keyslot area at %q of %q bytes is invalid for %d bytes of key material", ks.Area.Offset, ks.Area.Size, n)
	}
	areaKey, err := keyslotAreaKey(ks, passphrase)
	if err != nil {
		return nil, err
	}
	defer secret.Free(areaKey)
	c, err := xts.NewCipher(aes.NewCipher, areaKey)
	if err != nil {
		return nil, err
	}
	material := make([]byte, n)
	defer clear(material)
	if _, err := r.ReadAt(material, off); err != nil {
		return nil, fmt.Errorf("reading the keyslot area: %w", err)
	}
	for s := int64(0); s < n/512; s++ {
		sec := material[s*512 : (s+1)*512]
		c.Decrypt(sec, sec, uint64(s))
	}
	return afMerge(material, ks.KeySize, ks.AF.Stripes, afHash), nil
}

// keyslotAreaKey derives the key of a keyslot's area from the passphrase
// with the keyslot's KDF (argon2id, argon2i or pbkdf2), its costs checked.
func keyslotAreaKey(ks luks2Keyslot, passphrase []byte) ([]byte, error) {
	salt, err := base64.StdEncoding.DecodeString(ks.KDF.Salt)
	if err != nil {
		return nil, fmt.Errorf("KDF salt: %w", err)
	}
	var areaKey []byte
	switch ks.KDF.Type {
	case "argon2id", "argon2i":
		if ks.KDF.Memory > MaxKDFMemoryKiB || ks.KDF.CPUs < 1 || ks.KDF.CPUs > 255 || ks.KDF.Time < 1 {
			return nil, fmt.Errorf("argon2 cost t=%d m=%d p=%d out of range", ks.KDF.Time, ks.KDF.Memory, ks.KDF.CPUs)
		}
		typ := argon2.Argon2id
		if ks.KDF.Type == "argon2i" {
			typ = argon2.Argon2i
		}
		areaKey, err = argon2.Key(passphrase, salt, argon2.Params{Type: typ, Time: ks.KDF.Time, MemoryKiB: ks.KDF.Memory, Threads: uint8(ks.KDF.CPUs), KeyLen: uint32(ks.Area.KeySize)})
	case "pbkdf2":
		h := hashByName(ks.KDF.Hash)
		if h == nil || ks.KDF.Iterations < 1 {
			return nil, fmt.Errorf("%w: pbkdf2 with %q, %d iterations", errUnsupported, ks.KDF.Hash, ks.KDF.Iterations)
		}
		areaKey = secret.New(ks.Area.KeySize)
		pbkdf2Key(passphrase, salt, ks.KDF.Iterations, areaKey, h)
	default:
		return nil, fmt.Errorf("%w: KDF %q", errUnsupported, ks.KDF.Type)
	}
	if err != nil {
		secret.Free(areaKey)
		return nil, err
	}
	return areaKey, nil
}

// afMerge is the anti-forensic merge of LUKS (the inverse of the split that
// spreads a key over stripes): d = diffuse(d XOR s_i) over all stripes but
// the last, and the key is d XOR the last stripe.
func afMerge(material []byte, keySize, stripes int, h func() hash.Hash) []byte {
	d := secret.New(keySize)
	defer secret.Free(d)
	for i := 0; i < stripes-1; i++ {
		subtle.XORBytes(d, d, material[i*keySize:(i+1)*keySize])
		diffuse(d, h)
	}
	key := secret.New(keySize)
	subtle.XORBytes(key, d, material[(stripes-1)*keySize:stripes*keySize])
	return key
}

// diffuse replaces each digest-sized block j of d by H(be32(j) || block),
// truncated to the block's length.
func diffuse(d []byte, newHash func() hash.Hash) {
	h := newHash()
	ds := h.Size()
	var sum [64]byte
	for j := 0; j*ds < len(d); j++ {
		blk := d[j*ds : min((j+1)*ds, len(d))]
		h.Reset()
		var iv [4]byte
		binary.BigEndian.PutUint32(iv[:], uint32(j))
		h.Write(iv[:])
		h.Write(blk)
		copy(blk, h.Sum(sum[:0]))
	}
	clear(sum[:])
}

func checkDigest(dg *luks2Digest, key []byte) (bool, error) {
	h := hashByName(dg.Hash)
	if dg.Type != "pbkdf2" || h == nil {
		return false, fmt.Errorf("%w: digest %q with %q", errUnsupported, dg.Type, dg.Hash)
	}
	salt, err1 := base64.StdEncoding.DecodeString(dg.Salt)
	want, err2 := base64.StdEncoding.DecodeString(dg.Digest)
	if err1 != nil || err2 != nil || len(want) == 0 || dg.Iterations < 1 {
		return false, errors.New("digest salt, value or iterations invalid")
	}
	got := make([]byte, len(want))
	pbkdf2Key(key, salt, dg.Iterations, got, h)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
