package e2e

import (
	"strings"
	"testing"
	"time"
)

// Scenario 4: undock mid-run. The disk is unplugged while luksFormat runs,
// then (after a re-dock) while mkfs runs: each time luksdock exits non-zero
// with a message naming the step within 10 s, leaves no device-mapper
// mapping and no loop device; after a final re-dock a new run prepares the
// disk successfully. One boot; the disk is re-docked from the same QEMU
// block node.
func TestUndockMidRun(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "dock", Image: newImage(t, dir, "disk.img", 256<<20), Transport: "bot",
		Vendor: "ST", Product: "ST2000DM008", Serial: "ZFL0UNDOCK", Hotplug: true}
	// Each round undocks while the step's own tool runs with the disk (or
	// the mapping on it) open: cryptsetup luksFormat, then mkfs.ext4.
	// `guestwatch pauseat` stops luksdock right after the step before it
	// ends (its `done` event), the host slows the dock's writes to 64 KiB/s,
	// and luksdock goes on: the tool's own writes (luksFormat's 30 MiB
	// keyslot area, mkfs's 250 KiB of tables) then keep it running for
	// seconds, however loaded the host, and the undock lands inside it.
	rounds := []struct{ step, after string }{{"luks-format", "partition"}, {"mkfs", "luks-format"}}
	script := `label=backups02
for round in luks-format:partition mkfs:luks-format; do
	step=${round%%:*} after=${round#*:}
	mark ready-$step
	n=$(wait_disk ` + d.Serial + ` 60) || fail "disk did not appear"
	case $step in
	luks-format) pat='[c]ryptsetup .*luksFormat' comm=cryptsetup ;;
	mkfs) pat='[m]kfs.ext4 |[m]ke2fs ' comm=mkfs.ext4 ;;
	esac
	rm -f /tmp/paused.pid /tmp/prepare.rc
	( guestwatch pauseat -event done -step $after -pidfile /tmp/paused.pid -- \
		luksdock prepare --device /dev/$n --label "$label" --passphrase-file /e2e/pass --confirm $n \
		--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json </dev/null >/tmp/prepare.json 2>/tmp/prepare.err
	  echo $? > /tmp/prepare.rc ) &
	pid=$!
	d=$(deadline 120)
	until [ -s /tmp/paused.pid ]; do
		past $d && fail "luksdock never ended step $after: $(cat /tmp/prepare.err)"
		[ -s /tmp/prepare.rc ] && fail "luksdock exited $(cat /tmp/prepare.rc) before step $after ended: $(cat /tmp/prepare.err)"
		usleep 20000
	done
	mark paused $after
	host_wait slowed
	kill -CONT $(cat /tmp/paused.pid)
	wait_proc "$pat" 120 || fail "step $step never started: $(cat /tmp/prepare.err)"
	wait_dev_open $comm 60 || fail "$comm never opened the disk"
	mark in-step $step
	host_wait undocked
	t0=$(uptime_s)
	d=$(deadline 60)
	while kill -0 $pid 2>/dev/null; do
		past $d && { stuck_report; fail "luksdock still running 60 s after the undock"; }
		usleep 50000
	done
	t1=$(uptime_s)
	wait $pid
	emit events-$step /tmp/prepare.json
	emit stderr-$step /tmp/prepare.err
	dm=$(dmsetup ls 2>&1)
	loops=$(losetup -a 2>&1)
	left=$(pidof luksdock cryptsetup mkfs.ext4 mke2fs)
	mark exited $step $(cat /tmp/prepare.rc) $t0 $t1
	mark dmsetup-$step $dm
	mark losetup-$step $loops
	mark procs-$step $left
	wait_gone $n 30
done
mark ready-final
n=$(wait_disk ` + d.Serial + ` 60) || fail "disk did not appear"
` + guestPrepare + `
emit events-final /tmp/prepare.json
cat /tmp/prepare.err
mark exited final $(cat /tmp/prepare.rc)
mark dmsetup-final $(dmsetup ls 2>&1)
`
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Programs: map[string]string{"guestwatch": guestwatchBinary(t)}, Disks: []Disk{d}, Timeout: 6 * time.Minute, Script: script})
	for _, r := range rounds {
		mustMark(t, vm, "ready-"+r.step, 2*time.Minute)
		if err := vm.Plug(d.ID); err != nil {
			t.Fatalf("docking for %s: %v", r.step, err)
		}
		mustMark(t, vm, "paused "+r.after, 2*time.Minute)
		if err := vm.Throttle(d.ID, 64<<10); err != nil {
			t.Fatalf("throttling: %v", err)
		}
		if err := vm.Send("slowed"); err != nil {
			t.Fatal(err)
		}
		mustMark(t, vm, "in-step "+r.step, 2*time.Minute)
		undockAt := time.Now()
		if err := vm.Unplug(d.ID); err != nil {
			t.Fatalf("undocking during %s: %v", r.step, err)
		}
		if err := vm.Send("undocked"); err != nil {
			t.Fatal(err)
		}
		args, line, err := vm.WaitMark("exited "+r.step, 90*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", r.step, err)
		}
		hostLatency := line.T.Sub(undockAt)
		if len(args) != 3 {
			t.Fatalf("%s: bad exit marker %v", r.step, args)
		}
		guestLatency := seconds(t, args[2]) - seconds(t, args[1])
		t.Logf("undock during %s: luksdock exited %s, %.2f s after the host confirmed the undock (guest clock), %.2f s from device_del to the host seeing the exit",
			r.step, args[0], guestLatency, hostLatency.Seconds())
		if args[0] == "0" {
			t.Errorf("%s: luksdock exited 0 although the disk was undocked mid-run", r.step)
		} else if args[0] != "4" {
			t.Errorf("%s: luksdock exited %s, want 4 (a step failed)", r.step, args[0])
		}
		if hostLatency > 10*time.Second {
			t.Errorf("%s: luksdock took %.1f s to exit after the undock; want within 10 s", r.step, hostLatency.Seconds())
		}
		evJSON, err := vm.Blob("events-"+r.step, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		stderr, _ := vm.Blob("stderr-"+r.step, 10*time.Second)
		var failed *event
		evs := parseEvents(evJSON)
		for _, e := range evs {
			if e.Kind == "failed" {
				e := e
				failed = &e
			}
			if e.Kind == "result" {
				t.Errorf("%s: a result (success) event after the undock:\n%s", r.step, evJSON)
			}
		}
		switch {
		case failed == nil:
			t.Errorf("%s: no failed event in the JSON output:\n%s\nstderr:\n%s", r.step, evJSON, stderr)
		case failed.Step != r.step:
			t.Errorf("%s: the failed event names step %q (%s), want %q", r.step, failed.Step, failed.Message, r.step)
		case strings.TrimSpace(failed.Message) == "" || failed.State == "":
			t.Errorf("%s: the failed event lacks a message or the disk's state: %+v", r.step, *failed)
		default:
			t.Logf("%s: luksdock said: %s; state: %s", r.step, failed.Message, failed.State)
		}
		if title := stepTitle(evs, r.step); !strings.Contains(string(stderr), "luksdock: "+title+": ") {
			t.Errorf("%s: stderr does not name the failed step (%q):\n%s", r.step, title, stderr)
		}
		if dm := strings.Join(mustMark(t, vm, "dmsetup-"+r.step, 10*time.Second), " "); dm != "No devices found" {
			t.Errorf("%s: device-mapper mapping left after the undock: %q", r.step, dm)
		}
		if lo := mustMark(t, vm, "losetup-"+r.step, 10*time.Second); len(lo) != 0 {
			t.Errorf("%s: loop device left after the undock: %q", r.step, lo)
		}
		if p := mustMark(t, vm, "procs-"+r.step, 10*time.Second); len(p) != 0 {
			t.Errorf("%s: processes left running after luksdock exited: pids %v", r.step, p)
		}
	}
	mustMark(t, vm, "ready-final", 2*time.Minute)
	if err := vm.Plug(d.ID); err != nil {
		t.Fatalf("final re-dock: %v", err)
	}
	args := mustMark(t, vm, "exited final", 3*time.Minute)
	evJSON, err := vm.Blob("events-final", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if args[0] != "0" {
		t.Fatalf("after re-dock, luksdock prepare exited %s:\n%s", args[0], evJSON)
	}
	checkResultEvent(t, evJSON, "backups02", "kernel")
	if dm := strings.Join(mustMark(t, vm, "dmsetup-final", 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("mapping left after the final run: %q", dm)
	}
	mustExit(t, vm, time.Minute)
}
