package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"luksdock/internal/procmem"
	"luksdock/internal/testkit"
	"luksdock/recovery"
)

// TestSecretsInMemoryLifecycle is TestSecretsInMemory's rule for the
// commands that handle a secret after prepare (userspace engine, an image,
// small KDF costs):
//
//   - open (the passphrase on standard input): luksdock at its exit, and
//     its volume holder and volume server while the disk is open (after
//     open returned, so they are idle and hold only what they keep);
//   - passwd (old and new passphrase from files), recovery-key --replace
//     (the new passphrase on standard input; the new key to a file) and
//     host enroll (the host key): luksdock each time cryptsetup starts
//     (a stop shim named cryptsetup, as in TestSecretsInMemory) and at its
//     exit.
//
// The forms searched for are every secret the disk has had: both
// passphrases, both recovery keys, the volume key and the host key (read
// from its key file afterwards). The rules are TestSecretsInMemory's: no
// copy outside locked memory at any point (the volume server's key
// schedules aside), no copy at all at exit, VmLck > 0 while a secret is
// held, and the volume holder keeps no copy at all once its server has the
// key. Controls: at each cryptsetup stop luksdock holds the secret it
// authenticates with, locked, and the volume server holds the volume key.
func TestSecretsInMemoryLifecycle(t *testing.T) {
	requireEnv(t)
	const newPass = "vivid-Ocelot-parsnip-42-lantern"
	dir, tmpdir, keyDir := t.TempDir(), t.TempDir(), t.TempDir()
	img := filepath.Join(dir, "disk.img")
	pf, nf := filepath.Join(keyDir, "pass"), filepath.Join(keyDir, "new")
	os.WriteFile(pf, []byte(testPass+"\n"), 0o600)
	os.WriteFile(nf, []byte(newPass+"\n"), 0o600)
	rk1, rk2 := filepath.Join(keyDir, "rk1"), filepath.Join(keyDir, "rk2")
	os.MkdirAll(invDir, 0o700)
	etc := filepath.Join(t.TempDir(), "etc")
	env := []string{"LUKSDOCK_CONFIG_DIR=" + etc}
	if r := luksdock(t, runOpts{tmpdir: tmpdir}, append(prepareArgs(img, pf, "--recovery-key", rk1), "--size", "96M", "--engine", "userspace")...); r.code != 0 {
		t.Fatalf("prepare: %v", r)
	}
	shims := stopTools(t, "cryptsetup")
	noShims := t.TempDir()
	mnt := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() { luksdock(t, runOpts{tmpdir: tmpdir}, "close", "--mountpoint", mnt) })

	var mu sync.Mutex
	var snaps []*memSnap
	add := func(point, who string, p int) {
		ps, err := procmem.Read(p)
		mu.Lock()
		snaps = append(snaps, &memSnap{Snapshot: ps, err: err, point: point, who: who, pid: p})
		mu.Unlock()
	}
	// control names, per command, the secret luksdock must hold (locked)
	// while cryptsetup runs.
	control := map[string]string{}
	take := func(run string) func(tool string, pid int) {
		return func(tool string, pid int) { add(run+", "+tool+" running", "luksdock", pid) }
	}
	none := func(string, int) {}
	exitSnap := func(name string, s *memSnap) {
		if s == nil {
			t.Errorf("%s: luksdock's memory was not read at its exit", name)
			return
		}
		s.point, s.who = name+", at its exit", "luksdock"
		snaps = append(snaps, s)
	}

	// open, then the holder and its server while the disk is open.
	r, s := tracedRunEnv(t, tmpdir, env, noShims, []byte(testPass+"\n"), none, "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt, "--engine", "userspace", "--json")
	if r.code != 0 {
		t.Fatalf("open: %v", r)
	}
	exitSnap("open", s)
	var opened struct {
		Holder int `json:"holder_pid"`
	}
	json.Unmarshal([]byte(r.stdout), &opened)
	if opened.Holder == 0 {
		t.Fatalf("open --json names no volume holder: %s", r.stdout)
	}
	add("open, disk open", "volume holder", opened.Holder)
	servers := 0
	for _, d := range descendants(opened.Holder) {
		if d.Comm == "luksdock-volume" {
			add("open, disk open", "volume server", d.PID)
			servers++
		}
	}
	if servers == 0 {
		t.Errorf("no volume server under the volume holder %d", opened.Holder)
	}
	if r := luksdock(t, runOpts{tmpdir: tmpdir}, "close", "--mountpoint", mnt); r.code != 0 {
		t.Fatalf("close: %v", r)
	}

	r, s = tracedRunEnv(t, tmpdir, env, shims, nil, take("passwd"), append([]string{"passwd", "--image", img, "--passphrase-file", pf, "--new-passphrase-file", nf}, lowCost...)...)
	if r.code != 0 {
		t.Fatalf("passwd: %v", r)
	}
	exitSnap("passwd", s)
	control["passwd"] = "passphrase"

	r, s = tracedRunEnv(t, tmpdir, env, shims, []byte(newPass+"\n"), take("recovery-key --replace"), append([]string{"recovery-key", "--replace", "--image", img, "--passphrase-file", "-", "--recovery-key", rk2}, lowCost...)...)
	if r.code != 0 {
		t.Fatalf("recovery-key --replace: %v", r)
	}
	exitSnap("recovery-key --replace", s)
	control["recovery-key --replace"] = "new passphrase"

	r, s = tracedRunEnv(t, tmpdir, env, shims, []byte(newPass+"\n"), take("host enroll"), "host", "enroll", "--key-file", "--image", img, "--passphrase-file", "-")
	if r.code != 0 {
		t.Fatalf("host enroll: %v", r)
	}
	exitSnap("host enroll", s)
	control["host enroll"] = "new passphrase"

	// The secrets, learnt afterwards.
	p1, _ := testkit.Partition1(t, img)
	key, err := testkit.VolumeKey(t, p1, newPass)
	if err != nil || len(key) != 64 {
		t.Fatalf("cryptsetup could not recover a 64-byte volume key: %v", err)
	}
	rkOld, err := recovery.ReadFile(rk1, nil)
	if err != nil {
		t.Fatal(err)
	}
	rkNew, err := recovery.ReadFile(rk2, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := filepath.Glob(filepath.Join(etc, "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("host enroll left %d key files in %s", len(keys), etc)
	}
	hostKey, err := os.ReadFile(keys[0])
	if err != nil || len(hostKey) < 16 {
		t.Fatalf("the host key file: %v (%d bytes)", err, len(hostKey))
	}
	forms := procmem.Forms([]byte(testPass), rkOld, key)
	for k, v := range procmem.Forms([]byte(newPass), rkNew, nil) {
		forms["new "+k] = v
	}
	forms["host key"] = hostKey
	forms["host key hex"] = []byte(fmt.Sprintf("%x", hostKey))

	want := map[string]bool{
		"open, at its exit/luksdock": false, "open, disk open/volume holder": false, "open, disk open/volume server": false,
		"passwd, cryptsetup running/luksdock": false, "passwd, at its exit/luksdock": false,
		"recovery-key --replace, cryptsetup running/luksdock": false, "recovery-key --replace, at its exit/luksdock": false,
		"host enroll, cryptsetup running/luksdock": false, "host enroll, at its exit/luksdock": false,
	}
	scanLifecycleSnaps(t, snaps, forms, control, want)
}

// scanLifecycleSnaps applies the rules of TestSecretsInMemoryLifecycle to
// snaps: want names every point/who that must have been read, control the
// secret luksdock must hold locked while cryptsetup runs, per command.
func scanLifecycleSnaps(t *testing.T, snaps []*memSnap, forms map[string][]byte, control map[string]string, want map[string]bool) {
	t.Helper()
	for _, s := range snaps {
		if s.err != nil {
			t.Errorf("%s, %s (pid %d): reading its memory: %v", s.point, s.who, s.pid, s.err)
			continue
		}
		if _, ok := want[s.point+"/"+s.who]; ok {
			want[s.point+"/"+s.who] = true
		}
		atExit := strings.HasSuffix(s.point, "at its exit")
		counts := map[string]int{}
		first := map[string]procmem.Hit{}
		for _, h := range s.Find(forms) {
			where := "unlocked"
			if h.Locked {
				where = "locked"
			}
			if s.who == "volume server" && strings.Contains(h.Form, "half") {
				where = "schedule" // the AES key schedules begin with the halves
			}
			k := h.Form + " (" + where + ")"
			if counts[k] == 0 {
				first[k] = h
			}
			counts[k]++
		}
		var sum []string
		for k, n := range counts {
			sum = append(sum, fmt.Sprintf("%s ×%d", k, n))
			h := first[k]
			switch {
			case strings.HasSuffix(k, "(schedule)"):
			case atExit || s.who == "volume holder":
				t.Errorf("%s: %s (pid %d) still holds %d copies of the %s, the first at %#x (%q) in %s", s.point, s.who, s.pid, n, k, h.Addr, h.Region, h.Context)
			case !h.Locked:
				t.Errorf("%s: %s (pid %d) holds %d copies of the %s outside locked memory, the first at %#x (%q) in %s", s.point, s.who, s.pid, n, h.Form, h.Addr, h.Region, h.Context)
			}
		}
		sort.Strings(sum)
		t.Logf("%s: %s (pid %d): %d MiB read, VmLck %s; found: %s", s.point, s.who, s.pid, s.Size>>20, s.VmLck, strings.Join(sum, ", "))
		if !atExit && len(counts) > 0 && s.VmLckKB() == 0 {
			t.Errorf("%s: %s holds secrets with VmLck %s: nothing is locked in memory", s.point, s.who, s.VmLck)
		}
		if run, ok := strings.CutSuffix(s.point, ", cryptsetup running"); ok {
			if counts[control[run]+" (locked)"] == 0 {
				t.Errorf("control: the %s is not found in luksdock's locked memory at %s: the scan finds nothing", control[run], s.point)
			}
		}
		if s.who == "volume server" && counts["volume key (locked)"]+counts["volume key (unlocked)"] == 0 {
			t.Errorf("control: the volume key is not found in the volume server (pid %d) at %s: the scan finds nothing", s.pid, s.point)
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("no snapshot of %s", k)
		}
	}
}

// TestSecretsInMemoryOpenLUKS1: open of a LUKS1 disk (prepare --luks1),
// whose keyslot luksdock's own LUKS1 code unseals (luks/unseal1.go): the
// same rules as the open of TestSecretsInMemoryLifecycle, luksdock at its
// exit and the volume holder and server while the disk is open.
func TestSecretsInMemoryOpenLUKS1(t *testing.T) {
	requireEnv(t)
	dir, tmpdir, keyDir := t.TempDir(), t.TempDir(), t.TempDir()
	img := filepath.Join(dir, "disk.img")
	pf := filepath.Join(keyDir, "pass")
	os.WriteFile(pf, []byte(testPass+"\n"), 0o600)
	os.MkdirAll(invDir, 0o700)
	if r := luksdock(t, runOpts{tmpdir: tmpdir}, append(prepareArgs(img, pf), "--size", "96M", "--engine", "userspace", "--luks1", "--table", "mbr")...); r.code != 0 {
		t.Fatalf("prepare --luks1: %v", r)
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() { luksdock(t, runOpts{tmpdir: tmpdir}, "close", "--mountpoint", mnt) })
	var snaps []*memSnap
	add := func(point, who string, p int) {
		ps, err := procmem.Read(p)
		snaps = append(snaps, &memSnap{Snapshot: ps, err: err, point: point, who: who, pid: p})
	}
	r, s := tracedRunEnv(t, tmpdir, nil, t.TempDir(), []byte(testPass+"\n"), func(string, int) {}, "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt, "--engine", "userspace", "--json")
	if r.code != 0 {
		t.Fatalf("open: %v", r)
	}
	if s != nil {
		s.point, s.who = "open, at its exit", "luksdock"
		snaps = append(snaps, s)
	}
	var opened struct {
		Holder int `json:"holder_pid"`
	}
	json.Unmarshal([]byte(r.stdout), &opened)
	if opened.Holder == 0 {
		t.Fatalf("open --json names no volume holder: %s", r.stdout)
	}
	add("open, disk open", "volume holder", opened.Holder)
	for _, d := range descendants(opened.Holder) {
		if d.Comm == "luksdock-volume" {
			add("open, disk open", "volume server", d.PID)
		}
	}
	if r := luksdock(t, runOpts{tmpdir: tmpdir}, "close", "--mountpoint", mnt); r.code != 0 {
		t.Fatalf("close: %v", r)
	}
	p1, _ := testkit.Partition1(t, img)
	key, err := testkit.VolumeKey(t, p1, testPass)
	if err != nil || len(key) != 64 {
		t.Fatalf("cryptsetup could not recover a 64-byte volume key: %v", err)
	}
	if f, err := os.Open(img); err == nil {
		var v [2]byte
		f.ReadAt(v[:], p1.Base+6)
		f.Close()
		if v != [2]byte{0, 1} {
			t.Fatalf("the disk is not LUKS1 (header version %x)", v)
		}
	}
	scanLifecycleSnaps(t, snaps, procmem.Forms([]byte(testPass), nil, key), nil, map[string]bool{
		"open, at its exit/luksdock": false, "open, disk open/volume holder": false, "open, disk open/volume server": false,
	})
}
