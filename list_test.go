package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/testkit"
)

func listRun(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"list"}, args...), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func fixtureRoot(name string) string { return filepath.Join("testdata", "sysfs", name) }

func TestListTableFixture(t *testing.T) {
	out, errs, code := listRun(t, "--sysroot", fixtureRoot("usb-bot"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("table:\n%s", out)
	}
	for _, h := range []string{"NAME", "SIZE", "TRANSPORT", "SECTORS", "MODEL", "SERIAL", "CONTENTS", "STATUS"} {
		if !strings.Contains(lines[0], h) {
			t.Errorf("header lacks %s: %q", h, lines[0])
		}
	}
	for _, want := range []string{"sdi", "465.8 GiB", "usb-storage", " 512/512 ", "MAXTOR S TM3500630AS", "152D203380B6", "MBR: sdi1 LVM2 PV 465.8 GiB", " ok"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("row lacks %q: %q", want, lines[1])
		}
	}
}

// A USB dock that reports 4096-byte logical sectors: the table, the JSON
// and the warning say so (the usb-bot fixture with its queue attributes
// changed as such a bridge reports them).
func TestListUSB4KDock(t *testing.T) {
	root := t.TempDir()
	if out, err := exec.Command("cp", "-a", fixtureRoot("usb-bot")+"/.", root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	q := "sys/devices/pci0000:00/0000:00:1d.7/usb2/2-1/2-1:1.0/host13/target13:0:0/13:0:0:0/block/sdi/queue/"
	for _, f := range []string{"logical_block_size", "physical_block_size"} {
		if err := os.WriteFile(filepath.Join(root, q, f), []byte("4096\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errs, code := listRun(t, "--sysroot", root)
	if code != 0 || !strings.Contains(out, " 4096/4096 ") || !strings.Contains(out, "warning: sdi: "+disk.USB4KWarning) {
		t.Errorf("exit %d:\n%s%s", code, out, errs)
	}
	out, errs, code = listRun(t, "--sysroot", root, "--json")
	var got []struct {
		Logical  int `json:"logical_sector"`
		Physical int `json:"physical_sector"`
		Verdict  struct {
			Warnings []string `json:"warnings"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got) != 1 || got[0].Logical != 4096 || got[0].Physical != 4096 ||
		!slices.Contains(got[0].Verdict.Warnings, disk.USB4KWarning) {
		t.Errorf("--json: exit %d %v:\n%s%s", code, err, out, errs)
	}
}

type listJSON struct {
	Name      string `json:"name"`
	Transport string `json:"transport"`
	Summary   string `json:"summary"`
	OK        bool   `json:"ok"`
	Status    string `json:"status"`
	Content   struct {
		Type, Label string
	} `json:"content"`
	LoopBacking string `json:"loop_backing"`
	Verdict     struct {
		Refused  []string `json:"refused"`
		Internal bool     `json:"internal"`
	} `json:"verdict"`
	USB *struct {
		VendorID string `json:"vendor_id"`
		Port     string `json:"port"`
	} `json:"usb"`
}

func TestListJSONFixtures(t *testing.T) {
	out, errs, code := listRun(t, "--json", "--sysroot", fixtureRoot("loop"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got []listJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0].Name != "loop0" || got[1].Name != "vda" {
		t.Fatalf("entries = %+v", got)
	}
	if !got[0].OK || got[0].Status != "ok" || got[0].Summary != `ext4 "scratch"` || got[0].LoopBacking != "/var/tmp/disk.img" {
		t.Errorf("loop0 = %+v", got[0])
	}
	if got[1].OK || !got[1].Verdict.Internal || !strings.Contains(got[1].Status, "refused: vda holds the running system") {
		t.Errorf("vda = %+v", got[1])
	}

	out, _, _ = listRun(t, "--json", "--sysroot", fixtureRoot("usb-uas"))
	got = nil
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].USB == nil || got[0].USB.Port != "4-2" || !got[0].OK {
		t.Fatalf("uas: %v %+v", err, got)
	}
}

func TestListAllowInternal(t *testing.T) {
	out, _, code := listRun(t, "--sysroot", fixtureRoot("sata-spare"))
	if code != 0 || !strings.Contains(out, "internal (not on USB: sata): needs --allow-internal") {
		t.Fatalf("without flag: exit %d\n%s", code, out)
	}
	out, _, code = listRun(t, "--allow-internal", "--sysroot", fixtureRoot("sata-spare"))
	if code != 0 || !strings.Contains(out, "ok (internal: not on USB: sata)") || !strings.Contains(out, "ZFN0ABCD") {
		t.Fatalf("with flag: exit %d\n%s", code, out)
	}
	// A refused disk stays refused whatever the flag.
	out, _, _ = listRun(t, "--allow-internal", "--sysroot", fixtureRoot("sata-root"))
	if !strings.Contains(out, "refused: ") {
		t.Fatalf("sata-root with flag:\n%s", out)
	}
}

// Issue 20 (item 16): the table names each reason a disk is refused with
// its fix, as `list --json` (reasons[].fix) and the wizard's Details do.
func TestListTableFixes(t *testing.T) {
	out, errs, code := listRun(t, "--sysroot", fixtureRoot("loop"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var entries []struct {
		Reasons []core.ListReason `json:"reasons"`
	}
	jout, _, _ := listRun(t, "--json", "--sysroot", fixtureRoot("loop"))
	if err := json.Unmarshal([]byte(jout), &entries); err != nil || len(entries) != 2 || len(entries[1].Reasons) != 2 {
		t.Fatalf("--json: %v\n%s", err, jout)
	}
	for _, r := range entries[1].Reasons {
		if r.Fix == "" {
			t.Fatalf("--json gives no fix for %q", r.Text)
		}
		if want := "vda: " + r.Text + "\n  fix: " + r.Fix + "\n"; !strings.Contains(out, want) {
			t.Errorf("the table lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = listRun(t, "--sysroot", fixtureRoot("sata-spare"))
	if !strings.Contains(out, "\n  fix: backup disks come through the dock. If you really mean this disk, start luksdock again with --allow-internal.\n") {
		t.Errorf("sata-spare: no fix for the internal disk:\n%s", out)
	}
}

func TestListUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"extra"}, {"--no-such-flag"}} {
		_, errs, code := listRun(t, args...)
		if code != 2 {
			t.Errorf("list %v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
}

// TestListWaitReal: `luksdock list --wait --json` returns when a disk
// appears (a real loop device here) and prints it.
func TestListWaitReal(t *testing.T) {
	testkit.NeedRoot(t, "losetup", "mkfs.ext4")
	// Loop devices of other tests (this binary's or another package's)
	// can arrive first: then list --wait rightly prints that one, and the
	// attempt is repeated with a new image. The test fails unless one
	// attempt printed ours.
	for attempt := 1; attempt <= 5; attempt++ {
		img := filepath.Join(t.TempDir(), "docked.img")
		testkit.SparseFile(t, img, 96<<20)
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "docked", img).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
		type result struct {
			out  string
			code int
		}
		done := make(chan result, 1)
		before := ueventSockets()
		go func() {
			out, _, code := listRun(t, "--wait", "--json")
			done <- result{out, code}
		}()
		// list --wait has taken its list of known disks once it listens
		// for uevents: wait for its new uevent socket, not a fixed time.
		for deadline := time.Now().Add(10 * time.Second); len(ueventSockets()) <= len(before); {
			if time.Now().After(deadline) {
				t.Fatal("list --wait opened no uevent socket within 10 s")
			}
			time.Sleep(time.Millisecond)
		}
		dev := testkit.AttachLoop(t, img)
		select {
		case r := <-done:
			var e listJSON
			if err := json.Unmarshal([]byte(r.out), &e); err != nil || r.code != 0 {
				t.Fatalf("exit %d, %v\n%s", r.code, err, r.out)
			}
			if e.LoopBacking != img {
				t.Logf("attempt %d: another disk arrived first: %+v", attempt, e)
				continue
			}
			if e.Content.Label != "docked" || !e.OK || "/dev/"+e.Name != dev {
				t.Errorf("printed %+v for %s", e, dev)
			}
			return
		case <-time.After(5 * time.Second):
			t.Fatal("list --wait did not return within 5s of the loop device appearing")
		}
	}
	t.Fatal("in 5 attempts another disk always arrived before ours; the case was not exercised")
}

// ueventSockets lists this process's NETLINK_KOBJECT_UEVENT sockets (by
// inode, from /proc/self/net/netlink and /proc/self/fd).
func ueventSockets() []string {
	b, _ := os.ReadFile("/proc/self/net/netlink")
	uevent := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		// sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
		if len(f) >= 10 && f[1] == "15" {
			uevent["socket:["+f[9]+"]"] = true
		}
	}
	var out []string
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); uevent[l] {
			out = append(out, l)
		}
	}
	return out
}

// TestListLeavesOutOwnVolume: while `luksdock open` (userspace engine) has
// an image open, its decrypted volume is a loop device on the volume
// server's FUSE file, mounted at the mountpoint. That is luksdock's own
// volume, part of the image it opened, not a disk anyone could choose:
// list --json leaves it out (it was listed as a disk of its own, refused as
// mounted), as does the wizard's list (the same scan, disk.Sys.Scan).
func TestListLeavesOutOwnVolume(t *testing.T) {
	testkit.NeedLoop(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_RUN_DIR", filepath.Join(dir, "run"))
	img, _ := preparedImage(t, dir, "ownvol01")
	mnt := filepath.Join(dir, "mnt")
	t.Cleanup(func() { cli(t, "", "close", "--mountpoint", mnt) })
	code, out, errs := cli(t, testPass+"\n", "open", "--image", img, "--passphrase-file", "-", "--mountpoint", mnt, "--engine", "userspace", "--json")
	if code != 0 {
		t.Fatalf("open: exit %d\n%s%s", code, out, errs)
	}
	var o core.Opened
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("open --json: %v\n%s", err, out)
	}
	// the case at hand: the mounted cleartext is a loop device on a file
	// of a luksdock FUSE mount
	name := filepath.Base(o.Cleartext)
	b, _ := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if backing := strings.TrimSpace(string(b)); !strings.HasPrefix(name, "loop") || !strings.Contains(backing, "/luksdock-fuse-") || mountedAt(mnt) != "ext4" {
		t.Fatalf("open's cleartext %s (backing file %q) is not the userspace engine's loop device on its FUSE file, mounted at %s", o.Cleartext, backing, mnt)
	}
	out, errs, code = listRun(t, "--json")
	if code != 0 {
		t.Fatalf("list --json: exit %d: %s", code, errs)
	}
	var entries []struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	for _, e := range entries {
		if e.Name == name {
			t.Errorf("list --json lists %s, the decrypted volume of the open image, as a disk:\n%s", name, out)
		}
	}
	disks, err := disk.Host.Scan()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disks {
		if d.Name == name {
			t.Errorf("disk.Host.Scan (the wizard's list) lists %s", name)
		}
	}
}
