package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// eraseScript is the guest side of TestEraseKernelEngine.
const eraseScript = `
prep() { # NAME LABEL DISK: a kernel-engine prepare --erase --surface-check under setsid
	( setsid sh -c 'echo $$ > /tmp/'$1'.pid; exec luksdock prepare --device /dev/'$3' --label '$2' --passphrase-file /e2e/pass --confirm '$3' \
		--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --erase --surface-check --json </dev/null >/tmp/'$1'.json 2>/tmp/'$1'.err'
	  echo $? > /tmp/$1.rc ) &
}
report() { # NAME
	mark rc-$1 $(cat /tmp/$1.rc)
	emit json-$1 /tmp/$1.json
	emit err-$1 /tmp/$1.err
	mark dmsetup-$1 $(dmsetup ls 2>&1)
	mark procs-$1 $(pidof luksdock cryptsetup mkfs.ext4 mke2fs e2fsck)
}
ddtime() { # dd ARGS...: the guest clock before and after (busybox dd prints no rate)
	_t0=$(uptime_s); dd "$@" 2>/dev/null || fail "dd $*"; echo $_t0 $(uptime_s)
}

# 1. SIGINT in the middle of the erase, on a throttled dock; then the same command.
n=$(wait_disk S5ERASE0001 60) || fail "disk did not appear"
mark throttle
host_wait throttled
prep e1 backups05 $n
d=$(deadline 180)
until grep -q '"step":"erase","progress":{"done":[1-9]' /tmp/e1.json 2>/dev/null; do
	past $d && fail "no erase progress: $(cat /tmp/e1.err)"
	usleep 100000
done
kill -INT $(cat /tmp/e1.pid)
t0=$(uptime_s)
wait_rc e1 30
wait
mark stopped $t0 $(uptime_s)
report e1
emit state-e1 $(ls /var/lib/luksdock/erase-*.json)
mark unthrottle
host_wait unthrottled
prep e2 backups05 $n
wait_rc e2 400
wait
report e2
mark state-left $(ls /var/lib/luksdock/ | grep "^erase-")
cryptsetup open --readonly /dev/${n}1 chk < /e2e/pass || fail "stock cryptsetup cannot open /dev/${n}1"
e2fsck -fn /dev/mapper/chk > /tmp/fsck.out 2>&1
mark fsck-e2 $? $(blkid -p -o value -s LABEL /dev/mapper/chk)
cryptsetup close chk

# 2. A disk with an unreadable sector.
b=$(wait_disk S5BADSECT01 60) || fail "the bad disk did not appear"
prep bad backups06 $b
wait_rc bad 400
wait
report bad

# 4. Undock in the middle of the erase; dock again; the same command.
mark ready-undock
u=$(wait_disk S5UNDOCK001 60) || fail "the undock disk did not appear"
prep ud backups08 $u
d=$(deadline 180)
until grep -q '"step":"erase","progress":{"done":[1-9]' /tmp/ud.json 2>/dev/null; do
	past $d && fail "no erase progress: $(cat /tmp/ud.err)"
	usleep 100000
done
mark in-erase
host_wait undocked
wait_rc ud 60
wait
report ud
mark state-ud $(grep -l '"serial": "S5UNDOCK001"' /var/lib/luksdock/erase-*.json | wc -l)
wait_gone $u 30
mark ready-redock
u=$(wait_disk S5UNDOCK001 60) || fail "the disk did not come back"
prep ud2 backups08 $u
wait_rc ud2 400
wait
report ud2

# 3. Throughput on the same volume in the same boot: luksdock, then dd.
p=$(wait_disk S5THRUPUT01 60) || fail "the throughput disk did not appear"
for r in 1 2; do
	prep tp$r backups07 $p
	wait_rc tp$r 400
	wait
	report tp$r
	cryptsetup open /dev/${p}1 tp < /e2e/pass || fail "cryptsetup open /dev/${p}1"
	sz=$(blockdev --getsize64 /dev/mapper/tp)
	mark dd-write-$r $((sz / 4194304 * 4194304)) $(ddtime if=/dev/zero of=/dev/mapper/tp bs=4M oflag=direct count=$((sz / 4194304)))
	mark dd-fsync-$r $((sz / 4194304 * 4194304)) $(ddtime if=/dev/zero of=/dev/mapper/tp bs=4M oflag=direct conv=fsync count=$((sz / 4194304)))
	mark dd-read-$r $sz $(ddtime if=/dev/mapper/tp of=/dev/null bs=4M iflag=direct)
	cryptsetup close tp
done
sync
`

