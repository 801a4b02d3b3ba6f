package reliability

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// steps are the pipeline's steps in order.
var steps = []string{"preflight", "wipe", "partition", "luks-format", "open", "mkfs", "close", "verify"}

const imgSize = 72 << 20

// oldImage is an existing image holding an old ext4 filesystem labelled
// "olddata": a disk with something on it.
func oldImage(t *testing.T) string {
	img := sparseImage(t, t.TempDir(), imgSize)
	withContent(t, img)
	return img
}

// killTriggers are the SIGKILL points: each step boundary (the step's start
// and done events), inside the steps that run a child (while cryptsetup,
// mkfs.ext4, e2fsck are alive) and a few ms into the wipe.
func killTriggers(sig syscall.Signal) []trigger {
	var trs []trigger
	for _, s := range steps {
		trs = append(trs, trigger{event: "start", step: s, sig: sig}, trigger{event: "done", step: s, sig: sig})
	}
	return append(trs,
		trigger{event: "start", step: "wipe", delay: 3 * time.Millisecond, sig: sig},
		// Child triggers run the tool through a shim that sleeps first, so
		// the kill lands while it is alive however fast the machine is.
		trigger{child: "cryptsetup", step: "luks-format", sig: sig, slow: "cryptsetup"},
		// verify's cryptsetup unlock (luksDump --dump-volume-key) runs in
		// the background from the open step until verify waits for it
		// (issue 13).
		trigger{child: "cryptsetup", step: "open", until: "verify", sig: sig, slow: "cryptsetup"},
		trigger{child: "e2fsck", step: "verify", sig: sig, slow: "e2fsck"},
		trigger{child: "mkfs.ext4", step: "mkfs", sig: sig, slow: "mkfs.ext4"},
	)
}

// TestSIGKILL kills luksdock (userspace engine, image file) at every step
// boundary and inside every step that runs a child process, then checks:
// nothing is left mounted, attached or running; a fresh plan (--dry-run)
// reports what is really on the image (as blkid and sfdisk see it); `luksdock
// verify` succeeds exactly when an independent decryption (x/crypto/xts with
// the key cryptsetup recovers) plus e2fsck says the disk is finished, and
// fails with exit 5 otherwise; and a new prepare succeeds.
func TestSIGKILL(t *testing.T) {
	requireEnv(t)
	for _, tr := range killTriggers(syscall.SIGKILL) {
		t.Run(strings.ReplaceAll(tr.String(), " ", "_"), func(t *testing.T) {
			t.Parallel()
			killCase(t, tr)
		})
	}
}

// TestSIGKILLWithVolumeServer kills luksdock and its userspace volume server
// together (as when a whole cgroup is killed) while mkfs.ext4 runs on the
// FUSE volume. (mkfs.ext4 is slowed: unslowed, the kill could land as it
// exited and luksdock was already closing the volume, when there is no
// mount left to be dead.) The dead FUSE mount that remains must be harmless (every
// access fails, no plaintext) and the next luksdock run must remove it.
func TestSIGKILLWithVolumeServer(t *testing.T) {
	requireEnv(t)
	img := oldImage(t)
	pass := passFile(t, []byte(testPass+"\n"))
	tmpdir := t.TempDir()
	d := drive(t, tmpdir, trigger{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGKILL, server: true, slow: "mkfs.ext4"}, prepareArgs(img, pass, "--json")...)
	if !d.fired {
		t.Fatalf("mkfs.ext4 was never seen running; the case was not exercised (exit %d)", d.code)
	}
	t.Logf("killed at %s; volume servers killed first: %q", d.at, d.serverKills)
	time.Sleep(200 * time.Millisecond)
	left := mountsUnder(t, tmpdir)
	if len(left) > 0 {
		t.Logf("after SIGKILL of luksdock and its volume server a dead FUSE mount remains, as expected: %+v", left)
		for _, m := range left {
			if m.fstype != "fuse.luksdock" {
				t.Errorf("unexpected mount %+v", m)
			}
			// Read, not stat: the kernel answers stat from its attribute
			// cache (1 s) without asking the dead server.
			f, err := os.Open(filepath.Join(m.point, "volume"))
			if err == nil {
				_, err = f.Read(make([]byte, 512))
				f.Close()
			}
			if err == nil {
				t.Errorf("the dead FUSE volume %s is still readable", m.point)
			} else if !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) {
				t.Errorf("reading the dead volume: %v, want ENOTCONN or ECONNABORTED", err)
			}
		}
	}
	// The next run (any prepare, even a dry run) must clean it up.
	r := luksdock(t, runOpts{tmpdir: tmpdir}, prepareArgs(img, pass)...)
	if r.code != 0 {
		t.Fatalf("prepare after the kill: %v", r)
	}
	if m := mountsUnder(t, tmpdir); len(m) > 0 {
		t.Errorf("a later luksdock run did not remove the dead FUSE mount left by a killed one: %+v", m)
	}
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "FUSE mount") {
			t.Logf("later run: %s", l)
		}
	}
	if len(left) > 0 && !strings.Contains(r.stdout, "removed a dead FUSE mount") {
		t.Errorf("the later run did not say it removed the dead mount:\n%s", r.stdout)
	}
	noLeftovers(t, tmpdir, img, nil)
}

