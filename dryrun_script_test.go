package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
	"luksdock/recovery"
)

// detachLoopsOf detaches, when the test ends, every loop device whose
// backing file is img (the script attaches one and, stopped early, leaves
// it).
func detachLoopsOf(t *testing.T, img string) {
	t.Cleanup(func() {
		out, _ := exec.Command("losetup", "--noheadings", "--output", "NAME", "--associated", img).Output()
		for _, dev := range strings.Fields(string(out)) {
			exec.Command("losetup", "--detach", dev).Run()
		}
	})
}

// noLoopLeft fails t if a loop device is still attached to img after the
// script stopped on a failure (its trap must have detached it).
func noLoopLeft(t *testing.T, img string) {
	t.Helper()
	out, _ := exec.Command("losetup", "--noheadings", "--output", "NAME", "--associated", img).Output()
	if l := strings.Fields(string(out)); len(l) > 0 {
		t.Errorf("the script stopped on a failure and left the loop device %v on %s", l, img)
	}
}

// dryRunScript writes the --dry-run script for args to a file.
func dryRunScript(t *testing.T, args ...string) (path, script string) {
	t.Helper()
	code, script, errs := cli(t, "", append([]string{"prepare", "--dry-run"}, args...)...)
	if code != 0 {
		t.Fatalf("--dry-run: exit %d\n%s", code, errs)
	}
	path = filepath.Join(t.TempDir(), "byhand.sh")
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path, script
}

type kdfJSON struct {
	Type       string `json:"type"`
	Time       int    `json:"time"`
	Memory     int    `json:"memory"`
	CPUs       int    `json:"cpus"`
	Iterations int    `json:"iterations"`
}

// luksKDFs reads each keyslot's kdf with stock cryptsetup.
func luksKDFs(t *testing.T, dev string) map[int]kdfJSON {
	t.Helper()
	out, err := exec.Command("cryptsetup", "luksDump", "--dump-json-metadata", dev).Output()
	if err != nil {
		t.Fatalf("luksDump %s: %v", dev, err)
	}
	var meta struct {
		Keyslots map[string]struct {
			KDF kdfJSON `json:"kdf"`
		} `json:"keyslots"`
	}
	if err := json.Unmarshal(out, &meta); err != nil {
		t.Fatal(err)
	}
	m := map[int]kdfJSON{}
	for k, v := range meta.Keyslots {
		n, _ := strconv.Atoi(k)
		m[n] = v.KDF
	}
	return m
}

