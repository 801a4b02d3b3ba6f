package luks

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/crypto/xts"
)

// TestXTSMatchesXCrypto checks both block kernels against
// golang.org/x/crypto/xts, whose sector number is exactly dm-crypt's plain64
// IV (little-endian 64-bit number in the first half of the IV block).
func TestXTSMatchesXCrypto(t *testing.T) {
	if !useXTSAsm {
		t.Logf("AES-NI kernel not in use on this machine; testing the portable path only")
	}
	for _, keyLen := range []int{32, 64} {
		for _, ss := range []int{512, 4096} {
			for _, impl := range xtsImpls() {
				t.Run(fmt.Sprintf("key%d/sector%d/%s", keyLen*8, ss, impl.name), func(t *testing.T) {
					key := make([]byte, keyLen)
					rand.Read(key)
					ref, err := xts.NewCipher(aes.NewCipher, key)
					if err != nil {
						t.Fatal(err)
					}
					c, err := newXTSCipherImpl(key, ss, impl.asm, impl.vaes)
					if err != nil {
						t.Fatal(err)
					}
					units := 37
					plain := make([]byte, units*ss)
					rand.Read(plain)
					firstIV := uint64(0xfffffff0) + uint64(keyLen) // crosses a 32-bit boundary
					want := make([]byte, len(plain))
					for u := 0; u < units; u++ {
						ref.Encrypt(want[u*ss:(u+1)*ss], plain[u*ss:(u+1)*ss], firstIV+uint64(u*ss/512))
					}
					got := make([]byte, len(plain))
					c.cryptUnits(got, plain, firstIV, false)
					if !bytes.Equal(got, want) {
						t.Fatalf("encryption differs from x/crypto/xts")
					}
					par := make([]byte, len(plain))
					c.cryptParallel(par, plain, firstIV, false)
					if !bytes.Equal(par, want) {
						t.Fatalf("parallel encryption differs from x/crypto/xts")
					}
					c.cryptParallel(par, par, firstIV, true)
					if !bytes.Equal(par, plain) {
						t.Fatalf("decryption does not invert encryption")
					}
				})
			}
		}
	}
}

// TestXTSIEEEVector checks IEEE P1619 XTS-AES-256 vector 10 (first block
// pair of the 512-byte data unit with sequence number 0xff).
func TestXTSIEEEVector(t *testing.T) {
	key := hexBytes(t, "2718281828459045235360287471352662497757247093699959574966967627"+
		"3141592653589793238462643383279502884197169399375105820974944592")
	plain := make([]byte, 512)
	for i := range plain {
		plain[i] = byte(i)
	}
	wantPrefix := hexBytes(t, "1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b")
	for _, impl := range xtsImpls() {
		c, err := newXTSCipherImpl(key, 512, impl.asm, impl.vaes)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 512)
		c.cryptUnits(got, plain, 0xff, false)
		if !bytes.Equal(got[:32], wantPrefix) {
			t.Fatalf("%s: got %x, want %x", impl.name, got[:32], wantPrefix)
		}
	}
}

type xtsImpl struct {
	name      string
	asm, vaes bool
}

// xtsImpls lists the implementations this machine can run; the tests check
// each of them.
func xtsImpls() []xtsImpl {
	impls := []xtsImpl{{"generic", false, false}}
	if useXTSAsm {
		impls = append(impls, xtsImpl{"aesni", true, false})
	}
	if useVAES {
		impls = append(impls, xtsImpl{"vaes", true, true})
	}
	return impls
}

func hexBytes(t *testing.T, s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		if _, err := fmt.Sscanf(s[2*i:2*i+2], "%02x", &b[i]); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestFillTweaksMultiplyByX(t *testing.T) {
	tw := make([]byte, 32)
	lo, hi := fillTweaks(tw, 2, 1<<63, 1<<63)
	// (2^127 + 2^63) * x = 2^64 + 0x87 (reduction)
	if got := binary.LittleEndian.Uint64(tw[16:]); got != 0x87 {
		t.Fatalf("low half %#x", got)
	}
	if got := binary.LittleEndian.Uint64(tw[24:]); got != 1 {
		t.Fatalf("high half %#x", got)
	}
	if lo != 0x87<<1 || hi != 2 {
		t.Fatalf("next tweak %#x %#x", lo, hi)
	}
}

func BenchmarkXTS(b *testing.B) {
	key := make([]byte, 64)
	rand.Read(key)
	for _, ss := range []int{512, 4096} {
		b.Run(fmt.Sprintf("xcrypto/sector%d", ss), func(b *testing.B) {
			buf := make([]byte, 1<<20)
			ref, _ := xts.NewCipher(aes.NewCipher, key)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				for u := 0; u < len(buf); u += ss {
					ref.Encrypt(buf[u:u+ss], buf[u:u+ss], uint64(u/512))
				}
			}
		})
		for _, impl := range xtsImpls() {
			for _, par := range []bool{false, true} {
				b.Run(fmt.Sprintf("%s/parallel=%v/sector%d", impl.name, par, ss), func(b *testing.B) {
					buf := make([]byte, 1<<20)
					c, _ := newXTSCipherImpl(key, ss, impl.asm, impl.vaes)
					b.SetBytes(int64(len(buf)))
					for b.Loop() {
						if par {
							c.cryptParallel(buf, buf, 0, false)
						} else {
							c.cryptUnits(buf, buf, 0, false)
						}
					}
				})
			}
		}
	}
}
