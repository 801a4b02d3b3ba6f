package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/core"
	"luksdock/internal/testkit"
	"luksdock/inventory"
	"luksdock/recovery"
)

// The lifecycle commands (open, close, passwd, recovery-key, retire) on
// images, with the userspace engine (this host has no device-mapper; the
// kernel engine is proved in the QEMU guest, e2e/lifecycle_test.go). Every
// outcome is checked with stock cryptsetup, blkid and e2fsck.

const newPass = "vivid-Ocelot-parsnip-42-lantern"

// preparedImage prepares dir/disk.img (label, recovery key in dir/rk.txt,
// header backup in dir/header.img) and returns the image and the key.
func preparedImage(t *testing.T, dir, label string, extra ...string) (img, key string) {
	t.Helper()
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "e2fsck", "blkid")
	img = filepath.Join(dir, "disk.img")
	args := append([]string{"prepare", "--image", img, "--size", "80M", "--label", label,
		"--passphrase-file", "-", "--confirm", "disk.img", "--recovery-key", filepath.Join(dir, "rk.txt")}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", append(args, extra...)...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	return img, readKey(t, filepath.Join(dir, "rk.txt"))
}

func readKey(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// luksPart is partition 1 of img as a loop device, for stock cryptsetup.
func luksPart(t *testing.T, img string) string {
	t.Helper()
	p1, ok := testkit.Partition1(t, img)
	if !ok {
		t.Fatalf("%s has no partition 1", img)
	}
	return testkit.AttachLoop(t, img, "--offset", fmt.Sprint(p1.Base), "--sizelimit", fmt.Sprint(p1.Size))
}

// opens reports which of the secrets open the image's LUKS volume at
// cryptsetup's prompt.
func opens(t *testing.T, img string, secrets ...string) []bool {
	t.Helper()
	part := luksPart(t, img)
	defer testkit.DetachLoop(part)
	var out []bool
	for _, s := range secrets {
		out = append(out, promptOpens(t, part, s))
	}
	return out
}

// fsck decrypts the image's volume with cryptsetup alone and runs e2fsck
// -fn on it; it returns the plaintext file for debugfs.
func fsck(t *testing.T, img, pass string) string {
	t.Helper()
	p1, _ := testkit.Partition1(t, img)
	v, err := testkit.Unlock(t, p1, pass)
	if err != nil {
		t.Fatalf("cryptsetup does not unlock %s with the passphrase: %v", img, err)
	}
	plain := testkit.DecryptCryptsetup(t, v)
	if out, err := exec.Command("e2fsck", "-fn", plain).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	return plain
}

func mountedAt(dir string) string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 9 && f[4] == dir {
			for i := 6; i < len(f)-1; i++ {
				if f[i] == "-" {
					return f[i+1]
				}
			}
		}
	}
	return ""
}

