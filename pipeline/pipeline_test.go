package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"512M": 512 << 20, "64G": 64 << 30, "1T": 1 << 40, "1.5G": 3 << 29, "100": 100,
		"1k": 1024, "2MiB": 2 << 20, "1E": 1 << 60,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "", "abc", "10E", "-1G", "1.2.3G", "G", "99999999999999999999"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
}

func TestReadPassphrase(t *testing.T) {
	for in, want := range map[string]string{
		"pw\n": "pw", "pw\r\n": "pw", "pw": "pw", "pw\n\n\r\n": "pw", "grüße für dich\n": "grüße für dich",
		strings.Repeat("x", MaxPassphrase) + "\n": strings.Repeat("x", MaxPassphrase),
	} {
		got, err := ReadPassphrase(strings.NewReader(in))
		if err != nil || string(got) != want {
			t.Errorf("ReadPassphrase(%q) = %q, %v", in, got, err)
		}
	}
	for in, msg := range map[string]string{
		"\n": "empty", "": "empty", "pw\nsecond line\n": "more than one line", "pw\n\nx": "more than one line", "a\x00b\n": "NUL", "a\tb\n": "control", "\xff\xfe\n": "UTF-8",
		strings.Repeat("x", MaxPassphrase+1) + "\n": "longer than", strings.Repeat("y", 1<<20): "longer than",
	} {
		if _, err := ReadPassphrase(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ReadPassphrase(%.20q): %v, want %q", in, err, msg)
		}
	}
}

// TestDryRunScript: the plan of a fresh image is the manual procedure's
// commands, with the image created first.
func TestDryRunScript(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	tg, err := ImageTarget(img, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(tg, Options{Label: "backups01", HeaderBackup: filepath.Join(t.TempDir(), "hdr")})
	if err != nil {
		t.Fatal(err)
	}
	// the plan's summary names the set and the owner
	ps, err := NewPlan(tg, Options{Label: "backups01", Set: "offsite", Owner: "4242:4343"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\n# set: offsite\n# owner of the filesystem's top directory: 4242:4343 (--owner 4242:4343)\n"} {
		if !strings.Contains(ps.Script(), want) {
			t.Errorf("script lacks %q:\n%s", want, ps.Script())
		}
	}
	if want := "set: offsite; owner of the filesystem's top directory: 4242:4343 (--owner 4242:4343)"; ps.SetOwnerLine() != want {
		t.Errorf("SetOwnerLine() = %q, want %q", ps.SetOwnerLine(), want)
	}
	s := p.Script()
	for _, want := range []string{"\n# set: none\n", "truncate -s 1073741824", "sfdisk", "cryptsetup luksFormat --batch-mode --verify-passphrase --type luks2 --label backups01 --cipher aes-xts-plain64 --key-size 512 \"$PART\"",
		"mkfs.ext4", "-L backups01", "cryptsetup luksHeaderBackup", "e2fsck -fn"} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if _, err := os.Stat(img); err == nil {
		t.Error("planning created the image")
	}
	if tg.ConfirmWord() != "disk.img" {
		t.Errorf("confirm word %q", tg.ConfirmWord())
	}
}
