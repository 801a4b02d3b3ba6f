package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// sigCase is one SIGINT/SIGTERM during a step of a kernel-engine prepare.
type sigCase struct {
	name string
	step string // the step the signal lands in
	sig  string // INT or TERM
	// how: "pid" sends the signal to luksdock alone; "group" to its whole
	// process group, as a terminal's Ctrl-C does (luksdock runs under
	// setsid, so it leads its group).
	how  string
	pat  string // wait_proc pattern of the step's tool
	comm string // the tool's comm, for pidof
	// The dock is slowed (QEMU's block_set_io_throttle, bytes/s read and
	// written) once a process matching throttleAt runs ("" from the start)
	// so the step's tool runs for seconds and the signal lands inside it on
	// a loaded machine too; the guest checks that it did.
	throttleAt string
	rd, wr     int64
	// What must follow: the failed event names failStep (the step that was
	// not started) with a state starting with state; failStep "" for a
	// signal during the last step: the run finished, so it exits 0 with its
	// result (state is then the result's). Inside the LUKS volume blkid
	// finds inner ("" or "ext4"); luksdock verify exits verify.
	failStep, state, inner, verify string
}

// Throttles: luksFormat writes the keyslot area (~30 MiB here), mkfs.ext4
// its tables and journal through dm-crypt (a few MiB), the verify step's
// e2fsck reads metadata (since ext4 is always made with 4096-byte blocks,
// a quarter as much as with the 1024-byte blocks mke2fs picked for this
// small disk, hence 64 KiB/s); the open steps before mkfs and verify are
// where the dock is slowed for those.
const (
	atOpen   = "[c]ryptsetup open --type luks --volume-key-file"
	atVerify = "[c]ryptsetup open --type luks --readonly"
)

var sigCases = []sigCase{
	{"luksformat-int", "luks-format", "INT", "pid", "[c]ryptsetup .*luksFormat", "cryptsetup", "", 0, 12 << 20,
		"open", "partitioned, LUKS header, no filesystem", "", "5"},
	{"luksformat-term-group", "luks-format", "TERM", "group", "[c]ryptsetup .*luksFormat", "cryptsetup", "", 0, 12 << 20,
		"open", "partitioned, LUKS header, no filesystem", "", "5"},
	{"mkfs-term", "mkfs", "TERM", "pid", "[m]kfs.ext4 ", "mkfs.ext4", atOpen, 0, 128 << 10,
		"close", "LUKS and filesystem made but NOT verified", "ext4", "0"},
	{"mkfs-int-group", "mkfs", "INT", "group", "[m]kfs.ext4 ", "mkfs.ext4", atOpen, 0, 128 << 10,
		"close", "LUKS and filesystem made but NOT verified", "ext4", "0"},
	{"verify-int", "verify", "INT", "pid", "[e]2fsck -fn", "e2fsck", atVerify, 64 << 10, 0,
		"", "ready: verified backup disk", "ext4", "0"},
	{"verify-term-group", "verify", "TERM", "group", "[e]2fsck -fn", "e2fsck", atVerify, 64 << 10, 0,
		"", "ready: verified backup disk", "ext4", "0"},
}