func TestOpenCloseImage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_RUN_DIR", filepath.Join(dir, "run"))
	img, key := preparedImage(t, dir, "lcopen01")
	pf := writeFile(t, dir, "pass", testPass+"\n")
	mnt := filepath.Join(dir, "mnt")
	t.Cleanup(func() { cli(t, "", "close", "--mountpoint", mnt) }) // a failed test leaves nothing mounted

	// A wrong passphrase: exit 6, nothing mounted, no holder left; the
	// refusal names only what was tried.
	if code, out, errs := cli(t, "wrong passphrase here\n", "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt); code != 6 ||
		!strings.Contains(errs, "the passphrase opens no keyslot") || strings.Contains(errs, "recovery key") {
		t.Fatalf("open with a wrong passphrase: exit %d\n%s%s", code, out, errs)
	}
	// A wrong recovery key (a well-formed one, of no keyslot): the same,
	// naming the recovery key.
	wrongKey := strings.Map(func(r rune) rune {
		if i := strings.IndexRune(recovery.Alphabet, r); i >= 0 {
			return rune(recovery.Alphabet[15-i]) // another character at each place
		}
		return r
	}, key)
	if code, out, errs := cli(t, wrongKey+"\n", "open", "--image", img, "--recovery-key-file", "-", "--mountpoint", mnt); code != 6 ||
		!strings.Contains(errs, "the recovery key opens no keyslot") || strings.Contains(errs, "passphrase") {
		t.Fatalf("open with a wrong recovery key: exit %d\n%s%s", code, out, errs)
	}
	if fs := mountedAt(mnt); fs != "" {
		t.Fatalf("mounted after a wrong passphrase: %s", fs)
	}

	code, out, errs := cli(t, "", "open", "--image", img, "--passphrase-file", pf, "--mountpoint", mnt, "--json")
	if code != 0 {
		t.Fatalf("open: exit %d\n%s%s", code, out, errs)
	}
	var o core.Opened
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("open --json: %v\n%s", err, out)
	}
	if o.Mountpoint != mnt || o.Engine != "userspace" || o.Label != "lcopen01" || o.Holder == 0 {
		t.Errorf("open result: %+v", o)
	}
	if fs := mountedAt(mnt); fs != "ext4" {
		t.Fatalf("%s: mounted %q, want ext4", mnt, fs)
	}
	// The volume stays served after the command returned: write through it.
	if err := os.WriteFile(filepath.Join(mnt, "hello.txt"), []byte("kept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Opening again says so and changes nothing.
	if code, out, _ := cli(t, "", "open", "--image", img, "--passphrase-file", pf); code != 0 || !strings.Contains(out, "already open: "+mnt) {
		t.Errorf("second open: exit %d %s", code, out)
	}

	// While it is open nothing destroys it: prepare and retire refuse.
	if code, _, errs := cli(t, testPass+"\n", append([]string{"prepare", "--image", img, "--label", "lcopen01", "--passphrase-file", "-", "--confirm", "disk.img"}, smallKDF...)...); code != 3 {
		t.Errorf("prepare of the open image: exit %d %s", code, errs)
	}
	if code, _, errs := cli(t, "", "retire", "--image", img, "--confirm", "disk.img"); code != 3 || !strings.Contains(errs, "close it first") {
		t.Errorf("retire of the open image: exit %d %s", code, errs)
	}
	// A process with its working directory inside: close refuses, names it.
	sleeper := exec.Command("sleep", "60")
	sleeper.Dir = mnt
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	code, out, errs = cli(t, "", "close", "--image", img)
	if code != 3 || !strings.Contains(errs, fmt.Sprintf("pid %d (sleep): cwd %s", sleeper.Process.Pid, mnt)) {
		t.Errorf("close while busy: exit %d\n%s%s", code, out, errs)
	}
	if mountedAt(mnt) != "ext4" {
		t.Fatal("close while busy unmounted it")
	}
	sleeper.Process.Kill()
	sleeper.Wait()

	code, out, errs = cli(t, "", "close", "--mountpoint", mnt, "--json")
	if code != 0 {
		t.Fatalf("close: exit %d\n%s%s", code, out, errs)
	}
	var c core.Closed
	if err := json.Unmarshal([]byte(out), &c); err != nil || !c.Unmounted || !c.Locked {
		t.Errorf("close --json: %v %s", err, out)
	}
	if fs := mountedAt(mnt); fs != "" {
		t.Errorf("still mounted after close: %s", fs)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", o.Holder)); err == nil && !strings.Contains(procStat(o.Holder), ") Z") {
		t.Errorf("the volume holder %d is still running after close", o.Holder)
	}
	if loops := loopsBacking(img); len(loops) > 0 {
		t.Errorf("loop devices left on %s: %v", img, loops)
	}
	// Stock tools: the filesystem is clean and holds what was written.
	plain := fsck(t, img, testPass)
	if got, _ := exec.Command("debugfs", "-R", "cat /hello.txt", plain).Output(); string(got) != "kept\n" {
		t.Errorf("hello.txt through cryptsetup and debugfs: %q", got)
	}

	// The recovery key opens it too, at /media/USER/LABEL by default.
	t.Setenv("SUDO_UID", "")
	t.Setenv("PKEXEC_UID", "")
	rkf := writeFile(t, dir, "rk", key+"\n")
	code, out, errs = cli(t, "", "open", "--image", img, "--recovery-key-file", rkf)
	want := "/media/root/lcopen01"
	if code != 0 || !strings.Contains(out, want) || mountedAt(want) != "ext4" {
		t.Fatalf("open with the recovery key: exit %d\n%s%s", code, out, errs)
	}
	if st, err := os.Stat("/media/root"); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("/media/root: %v %v", st, err)
	}
	if code, out, errs := cli(t, "", "close", "--label", "lcopen01"); code != 0 {
		t.Fatalf("close --label: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(want); err == nil {
		t.Errorf("%s was left behind", want)
	}
	for _, s := range []string{testPass, key} {
		if strings.Contains(out+errs, s) {
			t.Error("a secret is in the output")
		}
	}
}

