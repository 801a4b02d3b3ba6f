package argon2

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// TestMatchesReferenceCLI checks Key against the reference implementation
// of Argon2 (the C library of the RFC 9106 authors, Debian's `argon2`
// command, package argon2) on random costs, variants and lengths: an
// outside oracle no one here wrote.
func TestMatchesReferenceCLI(t *testing.T) {
	// Without it Key is still checked against RFC 9106's vectors and
	// x/crypto/argon2.
	testkit.NeedTools(t, "argon2")
	ref, err := exec.LookPath("argon2")
	if err != nil {
		t.Fatal(err)
	}
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	r := rand.New(rand.NewPCG(9106, uint64(len(ref))))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alnum[r.IntN(len(alnum))]
		}
		return string(b)
	}
	cases := 60
	if testing.Short() {
		cases = 15
	}
	for i := range cases {
		typ := []Type{Argon2d, Argon2i, Argon2id}[r.IntN(3)]
		threads := uint8(1 + r.IntN(4))
		p := Params{Type: typ, Time: uint32(1 + r.IntN(4)), MemoryKiB: uint32(8*int(threads) + r.IntN(4096)), Threads: threads, KeyLen: uint32(4 + r.IntN(61))}
		pass, salt := word(1+r.IntN(64)), word(8+r.IntN(24))
		flag := map[Type]string{Argon2d: "-d", Argon2i: "-i", Argon2id: "-id"}[typ]
		name := fmt.Sprintf("%d/%s/t%d/m%d/p%d/l%d", i, flag, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
		cmd := exec.Command(ref, salt, flag, "-t", strconv.Itoa(int(p.Time)), "-k", strconv.Itoa(int(p.MemoryKiB)),
			"-p", strconv.Itoa(int(p.Threads)), "-l", strconv.Itoa(int(p.KeyLen)), "-r")
		cmd.Stdin = strings.NewReader(pass) // no newline: the reference reads stdin as it is
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: reference argon2: %v", name, err)
		}
		want, err := hex.DecodeString(strings.TrimSpace(string(out)))
		if err != nil || len(want) != int(p.KeyLen) {
			t.Fatalf("%s: reference argon2 printed %q", name, out)
		}
		got, err := Key([]byte(pass), []byte(salt), p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: Key %x, the reference %x", name, got, want)
		}
	}
}