// TestSIGKILLDevice kills luksdock preparing a loop device (userspace
// engine: the kernel engine needs device-mapper) at the boundaries and in
// the children that write, then checks as TestSIGKILL does, through the
// device.
func TestSIGKILLDevice(t *testing.T) {
	requireEnv(t)
	for _, tr := range []trigger{
		{event: "start", step: "wipe", sig: syscall.SIGKILL},
		{event: "done", step: "partition", sig: syscall.SIGKILL},
		{child: "cryptsetup", step: "luks-format", sig: syscall.SIGKILL},
		{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGKILL, slow: "mkfs.ext4"},
		{event: "start", step: "close", sig: syscall.SIGKILL},
		{event: "start", step: "verify", sig: syscall.SIGKILL},
	} {
		t.Run(strings.ReplaceAll(tr.String(), " ", "_"), func(t *testing.T) {
			t.Parallel()
			file := oldImage(t)
			dev := attachLoop(t, file)
			pass := passFile(t, []byte(testPass+"\n"))
			tmpdir := t.TempDir()
			args := append([]string{"prepare", "--device", dev, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(dev), "--engine", "userspace", "--json"}, lowCost...)
			d := drive(t, tmpdir, tr, args...)
			if !d.fired {
				t.Fatalf("the trigger never fired (exit %d); the case was not exercised\n%s", d.code, d.stderr)
			}
			if d.code != 137 {
				t.Fatalf("luksdock exited %d, want 137\n%s", d.code, d.stderr)
			}
			if d.deadlock != "" {
				t.Errorf("SIGKILLed luksdock could not die for 5 s (threads waiting on a FUSE request; the test aborted the connection):\n%s", d.deadlock)
			}
			noLeftovers(t, tmpdir, "", d.kids)
			if h := holders(dev); len(h) > 0 {
				t.Errorf("%s still has holders after the kill: %v", dev, h)
			}
			checkDetectAndRecover(t, dev, pass, stepIndex[d.lastDone()], true)
		})
	}
}

// holders lists what holds a block device or its partitions (sysfs).
func holders(dev string) []string {
	m, _ := filepath.Glob(filepath.Join("/sys/block", filepath.Base(dev), "holders", "*"))
	p, _ := filepath.Glob(filepath.Join("/sys/block", filepath.Base(dev), filepath.Base(dev)+"p*", "holders", "*"))
	return append(m, p...)
}