func procStat(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return string(b)
}

func loopsBacking(img string) []string {
	var out []string
	m, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, bf := range m {
		b, _ := os.ReadFile(bf)
		if strings.TrimSpace(string(b)) == img {
			out = append(out, bf)
		}
	}
	return out
}

func TestPasswdAndRecoveryKeyImage(t *testing.T) {
	dir := t.TempDir()
	img, key := preparedImage(t, dir, "lcpass01")
	pf := writeFile(t, dir, "pass", testPass+"\n")
	nf := writeFile(t, dir, "new", newPass+"\n")

	// Refusals first: a weak new passphrase (3), a wrong old one (6).
	weak := writeFile(t, dir, "weak", "password1\n")
	if code, _, errs := cli(t, "", append([]string{"passwd", "--image", img, "--passphrase-file", pf, "--new-passphrase-file", weak}, smallKDF...)...); code != 3 || !strings.Contains(errs, "weak") {
		t.Errorf("weak new passphrase: exit %d %s", code, errs)
	}
	if code, _, errs := cli(t, "not it at all\n", append([]string{"passwd", "--image", img, "--passphrase-file", "-", "--new-passphrase-file", nf}, smallKDF...)...); code != 6 {
		t.Errorf("wrong old passphrase: exit %d %s", code, errs)
	}
	if got := opens(t, img, testPass, newPass, key); !slices.Equal(got, []bool{true, false, true}) {
		t.Fatalf("after the refusals (old, new, key) open: %v", got)
	}

	code, out, errs := cli(t, "", append([]string{"passwd", "--image", img, "--passphrase-file", pf, "--new-passphrase-file", nf, "--json"}, smallKDF...)...)
	if code != 0 {
		t.Fatalf("passwd: exit %d\n%s%s", code, out, errs)
	}
	var kc core.KeyChange
	if err := json.Unmarshal([]byte(out), &kc); err != nil || kc.OldSlot != 0 || kc.NewSlot != 2 || !kc.Recorded {
		t.Errorf("passwd --json: %v %s", err, out)
	}
	if got := opens(t, img, testPass, newPass, key); !slices.Equal(got, []bool{false, true, true}) {
		t.Errorf("after passwd (old, new, key) open: %v", got)
	}
	fsck(t, img, newPass)

	// The recovery key replaced, authorised by the new passphrase.
	nk := filepath.Join(dir, "rk2.txt")
	code, out, errs = cli(t, newPass+"\n", append([]string{"recovery-key", "--replace", "--image", img, "--passphrase-file", "-", "--recovery-key", nk}, smallKDF...)...)
	if code != 0 {
		t.Fatalf("recovery-key --replace: exit %d\n%s%s", code, out, errs)
	}
	st, err := os.Stat(nk)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", st, err)
	}
	key2 := readKey(t, nk)
	if got := opens(t, img, newPass, key, key2); !slices.Equal(got, []bool{true, false, true}) {
		t.Errorf("after recovery-key (pass, old key, new key) open: %v", got)
	}
	// Never overwritten: the same file again is a finished change (said
	// so: not "interrupted"; nothing written), a foreign file is refused.
	before := luksDumpOf(t, img)
	code, out, errs = cli(t, newPass+"\n", append([]string{"recovery-key", "--replace", "--image", img, "--passphrase-file", "-", "--recovery-key", nk}, smallKDF...)...)
	if code != 0 || strings.Contains(out, "interrupted") || !strings.Contains(out, "the change was already complete") ||
		strings.Contains(out, "written to") || strings.Contains(out, "is replaced") || !strings.Contains(out, "already complete: the new recovery key opens keyslot") ||
		!strings.Contains(out, "the one in "+nk+" (already there; nothing written now)") {
		t.Errorf("recovery-key --replace again on a completed change: exit %d\n%s%s", code, out, errs)
	}
	if after := luksDumpOf(t, img); after != before {
		t.Errorf("a completed change run again changed the header:\n%s\n---\n%s", before, after)
	}
	if code, _, errs := cli(t, newPass+"\n", "recovery-key", "--replace", "--image", img, "--passphrase-file", "-", "--recovery-key", pf); code != 3 || !strings.Contains(errs, "refusing to overwrite") {
		t.Errorf("existing file: exit %d %s", code, errs)
	}

	// The passphrase lost: the recovery key authorises a new one.
	third := "quartz-Meadow-umbrella-77-tundra"
	tf := writeFile(t, dir, "third", third+"\n")
	rkf := writeFile(t, dir, "rkin", key2+"\n")
	code, out, errs = cli(t, "", append([]string{"passwd", "--image", img, "--recovery-key-file", rkf, "--new-passphrase-file", tf}, smallKDF...)...)
	if code != 0 {
		t.Fatalf("passwd with the recovery key: exit %d\n%s%s", code, out, errs)
	}
	if got := opens(t, img, newPass, third, key2); !slices.Equal(got, []bool{false, true, true}) {
		t.Errorf("after passwd by recovery key (old, new, key) open: %v", got)
	}
	part := luksPart(t, img)
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", part)
	testkit.DetachLoop(part)
	if n := strings.Count(dump, ": luks2\n"); n != 2 {
		t.Errorf("luksDump lists %d keyslots, want 2 (passphrase and recovery key):\n%s", n, dump)
	}

	// The inventory says when; it and every output hold no secret.
	inv, err := inventory.Load(os.Getenv("LUKSDOCK_INVENTORY"))
	if err != nil {
		t.Fatal(err)
	}
	r := inv.Find(kc.LUKSUUID)
	if r == nil || r.PassphraseChanged.IsZero() || r.RecoveryKeyReplaced.IsZero() || r.PassphraseSlot == nil || r.RecoveryKeySlot == nil {
		t.Fatalf("inventory record: %+v", r)
	}
	b, _ := os.ReadFile(os.Getenv("LUKSDOCK_INVENTORY"))
	for _, s := range []string{testPass, newPass, third, key, key2} {
		if strings.Contains(string(b), s) || strings.Contains(out+errs, s) {
			t.Errorf("a secret is in the inventory or the output")
		}
	}
	if code, out, _ := cli(t, "", "inventory"); code != 0 || !strings.Contains(out, "changed "+time.Now().Format("2006-01-02")) || !strings.Contains(out, "replaced "+time.Now().Format("2006-01-02")) {
		t.Errorf("inventory: exit %d\n%s", code, out)
	}
}

