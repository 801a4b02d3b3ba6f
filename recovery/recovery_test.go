package recovery

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateShapeAndEntropy(t *testing.T) {
	seen := map[string]bool{}
	var counts [16]int
	for i := 0; i < 200; i++ {
		k, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != Len || !Valid(k) {
			t.Fatalf("key %q: length %d, valid %v", k, len(k), Valid(k))
		}
		if parts := strings.Split(string(k), "-"); len(parts) != Groups {
			t.Fatalf("key has %d groups", len(parts))
		}
		if seen[string(k)] {
			t.Fatal("the same key twice")
		}
		seen[string(k)] = true
		for _, c := range bytes.ReplaceAll(k, []byte("-"), nil) {
			counts[strings.IndexByte(Alphabet, c)]++
		}
	}
	// 200*64 characters: every symbol ~800 times; a generator that lost
	// bits (a nibble always zero) would leave some at 0 or double others.
	for i, n := range counts {
		if n < 600 || n > 1000 {
			t.Errorf("symbol %c appears %d times in 12800, want about 800", Alphabet[i], n)
		}
	}
}

func TestGenerateEncodesEveryBit(t *testing.T) {
	raw := bytes.Repeat([]byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}, 4)
	k, err := generate(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("cbdefghi-jklnrtuv-", 4)
	if string(k) != want[:len(want)-1] {
		t.Fatalf("got %s", k)
	}
	if _, err := generate(bytes.NewReader(raw[:5])); err == nil {
		t.Fatal("short randomness accepted")
	}
}

func TestParse(t *testing.T) {
	k := "fvbjhrlu-ectbrckk-nkknbdtc-dbthfhtn-rlvgjckr-jvnblnrh-dlukbnjr-gktkktcf"
	for _, in := range []string{
		k,
		strings.ToUpper(k),
		strings.ReplaceAll(k, "-", ""),
		strings.ReplaceAll(k, "-", " "),
		"  " + strings.ReplaceAll(k, "-", "\n") + "\r\n",
		"FVBJ-HRLU ectb.rckk:nkkn_bdtc dbthfhtn rlvgjckr jvnblnrh dlukbnjr gktkktcf",
	} {
		got, err := Parse([]byte(in))
		if err != nil || string(got) != k {
			t.Errorf("Parse(%q) = %q, %v", in, got, err)
		}
	}
	for in, msg := range map[string]string{
		k[:len(k)-1]:           "63 characters",
		k + "c":                "more than 64",
		"a" + k[1:]:            `character 1 ('a')`,
		k[:9] + "0" + k[10:]:   `character 10 ('0')`,
		k[:3] + "\x00" + k[4:]: "character 4 is not",
		"":                     "0 characters",
	} {
		_, err := Parse([]byte(in))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), msg) {
			t.Errorf("Parse(%q): %v, want %q", in, err, msg)
		}
		if err != nil && len(in) > 20 && strings.Contains(err.Error(), in[10:20]) {
			t.Errorf("the error echoes the key: %v", err)
		}
	}
	if Valid([]byte(strings.ToUpper(k))) {
		t.Error("Valid accepts the upper-case form, which cryptsetup's prompt would not")
	}
}

func TestChallenge(t *testing.T) {
	key := []byte("fvbjhrlu-ectbrckk-nkknbdtc-dbthfhtn-rlvgjckr-jvnblnrh-dlukbnjr-gktkktcf")
	c := Challenge{Groups: []int{2, 7}}
	if got := c.Prompt(); got != "Type groups 2 and 7 of the recovery key" {
		t.Errorf("prompt %q", got)
	}
	for typed, want := range map[string]bool{
		"ectbrckk dlukbnjr":  true,
		"ECTBRCKK-DLUKBNJR":  true,
		"ectbrckkdlukbnjr\n": true,
		"dlukbnjr ectbrckk":  false, // wrong order
		"ectbrckk dlukbnj":   false,
		"ectbrckk dlukbnjrr": false,
		"ectbrckk":           false,
		"":                   false,
		"fvbjhrlu dlukbnjr":  false,
	} {
		if got := c.Check(key, []byte(typed)); got != want {
			t.Errorf("Check(%q) = %v, want %v", typed, got, want)
		}
	}
	picked := map[int]int{}
	for i := 0; i < 400; i++ {
		c, err := NewChallenge(2)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Groups) != 2 || c.Groups[0] >= c.Groups[1] || c.Groups[0] < 1 || c.Groups[1] > Groups {
			t.Fatalf("groups %v", c.Groups)
		}
		picked[c.Groups[0]]++
		picked[c.Groups[1]]++
	}
	for g := 1; g <= Groups; g++ {
		if picked[g] < 40 { // ~100 expected each
			t.Errorf("group %d picked %d times in 400 challenges", g, picked[g])
		}
	}
	if _, err := NewChallenge(0); err == nil {
		t.Error("a challenge of no groups")
	}
}

