package reliability

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
		// Child triggers fire while the real tool runs, traced, once it
		// has written part of its output (writers) or read from the disk
		// (readers): see midtool_test.go.
		trigger{child: "cryptsetup", step: "luks-format", sig: sig},
		trigger{child: "cryptsetup", step: "verify", sig: sig},
		trigger{child: "e2fsck", step: "verify", sig: sig},
		trigger{child: "mkfs.ext4", step: "mkfs", sig: sig},
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
// together (as when a whole cgroup is killed) while mkfs.ext4 writes to the
// FUSE volume (the real mkfs.ext4, traced, after it changed bytes of the
// image). The dead FUSE mount that remains must be harmless (every access
// fails, no plaintext) and the next luksdock run must remove it.
//
// Every luksdock run removes dead luksdock mounts it finds, so a run of
// another test (in this package or another package's test binary running
// beside it) could remove this one first. The case therefore runs in a
// mount namespace of its own (unshare --mount --propagation private): the
// killed run, the dead mount and the next run are private to it, and the
// dead mount must be there.
func TestSIGKILLWithVolumeServer(t *testing.T) {
	requireEnv(t)
	ns := privateMountNS(t)
	img := oldImage(t)
	pass := passFile(t, []byte(testPass+"\n"))
	tmpdir := t.TempDir()
	d := drive(t, tmpdir, trigger{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGKILL, server: true, file: img, ns: ns}, prepareArgs(img, pass, "--json")...)
	if !d.fired {
		t.Fatalf("the real mkfs.ext4 was never caught writing; the case was not exercised (exit %d)\n%s\n%s", d.code, strings.Join(d.notes, "\n"), d.stderr)
	}
	t.Logf("killed at %s while %s (pid %d) ran: %s; volume servers (stopped before luksdock was killed, killed after it): %q", d.at, d.toolExe, d.toolPID, d.toolProgress, d.serverKills)
	if len(d.serverKills) == 0 {
		t.Fatalf("no volume server was found to kill")
	}
	if !d.toolAliveAfter {
		t.Errorf("mkfs.ext4 was not alive right after the kill")
	}
	nsPid := strconv.Itoa(ns)
	left := mountsUnderOf(t, nsPid, tmpdir)
	if len(left) == 0 {
		t.Fatalf("after SIGKILL of luksdock and its volume server while mkfs.ext4 wrote, no dead FUSE mount is left in the test's own mount namespace; the case was not reached")
	}
	t.Logf("after SIGKILL of luksdock and its volume server a dead FUSE mount remains, as expected: %+v", left)
	for _, m := range left {
		if m.fstype != "fuse.luksdock" {
			t.Errorf("unexpected mount %+v", m)
		}
		// Read, not stat: the kernel answers stat from its attribute
		// cache (1 s) without asking the dead server. The path goes
		// through /proc/PID/root, that is through the namespace's mounts.
		f, err := os.Open(filepath.Join("/proc", nsPid, "root", m.point, "volume"))
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
	// The next run (in the same namespace) must clean it up and say so.
	r := luksdock(t, runOpts{tmpdir: tmpdir, pre: nsenter(ns)}, prepareArgs(img, pass)...)
	if r.code != 0 {
		t.Fatalf("prepare after the kill: %v", r)
	}
	if m := mountsUnderOf(t, nsPid, tmpdir); len(m) > 0 {
		t.Errorf("a later luksdock run did not remove the dead FUSE mount left by a killed one: %+v", m)
	}
	for _, m := range left {
		if !strings.Contains(r.stdout, "removed a dead FUSE mount left by a killed luksdock: "+m.point) {
			t.Errorf("the later run did not say it removed the dead mount %s:\n%s", m.point, r.stdout)
		}
	}
	noLeftovers(t, tmpdir, img, nil)
}

// privateMountNS starts a process in a new mount namespace whose mounts
// propagate neither way, and returns its pid (for nsenter and
// /proc/PID/mountinfo). It is killed at cleanup.
func privateMountNS(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare --mount: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	self, _ := os.Readlink("/proc/self/ns/mnt")
	deadline := time.Now().Add(5 * time.Second)
	for {
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
		if ns != "" && ns != self && exeOf(cmd.Process.Pid) != realTool(t, "unshare") {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("unshare did not enter a new mount namespace within 5 s (ns %q)", ns)
		}
		time.Sleep(time.Millisecond)
	}
}

// nsenter is the argv prefix that runs a command in pid's mount namespace
// (nsenter execs it: the pid is the command's own).
func nsenter(pid int) []string {
	return []string{"nsenter", "-t", strconv.Itoa(pid), "-m", "--"}
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
		{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGKILL},
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
			tr.file = dev + "p1" // what cryptsetup and the volume server write
			d := drive(t, tmpdir, tr, args...)
			if !d.fired {
				t.Fatalf("the trigger never fired (exit %d); the case was not exercised\n%s\n%s", d.code, strings.Join(d.notes, "\n"), d.stderr)
			}
			checkMidTool(t, tr, d)
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
			finished := checkDetectAndRecover(t, dev, pass, stepIndex[d.lastDone()], true)
			if tr.child != "" && finished {
				t.Logf("%s had finished its work when luksdock was killed: the disk is independently finished", tr.child)
			}
		})
	}
}