// luksDumpOf is cryptsetup luksDump of the image's LUKS partition.
func luksDumpOf(t *testing.T, img string) string {
	t.Helper()
	part := luksPart(t, img)
	defer testkit.DetachLoop(part)
	return testkit.Run(t, "", "cryptsetup", "luksDump", part)
}

func TestRetireImage(t *testing.T) {
	dir := t.TempDir()
	hb := filepath.Join(dir, "header.img")
	img, key := preparedImage(t, dir, "lcret01", "--header-backup", hb, "--set", "lctest")
	if code, _, errs := cli(t, "", "retire", "--image", img, "--confirm", "sdz"); code != 3 {
		t.Fatalf("retire with a wrong --confirm: exit %d %s", code, errs)
	}
	if got := opens(t, img, testPass, key); !slices.Equal(got, []bool{true, true}) {
		t.Fatalf("a refused retire changed the disk: %v", got)
	}
	code, out, errs := cli(t, "", "retire", "--image", img, "--confirm", "disk.img", "--json")
	if code != 0 {
		t.Fatalf("retire: exit %d\n%s%s", code, out, errs)
	}
	var r core.Retired
	if err := json.Unmarshal([]byte(out), &r); err != nil || !r.HeaderBackupRemoved || !r.Recorded || !slices.Equal(r.KeyslotsBefore, []int{0, 1}) {
		t.Errorf("retire --json: %v %s", err, out)
	}
	if _, err := os.Stat(hb); err == nil {
		t.Error("the header backup is still there")
	}
	// Stock tools: no LUKS anywhere, no table, nothing opens.
	if out, _ := exec.Command("blkid", "-p", img).Output(); len(out) > 0 {
		t.Errorf("blkid -p finds %s", out)
	}
	if out, _ := exec.Command("blkid", "-p", "-O", "1048576", img).Output(); strings.Contains(string(out), "LUKS") {
		t.Errorf("blkid -p at 1 MiB finds %s", out)
	}
	loop := testkit.AttachLoop(t, img, "--offset", "1048576")
	if err := exec.Command("cryptsetup", "isLuks", loop).Run(); err == nil {
		t.Error("cryptsetup isLuks still finds LUKS where partition 1 was")
	}
	for _, s := range []string{testPass, key} {
		c := exec.Command("cryptsetup", "open", "--test-passphrase", loop)
		c.Stdin = strings.NewReader(s + "\n")
		if c.Run() == nil {
			t.Error("a secret still opens it")
		}
	}
	testkit.DetachLoop(loop)
	if out, err := exec.Command("sfdisk", "-d", img).CombinedOutput(); err == nil {
		t.Errorf("sfdisk still reads a partition table:\n%s", out)
	}
	// The inventory: kept, retired, label free for the next disk of the set.
	inv, _ := inventory.Load(os.Getenv("LUKSDOCK_INVENTORY"))
	rec := inv.Find(r.LUKSUUID)
	if rec == nil || rec.Retired.IsZero() {
		t.Fatalf("inventory record after retire: %+v", rec)
	}
	if clash := inventory.LabelClash(inv, "lctest", "lcret01", ""); clash != "" {
		t.Errorf("the retired disk's label is still taken: %s", clash)
	}
}