func killCase(t *testing.T, tr trigger) {
	img := oldImage(t)
	pass := passFile(t, []byte(testPass+"\n"))
	tmpdir := t.TempDir()
	d := drive(t, tmpdir, tr, prepareArgs(img, pass, "--json")...)
	if !d.fired {
		t.Fatalf("the trigger never fired (luksdock exit %d, last done %q); the case was not exercised\n%s", d.code, d.lastDone(), d.stderr)
	}
	t.Logf("killed at %s (last done %q), exit %d", d.at, d.lastDone(), d.code)
	if d.deadlock != "" {
		// The volume server is a process of its own so that this cannot
		// happen (luks/userspace_server.go). The connection was aborted, and
		// the checks below still run.
		t.Errorf("SIGKILLed luksdock could not die for 5 s: a thread waits on a FUSE request no one answers (the test aborted the connection):\n%s", d.deadlock)
	}
	switch {
	case d.code == 137:
	case d.code == 0 && d.lastDone() == "verify":
		// killed after the last step finished: the run completed
	default:
		t.Fatalf("luksdock exited %d, want 137 (SIGKILL)\n%s", d.code, d.stderr)
	}
	noLeftovers(t, tmpdir, img, d.kids)
	checkDetectAndRecover(t, img, pass, stepIndex[d.lastDone()], false)
}

// checkDetectAndRecover checks, on an image a luksdock run left behind, that
// a new plan reports what is there, that verify tells a finished disk from a
// half-made one exactly as an independent check does, and that a new prepare
// succeeds. lastDone is the index of the last step reported done.
// With device, img is a block device (a loop device) and luksdock is run
// with --device.
func checkDetectAndRecover(t *testing.T, img, pass string, lastDone int, device bool) {
	target := []string{"--image", img}
	prep := prepareArgs(img, pass)
	if device {
		target = []string{"--device", img}
		prep = append([]string{"prepare", "--device", img, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(img), "--engine", "userspace"}, lowCost...)
	}
	t.Helper()
	// What is really there, per blkid and sfdisk.
	_, _, hasTable := partStart(t, img)
	typ := luksAt(t, img)
	if lastDone >= stepIndex["partition"] && !hasTable {
		t.Errorf("partition was reported done but sfdisk finds no partition table")
	}
	if lastDone >= stepIndex["luks-format"] && typ != "crypto_LUKS" {
		t.Errorf("luks-format was reported done but blkid finds %q at partition 1", typ)
	}
	// A fresh plan must show it.
	dry := luksdock(t, runOpts{}, append(append([]string{"prepare"}, target...), "--label", "backups01", "--dry-run", "--engine", "userspace")...)
	if dry.code != 0 {
		t.Fatalf("prepare --dry-run on the leftover image: %v", dry)
	}
	var destroys []string
	for _, l := range strings.Split(dry.stdout, "\n") {
		if d, ok := strings.CutPrefix(l, "# destroys "); ok {
			destroys = append(destroys, d)
		}
	}
	all := strings.Join(destroys, "; ")
	switch {
	case typ == "crypto_LUKS":
		if !strings.Contains(all, "LUKS2") || !strings.Contains(all, "GPT partition table") {
			t.Errorf("blkid finds a LUKS header in a GPT partition, but the new plan says it destroys: %s", all)
		}
	case hasTable && tableType(t, img) == "gpt":
		if !strings.Contains(all, "GPT partition table") || strings.Contains(all, "LUKS") {
			t.Errorf("sfdisk finds a GPT table without LUKS, but the new plan says it destroys: %s", all)
		}
	}
	if t.Failed() {
		sf, _ := exec.Command("sfdisk", "--dump", img).CombinedOutput()
		bl, _ := exec.Command("blkid", "-p", img).CombinedOutput()
		wf, _ := exec.Command("wipefs", "--no-act", img).CombinedOutput()
		t.Logf("dry run:\n%s\nsfdisk --dump:\n%s\nblkid -p: %s\nwipefs -n:\n%s", dry.stdout, sf, bl, wf)
	}
	// verify must agree with the independent oracle.
	finished, why := false, "no LUKS header"
	if typ == "crypto_LUKS" {
		finished, why, _ = oracle(t, img, testPass, "backups01")
	}
	vr := luksdock(t, runOpts{}, append(append([]string{"verify"}, target...), "--passphrase-file", pass, "--json", "--engine", "userspace")...)
	switch {
	case finished && vr.code != 0:
		t.Errorf("the disk is finished (independent check: %s) but luksdock verify says %v", why, vr)
	case !finished && vr.code != 5:
		t.Errorf("the disk is NOT finished (independent check: %s) but luksdock verify exits %d (want 5)\n%v", why, vr.code, vr)
	case !finished && strings.Contains(vr.stdout, `"event":"result"`):
		t.Errorf("verify printed a result for a half-made disk:\n%s", vr.stdout)
	}
	if !finished {
		// verify must say what is missing, in the words of the state
		// (no table, no LUKS header, no filesystem, not clean).
		explained := false
		for _, w := range []string{"has no partition table", "the kernel will not read this partition table", "holds no LUKS header", "no ext4 filesystem inside the LUKS volume", "e2fsck -fn is not clean", "the ext4 label is", "has no label"} {
			explained = explained || strings.Contains(vr.stderr, w)
		}
		if !explained {
			t.Errorf("verify of a half-made disk does not say what is missing:\n%s", vr.stderr)
		}
		t.Logf("verify says: %s", strings.TrimSpace(strings.SplitN(vr.stderr, "\n", 2)[0]))
	}
	if lastDone >= stepIndex["close"] && !finished {
		t.Errorf("mkfs and close were reported done but the disk is not finished: %s", why)
	}
	// And the disk can be prepared again from scratch.
	tmp := t.TempDir()
	r := luksdock(t, runOpts{tmpdir: tmp}, prep...)
	if r.code != 0 || !strings.Contains(r.stdout, "Done: ") {
		t.Fatalf("a new prepare on the leftover image failed: %v", r)
	}
	noLeftovers(t, tmp, img, nil)
	if ok, why, _ := oracle(t, img, testPass, "backups01"); !ok {
		t.Errorf("after the new prepare the independent check says: %s", why)
	}
}

