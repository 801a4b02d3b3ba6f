package luks

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// This file implements AES-XTS with dm-crypt's "plain64" IV generator, the
// data path of LUKS "aes-xts-plain64" volumes.
//
// Semantics (identical to dm-crypt as configured by cryptsetup for LUKS1 and
// LUKS2, which never sets iv_large_sectors):
//   - the data segment is split into data units of sectorSize bytes (512,
//     1024, 2048 or 4096), each encrypted independently with XTS;
//   - the IV of the data unit that starts at byte p of the segment is the
//     64-bit number p/512 + ivTweak (mod 2^64), little-endian, zero-padded
//     to 16 bytes (so with 4096-byte sectors consecutive units have IVs 0,
//     8, 16, ...);
//   - the 2n-byte volume key is K1||K2: K1 encrypts data, K2 encrypts the IV
//     into the initial tweak T0 = AES_K2(IV);
//   - block j of a unit is C_j = AES_K1(P_j xor T_j) xor T_j with
//     T_{j+1} = T_j * x in GF(2^128) (little-endian bit order, reduction 0x87).
//
// On amd64 with AES-NI the block work is done by small assembly kernels that
// keep eight (SSE) or sixteen (VAES, where the CPU has it) blocks in flight
// (xts_amd64.s); elsewhere crypto/aes is used block by block. Tests check
// every implementation against golang.org/x/crypto/xts and an IEEE P1619
// vector, and the whole data path against cryptsetup itself.

// xtsCipher encrypts and decrypts whole data units of one volume.
type xtsCipher struct {
	sectorSize int
	rounds     int
	// Expanded key schedules, (rounds+1)*16 bytes each, in the byte order
	// AES-NI consumes. encK1/decK1 for data, encK2 for the tweak.
	encK1, decK1, encK2 []byte
	// Portable fallback when the assembly kernel is unavailable.
	blk1, blk2 cipher.Block
	asm, vaes  bool
	tweakPool  sync.Pool
}

// xtsUnitBlocks is the number of 16-byte blocks processed per call of the
// block kernel; tweaks for one call are generated into a buffer this large.
const xtsUnitBlocks = 256

func newXTSCipher(key []byte, sectorSize int) (*xtsCipher, error) {
	return newXTSCipherImpl(key, sectorSize, useXTSAsm, useVAES)
}

// newXTSCipherImpl selects the implementation explicitly (for tests):
// asm=false is the portable crypto/aes path; vaes adds the VAES kernels.
func newXTSCipherImpl(key []byte, sectorSize int, asm, vaes bool) (*xtsCipher, error) {
	switch len(key) {
	case 32, 64:
	default:
		return nil, fmt.Errorf("aes-xts: volume key must be 32 or 64 bytes (got %d)", len(key))
	}
	if sectorSize != 512 && sectorSize != 1024 && sectorSize != 2048 && sectorSize != 4096 {
		return nil, fmt.Errorf("aes-xts: unsupported sector size %d", sectorSize)
	}
	half := len(key) / 2
	c := &xtsCipher{sectorSize: sectorSize, asm: asm, vaes: asm && vaes}
	c.tweakPool.New = func() any { b := make([]byte, 16*xtsUnitBlocks); return &b }
	if c.asm {
		c.encK1, c.rounds = aesExpandKey(key[:half])
		c.decK1 = aesDecryptSchedule(c.encK1, c.rounds)
		c.encK2, _ = aesExpandKey(key[half:])
		return c, nil
	}
	var err error
	if c.blk1, err = aes.NewCipher(key[:half]); err != nil {
		return nil, err
	}
	if c.blk2, err = aes.NewCipher(key[half:]); err != nil {
		return nil, err
	}
	return c, nil
}

// wipe zeroes the key schedules this package owns. crypto/aes keeps its own
// copy of the schedule inside the fallback cipher.Block values, which Go
// gives no way to clear; they are dropped for the garbage collector.
func (c *xtsCipher) wipe() {
	clear(c.encK1)
	clear(c.decK1)
	clear(c.encK2)
	c.blk1, c.blk2 = nil, nil
}