// TestRetireHeaderBackupUnreachable: a header backup that is not where the
// inventory says is named, loudly.
func TestRetireHeaderBackupUnreachable(t *testing.T) {
	dir := t.TempDir()
	hb := filepath.Join(dir, "header.img")
	img, _ := preparedImage(t, dir, "lcret02", "--header-backup", hb)
	moved := filepath.Join(dir, "elsewhere.img")
	if err := os.Rename(hb, moved); err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, "", "retire", "--image", img, "--confirm", "disk.img")
	if code != 0 || !strings.Contains(errs, "HEADER BACKUP NOT REMOVED") || !strings.Contains(errs, hb) || !strings.Contains(errs, "luksHeaderRestore") {
		t.Errorf("retire with the header backup moved: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(moved); err != nil {
		t.Error("retire touched a file it was not told about")
	}
}

// cryptsetupShim puts a cryptsetup first in PATH that counts its calls
// and SIGKILLs the luksdock that called it right before (mode "before")
// or right after (mode "after") call number n runs.
func cryptsetupShim(t *testing.T, n int, mode string) (path string) {
	t.Helper()
	real, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	script := fmt.Sprintf(`#!/bin/sh
n=$(( $(cat %[1]s 2>/dev/null || echo 0) + 1 ))
echo $n > %[1]s
if [ $n = %[2]d ] && [ %[3]s = before ]; then kill -9 $PPID; exit 137; fi
%[4]s "$@"
rc=$?
if [ $n = %[2]d ] && [ %[3]s = after ]; then kill -9 $PPID; fi
exit $rc
`, count, n, mode, real)
	if err := os.WriteFile(filepath.Join(dir, "cryptsetup"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runCLI runs the test binary as luksdock in a process of its own with PATH
// starting at pathDir, and returns how it ended.
func runCLI(t *testing.T, pathDir, stdin string, args ...string) (code int, killed bool, out string) {
	t.Helper()
	c := testkit.CLICommand(args...)
	c.Env = append(c.Env, "PATH="+pathDir+":"+os.Getenv("PATH"))
	c.Stdin = strings.NewReader(stdin)
	b, err := c.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), ws.Signal() == syscall.SIGKILL, string(b)
		}
		return ee.ExitCode(), false, string(b)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, false, string(b)
}

// TestKeyChangesSurviveKills kills passwd and recovery-key --replace with
// SIGKILL before and after every cryptsetup call they make, and proves with
// stock cryptsetup after each kill that the disk opens with the old or the
// new secret, and that the same command run again finishes the change.
func TestKeyChangesSurviveKills(t *testing.T) {
	dir := t.TempDir()
	tmpl, key := preparedImage(t, dir, "lckill01")
	pf := writeFile(t, dir, "pass", testPass+"\n")
	nf := writeFile(t, dir, "new", newPass+"\n")
	// How many cryptsetup calls a full run makes.
	count := func(args ...string) int {
		shim := cryptsetupShim(t, 1000, "after")
		work := filepath.Join(t.TempDir(), "disk.img")
		testkit.Run(t, "", "cp", "--sparse=always", tmpl, work)
		if code, _, out := runCLI(t, shim, "", append(args, "--image", work)...); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, out)
		}
		b, _ := os.ReadFile(filepath.Join(shim, "count"))
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	passwd := append([]string{"passwd", "--passphrase-file", pf, "--new-passphrase-file", nf}, smallKDF...)
	cases := []struct {
		name     string
		args     func(dir string) []string
		old, new func(dir string) string
		also     string // a secret that must open throughout
	}{
		{"passwd", func(string) []string { return passwd }, func(string) string { return testPass }, func(string) string { return newPass }, key},
		{"recovery-key", func(d string) []string {
			return append([]string{"recovery-key", "--replace", "--passphrase-file", pf, "--recovery-key", filepath.Join(d, "new.key")}, smallKDF...)
		}, func(string) string { return key }, func(d string) string { return readKey(t, filepath.Join(d, "new.key")) }, testPass},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls := count(c.args(t.TempDir())...)
			if calls < 4 {
				t.Fatalf("%s makes %d cryptsetup calls", c.name, calls)
			}
			for n := 1; n <= calls; n++ {
				for _, mode := range []string{"before", "after"} {
					t.Run(fmt.Sprintf("%s-%d", mode, n), func(t *testing.T) {
						d := t.TempDir()
						work := filepath.Join(d, "disk.img")
						testkit.Run(t, "", "cp", "--sparse=always", tmpl, work)
						args := append(c.args(d), "--image", work)
						code, killed, out := runCLI(t, cryptsetupShim(t, n, mode), "", args...)
						if !killed {
							t.Fatalf("not killed at call %d: exit %d\n%s", n, code, out)
						}
						if loops := loopsBacking(work); len(loops) > 0 {
							// autoclear: the loop device goes with its last user
							time.Sleep(200 * time.Millisecond)
						}
						secrets := []string{c.old(d), c.also}
						newKey := ""
						if _, err := os.Stat(filepath.Join(d, "new.key")); err == nil || c.name == "passwd" {
							newKey = c.new(d)
							secrets = append(secrets, newKey)
						}
						got := opens(t, work, secrets...)
						if !got[1] {
							t.Fatalf("killed %s call %d: the secret that is not being changed no longer opens (%v)", mode, n, got)
						}
						if !got[0] && (len(got) < 3 || !got[2]) {
							t.Fatalf("killed %s call %d: neither the old nor the new secret opens (%v)", mode, n, got)
						}
						// The same command again finishes the change.
						if code, _, out := runCLI(t, t.TempDir(), "", args...); code != 0 {
							if !got[0] && code == 6 && c.name == "passwd" {
								return // the change had finished: the old passphrase is gone
							}
							t.Fatalf("rerun after the kill: exit %d\n%s", code, out)
						}
						if got := opens(t, work, c.old(d), c.also, c.new(d)); !slices.Equal(got, []bool{false, true, true}) {
							t.Errorf("after the rerun (old, unchanged, new) open: %v", got)
						}
					})
				}
			}
		})
	}
}

