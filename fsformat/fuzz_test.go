package fsformat

import (
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"luksdock/internal/testkit"
)

// FuzzValidateLabel: an accepted label fits ext4's 16-byte field, is valid
// printable UTF-8 without white space, control characters or '/', and does
// not start with '-' or '.'; ValidateLabel never panics. On a sample (every
// seed, then one input in 64) the outside oracles agree: stock mke2fs
// (mkfs.ext4 -L, as luksdock runs it) writes it, blkid reads back exactly
// those bytes, and the kernel takes it as one directory name (the mount
// point a desktop makes from it).
func FuzzValidateLabel(f *testing.F) {
	for _, s := range []string{"backups01", "", "abcdefghijklmnopq", "ÄÖÜäöüßéè", "a/b", "two words", "tab\tx", "-dash", ".dot", "zw\u200bsp", "bad\xffutf8", "日本語ラベル", "😀😀😀😀", "a\u00a0b", "ok-label_1.2",
		"exactly16bytes!!", "ÄÖÜäöüßé", `q"uote'$x\`, "a:b;c*d?e"} {
		f.Add(s)
	}
	calls := 0
	f.Fuzz(func(t *testing.T, label string) {
		if ValidateLabel(label) != nil {
			return
		}
		switch {
		case label == "", len(label) > MaxLabel, !utf8.ValidString(label),
			strings.ContainsRune(label, '/'), label[0] == '-', label[0] == '.':
			t.Fatalf("accepted %q", label)
		}
		for _, r := range label {
			if unicode.IsControl(r) || unicode.IsSpace(r) || !unicode.IsPrint(r) {
				t.Fatalf("accepted %q with %U", label, r)
			}
		}
		calls++
		h := fnv.New32a()
		h.Write([]byte(label))
		if calls > 32 && h.Sum32()%64 != 0 {
			return
		}
		ext4TakesLabel(t, label)
	})
}

// ext4TakesLabel fails unless mkfs.ext4 -L label makes a filesystem whose
// label blkid reads back byte for byte, and label is one directory name.
func ext4TakesLabel(t *testing.T, label string) {
	t.Helper()
	testkit.NeedTools(t, "mkfs.ext4", "blkid") // the oracles of this fuzz target
	dir := t.TempDir()
	img := filepath.Join(dir, "label.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 1<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", label, img).CombinedOutput(); err != nil {
		t.Fatalf("accepted %q, but mkfs.ext4 -L refuses it: %v\n%s", label, err, out)
	} else if len(out) > 0 {
		t.Fatalf("accepted %q, but mkfs.ext4 -L warns: %s", label, out)
	}
	out, err := exec.Command("blkid", "-p", "-o", "value", "-s", "LABEL", img).Output()
	if err != nil {
		t.Fatalf("blkid -p %s: %v", img, err)
	}
	if got := strings.TrimSuffix(string(out), "\n"); got != label {
		t.Fatalf("accepted %q, but blkid reads the ext4 label back as %q", label, got)
	}
	mnt := filepath.Join(dir, "media")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(mnt, label), 0o700); err != nil {
		t.Fatalf("accepted %q, but it cannot be a directory name: %v", label, err)
	}
	if ents, _ := os.ReadDir(mnt); len(ents) != 1 || ents[0].Name() != label {
		t.Fatalf("accepted %q, but as a directory name it became %v", label, ents)
	}
}
