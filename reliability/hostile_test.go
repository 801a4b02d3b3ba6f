package reliability

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"luksdock/internal/testkit"
)

// refusal is one hostile or wrong input: the command must exit with code,
// say want (a substring of stderr), and leave every file in keep
// byte-identical.
type refusal struct {
	args  []string
	stdin []byte
	code  int
	want  string
	keep  []string
	pre   []string
}

func (c refusal) check(t *testing.T) {
	t.Helper()
	before := map[string]string{}
	for _, f := range c.keep {
		before[f] = testkit.SHA256File(t, f)
	}
	r := luksdock(t, runOpts{stdin: c.stdin, pre: c.pre}, c.args...)
	if r.code != c.code {
		t.Errorf("exit %d, want %d\n%v", r.code, c.code, r)
	}
	if !strings.Contains(r.stderr, c.want) {
		t.Errorf("stderr does not say %q:\n%s", c.want, r.stderr)
	}
	if strings.Contains(r.stdout, "Done") {
		t.Errorf("printed Done:\n%s", r.stdout)
	}
	for _, f := range c.keep {
		if testkit.SHA256File(t, f) != before[f] {
			t.Errorf("%s changed", f)
		}
	}
	t.Logf("exit %d: %s", r.code, strings.TrimSpace(strings.SplitN(r.stderr, "\n", 2)[0]))
}

// TestHostileLabels: labels ext4 or a desktop cannot take.
func TestHostileLabels(t *testing.T) {
	requireEnv(t)
	img := oldImage(t)
	pass := passFile(t, []byte(testPass+"\n"))
	for _, c := range []struct{ label, want string }{
		{"abcdefghijklmnopq", "17 bytes"},
		{"ÄÖÜäöüßéè", "18 bytes"},
		{"a/b", "'/'"},
		{"two words", "white space"},
		{"tab\tx", "control character"},
		{"bell\ax", "control character"},
		{"nl\nx", "control character"},
		{"-dash", "must not start"},
		{"zw\u200bsp", "cannot be printed"},
		{"bad\xffutf8", "UTF-8"},
	} {
		t.Run(c.label, func(t *testing.T) {
			args := []string{"prepare", "--image", img, "--label", c.label, "--passphrase-file", pass, "--confirm", "disk.img"}
			refusal{args: append(args, lowCost...), code: 3, want: c.want, keep: []string{img}}.check(t)
		})
	}
	t.Run("empty", func(t *testing.T) {
		refusal{args: []string{"prepare", "--image", img, "--label", "", "--passphrase-file", pass, "--confirm", "disk.img"}, code: 2, want: "--label is required", keep: []string{img}}.check(t)
	})
}