// sigScript is the guest side of TestSIGINTSIGTERMKernelEngine: sigcase
// starts a kernel-engine prepare under setsid, waits until the step's tool
// runs, signals luksdock (or its process group) and records whether the
// tool was still running at that moment, then what luksdock left: exit
// status, JSON events, stderr, device-mapper mappings, loop devices,
// holders, open descriptors on the disk, leftover tools, an O_EXCL open of
// the disk and its partition, what stock cryptsetup/blkid/e2fsck find in
// the volume, and what luksdock verify says.
const sigScript = `
# alive PID: the process exists and is not a zombie (shell builtins only,
# so the check follows the signal within microseconds)
alive() {
	[ -n "$1" ] && read -r _st < /proc/$1/stat 2>/dev/null || return 1
	_st=${_st##*) }
	[ "${_st%% *}" != Z ]
}
pgrp_of() { sed 's/.*) //' /proc/$1/stat | cut -d' ' -f3; }
openers() {
	for f in /proc/[0-9]*/fd/*; do
		case $(readlink "$f" 2>/dev/null) in
		/dev/$n|/dev/$n[0-9]*|/dev/dm-*|/dev/mapper/*) echo "${f#/proc/}" ;;
		esac
	done
}
sigcase() {
	name=$1 step=$2 sig=$3 how=$4 pat=$5 comm=$6 tpat=$7
	[ -z "$tpat" ] && { mark throttle-$name; host_wait throttled; }
	( setsid luksdock prepare --device /dev/$n --label "$label" --passphrase-file /e2e/pass --confirm $n \
		--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json </dev/null >/tmp/$name.json 2>/tmp/$name.err
	  echo $? > /tmp/$name.rc ) &
	if [ -n "$tpat" ]; then
		wait_proc "$tpat" 180 || fail "$name: '$tpat' never ran: $(cat /tmp/$name.err)"
		mark throttle-$name
		host_wait throttled
	fi
	wait_proc "$pat" 180 || fail "$name: step $step never started: $(cat /tmp/$name.err)"
	tpid=$(pidof $comm | cut -d' ' -f1)
	lpid=$(pidof luksdock)
	lgrp=$(pgrp_of $lpid)
	tgrp=$(pgrp_of $tpid)
	dm=$(dmsetup ls 2>&1 | cut -f1 | tr '\n' ' ')
	if [ $how = group ]; then kill -s $sig -$lgrp; else kill -s $sig $lpid; fi
	if alive $tpid; then a=1; else a=0; fi
	t0=$(uptime_s)
	while alive $tpid; do usleep 10000; done
	mark sent-$name $a $lpid $lgrp $tpid $tgrp $t0 $(uptime_s)
	mark dm-at-signal-$name $dm
	wait
	mark unthrottle-$name
	host_wait unthrottled
	mark rc-$name $(cat /tmp/$name.rc)
	emit json-$name /tmp/$name.json
	emit err-$name /tmp/$name.err
	mark dmsetup-$name $(dmsetup ls 2>&1)
	mark losetup-$name $(losetup -a 2>&1)
	mark holders-$name $(ls /sys/block/$n/holders/ /sys/block/$n/${n}1/holders/ 2>&1 | grep -v ':$')
	mark openers-$name $(openers)
	mark procs-$name $(pidof luksdock cryptsetup mkfs.ext4 mke2fs e2fsck dumpe2fs)
	guestwatch excl /dev/$n /dev/${n}1 > /tmp/excl.out 2>&1
	mark excl-$name $? $(cat /tmp/excl.out)
	mark luks-type-$name $(blkid -p -o value -s TYPE /dev/${n}1)
	cryptsetup open --readonly /dev/${n}1 chk < /e2e/pass || fail "$name: stock cryptsetup cannot open /dev/${n}1 with the passphrase"
	mark inner-type-$name $(blkid -p -o value -s TYPE /dev/mapper/chk)
	e2fsck -fn /dev/mapper/chk > /tmp/fsck.out 2>&1
	mark fsck-$name $?
	cryptsetup close chk || fail "$name: cryptsetup close chk"
	luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel </dev/null >/dev/null 2>/tmp/verify.err
	mark verify-$name $?
	cat /tmp/verify.err
	mark dmsetup-after-verify-$name $(dmsetup ls 2>&1)
}
`

// Issue 6 with the kernel engine (the host has no device-mapper): SIGINT
// and SIGTERM, to luksdock alone and to its whole process group (a
// terminal's Ctrl-C), while cryptsetup luksFormat runs, while mkfs.ext4
// writes through the open dm-crypt mapping, and while the verify step's
// e2fsck runs. The signal must land while the step's own tool runs (checked
// in the guest at the moment it is sent), and luksdock must let the step
// finish (its tools run in their own process groups, so a group signal does
// not reach them), close the mapping, release the disk and exit 130 with a
// failed JSON event and a "disk state:" line on stderr; a signal during
// verify, the last step, stops nothing: exit 0 with the result (issue 12).
// Then, with stock
// tools: no mapping, no loop device, no holder, no open descriptor on the
// disk, no tool left running, the disk and its partition open O_EXCL, and
// the reported state is true (the LUKS header is there; the filesystem is
// there and e2fsck-clean exactly when the state says so). luksdock verify
// fails (5) on a disk interrupted before mkfs and passes on one whose mkfs
// finished. A new run prepares the disk from scratch and verifies it. One
// boot.
func TestSIGINTSIGTERMKernelEngine(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	gw := guestwatchBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "sig", Image: newImage(t, dir, "disk.img", 128<<20), Transport: "bot",
		Vendor: "Samsung", Product: "PSSD T7", Serial: "S5SIGNAL0001"}
	var sb strings.Builder
	sb.WriteString("label=backups04\nn=$(wait_disk " + d.Serial + " 60) || fail \"disk did not appear\"\n")
	sb.WriteString(sigScript)
	for _, c := range sigCases {
		fmt.Fprintf(&sb, "sigcase %s %s %s %s '%s' %s '%s'\n", c.name, c.step, c.sig, c.how, c.pat, c.comm, c.throttleAt)
	}
	sb.WriteString(guestPrepare + `
cat /tmp/prepare.err
mark final $(cat /tmp/prepare.rc)
emit json-final /tmp/prepare.json
mark dmsetup-final $(dmsetup ls 2>&1)
luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel </dev/null >/dev/null 2>/tmp/verify.err
mark verify-final $?
`)
	start := time.Now()
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Programs: map[string]string{"guestwatch": gw},
		Disks: []Disk{d}, Timeout: 12 * time.Minute, Script: sb.String()})
	for _, c := range sigCases {
		t0 := time.Now()
		checkSigCase(t, vm, d.ID, c)
		t.Logf("%s: %.1f s", c.name, time.Since(t0).Seconds())
	}
	if rc := strings.Join(mustMark(t, vm, "final", 3*time.Minute), ""); rc != "0" {
		t.Errorf("a new prepare after the interrupted runs: exit %s", rc)
	}
	if js, err := vm.Blob("json-final", 10*time.Second); err == nil {
		checkResultEvent(t, js, "backups04", "kernel")
	} else {
		t.Error(err)
	}
	if dm := strings.Join(mustMark(t, vm, "dmsetup-final", 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("mapping left after the final run: %q", dm)
	}
	if rc := strings.Join(mustMark(t, vm, "verify-final", 2*time.Minute), ""); rc != "0" {
		t.Errorf("verify after the final run: exit %s", rc)
	}
	mustExit(t, vm, time.Minute)
	t.Logf("whole scenario: %.1f s", time.Since(start).Seconds())
}

