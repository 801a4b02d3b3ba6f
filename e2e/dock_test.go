package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Scenario 1: dock detection. `luksdock list --wait --json` runs in the
// guest; the disk is hot-plugged through QMP; the output names it with a
// USB transport, the vendor/model/serial given to QEMU and the exact size,
// within 1 s of the kernel's "Attached SCSI disk" line. Done twice in one
// boot: a USB-BOT disk, then a UAS disk.
func TestDockDetection(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	// Not parallel: the latency is measured on the guest's clock, and a
	// second TCG guest competing for the host's cores would inflate it.
	dir := scratchDir(t)
	disks := []Disk{
		{ID: "bot", Image: newImage(t, dir, "bot.img", 200<<20), Transport: "bot",
			Vendor: "MAXTOR", Product: "STM3500630AS", Serial: "5QG0ABCD", Hotplug: true},
		{ID: "uas", Image: newImage(t, dir, "uas.img", 300<<20+4096), Transport: "uas",
			Vendor: "WDC", Product: "WD5000BEVT-22A", Serial: "WXE1A0123456", Hotplug: true},
	}
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: disks, Timeout: 4 * time.Minute, Script: `
for round in bot uas; do
	( luksdock list --wait --json </dev/null 2>/tmp/list.err; echo $? > /tmp/list.rc ) |
		{ IFS= read -r first; kmsg "e2e: luksdock list printed"; { echo "$first"; cat; } > /tmp/list.json; } &
	pipe=$!
	usleep 200000
	pid=$(pidof luksdock)
	[ -n "$pid" ] || fail "luksdock list --wait is not running: $(cat /tmp/list.err)"
	if uevent_listening "$pid" 20; then mark listening $round netlink; else sleep 3; mark listening $round no-netlink-socket-seen; fi
	host_wait docked-$round
	d=$(deadline 30)
	while kill -0 $pipe 2>/dev/null; do
		past $d && fail "luksdock list --wait did not return within 30 s of the dock"
		usleep 100000
	done
	[ "$(cat /tmp/list.rc)" = 0 ] || fail "luksdock list --wait exited $(cat /tmp/list.rc): $(cat /tmp/list.err)"
	attached=$(kmsg_time 'Attached SCSI')
	printed=$(kmsg_time 'e2e: luksdock list printed')
	dmesg | grep -E 'scsi|sd |usb-storage|uas|e2e:' | tail -n 12
	mark latency $round "$attached" "$printed"
	emit list-$round /tmp/list.json
done
`})
	for _, d := range disks {
		mustMark(t, vm, "listening "+d.ID, 90*time.Second)
		plugAt := time.Now()
		if err := vm.Plug(d.ID); err != nil {
			t.Fatalf("hot-plugging %s: %v", d.ID, err)
		}
		if err := vm.Send("docked-" + d.ID); err != nil {
			t.Fatal(err)
		}
		args := mustMark(t, vm, "latency "+d.ID, 60*time.Second)
		hostSeen := time.Since(plugAt)
		if len(args) != 2 {
			t.Fatalf("%s: no kernel timestamps for attach/print: %v", d.ID, args)
		}
		attached, printed := seconds(t, args[0]), seconds(t, args[1])
		latency := printed - attached
		t.Logf("%s (%s): dock-detection latency %.3f s after the kernel's \"Attached SCSI disk\" (kernel log clock); %.2f s from QMP device_add to the host seeing the result",
			d.ID, d.Transport, latency, hostSeen.Seconds())
		if latency > 1.0 {
			t.Errorf("%s: luksdock list --wait printed the disk %.3f s after \"Attached SCSI disk\"; want within 1 s", d.ID, latency)
		}
		out, err := vm.Blob("list-"+d.ID, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var e listEntry
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatalf("%s: luksdock list --wait --json output is not one JSON object: %v\n%s", d.ID, err, out)
		}
		st, _ := statSize(d.Image)
		wantTransport := map[string]string{"bot": "usb-storage", "uas": "uas"}[d.Transport]
		checks := []struct{ what, got, want string }{
			{"transport", e.Transport, wantTransport},
			{"vendor", strings.TrimSpace(e.Vendor), d.Vendor},
			{"model", strings.TrimSpace(e.Model), d.Product},
			{"serial", e.Serial, d.Serial},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s: %s = %q, want %q\n%s", d.ID, c.what, c.got, c.want, out)
			}
		}
		if e.USB == nil || e.USB.Serial != d.Serial {
			t.Errorf("%s: usb.serial missing or wrong (want %q):\n%s", d.ID, d.Serial, out)
		}
		if e.Size != st {
			t.Errorf("%s: size = %d, want exactly %d bytes", d.ID, e.Size, st)
		}
		if !strings.HasPrefix(e.Name, "sd") {
			t.Errorf("%s: name = %q, want an sd disk", d.ID, e.Name)
		}
		if e.Arrival == nil || len(e.Arrival.Lines) == 0 {
			t.Errorf("%s: no kernel-log evidence of the arrival in the output:\n%s", d.ID, out)
		}
	}
	mustExit(t, vm, 60*time.Second)
}
