package disk

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

func TestParseUevent(t *testing.T) {
	msg := []byte("add@/devices/virtual/block/loop3\x00ACTION=add\x00DEVPATH=/devices/virtual/block/loop3\x00SUBSYSTEM=block\x00MAJOR=7\x00MINOR=3\x00DEVNAME=loop3\x00DEVTYPE=disk\x00DISKSEQ=41\x00SEQNUM=5012\x00")
	ev, ok := ParseUevent(msg)
	if !ok || ev.Action != "add" || ev.DevPath != "/devices/virtual/block/loop3" || ev.Env["DEVNAME"] != "loop3" {
		t.Fatalf("ParseUevent = %+v %v", ev, ok)
	}
	h, ok := hotplugOf(ev)
	want := Hotplug{Action: "add", Name: "loop3", MajMin: "7:3", DevPath: "/devices/virtual/block/loop3", DiskSeq: 41, Seq: 5012}
	if !ok || h != want {
		t.Fatalf("hotplugOf = %+v, want %+v", h, want)
	}
	part := []byte("remove@/devices/pci0000:00/0000:00:14.0/usb4/4-2/4-2:1.0/host6/target6:0:0/6:0:0:0/block/sdc/sdc1\x00ACTION=remove\x00SUBSYSTEM=block\x00DEVNAME=sdc1\x00DEVTYPE=partition\x00PARTN=1\x00")
	ev, _ = ParseUevent(part)
	if h, ok := hotplugOf(ev); !ok || h.Name != "sdc1" || !h.Partition || h.Action != "remove" {
		t.Errorf("partition event = %+v", h)
	}
	for _, bad := range [][]byte{
		[]byte("libudev\x00\xfe\xed\xca\xfe..."),
		[]byte("add@/devices/x"), // no environment
		[]byte("noat\x00ACTION=add\x00"),
		[]byte("add@/devices/x\x00ACTION=remove\x00"), // header and ACTION disagree
		nil,
	} {
		if ev, ok := ParseUevent(bad); ok {
			t.Errorf("ParseUevent(%q) accepted: %+v", bad, ev)
		}
	}
	usb := []byte("add@/devices/pci0000:00/0000:00:14.0/usb4/4-2\x00ACTION=add\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00")
	ev, _ = ParseUevent(usb)
	if _, ok := hotplugOf(ev); ok {
		t.Error("usb subsystem event taken for a block event")
	}
}

// waitEvent waits up to d for an event matching name and action.
func waitEvent(t *testing.T, ch <-chan Hotplug, name, action string, partition bool, d time.Duration) (Hotplug, time.Duration) {
	t.Helper()
	start := time.Now()
	timeout := time.After(d)
	var seen []Hotplug
	for {
		select {
		case h, ok := <-ch:
			if !ok {
				t.Fatalf("watcher closed; saw %+v", seen)
			}
			seen = append(seen, h)
			if h.Name == name && h.Action == action && h.Partition == partition {
				return h, time.Since(start)
			}
		case <-timeout:
			t.Fatalf("no %s %s event within %v; saw %+v", action, name, d, seen)
		}
	}
}

// TestWatchHotplugLoopReal attaches and detaches a real loop device and adds
// a partition with BLKPG (partx --add), and checks the watcher reports each
// within one second.
func TestWatchHotplugLoopReal(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup", "sfdisk", "partx")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := WatchHotplug(ctx)
	if err != nil {
		t.Fatalf("WatchHotplug: %v", err)
	}
	img := sparse(t, 96<<20)
	testkit.Run(t, "label: gpt\nsize=32MiB\n", "sfdisk", "-q", img)

	dev := testkit.AttachLoop(t, img)
	name := filepath.Base(dev)
	h, took := waitEvent(t, ch, name, "add", false, time.Second)
	t.Logf("add %s seen after %v (%+v)", name, took, h)

	testkit.Run(t, "", "partx", "--add", dev)
	p, took := waitEvent(t, ch, name+"p1", "add", true, time.Second)
	t.Logf("add %s seen after %v", p.Name, took)

	if err := testkit.DetachLoop(dev); err != nil {
		t.Fatal(err)
	}
	_, took = waitEvent(t, ch, name, "remove", false, time.Second)
	t.Logf("remove %s seen after %v", name, took)

	cancel()
	deadline := time.After(time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watcher did not close its channel within 1s of cancel")
		}
	}
}

// TestWaitForNewDiskReal: a disk (a loop device here) that appears while
// waiting is returned within a second, already discovered.
func TestWaitForNewDiskReal(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup", "mkfs.ext4")
	s := Sys{Root: "/"}
	known, err := s.Scan()
	if err != nil {
		t.Fatal(err)
	}
	img := sparse(t, 80<<20)
	testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-L", "arrived", img)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		d   Disk
		err error
		at  time.Time
	}
	done := make(chan res, 1)
	go func() {
		d, err := s.WaitForNewDisk(ctx, known)
		done <- res{d, err, time.Now()}
	}()
	// No wait for the watcher to start: WaitForNewDisk scans sysfs before
	// each wait, so a disk attached at any time after known was taken is
	// found.
	attached := time.Now()
	dev := testkit.AttachLoop(t, img)
	r := <-done
	// Other tests on this machine may attach loop devices at the same time,
	// and may even have used the number ours got just before us: keep
	// waiting until ours (this number, this backing file) shows up.
	for r.err == nil && (r.d.Path != dev || r.d.LoopBacking != img) {
		t.Logf("another new disk appeared first: %s (%s)", r.d.Name, r.d.LoopBacking)
		known = append(known, r.d)
		go func() {
			d, err := s.WaitForNewDisk(ctx, known)
			done <- res{d, err, time.Now()}
		}()
		r = <-done
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.d.Path != dev || r.d.Content.Label != "arrived" || r.d.LoopBacking != img {
		t.Fatalf("WaitForNewDisk = %+v, want %s with ext4 \"arrived\"", r.d, dev)
	}
	if lat := r.at.Sub(attached); lat > time.Second {
		t.Errorf("new disk reported %v after attach, want within 1s", lat)
	} else {
		t.Logf("new disk %s reported %v after attach", r.d.Name, lat)
	}
}

func TestWatchHotplugClosesOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := WatchHotplug(ctx)
	if err != nil {
		if strings.Contains(err.Error(), "permission") || os.Geteuid() != 0 {
			t.Skipf("SKIP: netlink uevent socket not available: %v", err)
		}
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after cancel instead of close")
		}
	case <-time.After(time.Second):
		t.Fatal("channel not closed within 1s")
	}
}
