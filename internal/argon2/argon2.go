// Package argon2 is Argon2 (RFC 9106, version 0x13) for unsealing LUKS2
// keyslots, written for this project and independent of cryptsetup's code.
//
// It exists because golang.org/x/crypto/argon2 took 2.2 times as long as
// cryptsetup's unlock at a LUKS cost (argon2id t=4, 890 MB, p=2) on this
// project's machine. Where the time went (rusage, same machine): its Go heap
// allocation took twice as many page faults as the memory has pages and
// 1.2-4.3 s of system time, sometimes more than the hash; the hash itself
// (SSE4.1 block function) took 2.9-3.8 s of CPU, cryptsetup's 3.5-4.0 s
// user plus 0.6-0.9 s system. Here the memory is an anonymous mapping
// populated by the kernel in one call and unmapped as soon as the key is
// derived (never in the Go heap: no GC, never held twice), the block
// function uses AVX2 where the CPU has it (about 1.4-3 times the speed of
// the generic Go one), and the lanes of each slice run in parallel. It is
// checked against RFC 9106's test vectors, against x/crypto/argon2 on random
// costs, and the AVX2 block function against the generic one.
package argon2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/bits"
	"sync"
	"unsafe"

	"golang.org/x/crypto/blake2b"
)

// Type is the Argon2 variant.
type Type int

// The variants, numbered as in RFC 9106 (the y of H0).
const (
	Argon2d  Type = 0
	Argon2i  Type = 1
	Argon2id Type = 2
)

const version = 0x13

// Params are an Argon2 cost and its optional inputs.
type Params struct {
	Type      Type
	Time      uint32 // passes over the memory (t)
	MemoryKiB uint32 // m, in 1 KiB blocks
	Threads   uint8  // lanes (p); also the parallelism used
	KeyLen    uint32 // tag length (T)
	Secret    []byte // K, optional
	Data      []byte // X, associated data, optional
}

const blockWords = 128 // 1024 bytes

type block [blockWords]uint64

// Key derives the tag of password and salt. The working memory is mapped
// for this call only and unmapped before it returns.
func Key(password, salt []byte, p Params) ([]byte, error) {
	if p.Time < 1 {
		return nil, errors.New("argon2: time must be at least 1")
	}
	if p.Threads < 1 {
		return nil, errors.New("argon2: threads must be at least 1")
	}
	if p.KeyLen < 4 {
		return nil, errors.New("argon2: key length must be at least 4")
	}
	if p.Type != Argon2d && p.Type != Argon2i && p.Type != Argon2id {
		return nil, fmt.Errorf("argon2: unknown type %d", p.Type)
	}
	lanes := uint32(p.Threads)
	mem := p.MemoryKiB
	if mem < 8*lanes {
		mem = 8 * lanes
	}
	segLen := mem / (4 * lanes)
	mem = segLen * 4 * lanes
	m, err := mapBlocks(int(mem), int(lanes))
	if err != nil {
		return nil, fmt.Errorf("argon2: %d KiB of working memory: %w", mem, err)
	}
	defer m.free()

	h0 := initialHash(password, salt, p)
	defer clear(h0[:])
	s := state{b: m.blocks, lanes: lanes, laneLen: 4 * segLen, segLen: segLen, passes: p.Time, typ: p.Type, mem: mem}
	var buf [1024]byte
	for l := uint32(0); l < lanes; l++ {
		for j := uint32(0); j < 2; j++ {
			var in [72]byte
			copy(in[:], h0[:])
			binary.LittleEndian.PutUint32(in[64:], j)
			binary.LittleEndian.PutUint32(in[68:], l)
			hPrime(buf[:], in[:])
			b := &s.b[l*s.laneLen+j]
			for i := range b {
				b[i] = binary.LittleEndian.Uint64(buf[i*8:])
			}
		}
	}
	clear(buf[:])
	s.fill()
	var c block
	for l := uint32(0); l < lanes; l++ {
		last := &s.b[l*s.laneLen+s.laneLen-1]
		for i := range c {
			c[i] ^= last[i]
		}
	}
	for i := range c {
		binary.LittleEndian.PutUint64(buf[i*8:], c[i])
	}
	clear(c[:])
	out := make([]byte, p.KeyLen)
	hPrime(out, buf[:])
	clear(buf[:])
	return out, nil
}