// holders lists what holds a block device or its partitions (sysfs).
func holders(dev string) []string {
	m, _ := filepath.Glob(filepath.Join("/sys/block", filepath.Base(dev), "holders", "*"))
	p, _ := filepath.Glob(filepath.Join("/sys/block", filepath.Base(dev), filepath.Base(dev)+"p*", "holders", "*"))
	return append(m, p...)
}

// checkMidTool checks, for a child trigger, that the signal landed while
// the real tool ran and had begun its work (drive recorded how).
func checkMidTool(t *testing.T, tr trigger, d driven) {
	t.Helper()
	if tr.child == "" {
		return
	}
	if d.toolPID == 0 || d.toolProgress == "" {
		t.Fatalf("the signal was not sent while the real %s ran with its work begun", tr.child)
	}
	if !d.toolAliveAfter {
		t.Errorf("%s (pid %d) was no longer running right after the signal", tr.child, d.toolPID)
	}
	t.Logf("signalled while %s (pid %d) ran: %s", d.toolExe, d.toolPID, d.toolProgress)
}

func killCase(t *testing.T, tr trigger) {
	img := oldImage(t)
	pass := passFile(t, []byte(testPass+"\n"))
	tmpdir := t.TempDir()
	tr.file = img
	d := drive(t, tmpdir, tr, prepareArgs(img, pass, "--json")...)
	if !d.fired {
		t.Fatalf("the trigger never fired (luksdock exit %d, last done %q); the case was not exercised\n%s\n%s", d.code, d.lastDone(), strings.Join(d.notes, "\n"), d.stderr)
	}
	checkMidTool(t, tr, d)
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
	finished := checkDetectAndRecover(t, img, pass, stepIndex[d.lastDone()], false)
	if tr.child != "" && tr.writes() && finished {
		// The kill landed mid-write (checkMidTool); the tool dies with
		// luksdock (Pdeathsig) but may have finished its last write
		// first. verify agreed (checked above).
		t.Logf("%s had finished its work when luksdock was killed: the disk is independently finished", tr.child)
	}
}

// checkDetectAndRecover checks, on an image a luksdock run left behind, that
// a new plan reports what is there, that verify tells a finished disk from a
// half-made one exactly as an independent check does, and that a new prepare
// succeeds. lastDone is the index of the last step reported done.
// With device, img is a block device (a loop device) and luksdock is run
// with --device.
//
// It returns whether the disk was independently finished after the kill.
func checkDetectAndRecover(t *testing.T, img, pass string, lastDone int, device bool) bool {
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
	return finished
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
		trigger{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGINT, group: true},
		trigger{child: "e2fsck", step: "verify", sig: syscall.SIGINT, group: true},
		trigger{child: "mkfs.ext4", step: "mkfs", sig: syscall.SIGTERM, group: true},
	)
	for _, tr := range trs {
		t.Run(strings.ReplaceAll(tr.String(), " ", "_"), func(t *testing.T) {
			t.Parallel()
			img := oldImage(t)
			before := testkit.SHA256File(t, img)
			pass := passFile(t, []byte(testPass+"\n"))
			tmpdir := t.TempDir()
			tr.file = img
			d := drive(t, tmpdir, tr, prepareArgs(img, pass, "--json")...)
			if !d.fired {
				t.Fatalf("the trigger never fired (exit %d); the case was not exercised\n%s", d.code, strings.Join(d.notes, "\n"))
			}
			checkMidTool(t, tr, d)
			// A stop takes effect at the next step boundary; a signal that
			// reaches luksdock only during verify, the last step, stops
			// nothing (issue 12): the run finished and exits 0 with its
			// result. That is the only outcome while e2fsck runs in verify;
			// it may be one at the start of close (it takes milliseconds)
			// or of verify (its stop check may come first), and while
			// verify's cryptsetup runs (it starts in the open step and runs
			// beside open and mkfs, so it may also be caught before verify:
			// then the run stops at the next boundary, exit 130).
			lastStep := tr.child == "e2fsck"
			mayFinish := lastStep || tr.child == "cryptsetup" && tr.step == "verify" || tr.event == "start" && (tr.step == "close" || tr.step == "verify")
			if d.code == 0 && mayFinish {
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
