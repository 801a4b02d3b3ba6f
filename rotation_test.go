package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/core"
	"luksdock/internal/testkit"
	"luksdock/inventory"
	"luksdock/luks"
)

// Tests of the rotation across sites (docs/rotation.md): the disk's
// luksdock token, recognition by a machine with an empty inventory, host
// keys, the dock service's run on an image (the userspace engine: this
// kernel has no device-mapper; the Debian guest in e2e runs the kernel
// path) and inventory --every/--check. Checked with cryptsetup (token
// export, luksDump), debugfs on the plaintext cryptsetup decrypts, stat.

// site is one machine: its own inventory and /etc/luksdock (with its own
// machine-id).
type site struct {
	name, inv, etc string
}

func newSite(t *testing.T, dir, name string) site {
	t.Helper()
	s := site{name: name, inv: filepath.Join(dir, name, "inventory.json"), etc: filepath.Join(dir, name, "etc")}
	if err := os.MkdirAll(filepath.Join(s.etc, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%032x", []byte(name)) // siteA, siteB: distinct machine IDs
	if err := os.WriteFile(filepath.Join(s.etc, "machine-id"), []byte(id+"\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	return s
}

// use makes s the machine the next commands run on.
func (s site) use(t *testing.T) {
	t.Setenv("LUKSDOCK_INVENTORY", s.inv)
	t.Setenv("LUKSDOCK_CONFIG_DIR", s.etc)
}

// setCommand configures the backup command for set on s.
func (s site) setCommand(t *testing.T, set, script string) {
	t.Helper()
	p := filepath.Join(s.etc, "run", "set-"+set)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func (s site) load(t *testing.T) *inventory.File {
	t.Helper()
	f, err := inventory.Load(s.inv)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tokenOf is the luksdock token as cryptsetup exports it from partition 1
// of img.
func tokenOf(t *testing.T, img string) (raw string, m luks.Metadata) {
	t.Helper()
	p1, _ := testkit.Partition1(t, img)
	part := testkit.AttachLoop(t, img, "--offset", fmt.Sprint(p1.Base), "--sizelimit", fmt.Sprint(p1.Size))
	defer testkit.DetachLoop(part)
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", part)
	id := ""
	for _, l := range strings.Split(dump, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[1] == "luksdock" && strings.HasSuffix(f[0], ":") {
			id = strings.TrimSuffix(f[0], ":")
		}
	}
	if id == "" {
		t.Fatalf("luksDump lists no luksdock token:\n%s", dump)
	}
	raw = testkit.Run(t, "", "cryptsetup", "token", "export", "--token-id", id, part)
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatalf("token %s: %v", raw, err)
	}
	return raw, m
}

// plainFile reads path from the filesystem inside img, decrypted by
// cryptsetup with pass and read by debugfs.
func plainFile(t *testing.T, img, pass, path string) (string, bool) {
	t.Helper()
	p1, _ := testkit.Partition1(t, img)
	v, err := testkit.Unlock(t, p1, pass)
	if err != nil {
		t.Fatal(err)
	}
	plain := testkit.DecryptCryptsetup(t, v)
	out, err := exec.Command("debugfs", "-R", "cat "+path, plain).Output()
	if err != nil || strings.Contains(string(out), "File not found") {
		return "", false
	}
	ls, _ := exec.Command("debugfs", "-R", "ls -l "+filepath.Dir(path), plain).CombinedOutput()
	if !strings.Contains(string(ls), filepath.Base(path)) {
		return "", false
	}
	return string(out), true
}

func prepareImage(t *testing.T, img, label, set string, extra ...string) {
	t.Helper()
	args := append([]string{"prepare", "--image", img, "--size", "100M", "--label", label, "--set", set,
		"--passphrase-file", "-", "--confirm", filepath.Base(img)}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", append(args, extra...)...); code != 0 {
		t.Fatalf("prepare %s: exit %d\n%s%s", img, code, out, errs)
	}
}

// noSecret fails if the host key of uuid at s, raw or in hex, is in any of texts.
func noSecret(t *testing.T, key []byte, what string, texts ...string) {
	t.Helper()
	for _, x := range texts {
		if strings.Contains(x, string(key)) || strings.Contains(strings.ToLower(x), hex.EncodeToString(key)) {
			t.Errorf("the host key is in %s", what)
		}
	}
}

// TestRotationTwoSites: a disk prepared at site A carries its token; A
// enrolls and backs up to it; site B, with an empty inventory, recognises
// it without its passphrase (set, label, prepared date), leaves it alone
// while not enrolled, and after enrolling learns A's run from the disk's
// history; an interrupted run is recorded, leaves no mount or mapping,
// and the next docking succeeds; host forget wipes the keyslot at the next
// docking.
func TestRotationTwoSites(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "losetup", "debugfs", "e2fsck")
	if ok, why := luks.FUSE(); !ok {
		t.Skip("SKIPPED: the dock's userspace engine needs FUSE: " + why)
	}
	dir := t.TempDir()
	a, b := newSite(t, dir, "siteA"), newSite(t, dir, "siteB")
	img := filepath.Join(dir, "disk.img")
	rk := filepath.Join(dir, "recovery.txt")
	oldRun := core.DockDir
	core.DockDir = filepath.Join(dir, "run")
	t.Cleanup(func() { core.DockDir = oldRun })

	// Site A prepares: the token says what the disk is, readable while locked.
	a.use(t)
	prepareImage(t, img, "backups01", "offsite", "--recovery-key", rk)
	raw, m := tokenOf(t, img)
	host, _ := os.Hostname()
	if m.Label != "backups01" || m.Set != "offsite" || !m.RecoveryKey || m.PreparedOn != host || time.Since(m.Prepared) > time.Hour || m.Version != 1 {
		t.Errorf("token after prepare: %s", raw)
	}
	rkText, _ := os.ReadFile(rk)
	lines := strings.Split(strings.TrimSpace(string(rkText)), "\n")
	if strings.Contains(raw, testPass) || strings.Contains(raw, lines[len(lines)-1]) {
		t.Fatalf("a secret is in the token: %s", raw)
	}
	aRec := a.load(t).Disks[0]

	// A enrolls: a 0400 root key file in a 0700 directory, the host named
	// in the token by keyslot, never by key.
	code, out, errs := cli(t, testPass+"\n", "host", "enroll", "--key-file", "--image", img, "--passphrase-file", "-")
	if code != 0 {
		t.Fatalf("host enroll: exit %d\n%s%s", code, out, errs)
	}
	kf := filepath.Join(a.etc, "keys", aRec.LUKSUUID+".key")
	st, err := os.Stat(kf)
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); st.Mode().Perm() != 0o400 || sys.Uid != 0 || st.Size() != 32 {
		t.Errorf("key file %s: mode %v uid %d size %d, want 0400 root, 32 bytes", kf, st.Mode(), sys.Uid, st.Size())
	}
	if dst, _ := os.Stat(filepath.Dir(kf)); dst.Mode().Perm() != 0o700 {
		t.Errorf("key directory mode %v, want 0700", dst.Mode())
	}
	key, _ := os.ReadFile(kf)
	raw, m = tokenOf(t, img)
	if len(m.Hosts) != 1 || m.Hosts[0].Name != host || m.Hosts[0].Method != "keyfile" || m.Hosts[0].Keyslot < 1 {
		t.Errorf("token after enroll: %s", raw)
	}
	// cryptsetup itself opens the keyslot with the key file.
	p1, _ := testkit.Partition1(t, img)
	hdr := testkit.HeaderCopy(t, p1)
	testkit.Run(t, "", "cryptsetup", "open", "--test-passphrase", "--key-file", kf, "--key-slot", fmt.Sprint(m.Hosts[0].Keyslot), hdr)
	noSecret(t, key, "enroll's output or the token", out, errs, raw)
	if code, out, _ := cli(t, "", "host", "status"); code != 0 || !strings.Contains(out, "backups01") || !strings.Contains(out, "(0400)") {
		t.Errorf("host status: exit %d\n%s", code, out)
	}

	// A docks it: the configured command runs with the disk's mount point,
	// label and set, and writes onto the disk.
	envFile := filepath.Join(dir, "env-A")
	a.setCommand(t, "offsite", `set -e
env > `+envFile+`
echo "written at site A" > "$LUKSDOCK_MOUNT/from-A"
head -c 1048576 /dev/urandom > "$LUKSDOCK_MOUNT/payload"
`)
	code, out, errs = cli(t, "", "dock", "--image", img)
	if code != 0 || !strings.Contains(out, "backup ok") || !strings.Contains(out, "e2fsck -p: clean") {
		t.Fatalf("dock at A: exit %d\n%s%s", code, out, errs)
	}
	env, _ := os.ReadFile(envFile)
	for _, want := range []string{"LUKSDOCK_MOUNT=" + filepath.Join(core.DockDir, "backups01"), "LUKSDOCK_LABEL=backups01", "LUKSDOCK_SET=offsite", "LUKSDOCK_UUID=" + aRec.LUKSUUID} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("the command's environment lacks %s:\n%s", want, env)
		}
	}
	noSecret(t, key, "the command's environment or dock's output", string(env), out, errs)
	if got, ok := plainFile(t, img, testPass, "/from-A"); !ok || got != "written at site A\n" {
		t.Errorf("the command's file is not on the disk: %q %v", got, ok)
	}
	hist, ok := plainFile(t, img, testPass, "/.luksdock/history.jsonl")
	if !ok || !strings.Contains(hist, `"outcome":"ok"`) || !strings.Contains(hist, `"host":"`+host+`"`) {
		t.Errorf("the disk's history file: %q", hist)
	}
	r := a.load(t).Find(aRec.LUKSUUID)
	if lb := r.LastBackup(); lb == nil || lb.Outcome != "ok" || lb.Bytes < 1<<20 || lb.FreeLeft <= 0 || r.FSSize <= 0 || r.FSFree <= 0 {
		t.Errorf("inventory after the run at A: %+v", r)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), core.DockDir) {
		t.Errorf("a mount is left:\n%s", mounts)
	}
	if l := testkit.Run(t, "", "losetup", "-j", img); strings.TrimSpace(l) != "" {
		t.Errorf("a loop device is left on the image: %s", l)
	}

	// Site B, empty inventory: list recognises the disk from its token
	// alone (no passphrase) and records it as seen here.
	b.use(t)
	marker := filepath.Join(dir, "ran-at-B")
	b.setCommand(t, "offsite", "touch "+marker+"\n")
	dev := testkit.AttachLoop(t, img)
	e := listed(t, dev)
	wantDesc := "backups01, set offsite, prepared " + m.Prepared.Local().Format("2006-01-02")
	if e.Known == nil || !e.Known.Known || !strings.HasPrefix(e.Known.Description, wantDesc) {
		t.Errorf("site B's list: %+v, want %q", e.Known, wantDesc)
	}
	testkit.DetachLoop(dev)
	f := b.load(t)
	rb := f.Find(aRec.LUKSUUID)
	if rb == nil || rb.Label != "backups01" || rb.Set != "offsite" || !rb.Prepared.Equal(m.Prepared) || !rb.SeenHere || rb.PreparedOn != host || !rb.RecoveryKey || len(rb.Backups) != 0 {
		t.Fatalf("site B's inventory after list: %+v", f.Disks)
	}

	// Not enrolled at B: nothing runs.
	code, out, errs = cli(t, "", "dock", "--image", img)
	if code != 0 || !strings.Contains(out, "not enrolled on this host") {
		t.Errorf("dock at B, not enrolled: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran for a disk this host is not enrolled on")
	}

	// B enrolls and docks: A's run is known from the disk's history.
	if code, out, errs := cli(t, testPass+"\n", "host", "enroll", "--key-file", "--image", img, "--passphrase-file", "-"); code != 0 {
		t.Fatalf("host enroll at B: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := cli(t, "", "dock", "--image", img); code != 0 {
		t.Fatalf("dock at B: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("the command did not run at B once enrolled")
	}
	rb = b.load(t).Find(aRec.LUKSUUID)
	if len(rb.Backups) != 2 || rb.Backups[0].Outcome != "ok" || rb.Backups[1].Outcome != "ok" || rb.Backups[0].Bytes < 1<<20 {
		t.Errorf("site B's inventory should hold A's run (from the disk's history) and its own: %+v", rb.Backups)
	}
	if _, m = tokenOf(t, img); len(m.Hosts) != 2 {
		t.Errorf("token names %d hosts, want 2: %+v", len(m.Hosts), m.Hosts)
	}

	// Undocked mid-run (the service stopped: SIGTERM, as systemd sends
	// when the device unit goes): recorded as interrupted, no mount, FUSE
	// volume or loop device left; the next docking succeeds.
	started := filepath.Join(dir, "started")
	b.setCommand(t, "offsite", "touch "+started+"\nexec sleep 60\n")
	c := testkit.CLICommand("dock", "--image", img)
	var cout strings.Builder
	c.Stdout, c.Stderr = &cout, &cout
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			c.Process.Kill()
			c.Wait()
			t.Fatalf("the command did not start:\n%s", cout.String())
		}
	}
	c.Process.Signal(syscall.SIGTERM)
	err = c.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(cout.String(), "INTERRUPTED") {
		t.Errorf("interrupted dock: %v\n%s", err, cout.String())
	}
	rb = b.load(t).Find(aRec.LUKSUUID)
	if lb := rb.LastBackup(); lb == nil || lb.Outcome != "interrupted" {
		t.Errorf("last run after the interruption: %+v", rb.Backups)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), "/run/luksdock/backups01 ") {
		t.Errorf("a mount is left after the interruption:\n%s", mounts)
	}
	if h := holders(img); len(h) > 0 {
		t.Errorf("processes still hold the image after the interruption (a volume server?): %v", h)
	}
	if l := testkit.Run(t, "", "losetup", "-j", img); strings.TrimSpace(l) != "" {
		t.Errorf("a loop device is left after the interruption: %s", l)
	}
	b.setCommand(t, "offsite", "echo again > \"$LUKSDOCK_MOUNT/from-B\"\n")
	code, out, errs = cli(t, "", "dock", "--image", img)
	if code != 0 || !strings.Contains(out, "e2fsck -p") || !strings.Contains(out, "backup ok") {
		t.Errorf("dock after the interruption: exit %d\n%s%s", code, out, errs)
	}
	// Every run is its own, however close in time (all three sites' hosts
	// share one name here): A's, B's, the interrupted one, B's last.
	if got := runOutcomes(b.load(t).Find(aRec.LUKSUUID).Backups); got != "ok ok interrupted ok" {
		t.Errorf("site B's runs: %s, want ok ok interrupted ok", got)
	}
	if got, ok := plainFile(t, img, testPass, "/from-B"); !ok || got != "again\n" {
		t.Errorf("the run after the interruption wrote %q %v", got, ok)
	}

	// Site C, empty inventory, no host key: luksdock open with the
	// passphrase records the disk from its token and merges its history
	// (A's and B's runs).
	cSite := newSite(t, dir, "siteC")
	cSite.use(t)
	t.Setenv("LUKSDOCK_RUN_DIR", filepath.Join(dir, "open-records"))
	mnt := filepath.Join(dir, "mnt-C")
	if code, out, errs := cli(t, testPass+"\n", "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt); code != 0 {
		t.Fatalf("open at C: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs := cli(t, "", "close", "--mountpoint", mnt); code != 0 {
		t.Errorf("close at C: exit %d\n%s%s", code, out, errs)
	}
	rc := cSite.load(t).Find(aRec.LUKSUUID)
	if rc == nil || rc.Label != "backups01" || !rc.SeenHere || rc.FSSize == 0 || runOutcomes(rc.Backups) != "ok ok ok" {
		t.Errorf("site C's inventory after open should know the disk and its three good runs (the interruption is only at B): %+v", rc)
	}

	// A forgets the disk: the key file goes at once, the keyslot at A's
	// next docking (the token then names only B).
	a.use(t)
	if code, out, errs := cli(t, "", "host", "forget", "--uuid", aRec.LUKSUUID); code != 0 || !strings.Contains(out, "next docked") {
		t.Fatalf("host forget: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(kf); err == nil {
		t.Error("the key file is still there after host forget")
	}
	if code, out, _ := cli(t, "", "host", "status"); code != 0 || !strings.Contains(out, "forgotten") {
		t.Errorf("host status after forget: %s", out)
	}
	slotA := -1
	for _, h := range m.Hosts {
		if h.MachineID == fmt.Sprintf("%032x", []byte(a.name)) {
			slotA = h.Keyslot
		}
	}
	code, out, errs = cli(t, "", "dock", "--image", img)
	if code != 0 || !strings.Contains(out, "wiped") || !strings.Contains(out, "not enrolled") {
		t.Errorf("dock at A after forget: exit %d\n%s%s", code, out, errs)
	}
	raw, m = tokenOf(t, img)
	if len(m.Hosts) != 1 {
		t.Errorf("after A's forget the token should name B only: %s", raw)
	}
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", testkit.HeaderCopy(t, p1))
	if strings.Contains(dump, fmt.Sprintf("\n  %d: luks2", slotA)) {
		t.Errorf("keyslot %d is still there:\n%s", slotA, dump)
	}
	for _, s := range []site{a, b} {
		invRaw, _ := os.ReadFile(s.inv)
		noSecret(t, key, "an inventory", string(invRaw))
	}
}

// TestInventoryOverdue: inventory --every marks a disk whose last good
// backup is older than its set's interval, and --check exits 1 for it.
func TestInventoryOverdue(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inventory.json")
	t.Setenv("LUKSDOCK_INVENTORY", inv)
	now := time.Now().UTC().Truncate(time.Second)
	err := inventory.Update(inv, func(f *inventory.File) error {
		old := inventory.Record{LUKSUUID: "11111111-1111-1111-1111-111111111111", Label: "backups01", Set: "offsite", Prepared: now.Add(-60 * 24 * time.Hour)}
		old.AddBackups(inventory.Backup{Host: "nas", Time: now.Add(-10 * 24 * time.Hour), Outcome: "ok", Bytes: 5},
			inventory.Backup{Host: "nas", Time: now.Add(-2 * 24 * time.Hour), Outcome: "failed"})
		fresh := inventory.Record{LUKSUUID: "22222222-2222-2222-2222-222222222222", Label: "backups02", Set: "offsite", Prepared: now.Add(-60 * 24 * time.Hour),
			FSSize: 1000, FSFree: 250}
		fresh.AddBackups(inventory.Backup{Host: "nas", Time: now.Add(-1 * 24 * time.Hour), Outcome: "ok"})
		f.Put(old)
		f.Put(fresh)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, "", "inventory", "--every", "7d", "--check")
	if code != 1 || !strings.Contains(out, "OVERDUE: backups01 (set offsite): last good backup 10 days ago on nas, due every 7d") || strings.Contains(out, "OVERDUE: backups02") {
		t.Errorf("--every 7d --check: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "2 days ago on nas: failed") || !strings.Contains(out, "75% (250 B free)") {
		t.Errorf("the table lacks the last backup or the fill level:\n%s", out)
	}
	if code, out, _ := cli(t, "", "inventory", "--every", "7d", "--every", "offsite=14d", "--check"); code != 0 || strings.Contains(out, "OVERDUE") {
		t.Errorf("--every offsite=14d: exit %d\n%s", code, out)
	}
	if code, _, _ := cli(t, "", "inventory", "--every", "7d"); code != 0 {
		t.Errorf("without --check overdue disks do not fail: exit %d", code)
	}
	if code, _, errs := cli(t, "", "inventory", "--every", "soon"); code != 2 {
		t.Errorf("--every soon: exit %d %s", code, errs)
	}
}

// holders lists the processes that have path open.
func holders(path string) []string {
	var out []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == path {
			out = append(out, fd)
		}
	}
	return out
}

// runOutcomes are the runs' outcomes, oldest first, space-separated.
func runOutcomes(runs []inventory.Backup) string {
	var o []string
	for _, r := range runs {
		o = append(o, r.Outcome)
	}
	return strings.Join(o, " ")
}
