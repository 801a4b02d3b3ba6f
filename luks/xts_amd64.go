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
