package argon2

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	xargon2 "golang.org/x/crypto/argon2"
)

// The test vectors of RFC 9106 section 5 (version 0x13, with secret and
// associated data, which x/crypto/argon2 cannot take).
func TestRFC9106Vectors(t *testing.T) {
	for _, tc := range []struct {
		typ  Type
		want string
	}{
		{Argon2d, "512b391b6f1162975371d30919734294f868e3be3984f3c1a13a4db9fabe4acb"},
		{Argon2i, "c814d9d1dc7f37aa13f0d77f2494bda1c8de6b016dd388d29952a4c4672b6ce8"},
		{Argon2id, "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"},
	} {
		got, err := Key(bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16), Params{
			Type: tc.typ, Time: 3, MemoryKiB: 32, Threads: 4, KeyLen: 32,
			Secret: bytes.Repeat([]byte{3}, 8), Data: bytes.Repeat([]byte{4}, 12),
		})
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(got) != tc.want {
			t.Errorf("type %d: tag %x, RFC 9106 says %s", tc.typ, got, tc.want)
		}
	}
}

// Random costs, lengths and inputs give the tags of golang.org/x/crypto/argon2.
func TestMatchesXCrypto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, uint64(13)))
	n := 60
	if testing.Short() {
		n = 15
	}
	for i := 0; i < n; i++ {
		pw := make([]byte, rng.IntN(80))
		salt := make([]byte, 8+rng.IntN(40))
		for j := range pw {
			pw[j] = byte(rng.Uint32())
		}
		for j := range salt {
			salt[j] = byte(rng.Uint32())
		}
		p := Params{Time: 1 + uint32(rng.IntN(4)), MemoryKiB: uint32(rng.IntN(3000)), Threads: uint8(1 + rng.IntN(6)), KeyLen: 4 + uint32(rng.IntN(150))}
		var want []byte
		if rng.IntN(2) == 0 {
			p.Type = Argon2i
			want = xargon2.Key(pw, salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
		} else {
			p.Type = Argon2id
			want = xargon2.IDKey(pw, salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
		}
		got, err := Key(pw, salt, p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%+v: got %x, x/crypto/argon2 %x", p, got, want)
		}
	}
}

func TestRejects(t *testing.T) {
	for _, p := range []Params{
		{Type: Argon2id, Time: 0, MemoryKiB: 64, Threads: 1, KeyLen: 32},
		{Type: Argon2id, Time: 1, MemoryKiB: 64, Threads: 0, KeyLen: 32},
		{Type: Argon2id, Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 3},
		{Type: 7, Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32},
	} {
		if _, err := Key([]byte("pw"), []byte("saltsalt"), p); err == nil {
			t.Errorf("%+v accepted", p)
		}
	}
}

func BenchmarkCompress(b *testing.B) {
	var x, y, d block
	for i := range x {
		x[i], y[i] = uint64(i)*0x9e3779b97f4a7c15, uint64(i)^0xdeadbeef
	}
	b.SetBytes(1024)
	for b.Loop() {
		compress(&d, &x, &y, true)
	}
}

// The AVX2 block function equals the generic one, also with dst aliasing
// an input as the address generation does.
func TestCompressAVX2MatchesGeneric(t *testing.T) {
	if !useAVX2 {
		t.Skip("SKIP: no AVX2 on this CPU (or built with purego): the generic block function is the only one")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200; i++ {
		var x, y, d block
		for j := range x {
			x[j], y[j], d[j] = rng.Uint64(), rng.Uint64(), rng.Uint64()
		}
		xor := i%2 == 1
		a, g := d, d
		compressAVX2(&a, &x, &y, xor)
		compressGeneric(&g, &x, &y, xor)
		if a != g {
			t.Fatalf("block %d (xor %v): AVX2 and generic differ", i, xor)
		}
		ya, yg := y, y
		compressAVX2(&ya, &x, &ya, false)
		compressGeneric(&yg, &x, &yg, false)
		if ya != yg {
			t.Fatalf("block %d, dst aliasing y: AVX2 and generic differ", i)
		}
	}
}

func BenchmarkCompressGeneric(b *testing.B) {
	var x, y, d block
	for i := range x {
		x[i], y[i] = uint64(i)*0x9e3779b97f4a7c15, uint64(i)^0xdeadbeef
	}
	b.SetBytes(1024)
	for b.Loop() {
		compressGeneric(&d, &x, &y, true)
	}
}
