package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/recovery"
)

// TestLifecycleSecretHygiene runs open (passphrase on stdin), close, passwd
// (the new passphrase on stdin), recovery-key --replace and retire while
// sampling the argv and environment of luksdock and every descendant,
// capturing stdout, stderr and --json, and watching $TMPDIR, /tmp,
// /dev/shm, /var/tmp, the image's and the key files' directories, the
// inventory's and the open records' directory with inotify. No passphrase
// (old or new), recovery key (old or new) or the volume key may appear in
// any of them (the recovery key files aside). While the disk is open the
// volume holder, which outlives open, is read too: its argv, environment
// and core limit.
func TestLifecycleSecretHygiene(t *testing.T) {
	requireEnv(t)
	const newPass = "vivid-Ocelot-parsnip-42-lantern"
	imgDir, keyDir, tmpdir, passDir := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	img := filepath.Join(imgDir, "disk.img")
	pf := filepath.Join(passDir, "pass")
	os.WriteFile(pf, []byte(testPass+"\n"), 0o600)
	rk1, rk2 := filepath.Join(keyDir, "rk1"), filepath.Join(keyDir, "rk2")
	if r := luksdock(t, runOpts{tmpdir: tmpdir}, append(prepareArgs(img, pf, "--recovery-key", rk1), "--size", "96M")...); r.code != 0 {
		t.Fatalf("prepare: %v", r)
	}
	p1, _ := testkit.Partition1(t, img)
	vkey, err := testkit.VolumeKey(t, p1, testPass)
	if err != nil || len(vkey) != 64 {
		t.Fatalf("cryptsetup could not recover the volume key: %v", err)
	}
	runDir := "/run/luksdock/open"
	os.MkdirAll(runDir, 0o700)
	os.MkdirAll(invDir, 0o700)
	dirs := []string{tmpdir, imgDir, keyDir, invDir, runDir, "/tmp", "/dev/shm", "/var/tmp"}
	// Go test binaries being built beside this run (in /tmp/go-build*)
	// hold the test's passphrase constants: not luksdock's doing.
	skip := func(p string) bool {
		return p == img || p == rk1 || p == rk2 || strings.HasPrefix(p, "/tmp/go-build")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	lc := []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

	type run struct {
		name string
		r    result
		w    *watch
	}
	var runs []run
	do := func(name string, stdin string, args ...string) result {
		t.Helper()
		r, w := watchedRun(t, tmpdir, []byte(stdin), dirs, skip, args...)
		runs = append(runs, run{name, r, w})
		return r
	}
	r := do("open", testPass+"\n", "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt, "--json")
	if r.code != 0 {
		t.Fatalf("open: %v", r)
	}
	var opened struct {
		Holder int `json:"holder_pid"`
	}
	json.Unmarshal([]byte(r.stdout), &opened)
	if opened.Holder == 0 {
		t.Fatalf("open --json names no volume holder: %s", r.stdout)
	}
	holderArgv, _ := readProcFile(opened.Holder, "cmdline")
	holderEnv, _ := readProcFile(opened.Holder, "environ")
	if len(holderArgv) == 0 {
		t.Fatalf("the volume holder %d is not running after open returned", opened.Holder)
	}
	if l := coreLimitOf(opened.Holder); l != "Max core file size 0 0 bytes" {
		t.Errorf("the volume holder's core file limit: %q, want 0", l)
	}
	if r := do("close", "", "close", "--mountpoint", mnt, "--json"); r.code != 0 {
		t.Fatalf("close: %v", r)
	}
	if r := do("passwd", newPass+"\n", append([]string{"passwd", "--image", img, "--passphrase-file", pf, "--new-passphrase-file", "-", "--json"}, lc...)...); r.code != 0 {
		t.Fatalf("passwd: %v", r)
	}
	if r := do("recovery-key", newPass+"\n", append([]string{"recovery-key", "--replace", "--image", img, "--passphrase-file", "-", "--recovery-key", rk2, "--json"}, lc...)...); r.code != 0 {
		t.Fatalf("recovery-key: %v", r)
	}
	if r := do("retire", "", "retire", "--image", img, "--confirm", "disk.img", "--json"); r.code != 0 {
		t.Fatalf("retire: %v", r)
	}

	forms := secretForms(testPass, vkey)
	forms["new passphrase"] = []byte(newPass)
	for i, f := range []string{rk1, rk2} {
		k, err := recovery.ReadFile(f, nil)
		if err != nil {
			t.Fatalf("recovery key file %s: %v", f, err)
		}
		for name, b := range recoveryKeyForms(k) {
			forms[fmt.Sprintf("%s %d", name, i+1)] = b
		}
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, st.Mode())
		}
	}
	scan(t, "the volume holder's argv", holderArgv, forms)
	scan(t, "the volume holder's environment", holderEnv, forms)
	sawAdd, sawKill := false, false
	for _, x := range runs {
		for a := range x.w.argv {
			sawAdd = sawAdd || strings.Contains(a, "cryptsetup\x00luksAddKey\x00")
			sawKill = sawKill || strings.Contains(a, "cryptsetup\x00luksKillSlot\x00")
			scan(t, x.name+": argv "+strings.ReplaceAll(a, "\x00", " "), []byte(a), forms)
		}
		for e := range x.w.env {
			scan(t, x.name+": an environment", []byte(e), forms)
		}
		for p, c := range x.w.contents {
			scan(t, x.name+": file "+p, c, forms)
		}
		scan(t, x.name+" stdout (--json)", []byte(x.r.stdout), forms)
		scan(t, x.name+" stderr", []byte(x.r.stderr), forms)
		if x.w.coreLimit != "Max core file size 0 0 bytes" {
			t.Errorf("%s: luksdock's core file limit %q, want 0", x.name, x.w.coreLimit)
		}
	}
	// Controls: the sampler saw the keyslot writes, so their argv was read.
	if !sawAdd || !sawKill {
		t.Errorf("the /proc sampler never saw cryptsetup luksAddKey (%v) or luksKillSlot (%v)", sawAdd, sawKill)
	}
	inv, _ := os.ReadFile(filepath.Join(invDir, "inventory.json"))
	if !strings.Contains(string(inv), `"passphrase_changed"`) {
		t.Errorf("control: the inventory does not record the change:\n%s", inv)
	}
	scan(t, "the inventory", inv, forms)
}
