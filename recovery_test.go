package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/recovery"
)

// promptOpens reports whether stock cryptsetup, reading a passphrase the
// way its prompt does (a line from standard input; no --key-file), accepts
// typed for dev.
func promptOpens(t *testing.T, dev, typed string) bool {
	t.Helper()
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", dev)
	cmd.Stdin = strings.NewReader(typed + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 { // 2: no key available with this passphrase
			t.Fatalf("cryptsetup open --test-passphrase: %v\n%s", err, out)
		}
		return false
	}
	return true
}

// TestRecoveryKey prepares an image with --recovery-key and proves with
// stock cryptsetup that the key in the file opens the disk when typed at
// its prompt, as does the passphrase, and a wrong key does not; luksDump
// shows two keyslots; luksdock verify proves both keys and fails with a
// wrong one.
func TestRecoveryKey(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4")
	dir := t.TempDir()
	img, rkFile := filepath.Join(dir, "disk.img"), filepath.Join(dir, "backups01.recovery")
	args := append([]string{"prepare", "--image", img, "--size", "100M", "--label", "backups01",
		"--passphrase-file", "-", "--confirm", "disk.img", "--recovery-key", rkFile}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	st, err := os.Stat(rkFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("recovery key file: %v %v", st, err)
	}
	b, _ := os.ReadFile(rkFile)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	key := lines[len(lines)-1]
	if len(key) != recovery.Len || !recovery.Valid([]byte(key)) {
		t.Fatalf("recovery key file holds %q", b)
	}
	if strings.Contains(out+errs, key) {
		t.Error("the recovery key is in luksdock's output")
	}
	if !strings.Contains(out, "cryptsetup luksAddKey --batch-mode --key-file=- --pbkdf pbkdf2") || !strings.Contains(out, "recovery key: opens it too (verified); written to "+rkFile) {
		t.Errorf("output:\n%s", out)
	}
	checkPrepared(t, img, "gpt", "backups01", 2)

	p1, _ := testkit.Partition1(t, img)
	part := testkit.AttachLoop(t, img, "--offset", fmt.Sprint(p1.Base), "--sizelimit", fmt.Sprint(p1.Size))
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", part)
	for _, slot := range []string{"\n  0: luks2\n", "\n  1: luks2\n"} {
		if !strings.Contains(dump, slot) {
			t.Errorf("luksDump has no keyslot %q:\n%s", slot, dump)
		}
	}
	if !promptOpens(t, part, key) {
		t.Error("cryptsetup's prompt does not accept the recovery key")
	}
	if !promptOpens(t, part, testPass) {
		t.Error("cryptsetup's prompt does not accept the passphrase")
	}
	wrong := []byte(key)
	wrong[len(wrong)-1] = "cb"[map[bool]int{true: 1, false: 0}[wrong[len(wrong)-1] == 'c']]
	for _, bad := range []string{string(wrong), strings.ToUpper(key), strings.ReplaceAll(key, "-", "")} {
		if promptOpens(t, part, bad) {
			t.Errorf("cryptsetup accepted %q for the recovery key", bad)
		}
	}
	testkit.DetachLoop(part)

	// luksdock verify proves both, from the file and typed loosely on stdin.
	if code, out, errs := cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-", "--recovery-key-file", rkFile); code != 0 || !strings.Contains(out, "the recovery key opens it too") {
		t.Errorf("verify --recovery-key-file: exit %d\n%s%s", code, out, errs)
	}
	pf := filepath.Join(dir, "pass")
	os.WriteFile(pf, []byte(testPass+"\n"), 0o600)
	loose := strings.ToUpper(strings.ReplaceAll(key, "-", " "))
	if code, out, errs := cli(t, loose+"\n", "verify", "--image", img, "--passphrase-file", pf, "--recovery-key-file", "-", "--json"); code != 0 || !strings.Contains(out, `"recovery_key":true`) || strings.Contains(out, key) {
		t.Errorf("verify with the key typed loosely: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := cli(t, string(wrong)+"\n", "verify", "--image", img, "--passphrase-file", pf, "--recovery-key-file", "-"); code != 6 || !strings.Contains(out+errs, "the recovery key does not unlock any keyslot") {
		t.Errorf("verify with a wrong recovery key: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := cli(t, "", "verify", "--image", img, "--passphrase-file", pf, "--recovery-key-file", "-"); code != 3 || !strings.Contains(errs, "not a recovery key") {
		t.Errorf("verify with no key on stdin: exit %d %s", code, errs)
	}
	if code, _, errs := cli(t, "", "verify", "--image", img, "--passphrase-file", "-", "--recovery-key-file", "-"); code != 2 {
		t.Errorf("both on stdin: exit %d %s", code, errs)
	}
}

// TestRecoveryKeyFileRefusals: an existing file is never overwritten, a
// missing directory and a path inside the target are refused, all before
// anything is written.
func TestRecoveryKeyFileRefusals(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "mkfs.ext4")
	dir := t.TempDir()
	img := testkit.SparseFile(t, filepath.Join(dir, "disk.img"), 100<<20)
	existing := filepath.Join(dir, "old.key")
	os.WriteFile(existing, []byte("keep me\n"), 0o600)

	// A directory on a filesystem inside the target image (loop-mounted).
	testkit.Run(t, "", "mkfs.ext4", "-q", "-F", img)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	loop := testkit.AttachLoop(t, img)
	mounted := true
	if out, err := exec.Command("mount", loop, mnt).CombinedOutput(); err != nil {
		mounted = false
		t.Logf("SKIPPED the on-target case only: cannot mount ext4 here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	for _, c := range []struct{ path, want string }{
		{existing, "already exists; refusing to overwrite it"},
		{filepath.Join(dir, "nodir", "k"), "directory " + filepath.Join(dir, "nodir") + " does not exist"},
		{filepath.Join(mnt, "k"), "which is on the target " + img + " and is destroyed with it"},
		{"-", "the key is never printed on standard output"},
	} {
		if !mounted && strings.HasPrefix(c.path, mnt) {
			continue
		}
		args := append([]string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", "-", "--confirm", "disk.img", "--recovery-key", c.path}, smallKDF...)
		code, out, errs := cli(t, testPass+"\n", args...)
		if code != 3 || !strings.Contains(errs, c.want) {
			t.Errorf("--recovery-key %s: exit %d, want 3 and %q\n%s%s", c.path, code, c.want, out, errs)
		}
	}
	exec.Command("umount", mnt).Run()
	testkit.DetachLoop(loop)
	// (mounting changed the image's bytes; what is on it did not change)
	if got := testkit.Run(t, "", "blkid", "-p", "-o", "value", "-s", "TYPE", img); strings.TrimSpace(got) != "ext4" {
		t.Errorf("the image holds %q now, not the ext4 it had", got)
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me\n" {
		t.Error("the existing file changed")
	}
	if _, err := os.Stat(filepath.Join(mnt, "k")); err == nil {
		t.Error("a key file was written inside the target")
	}
}