// sigThrottle slows the dock down while a signal case runs (QEMU's
// block_set_io_throttle): luksFormat's wipe of the keyslot area, mkfs's
// journal and e2fsck's reads then take seconds, so the signal lands while
// the tool itself runs (the guest checks it) on a loaded machine too.
func sigThrottle(vm *VM, id string, rd, wr int64) error {
	_, err := vm.QMP("block_set_io_throttle", map[string]any{
		"id": id + "-hd", "bps": 0, "bps_rd": rd, "bps_wr": wr,
		"iops": 0, "iops_rd": 0, "iops_wr": 0,
	})
	return err
}

func checkSigCase(t *testing.T, vm *VM, id string, c sigCase) {
	t.Helper()
	name := c.name
	mustMark(t, vm, "throttle-"+name, 4*time.Minute)
	if err := sigThrottle(vm, id, c.rd, c.wr); err != nil {
		t.Fatalf("throttling the dock: %v", err)
	}
	if err := vm.Send("throttled"); err != nil {
		t.Fatal(err)
	}
	sent := mustMark(t, vm, "sent-"+name, 4*time.Minute)
	if len(sent) != 7 {
		t.Fatalf("%s: bad marker sent %v", name, sent)
	}
	alive, lpid, lgrp, tpid, tgrp := sent[0], sent[1], sent[2], sent[3], sent[4]
	if alive != "1" {
		t.Errorf("%s: %s (pid %s) was no longer running when SIG%s was sent: the signal did not land inside the step's tool", name, c.comm, tpid, c.sig)
	} else {
		t.Logf("%s: %s ran on for %.2f s after SIG%s (guest clock)", name, c.comm, seconds(t, sent[6])-seconds(t, sent[5]), c.sig)
	}
	if c.how == "group" {
		if lgrp != lpid {
			t.Errorf("%s: luksdock (pid %s) is not its process group's leader (group %s): the group signal is not what a terminal sends", name, lpid, lgrp)
		}
		if tgrp == lgrp {
			t.Errorf("%s: %s runs in luksdock's process group %s: a terminal's Ctrl-C would reach it", name, c.comm, lgrp)
		}
	}
	mustMark(t, vm, "unthrottle-"+name, 3*time.Minute)
	if err := sigThrottle(vm, id, 0, 0); err != nil {
		t.Fatalf("unthrottling the dock: %v", err)
	}
	if err := vm.Send("unthrottled"); err != nil {
		t.Fatal(err)
	}
	dmAt := mustMark(t, vm, "dm-at-signal-"+name, 10*time.Second)
	switch want := map[string]string{"mkfs": "luksdock-backups04", "verify": "luksdock-verify-" + lpid}[c.step]; {
	case want != "" && strings.Join(dmAt, " ") != want:
		t.Errorf("%s: the dm-crypt mapping %s was not (alone) open when the signal was sent: dmsetup ls: %v", name, want, dmAt)
	case want == "" && strings.Join(dmAt, " ") != "No devices found":
		t.Errorf("%s: a mapping was open during %s: %v", name, c.step, dmAt)
	}
	rc := strings.Join(mustMark(t, vm, "rc-"+name, 3*time.Minute), "")
	js, err := vm.Blob("json-"+name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := vm.Blob("err-"+name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	finished := c.failStep == "" // the signal came during the last step
	if want := map[bool]string{false: "130", true: "0"}[finished]; rc != want {
		t.Errorf("%s: SIG%s (%s) in %s: exit %s, want %s\nstderr:\n%s", name, c.sig, c.how, c.step, rc, want, stderr)
	}
	evs := parseEvents(js)
	doneAt := -1
	for i, e := range evs {
		if e.Kind == "done" && e.Step == c.step {
			doneAt = i
		}
		if e.Kind == "result" && !finished {
			t.Errorf("%s: an interrupted run printed a result event:\n%s", name, js)
		}
	}
	var state string
	switch {
	case doneAt < 0:
		t.Errorf("%s: the step %s never finished (no done event): it was cut short\n%s", name, c.step, js)
	case doneAt+2 != len(evs):
		t.Errorf("%s: after %s finished, want exactly one more event (failed, or the result); got:\n%s", name, c.step, js)
	case finished:
		if f := evs[doneAt+1]; f.Kind != "result" {
			t.Errorf("%s: last event %+v; want the result: every step finished", name, f)
		}
		state = c.state
		if !strings.Contains(string(stderr), "all steps finished and the disk is verified") {
			t.Errorf("%s: stderr does not say the run completed:\n%s", name, stderr)
		}
		t.Logf("%s: SIG%s to luksdock's %s during %s (%s running), the last step: exit %s with the result", name, c.sig, c.how, c.step, c.comm, rc)
	default:
		f := evs[doneAt+1]
		state = f.State
		if f.Kind != "failed" || f.Step != c.failStep || !strings.HasPrefix(f.State, c.state) {
			t.Errorf("%s: last event %+v; want failed at %s with state %q...", name, f, c.failStep, c.state)
		}
		t.Logf("%s: SIG%s to luksdock's %s during %s (%s running): exit %s; %s: %s; state: %s", name, c.sig, c.how, c.step, c.comm, rc, f.Step, f.Message, f.State)
	}
	if !strings.Contains(string(stderr), "stopping safely after the current step") {
		t.Errorf("%s: stderr does not acknowledge the signal:\n%s", name, stderr)
	}
	if state != "" && !finished && !strings.Contains(string(stderr), "disk state: "+state) {
		t.Errorf("%s: stderr does not report the disk state %q:\n%s", name, state, stderr)
	}
	if dm := strings.Join(mustMark(t, vm, "dmsetup-"+name, 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("%s: device-mapper mapping left after luksdock exited: %q", name, dm)
	}
	for _, what := range []string{"losetup", "holders", "openers", "procs"} {
		if l := mustMark(t, vm, what+"-"+name, 30*time.Second); len(l) != 0 {
			t.Errorf("%s: %s after luksdock exited: %q", name, what, l)
		}
	}
	if ex := mustMark(t, vm, "excl-"+name, 10*time.Second); len(ex) == 0 || ex[0] != "0" {
		t.Errorf("%s: the disk or its partition cannot be opened O_EXCL after luksdock exited: %v", name, ex)
	}
	if ty := strings.Join(mustMark(t, vm, "luks-type-"+name, 10*time.Second), ""); ty != "crypto_LUKS" {
		t.Errorf("%s: state %q, but blkid finds %q in partition 1", name, state, ty)
	}
	inner := strings.Join(mustMark(t, vm, "inner-type-"+name, 30*time.Second), "")
	fsck := strings.Join(mustMark(t, vm, "fsck-"+name, time.Minute), "")
	switch {
	case c.inner == "" && (inner != "" || fsck == "0"):
		t.Errorf("%s: state %q, but inside the LUKS volume blkid finds %q and e2fsck -fn exits %s", name, state, inner, fsck)
	case c.inner != "" && (inner != c.inner || fsck != "0"):
		t.Errorf("%s: state %q, but inside the LUKS volume blkid finds %q and e2fsck -fn exits %s (want %s, 0)", name, state, inner, fsck, c.inner)
	}
	if v := strings.Join(mustMark(t, vm, "verify-"+name, 2*time.Minute), ""); v != c.verify {
		t.Errorf("%s: luksdock verify exit %s, want %s (state %q)", name, v, c.verify, state)
	}
	if dm := strings.Join(mustMark(t, vm, "dmsetup-after-verify-"+name, 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("%s: mapping left after luksdock verify: %q", name, dm)
	}
}