func TestWriteFileReadFile(t *testing.T) {
	dir := t.TempDir()
	key, _ := Generate()
	p := filepath.Join(dir, "rk.txt")
	if err := WriteFile(p, key, "backups01, LUKS UUID 1234"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	b, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b), FileHeader+"# backups01, LUKS UUID 1234\n") || !strings.HasSuffix(string(b), "\n"+string(key)+"\n") {
		t.Errorf("file:\n%s", b)
	}
	got, err := ReadFile(p, nil)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadFile: %q, %v", got, err)
	}
	got, err = ReadFile("-", strings.NewReader(strings.ToUpper(string(key))+"\n"))
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("ReadFile(-): %q, %v", got, err)
	}
	if _, err := ReadFile("-", strings.NewReader("# nothing\n\n")); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty key file: %v", err)
	}
	// never overwrites, not even through a symlink
	if err := WriteFile(p, key, ""); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second write: %v", err)
	}
	if b2, _ := os.ReadFile(p); !bytes.Equal(b, b2) {
		t.Error("the file changed")
	}
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "target"), link)
	if err := WriteFile(link, key, ""); err == nil {
		t.Error("wrote through a dangling symlink")
	}
	if _, err := os.Lstat(filepath.Join(dir, "target")); err == nil {
		t.Error("the symlink's target was created")
	}
	// umask does not widen the mode
	old := umask(0)
	defer umask(old)
	p2 := filepath.Join(dir, "rk2")
	if err := WriteFile(p2, key, ""); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p2); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v with umask 0", st.Mode())
	}
}

// TestQR checks the drawing against the QR standard's fixed structure: a
// 7x7 finder pattern (dark ring, light ring, dark 3x3 core) in three
// corners, none in the fourth, the timing pattern alternating between them,
// the quiet zone light, and the size of the version the key needs.
func TestQR(t *testing.T) {
	key := []byte("fvbjhrlu-ectbrckk-nkknbdtc-dbthfhtn-rlvgjckr-jvnblnrh-dlukbnjr-gktkktcf")
	for _, darkTerm := range []bool{false, true} {
		text, width, err := QR(key, darkTerm)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(text, "\n")
		if len(lines) != (width+1)/2 {
			t.Fatalf("%d lines for width %d", len(lines), width)
		}
		// Back to modules: true = dark module.
		mod := make([][]bool, 2*len(lines))
		for i := range mod {
			mod[i] = make([]bool, width)
		}
		for y, l := range lines {
			r := []rune(l)
			if len(r) != width {
				t.Fatalf("line %d is %d cells, want %d", y, len(r), width)
			}
			for x, c := range r {
				top, bottom := c == '█' || c == '▀', c == '█' || c == '▄'
				mod[2*y][x], mod[2*y+1][x] = top != darkTerm, bottom != darkTerm
			}
		}
		size := width - 2*QRQuiet
		// 71 bytes at level M need version 5: 37 modules.
		if size != 37 {
			t.Errorf("code is %d modules, want 37 (version 5)", size)
		}
		at := func(y, x int) bool { return mod[y+QRQuiet][x+QRQuiet] }
		finder := func(oy, ox int) bool {
			for y := 0; y < 7; y++ {
				for x := 0; x < 7; x++ {
					ring := y == 0 || y == 6 || x == 0 || x == 6
					core := y >= 2 && y <= 4 && x >= 2 && x <= 4
					if at(oy+y, ox+x) != (ring || core) {
						return false
					}
				}
			}
			return true
		}
		if !finder(0, 0) || !finder(0, size-7) || !finder(size-7, 0) {
			t.Errorf("dark terminal %v: finder patterns missing:\n%s", darkTerm, text)
		}
		if finder(size-7, size-7) {
			t.Error("a finder pattern in the fourth corner: the code is mirrored")
		}
		for i := 8; i < size-8; i++ {
			if at(6, i) != (i%2 == 0) || at(i, 6) != (i%2 == 0) {
				t.Fatalf("timing pattern broken at %d", i)
			}
		}
		for i := 0; i < width; i++ {
			for q := 0; q < QRQuiet; q++ {
				if mod[q][i] || mod[i][q] || mod[width-1-q][i] || mod[i][width-1-q] {
					t.Fatal("quiet zone not light")
				}
			}
		}
	}
}