// tweak0 returns AES_K2(tweak) as two little-endian 64-bit halves, where
// the tweak is the 128-bit little-endian number ivHi<<64 | iv (dm-crypt's
// plain64 IV has ivHi 0).
func (c *xtsCipher) tweak0(iv, ivHi uint64) (lo, hi uint64) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], iv)
	binary.LittleEndian.PutUint64(b[8:], ivHi)
	if c.asm {
		aesEncryptBlock(c.encK2, c.rounds, b[:], b[:])
	} else {
		c.blk2.Encrypt(b[:], b[:])
	}
	return binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
}

// fillTweaks writes n consecutive tweaks starting at (lo,hi) into tw and
// returns the tweak that follows them.
func fillTweaks(tw []byte, n int, lo, hi uint64) (uint64, uint64) {
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint64(tw[16*i:], lo)
		binary.LittleEndian.PutUint64(tw[16*i+8:], hi)
		carry := hi >> 63
		hi = hi<<1 | lo>>63
		lo = lo<<1 ^ (0x87 & -carry)
	}
	return lo, hi
}

// cryptUnits en- or decrypts len(src)/sectorSize whole data units; the first
// unit has IV iv, each following unit's IV is sectorSize/512 higher.
// dst and src may be the same slice.
func (c *xtsCipher) cryptUnits(dst, src []byte, iv uint64, decrypt bool) {
	c.cryptUnitsTweak(dst, src, iv, 0, decrypt)
}

// cryptUnitsTweak is cryptUnits with a full 128-bit first tweak (ivHi is
// its upper half, kept for every unit): the volume uses ivHi 0; the NIST
// CAVP XTS vectors give 128-bit tweaks and check this same code.
func (c *xtsCipher) cryptUnitsTweak(dst, src []byte, iv, ivHi uint64, decrypt bool) {
	if len(src)%c.sectorSize != 0 || len(dst) < len(src) {
		panic("aes-xts: buffer is not a whole number of data units")
	}
	twp := c.tweakPool.Get().(*[]byte)
	tw := *twp
	step := uint64(c.sectorSize / 512)
	rk := c.encK1
	if decrypt {
		rk = c.decK1
	}
	for off := 0; off < len(src); off += c.sectorSize {
		lo, hi := c.tweak0(iv, ivHi)
		t := [2]uint64{lo, hi}
		for u := 0; u < c.sectorSize; u += 16 * xtsUnitBlocks {
			n := min((c.sectorSize-u)/16, xtsUnitBlocks)
			d := dst[off+u : off+u+16*n]
			s := src[off+u : off+u+16*n]
			if c.asm {
				xtsTweaks(&tw[0], n, &t)
				xtsBlocksAsm(rk, c.rounds, d, s, tw, n, decrypt, c.vaes)
			} else {
				t[0], t[1] = fillTweaks(tw, n, t[0], t[1])
				c.genericBlocks(d, s, tw[:16*n], decrypt)
			}
		}
		iv += step
	}
	clear(tw)
	c.tweakPool.Put(twp)
}

func (c *xtsCipher) genericBlocks(dst, src, tw []byte, decrypt bool) {
	var x [16]byte
	for i := 0; i < len(src); i += 16 {
		t := tw[i : i+16]
		subtle16(x[:], src[i:i+16], t)
		if decrypt {
			c.blk1.Decrypt(x[:], x[:])
		} else {
			c.blk1.Encrypt(x[:], x[:])
		}
		subtle16(dst[i:i+16], x[:], t)
	}
}

func subtle16(dst, a, b []byte) {
	binary.LittleEndian.PutUint64(dst[:8], binary.LittleEndian.Uint64(a[:8])^binary.LittleEndian.Uint64(b[:8]))
	binary.LittleEndian.PutUint64(dst[8:16], binary.LittleEndian.Uint64(a[8:16])^binary.LittleEndian.Uint64(b[8:16]))
}

// parallelMin is the smallest amount of data worth splitting across cores
// (measured: below ~1 MiB, waking a helper goroutine costs about as much as
// it saves).
const parallelMin = 512 << 10

// parallelPiece is the unit of work handed out to cores.
const parallelPiece = 64 << 10