// IDKey is Key for Argon2id without secret or associated data, with the
// argument order of golang.org/x/crypto/argon2.IDKey.
func IDKey(password, salt []byte, time, memoryKiB uint32, threads uint8, keyLen uint32) ([]byte, error) {
	return Key(password, salt, Params{Type: Argon2id, Time: time, MemoryKiB: memoryKiB, Threads: threads, KeyLen: keyLen})
}

func le32(h hash.Hash, v uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	h.Write(b[:])
}

func initialHash(password, salt []byte, p Params) [64]byte {
	h, _ := blake2b.New512(nil)
	le32(h, uint32(p.Threads))
	le32(h, p.KeyLen)
	le32(h, p.MemoryKiB)
	le32(h, p.Time)
	le32(h, version)
	le32(h, uint32(p.Type))
	for _, b := range [][]byte{password, salt, p.Secret, p.Data} {
		le32(h, uint32(len(b)))
		h.Write(b)
	}
	var out [64]byte
	h.Sum(out[:0])
	// The hash keeps the last partial block it was given (the end of
	// the password, when salt and the rest are empty) in its buffer:
	// a block of zeros overwrites it.
	var zero [blake2b.BlockSize]byte
	h.Write(zero[:])
	return out
}

// hPrime is H' of RFC 9106 section 3.3, filling out.
func hPrime(out, in []byte) {
	n := len(out)
	if n <= 64 {
		h, _ := blake2b.New(n, nil)
		le32(h, uint32(n))
		h.Write(in)
		h.Sum(out[:0])
		return
	}
	h, _ := blake2b.New512(nil)
	le32(h, uint32(n))
	h.Write(in)
	var v [64]byte
	h.Sum(v[:0])
	r := (n+31)/32 - 2
	copy(out, v[:32])
	for i := 1; i < r; i++ {
		v = blake2b.Sum512(v[:])
		copy(out[32*i:], v[:32])
	}
	last := n - 32*r
	h, _ = blake2b.New(last, nil)
	h.Write(v[:])
	h.Sum(out[32*r : 32*r])
	clear(v[:])
}

type state struct {
	b                      []block
	lanes, laneLen, segLen uint32
	passes, mem            uint32
	typ                    Type
}

func (s *state) fill() {
	var wg sync.WaitGroup
	for pass := uint32(0); pass < s.passes; pass++ {
		for slice := uint32(0); slice < 4; slice++ {
			wg.Add(int(s.lanes))
			for l := uint32(0); l < s.lanes; l++ {
				go func() {
					defer wg.Done()
					s.segment(pass, slice, l)
				}()
			}
			wg.Wait()
		}
	}
}

func (s *state) segment(pass, slice, lane uint32) {
	indep := s.typ == Argon2i || (s.typ == Argon2id && pass == 0 && slice < 2)
	var addr, in, zero block
	if indep {
		in[0], in[1], in[2] = uint64(pass), uint64(lane), uint64(slice)
		in[3], in[4], in[5] = uint64(s.mem), uint64(s.passes), uint64(s.typ)
	}
	next := func() {
		in[6]++
		compress(&addr, &zero, &in, false)
		compress(&addr, &zero, &addr, false)
	}
	start := uint32(0)
	if pass == 0 && slice == 0 {
		start = 2
		if indep {
			next()
		}
	}
	base := lane * s.laneLen
	cur := base + slice*s.segLen + start
	prev := cur - 1
	if cur%s.laneLen == 0 {
		prev = cur + s.laneLen - 1
	}
	for i := start; i < s.segLen; i, cur, prev = i+1, cur+1, cur {
		var rnd uint64
		if indep {
			if i%blockWords == 0 {
				next()
			}
			rnd = addr[i%blockWords]
		} else {
			rnd = s.b[prev][0]
		}
		refLane := uint32(rnd>>32) % s.lanes
		if pass == 0 && slice == 0 {
			refLane = lane
		}
		var area uint32
		same := refLane == lane
		switch {
		case pass == 0 && same:
			area = slice*s.segLen + i - 1
		case pass == 0:
			area = slice * s.segLen
			if i == 0 {
				area--
			}
		case same:
			area = s.laneLen - s.segLen + i - 1
		default:
			area = s.laneLen - s.segLen
			if i == 0 {
				area--
			}
		}
		x := rnd & 0xffffffff
		x = x * x >> 32
		rel := uint64(area) - 1 - (uint64(area) * x >> 32)
		startPos := uint64(0)
		if pass != 0 && slice != 3 {
			startPos = uint64((slice + 1) * s.segLen)
		}
		ref := refLane*s.laneLen + uint32((startPos+rel)%uint64(s.laneLen))
		compress(&s.b[cur], &s.b[prev], &s.b[ref], pass > 0)
	}
	clear(addr[:])
	clear(in[:])
}

