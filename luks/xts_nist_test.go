package luks

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nistXTSVector is one record of a NIST CAVP XTSGen response file.
type nistXTSVector struct {
	file, section, count string
	bits                 int
	key, tweak, pt, ct   []byte
}

// readNISTXTS parses a CAVP .rsp file: [ENCRYPT]/[DECRYPT] sections of
// records "COUNT, DataUnitLen, Key, i, PT, CT" (the order of PT and CT
// differs between the sections), separated by blank lines.
func readNISTXTS(t *testing.T, path string) []nistXTSVector {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []nistXTSVector
	var cur *nistXTSVector
	section := ""
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["):
			flush()
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, " = ")
		if !ok {
			t.Fatalf("%s: cannot read %q", path, line)
		}
		if k == "COUNT" {
			flush()
			cur = &nistXTSVector{file: filepath.Base(path), section: section, count: v}
			continue
		}
		if cur == nil {
			t.Fatalf("%s: %q before any COUNT", path, line)
		}
		var b []byte
		if k != "DataUnitLen" {
			if b, err = hex.DecodeString(v); err != nil {
				t.Fatalf("%s COUNT %s: %s: %v", path, cur.count, k, err)
			}
		}
		switch k {
		case "DataUnitLen":
			cur.bits, _ = strconv.Atoi(v)
		case "Key":
			cur.key = b
		case "i":
			cur.tweak = b
		case "PT":
			cur.pt = b
		case "CT":
			cur.ct = b
		default:
			t.Fatalf("%s: unknown field %q", path, k)
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestXTSNISTCAVPVectors runs NIST CAVP XTS-AES vectors (testdata/nist-xts,
// whose README names their source: XTS-AES-128 and -256, data units of one,
// two and three blocks, both sections) through the volume's own code,
// cryptUnitsTweak (what cryptUnits runs with the upper tweak half 0), in
// every implementation (portable, AES-NI, VAES where the CPU has them). A
// NIST data unit is the first blocks of a 512-byte unit: without
// ciphertext stealing each block depends only on its own tweak, the first
// tweak being AES_K2(i) and each next one multiplied by x.
func TestXTSNISTCAVPVectors(t *testing.T) {
	n := map[int]int{} // vectors run, per key length
	for _, file := range []string{"XTSGenAES128.rsp", "XTSGenAES256.rsp"} {
		for _, v := range readNISTXTS(t, filepath.Join("testdata", "nist-xts", file)) {
			name := v.file + " " + v.section + " COUNT " + v.count
			if v.bits%128 != 0 {
				t.Fatalf("%s: a %d-bit data unit (only whole blocks belong in the subset)", name, v.bits)
			}
			if len(v.pt) != v.bits/8 || len(v.ct) != v.bits/8 || len(v.tweak) != 16 {
				t.Fatalf("%s: lengths do not match DataUnitLen %d", name, v.bits)
			}
			lo, hi := binary.LittleEndian.Uint64(v.tweak[:8]), binary.LittleEndian.Uint64(v.tweak[8:])
			for _, impl := range xtsImpls() {
				c, err := newXTSCipherImpl(v.key, 512, impl.asm, impl.vaes)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				unit := make([]byte, 512)
				got := make([]byte, 512)
				if v.section == "ENCRYPT" {
					copy(unit, v.pt)
					c.cryptUnitsTweak(got, unit, lo, hi, false)
					if !bytes.Equal(got[:len(v.ct)], v.ct) {
						t.Errorf("%s, %s: encryption gives %x, NIST says %x", name, impl.name, got[:len(v.ct)], v.ct)
					}
				}
				copy(unit, v.ct)
				c.cryptUnitsTweak(got, unit, lo, hi, true)
				if !bytes.Equal(got[:len(v.pt)], v.pt) {
					t.Errorf("%s, %s: decryption gives %x, NIST says %x", name, impl.name, got[:len(v.pt)], v.pt)
				}
			}
			n[len(v.key)]++
		}
	}
	if n[32] < 10 || n[64] < 3 {
		t.Errorf("ran %d XTS-AES-128 and %d XTS-AES-256 vectors: the test data is missing", n[32], n[64])
	}
	t.Logf("NIST CAVP: %d XTS-AES-128 and %d XTS-AES-256 vectors, %d implementations", n[32], n[64], len(xtsImpls()))
}
