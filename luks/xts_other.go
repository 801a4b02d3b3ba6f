//go:build !amd64 || purego

package luks

// useXTSAsm is false: this platform uses crypto/aes block by block.
const useXTSAsm = false

func xtsEncBlocks(rk *byte, rounds int, dst, src, tw *byte, n int) { panic("unreachable") }
func xtsDecBlocks(rk *byte, rounds int, dst, src, tw *byte, n int) { panic("unreachable") }
func aesEncryptBlock(rk []byte, rounds int, dst, src []byte)       { panic("unreachable") }

const useVAES = false

func xtsTweaks(tw *byte, n int, t *[2]uint64) { panic("unreachable") }
func xtsBlocksAsm(rk []byte, rounds int, dst, src, tw []byte, n int, decrypt bool, vaes bool) {
	panic("unreachable")
}