// TestSignals sends SIGINT or SIGTERM during each step (to luksdock alone,
// and as a terminal's Ctrl-C does, to its whole process group while a child
// runs). luksdock must finish or undo the step, release everything, exit 130
// and report a state that is true (checked against blkid, sfdisk and the
// independent decryption); a signal during the last step stops nothing:
// exit 0 with the result.
func TestSignals(t *testing.T) {
	requireEnv(t)
	var trs []trigger
	for _, s := range steps {
		trs = append(trs, trigger{event: "start", step: s, sig: syscall.SIGINT})
	}
	trs = append(trs,
		trigger{event: "start", step: "mkfs", sig: syscall.SIGTERM},
		trigger{event: "start", step: "wipe", sig: syscall.SIGTERM},
		trigger{child: "cryptsetup", step: "luks-format", sig: syscall.SIGINT, group: true},
		trigger{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGINT, group: true, slow: "mkfs.ext4"},
		trigger{child: "e2fsck", step: "verify", sig: syscall.SIGINT, group: true, slow: "e2fsck"},
		trigger{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGTERM, group: true, slow: "mkfs.ext4"},
	)
	for _, tr := range trs {
		t.Run(strings.ReplaceAll(tr.String(), " ", "_"), func(t *testing.T) {
			t.Parallel()
			img := oldImage(t)
			before := testkit.SHA256File(t, img)
			pass := passFile(t, []byte(testPass+"\n"))
			tmpdir := t.TempDir()
			d := drive(t, tmpdir, tr, prepareArgs(img, pass, "--json")...)
			if !d.fired {
				t.Fatalf("the trigger never fired (exit %d); the case was not exercised", d.code)
			}
			// A stop takes effect at the next step boundary; a signal that
			// reaches luksdock only during verify, the last step, stops
			// nothing (issue 12): the run finished and exits 0 with its
			// result. That is the only outcome while e2fsck runs in verify,
			// and may be one at the start of close (it takes milliseconds)
			// or of verify (its stop check may come first).
			lastStep := tr.step == "verify" && tr.child != ""
			if d.code == 0 && (lastStep || tr.event == "start" && (tr.step == "close" || tr.step == "verify")) {
				if !d.has("result") || !strings.Contains(d.stderr, "all steps finished and the disk is verified") {
					t.Errorf("exit 0 without the result and word that the run completed:\n%s", d.stderr)
				}
				noLeftovers(t, tmpdir, img, d.kids)
				checkStateIsTrue(t, img, before, "ready: verified backup disk")
				t.Logf("%s at %s: the run had reached its last step; exit 0 with the result", tr, d.at)
				return
			}
			if lastStep {
				t.Errorf("exit %d after %v during verify, want 0: the last step finished\n%s", d.code, tr.sig, d.stderr)
			}
			if d.code != 130 {
				t.Errorf("exit %d after %v at %s, want 130\n%s", d.code, tr.sig, d.at, d.stderr)
			}
			if d.has("result") {
				t.Errorf("an interrupted run printed a result event")
			}
			if !strings.Contains(d.stderr, "disk state: ") {
				t.Errorf("stderr does not report the disk's state:\n%s", d.stderr)
			}
			var state string
			if n := len(d.events); n > 0 && d.events[n-1].Kind == "failed" {
				state = d.events[n-1].State
			} else {
				t.Errorf("the last event is not a failed event with the state: %+v", d.events)
			}
			noLeftovers(t, tmpdir, img, d.kids)
			checkStateIsTrue(t, img, before, state)
			t.Logf("%s at %s: exit %d, state %q", tr, d.at, d.code, state)
		})
	}
}