// compress sets dst to G(x, y), or XORs G(x, y) into dst when xor is set
// (passes after the first, Argon2 version 0x13). dst may alias x or y.
func compress(dst, x, y *block, xor bool) {
	if useAVX2 {
		compressAVX2(dst, x, y, xor)
		return
	}
	compressGeneric(dst, x, y, xor)
}

func compressGeneric(dst, x, y *block, xor bool) {
	var r, q block
	for i := range r {
		r[i] = x[i] ^ y[i]
	}
	q = r
	for i := 0; i < 8; i++ { // rows: 16 consecutive words
		permute((*[16]uint64)(q[16*i:]), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
	}
	for i := 0; i < 8; i++ { // columns: word pairs 2i, 2i+1 of every row
		permute((*[16]uint64)(q[2*i:]), 0, 1, 16, 17, 32, 33, 48, 49, 64, 65, 80, 81, 96, 97, 112, 113)
	}
	if xor {
		for i := range dst {
			dst[i] ^= q[i] ^ r[i]
		}
	} else {
		for i := range dst {
			dst[i] = q[i] ^ r[i]
		}
	}
}

func bla(a, b uint64) uint64 { return a + b + 2*(a&0xffffffff)*(b&0xffffffff) }

func gb(a, b, c, d uint64) (uint64, uint64, uint64, uint64) {
	a = bla(a, b)
	d = bits.RotateLeft64(d^a, -32)
	c = bla(c, d)
	b = bits.RotateLeft64(b^c, -24)
	a = bla(a, b)
	d = bits.RotateLeft64(d^a, -16)
	c = bla(c, d)
	b = bits.RotateLeft64(b^c, -63)
	return a, b, c, d
}

// permute is P of RFC 9106 section 3.6 on the 16 words of v at the given
// offsets (which may reach past 16: v is the start of a column).
func permute(v *[16]uint64, i0, i1, i2, i3, i4, i5, i6, i7, i8, i9, i10, i11, i12, i13, i14, i15 int) {
	p := unsafe.Pointer(v)
	w := func(i int) *uint64 { return (*uint64)(unsafe.Add(p, 8*i)) }
	v0, v1, v2, v3, v4, v5, v6, v7 := *w(i0), *w(i1), *w(i2), *w(i3), *w(i4), *w(i5), *w(i6), *w(i7)
	v8, v9, v10, v11, v12, v13, v14, v15 := *w(i8), *w(i9), *w(i10), *w(i11), *w(i12), *w(i13), *w(i14), *w(i15)
	v0, v4, v8, v12 = gb(v0, v4, v8, v12)
	v1, v5, v9, v13 = gb(v1, v5, v9, v13)
	v2, v6, v10, v14 = gb(v2, v6, v10, v14)
	v3, v7, v11, v15 = gb(v3, v7, v11, v15)
	v0, v5, v10, v15 = gb(v0, v5, v10, v15)
	v1, v6, v11, v12 = gb(v1, v6, v11, v12)
	v2, v7, v8, v13 = gb(v2, v7, v8, v13)
	v3, v4, v9, v14 = gb(v3, v4, v9, v14)
	*w(i0), *w(i1), *w(i2), *w(i3), *w(i4), *w(i5), *w(i6), *w(i7) = v0, v1, v2, v3, v4, v5, v6, v7
	*w(i8), *w(i9), *w(i10), *w(i11), *w(i12), *w(i13), *w(i14), *w(i15) = v8, v9, v10, v11, v12, v13, v14, v15
}
