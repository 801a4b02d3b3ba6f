//go:build amd64 && !purego

package luks

import (
	"bytes"
	"crypto/aes"

	"golang.org/x/sys/cpu"
)

// useXTSAsm reports whether the AES-NI kernel in xts_amd64.s is used. It
// requires AES-NI and must agree with crypto/aes on a known-answer check run
// at start-up; otherwise the portable crypto/aes path is used.
var useXTSAsm = cpu.X86.HasAES && cpu.X86.HasSSE41 && xtsAsmSelfTest()

// useVAES reports whether the VAES (256-bit) kernels are used for runs of
// sixteen blocks. x/sys/cpu reports VAES only together with AVX-512; the
// kernels themselves need AVX2 and VAES and are checked like the SSE ones.
var useVAES = useXTSAsm && cpu.X86.HasAVX2 && cpu.X86.HasAVX512VAES && vaesSelfTest()

// xtsTweaks writes the n tweaks t, t*x, t*x^2, ... to tw (16 bytes each) and
// leaves the following tweak in t.
//
//go:noescape
func xtsTweaks(tw *byte, n int, t *[2]uint64)

// xtsEncBlocksVAES and xtsDecBlocksVAES are xtsEncBlocks and xtsDecBlocks for
// the first n&^15 blocks.
//
//go:noescape
func xtsEncBlocksVAES(rk *byte, rounds int, dst, src, tw *byte, n int)

//go:noescape
func xtsDecBlocksVAES(rk *byte, rounds int, dst, src, tw *byte, n int)

// xtsBlocksAsm runs the widest available kernel over n blocks.
func xtsBlocksAsm(rk []byte, rounds int, dst, src, tw []byte, n int, decrypt bool, vaes bool) {
	done := 0
	if vaes && n >= 16 {
		done = n &^ 15
		if decrypt {
			xtsDecBlocksVAES(&rk[0], rounds, &dst[0], &src[0], &tw[0], done)
		} else {
			xtsEncBlocksVAES(&rk[0], rounds, &dst[0], &src[0], &tw[0], done)
		}
	}
	if done < n {
		o := 16 * done
		if decrypt {
			xtsDecBlocks(&rk[0], rounds, &dst[o], &src[o], &tw[o], n-done)
		} else {
			xtsEncBlocks(&rk[0], rounds, &dst[o], &src[o], &tw[o], n-done)
		}
	}
}

func vaesSelfTest() bool {
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(3*i + 1)
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return false
	}
	enc, rounds := aesExpandKey(key)
	dec := aesDecryptSchedule(enc, rounds)
	const n = 37
	src := make([]byte, 16*n)
	tw := make([]byte, 16*n)
	for i := range src {
		src[i] = byte(i * 29)
		tw[i] = byte(i * 7)
	}
	want := make([]byte, len(src))
	for i := 0; i < len(src); i += 16 {
		var x [16]byte
		subtle16(x[:], src[i:i+16], tw[i:i+16])
		blk.Encrypt(x[:], x[:])
		subtle16(want[i:i+16], x[:], tw[i:i+16])
	}
	got := make([]byte, len(src))
	xtsBlocksAsm(enc, rounds, got, src, tw, n, false, true)
	if !bytes.Equal(got, want) {
		return false
	}
	xtsBlocksAsm(dec, rounds, got, got, tw, n, true, true)
	return bytes.Equal(got, src)
}

// xtsEncBlocks sets dst[i] = AES_k(src[i] xor tw[i]) xor tw[i] for n 16-byte
// blocks; rk is the encryption schedule of (rounds+1)*16 bytes.
//
//go:noescape
func xtsEncBlocks(rk *byte, rounds int, dst, src, tw *byte, n int)

// xtsDecBlocks is the inverse of xtsEncBlocks; rk is the decryption schedule
// from aesDecryptSchedule.
//
//go:noescape
func xtsDecBlocks(rk *byte, rounds int, dst, src, tw *byte, n int)

// aesEncryptBlock encrypts one 16-byte block with schedule rk.
func aesEncryptBlock(rk []byte, rounds int, dst, src []byte) {
	var zero [16]byte
	xtsEncBlocks(&rk[0], rounds, &dst[0], &src[0], &zero[0], 1)
}

func xtsAsmSelfTest() bool {
	for _, n := range []int{16, 24, 32} {
		key := make([]byte, n)
		for i := range key {
			key[i] = byte(i*7 + n)
		}
		blk, err := aes.NewCipher(key)
		if err != nil {
			return false
		}
		enc, rounds := aesExpandKey(key)
		dec := aesDecryptSchedule(enc, rounds)
		src := make([]byte, 16*11)
		for i := range src {
			src[i] = byte(i * 13)
		}
		tw := make([]byte, len(src))
		want := make([]byte, len(src))
		for i := 0; i < len(src); i += 16 {
			blk.Encrypt(want[i:i+16], src[i:i+16])
		}
		got := make([]byte, len(src))
		xtsEncBlocks(&enc[0], rounds, &got[0], &src[0], &tw[0], len(src)/16)
		if !bytes.Equal(got, want) {
			return false
		}
		xtsDecBlocks(&dec[0], rounds, &got[0], &got[0], &tw[0], len(src)/16)
		if !bytes.Equal(got, src) {
			return false
		}
	}
	return true
}