// TestOpenUnrecordedLeavesNothing: an open that cannot record the mount
// for luksdock close (its run directory cannot be made) unlocks nothing:
// no mount, no volume holder, no FUSE volume left serving the key. Before,
// the holder went on serving a mount no close could find (also after an
// open killed between the mount and the record: the holder now releases
// the volume when open ends without committing).
func TestOpenUnrecordedLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	blocker := writeFile(t, dir, "not-a-dir", "x")
	t.Setenv("LUKSDOCK_RUN_DIR", filepath.Join(blocker, "run")) // under a regular file: mkdir fails
	img, _ := preparedImage(t, dir, "lcunrec1")
	mnt := filepath.Join(dir, "mnt")
	before := volumeHolders(t)
	code, out, errs := cli(t, testPass+"\n", "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt)
	if code != 4 || !strings.Contains(errs, "could not be written") {
		t.Errorf("open without a run directory: exit %d, want 4 saying the record could not be written\n%s%s", code, out, errs)
	}
	deadline := time.Now().Add(15 * time.Second)
	for ; time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if mountedAt(mnt) == "" && len(volumeHolders(t)) <= len(before) {
			break
		}
	}
	if fs := mountedAt(mnt); fs != "" {
		t.Errorf("%s is still mounted (%s) though open failed", mnt, fs)
	}
	if h := volumeHolders(t); len(h) > len(before) {
		t.Errorf("a volume holder is still serving the key: %v (before: %v)", h, before)
		for _, pid := range h {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
}

// volumeHolders are the pids of running luksdock volume holders.
func volumeHolders(t *testing.T) []int {
	t.Helper()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.HasPrefix(string(b), "luksdock-volume-holder\x00") {
			pids = append(pids, pid)
		}
	}
	return pids
}