// TestHostilePassphrases: passphrases that cannot be typed back are refused
// before anything is written; typeable non-ASCII ones work and unlock when
// typed at cryptsetup's prompt.
func TestHostilePassphrases(t *testing.T) {
	requireEnv(t)
	img := oldImage(t)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	for _, c := range []struct {
		name    string
		content []byte
		want    string
	}{
		{"empty-file", nil, "empty"},
		{"empty-line", []byte("\nsecond\n"), "empty"},
		{"1MiB", append(big, '\n'), "longer than 512 bytes"},
		{"1MiB-no-newline", big, "longer than 512 bytes"},
		{"513-bytes", append(big[:513:513], '\n'), "longer than 512 bytes"},
		{"NUL-in-the-middle", []byte("abc\x00def\n"), "NUL"},
		{"latin1-not-UTF-8", []byte("p\xe4sswort\n"), "UTF-8"},
		{"escape-character", []byte("pass\x1bword\n"), "control character"},
		{"CR-in-the-middle", []byte("pass\rword\n"), "line break"},
		{"newline-in-the-middle", []byte("first-line\nsecond-line\n"), "more than one line"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pf := passFile(t, c.content)
			refusal{args: prepareArgs(img, pf), code: 3, want: c.want, keep: []string{img}}.check(t)
			refusal{args: prepareArgs(img, "-"), stdin: c.content, code: 3, want: c.want, keep: []string{img}}.check(t)
		})
	}
	t.Run("passphrase-file-missing", func(t *testing.T) {
		refusal{args: prepareArgs(img, filepath.Join(t.TempDir(), "nope")), code: 3, want: "no such file", keep: []string{img}}.check(t)
	})
	t.Run("passphrase-file-is-a-directory", func(t *testing.T) {
		refusal{args: prepareArgs(img, t.TempDir()), code: 3, want: "is a directory", keep: []string{img}}.check(t)
	})
	// Accepted: what a person can type. The disk must unlock when exactly
	// the passphrase is typed at cryptsetup's prompt (a line on stdin
	// without --key-file), and not with the rest of the file.
	for _, c := range []struct {
		name    string
		content []byte
		typed   string
		wrong   string
	}{
		{"non-ASCII", []byte("pässwört-€-日本語-😀\n"), "pässwört-€-日本語-😀", "passwort"},
		{"CRLF", []byte("windows-line\r\n"), "windows-line", "windows-line\r"},
		{"exactly-512-bytes", append(big[:512:512], '\n'), string(big[:512]), string(big[:511])},
		{"trailing-blank-lines", []byte("only-line\n\n\n"), "only-line", "only-line\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := sparseImage(t, t.TempDir(), imgSize)
			pf := passFile(t, c.content)
			r := luksdock(t, runOpts{}, prepareArgs(img, pf)...)
			if r.code != 0 {
				t.Fatalf("prepare: %v", r)
			}
			hdr, _ := headerCopy(t, img)
			typed := exec.Command("cryptsetup", "open", "--test-passphrase", hdr)
			typed.Stdin = strings.NewReader(c.typed + "\n")
			if out, err := typed.CombinedOutput(); err != nil {
				t.Errorf("typing %q at cryptsetup's prompt does not unlock the disk: %v: %s", c.typed, err, out)
			}
			wrong := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file=-", hdr)
			wrong.Stdin = strings.NewReader(c.wrong)
			if err := wrong.Run(); err == nil {
				t.Errorf("%q unlocks the disk too", c.wrong)
			}
			vr := luksdock(t, runOpts{stdin: []byte(c.typed + "\n")}, "verify", "--image", img, "--passphrase-file", "-")
			if vr.code != 0 {
				t.Errorf("luksdock verify with the typed passphrase: %v", vr)
			}
		})
	}
	t.Run("mismatch", func(t *testing.T) {
		img := sparseImage(t, t.TempDir(), imgSize)
		if r := luksdock(t, runOpts{}, prepareArgs(img, passFile(t, []byte(testPass+"\n")))...); r.code != 0 {
			t.Fatalf("prepare: %v", r)
		}
		refusal{args: []string{"verify", "--image", img, "--passphrase-file", passFile(t, []byte(testPass+"x\n"))}, code: 6, want: "does not unlock", keep: []string{img}}.check(t)
	})
}

// TestHostileImages: --image pointing at things that are not an image file
// luksdock may overwrite.
func TestHostileImages(t *testing.T) {
	requireEnv(t)
	pass := passFile(t, []byte(testPass+"\n"))
	run := func(t *testing.T, path string, code int, want string, keep ...string) {
		t.Helper()
		args := []string{"prepare", "--image", path, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(path)}
		refusal{args: append(args, lowCost...), code: code, want: want, keep: keep}.check(t)
	}
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "keep"), []byte("data"), 0o600)
		run(t, dir, 3, "is a directory", filepath.Join(dir, "keep"))
	})
	t.Run("fifo", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "fifo")
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, p, 3, "not a regular file") // must not block opening it
	})
	t.Run("char-device-symlink", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "null.img")
		os.Symlink("/dev/null", p)
		run(t, p, 3, "symlink to a device")
	})
	t.Run("symlink-to-block-device", func(t *testing.T) {
		file := oldImage(t)
		dev := attachLoop(t, file)
		p := filepath.Join(t.TempDir(), "disk.img")
		os.Symlink(dev, p)
		run(t, p, 3, "symlink to a device", file)
	})
	t.Run("dangling-symlink", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "gone.img")
		os.Symlink("/nonexistent/target", p)
		run(t, p, 3, "dangling symlink")
	})
	t.Run("read-only-filesystem", func(t *testing.T) {
		dir := mountTmpfs(t, "100m", false)
		img := sparseImage(t, dir, imgSize)
		withContent(t, img)
		mustRun(t, "mount", "-o", "remount,ro", dir)
		run(t, img, 3, "read-only filesystem", img)
	})
	t.Run("used-by-a-loop-device", func(t *testing.T) {
		img := oldImage(t)
		dev := attachLoop(t, img)
		run(t, img, 3, "in use by "+dev, img)
	})
	t.Run("wrong-confirm", func(t *testing.T) {
		img := oldImage(t)
		args := []string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", pass, "--confirm", "other.img"}
		refusal{args: append(args, lowCost...), code: 3, want: "confirmation does not match", keep: []string{img}}.check(t)
	})
}

