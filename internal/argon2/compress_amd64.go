//go:build amd64 && !purego

package argon2

import "golang.org/x/sys/cpu"

// useAVX2 selects the AVX2 block function (compress_amd64.s), checked
// against the generic one by TestCompressAVX2MatchesGeneric.
var useAVX2 = cpu.X86.HasAVX2

//go:noescape
func compressAVX2(dst, x, y *block, xor bool)