// checkStateIsTrue compares a reported disk state with what blkid, sfdisk
// and the independent decryption find.
func checkStateIsTrue(t *testing.T, img, before, state string) {
	t.Helper()
	_, _, hasTable := partStart(t, img)
	typ := luksAt(t, img)
	switch {
	case strings.HasPrefix(state, "unchanged"):
		if testkit.SHA256File(t, img) != before {
			t.Errorf("state %q, but the image changed", state)
		}
	case strings.HasPrefix(state, "old signatures wiped"):
		if hasTable {
			t.Errorf("state %q, but sfdisk finds a partition table", state)
		}
		if out, _ := exec.Command("blkid", "-p", img).Output(); len(out) > 0 {
			t.Errorf("state %q, but blkid -p still finds: %s", state, out)
		}
	case strings.HasPrefix(state, "partitioned, no LUKS"):
		if !hasTable || typ != "" {
			t.Errorf("state %q, but table=%v and partition 1 holds %q", state, hasTable, typ)
		}
	case strings.HasPrefix(state, "partitioned, LUKS header, no filesystem"):
		if typ != "crypto_LUKS" {
			t.Errorf("state %q, but partition 1 holds %q", state, typ)
		} else if ok, _, _ := oracle(t, img, testPass, "backups01"); ok {
			t.Errorf("state %q, but the filesystem is there and clean", state)
		}
	case strings.HasPrefix(state, "old signatures partly wiped"),
		strings.HasPrefix(state, "old signatures wiped; the new partition table may be incomplete"),
		strings.HasPrefix(state, "partitioned; the LUKS header may be missing"):
		// "may be": nothing to check but that it is not a finished disk
		if typ == "crypto_LUKS" {
			if ok, _, _ := oracle(t, img, testPass, "backups01"); ok {
				t.Errorf("state %q, but the disk is finished", state)
			}
		}
	case strings.HasPrefix(state, "partitioned, LUKS header, filesystem incomplete"):
		if typ != "crypto_LUKS" {
			t.Errorf("state %q, but partition 1 holds %q", state, typ)
		} else if ok, _, _ := oracle(t, img, testPass, "backups01"); ok {
			t.Errorf("state %q, but the filesystem is there and clean", state)
		}
	case strings.HasPrefix(state, "LUKS and filesystem made but NOT verified"), strings.HasPrefix(state, "ready"):
		if typ != "crypto_LUKS" {
			t.Fatalf("state %q, but partition 1 holds %q", state, typ)
		}
		if ok, why, _ := oracle(t, img, testPass, "backups01"); !ok {
			t.Errorf("state %q, but the independent check says: %s", state, why)
		}
	default:
		t.Errorf("unknown state %q", state)
	}
}
