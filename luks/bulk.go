package luks

import "fmt"

// SegmentCipher is the data path of one LUKS data segment (aes-xts-plain64)
// for bulk work outside the FUSE volume: the full-disk erase writes
// ciphertext of zeros straight to the segment, and the surface check
// decrypts what it reads back. It is the same AES-XTS as the userspace
// volume server (plain64 IVs counted in 512-byte units from the segment's
// start plus the LUKS2 iv_tweak, data units of the segment's sector size),
// so what it writes is exactly what dm-crypt or the volume would write for
// the same plaintext. Large buffers are spread over every core.
type SegmentCipher struct {
	c       *xtsCipher
	ivTweak uint64
	sector  int64
}

// NewSegmentCipher expands key (32 or 64 bytes) for seg. The caller keeps
// key and clears it; Wipe clears the expanded schedules.
func NewSegmentCipher(key []byte, seg Segment) (*SegmentCipher, error) {
	if seg.Cipher != "aes-xts-plain64" {
		return nil, fmt.Errorf("cipher %q is not supported (only aes-xts-plain64)", seg.Cipher)
	}
	c, err := newXTSCipher(key, seg.SectorSize)
	if err != nil {
		return nil, err
	}
	return &SegmentCipher{c: c, ivTweak: seg.IVTweak, sector: int64(seg.SectorSize)}, nil
}

// SectorSize is the encryption data unit in bytes.
func (s *SegmentCipher) SectorSize() int { return int(s.sector) }

func (s *SegmentCipher) check(n int, off int64) {
	if off < 0 || off%s.sector != 0 || int64(n)%s.sector != 0 {
		panic(fmt.Sprintf("luks: segment I/O of %d bytes at %d is not whole %d-byte sectors", n, off, s.sector))
	}
}

// Encrypt encrypts src, the plaintext of the segment at byte offset off (a
// multiple of the sector size), into dst; dst and src may be the same slice.
func (s *SegmentCipher) Encrypt(dst, src []byte, off int64) {
	s.check(len(src), off)
	s.c.cryptParallel(dst, src, uint64(off/512)+s.ivTweak, false)
}

// Decrypt is the inverse of Encrypt.
func (s *SegmentCipher) Decrypt(dst, src []byte, off int64) {
	s.check(len(src), off)
	s.c.cryptParallel(dst, src, uint64(off/512)+s.ivTweak, true)
}

// Wipe clears the expanded key schedules (see xtsCipher.wipe).
func (s *SegmentCipher) Wipe() { s.c.wipe() }
