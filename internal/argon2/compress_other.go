//go:build !amd64 || purego

package argon2

const useAVX2 = false

func compressAVX2(dst, x, y *block, xor bool) { panic("argon2: no AVX2 block function") }