// slotOpenedBy is the keyslot stock cryptsetup opens with secret (as a key
// file on standard input), -1 for none.
func slotOpenedBy(t *testing.T, dev, secret string) int {
	t.Helper()
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--verbose", "--key-file=-", dev)
	cmd.Stdin = strings.NewReader(secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`Key slot (\d+) unlocked`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("cryptsetup: %s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestDryRunScriptRecoveryKeyRuns (issue 20, items 3, 13): the --dry-run
// script of `prepare --recovery-key FILE` is run by hand — with sh, on a
// terminal (a pseudo-terminal), the passphrase typed at cryptsetup's
// prompts — on an image with --table none (a loop device without a
// partition: this host has no partition-table parser). It runs up to
// `cryptsetup open`, which needs device-mapper (this host has none; the
// QEMU guest has), so the open and every later step (erase, mkfs, close,
// verify) do not run here. What ran is proven with stock cryptsetup:
// luksFormat asked for the passphrase twice; the key file is new, mode
// 0600, holds a recovery key that opens keyslot 1 and the passphrase
// keyslot 0; both keyslots have the same KDF cost (item 7: the script reads
// keyslot 0's measured cost from the header). A typo in the second typing
// stops the script at luksFormat with nothing formatted (item 13).
func TestDryRunScriptRecoveryKeyRuns(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "sh", "cryptsetup", "losetup", "wipefs", "truncate", "od", "awk", "sed", "tr")
	t.Run("typed-twice", func(t *testing.T) {
		dir := t.TempDir()
		img, rk := filepath.Join(dir, "hand.img"), filepath.Join(dir, "hand.recovery")
		detachLoopsOf(t, img)
		path, script := dryRunScript(t, "--image", img, "--size", "64M", "--label", "dry1", "--table", "none",
			"--recovery-key", rk, "--pbkdf", "argon2id", "--pbkdf-memory", "16384", "--iter-time", "300")
		if !strings.Contains(script, "luksFormat --batch-mode --verify-passphrase") {
			t.Errorf("the script's luksFormat does not ask twice:\n%s", script)
		}
		// luksFormat: passphrase, verify; luksAddKey: existing passphrase;
		// cryptsetup open: passphrase (then it fails: no device-mapper).
		lines := []string{testPass, testPass, testPass, testPass}
		out, err := testkit.RunOnPTY(3*time.Minute, "passphrase", lines, "sh", path)
		t.Logf("the script on a terminal: %v\n%s", err, out)
		if err == nil {
			t.Log("the script ran to its end: this host has device-mapper")
		} else if !strings.Contains(out, "Cannot initialize device-mapper") && !strings.Contains(out, "device-mapper") {
			t.Fatalf("the script stopped before cryptsetup open: %v\n%s", err, out)
		} else {
			noLoopLeft(t, img)
		}
		if n := strings.Count(out, "Verify passphrase"); n != 1 {
			t.Errorf("luksFormat asked to verify the passphrase %d times, want once", n)
		}
		st, err := os.Stat(rk)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("recovery key file: %v %v", st, err)
		}
		key, err := recovery.ReadFile(rk, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(rk)
		if !bytes.HasPrefix(b, []byte(recovery.FileHeader)) || !bytes.HasSuffix(b, append(append([]byte{}, key...), '\n')) {
			t.Errorf("the key file is not what luksdock writes:\n%s", b)
		}
		kdfs := luksKDFs(t, img)
		if len(kdfs) != 2 {
			t.Fatalf("luksDump: keyslots %v, want 0 and 1", kdfs)
		}
		if kdfs[0].Type != "argon2id" || kdfs[1] != kdfs[0] {
			t.Errorf("keyslot 0 kdf %+v, keyslot 1 %+v: want the same argon2id cost", kdfs[0], kdfs[1])
		}
		if n := slotOpenedBy(t, img, testPass); n != 0 {
			t.Errorf("the passphrase opens keyslot %d, want 0", n)
		}
		if n := slotOpenedBy(t, img, string(key)); n != 1 {
			t.Errorf("the recovery key in the file opens keyslot %d, want 1", n)
		}
		if !promptOpens(t, img, string(key)) {
			t.Error("the recovery key typed at cryptsetup's prompt does not open the disk")
		}
	})
	t.Run("typo", func(t *testing.T) {
		dir := t.TempDir()
		img, rk := filepath.Join(dir, "hand.img"), filepath.Join(dir, "hand.recovery")
		detachLoopsOf(t, img)
		path, _ := dryRunScript(t, "--image", img, "--size", "64M", "--label", "dry1", "--table", "none",
			"--recovery-key", rk, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
		out, err := testkit.RunOnPTY(time.Minute, "passphrase", []string{testPass, testPass + "x", testPass, testPass}, "sh", path)
		if err == nil || !strings.Contains(out, "Passphrases do not match") {
			t.Fatalf("a typo in the second typing: %v\n%s", err, out)
		}
		if exec.Command("cryptsetup", "isLuks", img).Run() == nil {
			t.Error("the image was formatted with the mistyped passphrase")
		}
		noLoopLeft(t, img)
		if _, err := os.Stat(rk); err == nil {
			t.Error("the script went on after luksFormat failed: the recovery key file exists")
		}
	})
}

// TestDryRunScriptErases (issue 20, item 4): the --dry-run script of
// `prepare --erase --surface-check` erases: its erase is a command, not a
// comment, and it runs. This host cannot open the volume (no
// device-mapper), so the script's erase and surface-check lines are run
// as they are on a loop device standing in for /dev/mapper/luksdock-dry1
// (a file of random bytes): dd must write it to its very end and exit 0
// (set -e stops a script at dd's "No space left on device"), every byte
// must then be zero, and cmp must accept it. The QEMU guest runs the
// whole script through dm-crypt.
func TestDryRunScriptErases(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "sh", "dd", "cmp", "blockdev", "losetup")
	dir := t.TempDir()
	_, script := dryRunScript(t, "--image", filepath.Join(dir, "hand.img"), "--size", "64M", "--label", "dry1", "--erase", "--surface-check")
	if !strings.HasPrefix(strings.SplitN(script, "\n", 3)[1], "# left out") {
		t.Errorf("the script's second line does not say what it leaves out:\n%s", script)
	}
	var erase, check string
	for _, l := range strings.Split(script, "\n") {
		if strings.Contains(l, "dd if=/dev/zero") {
			erase = l
		}
		if strings.HasPrefix(l, "cmp ") {
			check = l
		}
	}
	if erase == "" || strings.HasPrefix(erase, "#") || check == "" {
		t.Fatalf("the script's erase %q, surface check %q:\n%s", erase, check, script)
	}
	stand := filepath.Join(dir, "volume")
	const size = 20<<20 + 4096 // not a multiple of dd's 16 MiB blocks
	noise := make([]byte, size)
	for i := range noise {
		noise[i] = byte(i*7 + 1)
	}
	if err := os.WriteFile(stand, noise, 0o600); err != nil {
		t.Fatal(err)
	}
	loop := testkit.AttachLoop(t, stand)
	lines := strings.ReplaceAll(erase+"\n"+check+"\n", "/dev/mapper/luksdock-dry1", loop)
	out, err := exec.Command("sh", "-eu", "-c", lines).CombinedOutput()
	if err != nil {
		t.Fatalf("the script's erase and surface check on %s: %v\n%s\n%s", loop, err, out, lines)
	}
	if err := testkit.DetachLoop(loop); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(stand)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexFunc(b, func(r rune) bool { return r != 0 }); i >= 0 || len(b) != size {
		t.Errorf("after the erase the volume is not all zeros (first non-zero byte at %d, size %d)", i, len(b))
	}
}