// TestEraseKernelEngine: `prepare --erase --surface-check` with the kernel
// engine (dm-crypt) in the guest. (1) SIGINT in the middle of the erase (the
// dock throttled so it takes seconds): exit 130 within a second, the
// position reported and kept in /var/lib/luksdock, no mapping or tool left;
// the same command continues (resume step, no luksFormat), finishes, the
// state file is gone, the disk passes stock cryptsetup and e2fsck in the
// guest and, on the host, every sector of the data segment was written and
// decrypts (x/crypto/xts, key from cryptsetup) to zeros except the blocks of
// the filesystem. (2) A disk with an unreadable sector (QEMU blkdebug fails
// every read of the sector at 64 MiB): exit 5 at surface-check, naming one
// unreadable sector at byte 67108864. (3) luksdock's erase and check rates
// beside dd on the same dm-crypt volume in the same boot (logged; TCG, one
// emulated CPU). (4) The disk undocked in the middle of the erase: exit 4
// naming the undock and the position reached, the position kept; docked
// again (a new kernel name and disk sequence), the same command continues.
func TestEraseKernelEngine(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	er := Disk{ID: "er", Image: newImage(t, dir, "erase.img", 128<<20), Transport: "bot",
		Vendor: "Samsung", Product: "PSSD T7", Serial: "S5ERASE0001"}
	bad := Disk{ID: "bad", Image: newImage(t, dir, "bad.img", 96<<20), Transport: "bot",
		Vendor: "Generic", Product: "Flash Disk", Serial: "S5BADSECT01", FailReadAt: 64 << 20}
	tp := Disk{ID: "tp", Image: newImage(t, dir, "tp.img", 128<<20), Transport: "bot",
		Vendor: "Samsung", Product: "PSSD T7", Serial: "S5THRUPUT01"}
	ud := Disk{ID: "ud", Image: newImage(t, dir, "undock.img", 128<<20), Transport: "bot",
		Vendor: "WD", Product: "Elements 25A3", Serial: "S5UNDOCK001", Hotplug: true}
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{er, bad, tp, ud}, Timeout: 15 * time.Minute, Script: eraseScript})

	mustMark(t, vm, "throttle", 2*time.Minute)
	if _, err := vm.QMP("block_set_io_throttle", map[string]any{"id": "er-hd", "bps": 0, "bps_rd": 0, "bps_wr": 4 << 20,
		"iops": 0, "iops_rd": 0, "iops_wr": 0}); err != nil {
		t.Fatal(err)
	}
	if err := vm.Send("throttled"); err != nil {
		t.Fatal(err)
	}
	stopped := mustMark(t, vm, "stopped", 5*time.Minute)
	if len(stopped) == 2 {
		t.Logf("SIGINT in the erase: luksdock exited %.2f s later (guest clock)", seconds(t, stopped[1])-seconds(t, stopped[0]))
	}
	e1 := checkEraseRun(t, vm, "e1", "130")
	if f := e1[len(e1)-1]; f.Kind != "failed" || f.Step != "erase" || !strings.Contains(f.Message, "the erase stopped at") || !strings.Contains(f.State, "run the same command again to continue") {
		t.Errorf("e1: last event %+v, want a failed erase with the position", f)
	} else {
		t.Logf("e1: %s", f.Message)
	}
	stateJSON, err := vm.Blob("state-e1", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Pos    int64  `json:"pos"`
		Total  int64  `json:"total"`
		Phase  string `json:"phase"`
		Serial string `json:"serial"`
	}
	if err := json.Unmarshal(stateJSON, &st); err != nil || st.Phase != "erase" || st.Serial != er.Serial || st.Pos >= st.Total {
		t.Errorf("state file after the SIGINT: %s (%v)", stateJSON, err)
	}
	mustMark(t, vm, "unthrottle", 2*time.Minute)
	if _, err := vm.QMP("block_set_io_throttle", map[string]any{"id": "er-hd", "bps": 0, "bps_rd": 0, "bps_wr": 0,
		"iops": 0, "iops_rd": 0, "iops_wr": 0}); err != nil {
		t.Fatal(err)
	}
	if err := vm.Send("unthrottled"); err != nil {
		t.Fatal(err)
	}
	e2 := checkEraseRun(t, vm, "e2", "0")
	var steps []string
	for _, e := range e2 {
		if e.Kind == "done" {
			steps = append(steps, e.Step)
		}
	}
	if s := strings.Join(steps, " "); s != "preflight resume open erase surface-check mkfs close verify" {
		t.Errorf("e2: steps %s, want the resumed run's", s)
	}
	if st := mustMark(t, vm, "state-left", time.Minute); len(st) != 0 {
		t.Errorf("state left after the verified run: %v", st)
	}
	if f := mustMark(t, vm, "fsck-e2", time.Minute); strings.Join(f, " ") != "0 backups05" {
		t.Errorf("stock e2fsck/blkid in the guest: %v", f)
	}

	badEv := checkEraseRun(t, vm, "bad", "5")
	want := "(0 wrong data, 1 unreadable); the first at byte 67108864 of the disk"
	if f := badEv[len(badEv)-1]; f.Kind != "failed" || f.Step != "surface-check" || !strings.Contains(f.Message, want) || !strings.Contains(f.State, "surface check FAILED") {
		t.Errorf("bad disk: last event %+v, want a failed surface-check with %q", f, want)
	} else {
		t.Logf("bad disk: %s", f.Message)
	}

	mustMark(t, vm, "ready-undock", 5*time.Minute)
	if err := vm.Plug(ud.ID); err != nil {
		t.Fatal(err)
	}
	if err := vm.Throttle(ud.ID, 4<<20); err != nil {
		t.Fatal(err)
	}
	mustMark(t, vm, "in-erase", 3*time.Minute)
	if err := vm.Unplug(ud.ID); err != nil {
		t.Fatal(err)
	}
	if err := vm.Send("undocked"); err != nil {
		t.Fatal(err)
	}
	udEv := checkEraseRun(t, vm, "ud", "4")
	if f := udEv[len(udEv)-1]; f.Kind != "failed" || f.Step != "erase" || !strings.Contains(f.Message, "the erase reached") || !strings.Contains(f.Message, "undocked") || !strings.Contains(f.State, "the position saved to continue from is") {
		t.Errorf("undock: last event %+v, want a failed erase with the position reached and the undock named", f)
	} else {
		t.Logf("undock mid-erase: %s; state: %s", f.Message, f.State)
	}
	if n := strings.Join(mustMark(t, vm, "state-ud", time.Minute), ""); n != "1" {
		t.Errorf("undock: %s state files for the undocked disk, want 1", n)
	}
	mustMark(t, vm, "ready-redock", 2*time.Minute)
	if err := vm.Plug(ud.ID); err != nil {
		t.Fatal(err)
	}
	ud2 := checkEraseRun(t, vm, "ud2", "0")
	steps = nil
	for _, e := range ud2 {
		if e.Kind == "done" {
			steps = append(steps, e.Step)
		}
	}
	if s := strings.Join(steps, " "); s != "preflight resume open erase surface-check mkfs close verify" {
		t.Errorf("after the re-dock: steps %s, want the resumed run's", s)
	}

	ddRate := func(name string) float64 {
		a := mustMark(t, vm, name, 5*time.Minute)
		if len(a) != 3 {
			t.Errorf("%s: %v", name, a)
			return 0
		}
		var n float64
		fmt.Sscan(a[0], &n)
		return n / (seconds(t, a[2]) - seconds(t, a[1]))
	}
	for _, r := range []string{"1", "2"} {
		rate := map[string]float64{}
		for _, e := range checkEraseRun(t, vm, "tp"+r, "0") {
			if e.Kind == "done" && (e.Step == "erase" || e.Step == "surface-check") && e.ElapsedMS > 0 {
				rate[e.Step] = float64(e.segment) / (float64(e.ElapsedMS) / 1000)
			}
		}
		w, wf, rd := ddRate("dd-write-"+r), ddRate("dd-fsync-"+r), ddRate("dd-read-"+r)
		t.Logf("kernel engine (dm-crypt, TCG, 1 vCPU), same volume, same boot, round %s: erase (flushed) %.1f MB/s vs dd write %.1f MB/s (%.2fx), with conv=fsync %.1f MB/s (%.2fx); surface check %.1f MB/s vs dd read %.1f MB/s (%.2fx)",
			r, rate["erase"]/1e6, w/1e6, rate["erase"]/w, wf/1e6, rate["erase"]/wf, rate["surface-check"]/1e6, rd/1e6, rate["surface-check"]/rd)
	}
	mustExit(t, vm, 2*time.Minute)

	// On the host, independently: the resumed disk is erased everywhere.
	part, ok := testkit.Partition1(t, er.Image)
	if !ok {
		t.Fatal("no partition on the erased disk")
	}
	v, err := testkit.Unlock(t, part, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	used, blocks := testkit.CheckErased(t, v)
	t.Logf("host: %d of %d blocks hold the filesystem; every other block decrypts to zeros; no sector left unwritten", used, blocks)
}