// cryptParallel is cryptUnits spread over all available cores (GOMAXPROCS)
// when the buffer is large enough for that to pay off. The buffer is cut
// into pieces that the calling goroutine and GOMAXPROCS-1 helpers take from
// a shared counter, so a helper that is scheduled late (a busy machine, a
// slow wake-up in a VM) costs nothing: the caller simply does more pieces.
func (c *xtsCipher) cryptParallel(dst, src []byte, iv uint64, decrypt bool) {
	workers := runtime.GOMAXPROCS(0)
	if workers <= 1 || len(src) < parallelMin {
		c.cryptUnits(dst, src, iv, decrypt)
		return
	}
	piece := max(parallelPiece/c.sectorSize, 1) * c.sectorSize
	pieces := (len(src) + piece - 1) / piece
	workers = min(workers, pieces)
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= pieces {
				return
			}
			a, b := i*piece, min((i+1)*piece, len(src))
			c.cryptUnits(dst[a:b], src[a:b], iv+uint64(a/512), decrypt)
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	work()
	wg.Wait()
}

// --- AES key schedule (FIPS-197 section 5.2), used by the AES-NI kernel ---

var aesSbox = func() (s [256]byte) {
	mul := gfMul
	rotl := func(b byte, n uint) byte { return b<<n | b>>(8-n) }
	for x := 0; x < 256; x++ {
		// multiplicative inverse: x^254
		inv := byte(0)
		if x != 0 {
			inv = 1
			base := byte(x)
			for e := 254; e > 0; e >>= 1 {
				if e&1 != 0 {
					inv = mul(inv, base)
				}
				base = mul(base, base)
			}
		}
		s[x] = inv ^ rotl(inv, 1) ^ rotl(inv, 2) ^ rotl(inv, 3) ^ rotl(inv, 4) ^ 0x63
	}
	return s
}()

func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 != 0 {
			p ^= a
		}
		hi := a & 0x80
		a <<= 1
		if hi != 0 {
			a ^= 0x1b
		}
		b >>= 1
	}
	return p
}

// aesExpandKey returns the encryption round keys for a 16-, 24- or 32-byte
// AES key as (rounds+1)*16 bytes, and the number of rounds.
func aesExpandKey(key []byte) ([]byte, int) {
	nk := len(key) / 4
	rounds := nk + 6
	total := 4 * (rounds + 1)
	w := make([]byte, 4*total)
	copy(w, key)
	rcon := byte(1)
	for i := nk; i < total; i++ {
		var t [4]byte
		copy(t[:], w[4*(i-1):4*i])
		if i%nk == 0 {
			t = [4]byte{aesSbox[t[1]] ^ rcon, aesSbox[t[2]], aesSbox[t[3]], aesSbox[t[0]]}
			rcon = gfMul(rcon, 2)
		} else if nk > 6 && i%nk == 4 {
			t = [4]byte{aesSbox[t[0]], aesSbox[t[1]], aesSbox[t[2]], aesSbox[t[3]]}
		}
		for j := 0; j < 4; j++ {
			w[4*i+j] = w[4*(i-nk)+j] ^ t[j]
		}
	}
	return w, rounds
}

// aesDecryptSchedule derives the round keys of the equivalent inverse cipher
// (what AESDEC expects): the encryption keys in reverse order with
// InvMixColumns applied to all but the first and last.
func aesDecryptSchedule(enc []byte, rounds int) []byte {
	dec := make([]byte, len(enc))
	copy(dec[:16], enc[16*rounds:])
	copy(dec[16*rounds:], enc[:16])
	for r := 1; r < rounds; r++ {
		src := enc[16*(rounds-r) : 16*(rounds-r+1)]
		dst := dec[16*r : 16*(r+1)]
		for c := 0; c < 16; c += 4 {
			a0, a1, a2, a3 := src[c], src[c+1], src[c+2], src[c+3]
			dst[c] = gfMul(a0, 14) ^ gfMul(a1, 11) ^ gfMul(a2, 13) ^ gfMul(a3, 9)
			dst[c+1] = gfMul(a0, 9) ^ gfMul(a1, 14) ^ gfMul(a2, 11) ^ gfMul(a3, 13)
			dst[c+2] = gfMul(a0, 13) ^ gfMul(a1, 9) ^ gfMul(a2, 14) ^ gfMul(a3, 11)
			dst[c+3] = gfMul(a0, 11) ^ gfMul(a1, 13) ^ gfMul(a2, 9) ^ gfMul(a3, 14)
		}
	}
	return dec
}