// TestHostileSizes: --size values that are not a size luksdock can create;
// no file may be created.
func TestHostileSizes(t *testing.T) {
	requireEnv(t)
	pass := passFile(t, []byte(testPass+"\n"))
	for _, c := range []struct {
		size string
		code int
		want string
	}{
		{"0", 2, "greater than zero"},
		{"1k", 3, "at least 64.0 MiB"},
		{"63M", 3, "at least 64.0 MiB"},
		{"10E", 2, "too large"},
		{"abc", 2, "not a number"},
		{"-5M", 2, "not a number"},
		{"1.5.5G", 2, "not a number"},
		{"99999999999999999999", 2, "too large"},
		{"", 2, ""},
	} {
		t.Run(c.size, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "new.img")
			args := append(prepareArgs(img, pass), "--size", c.size)
			if c.size == "" { // --size "" means no size: the image does not exist
				c.code, c.want = 3, "give --size"
			}
			refusal{args: args, code: c.code, want: c.want}.check(t)
			if _, err := os.Lstat(img); err == nil {
				t.Errorf("--size %q created %s", c.size, img)
			}
		})
	}
}

// TestHostileDevices: --device pointing at a partition, at nothing, at a
// regular file or a character device, and a block device without root.
func TestHostileDevices(t *testing.T) {
	requireEnv(t)
	pass := passFile(t, []byte(testPass+"\n"))
	dev := func(t *testing.T, path, confirm string, code int, want string, keep ...string) {
		t.Helper()
		args := []string{"prepare", "--device", path, "--label", "backups01", "--passphrase-file", pass, "--confirm", confirm, "--engine", "userspace"}
		refusal{args: append(args, lowCost...), code: code, want: want, keep: keep}.check(t)
	}
	t.Run("partition", func(t *testing.T) {
		file := oldImage(t)
		mustRun(t, "sh", "-c", "printf 'label: gpt\\nstart=2048, size=100000\\n' | sfdisk -q "+file)
		l := attachLoop(t, file)
		mustRun(t, "partx", "--add", l)
		part := l + "p1"
		if _, err := os.Stat(part); err != nil {
			t.Fatalf("no partition node %s after partx --add: %v", part, err)
		}
		dev(t, part, filepath.Base(part), 3, "partition", file)
	})
	t.Run("nonexistent", func(t *testing.T) {
		dev(t, "/dev/sdzz", "sdzz", 3, "no such file")
	})
	t.Run("regular-file", func(t *testing.T) {
		file := oldImage(t)
		dev(t, file, "disk.img", 3, "not a block device", file)
	})
	t.Run("char-device", func(t *testing.T) {
		dev(t, "/dev/null", "null", 3, "not a block device")
	})
	t.Run("without-root", func(t *testing.T) {
		file := oldImage(t)
		l := attachLoop(t, file)
		args := []string{"prepare", "--device", l, "--label", "backups01", "--passphrase-file", "-", "--confirm", filepath.Base(l), "--engine", "userspace"}
		refusal{
			pre:  []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"},
			args: append(args, lowCost...), stdin: []byte(testPass + "\n"),
			code: 3, want: "permission denied: preparing a disk needs root", keep: []string{file},
		}.check(t)
	})
}