// eraseEvent is a --json event with the fields the erase scenario reads.
type eraseEvent struct {
	Kind      string `json:"event"`
	Step      string `json:"step"`
	Message   string `json:"message"`
	State     string `json:"state"`
	ElapsedMS int64  `json:"elapsed_ms"`
	Progress  *struct {
		Done  int64 `json:"done"`
		Total int64 `json:"total"`
	} `json:"progress"`
	segment int64
}

// checkEraseRun reads one guest run's report: its exit code must be rc,
// nothing may be left running or mapped, and its progress events must be
// monotonic (and end at 100% for a completed step).
func checkEraseRun(t *testing.T, vm *VM, name, rc string) []eraseEvent {
	t.Helper()
	got := strings.Join(mustMark(t, vm, "rc-"+name, 10*time.Minute), "")
	js, err := vm.Blob("json-"+name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stderr, _ := vm.Blob("err-"+name, 10*time.Second)
	if got != rc {
		t.Errorf("%s: exit %s, want %s\nstderr:\n%s", name, got, rc, stderr)
	}
	if dm := strings.Join(mustMark(t, vm, "dmsetup-"+name, 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("%s: mapping left: %q", name, dm)
	}
	if p := mustMark(t, vm, "procs-"+name, 10*time.Second); len(p) != 0 {
		t.Errorf("%s: processes left: %v", name, p)
	}
	var evs []eraseEvent
	last := map[string]int64{}
	seg := map[string]int64{}
	for _, l := range strings.Split(strings.TrimSpace(string(js)), "\n") {
		var e eraseEvent
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("%s: not JSON: %q", name, l)
		}
		if e.Kind == "progress" {
			if e.Progress == nil || e.Progress.Done < last[e.Step] || e.Progress.Done > e.Progress.Total {
				t.Errorf("%s: progress not monotonic: %s after %d", name, l, last[e.Step])
			} else {
				last[e.Step], seg[e.Step] = e.Progress.Done, e.Progress.Total
			}
		}
		if e.Kind == "done" && (e.Step == "erase" || e.Step == "surface-check") && last[e.Step] != seg[e.Step] {
			t.Errorf("%s: %s done, but its last progress is %d of %d", name, e.Step, last[e.Step], seg[e.Step])
		}
		e.segment = seg[e.Step]
		evs = append(evs, e)
	}
	if len(evs) == 0 {
		t.Fatalf("%s: no events\nstderr:\n%s", name, stderr)
	}
	return evs
}
