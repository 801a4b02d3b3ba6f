package ui

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"luksdock/disk"
	"luksdock/pipeline"
)

// The disk list's walker chooses the row selected, once one that can be
// prepared is.
func init() {
	walkers[scrDisks] = func(h *harness, s snapshot) {
		h.waitFor("a disk that can be prepared, selected", 10*time.Second, func(s snapshot) bool {
			return s.selected() != "" && !strings.Contains(s.view, "Looking for disks") && !strings.Contains(s.view, "Enter shows why the selected disk is refused")
		})
		h.enter()
	}
}

// usbDisk is a disk in a USB dock that can be prepared.
func usbDisk(name, mm, serial string) disk.Disk {
	return disk.Disk{Name: name, Path: "/dev/" + name, MajMin: mm, Size: 1 << 40, LogicalSector: 512, PhysicalSector: 4096,
		Transport: "usb-storage", Vendor: "WD", Model: "Elements", Serial: serial,
		USB: &disk.USBInfo{VendorID: "1058", ProductID: "25a2", Port: "2-1", Speed: "5000"}}
}

// Issue 20 item 11: a disk docked just as the user chooses does not take
// the choice. A row the user moved to within the last second stays
// selected; a selection the list change moved holds Enter back for a
// second, saying why, so Enter meant for the row shown does not choose
// the new one.
func TestDiskListChangeDoesNotTakeTheChoice(t *testing.T) {
	for _, sz := range sizes20 {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			fd := &fakeDiscovery{ch: make(chan disk.Hotplug, 4)}
			sdx, sdy, sdz := usbDisk("sdx", "65:112", "X1"), usbDisk("sdy", "65:128", "Y1"), usbDisk("sdz", "65:144", "Z1")
			fd.set(sdx, sdy)
			cfg := Config{Scan: fd.scan, Hotplug: fd.ch, DeviceTarget: func(name string) (*pipeline.Target, error) {
				for _, d := range []disk.Disk{sdx, sdy, sdz} {
					if d.Name == name {
						return &pipeline.Target{Path: d.Path, Name: d.Name, Size: d.Size, Disk: &d, Verdict: disk.Assess(d)}, nil
					}
				}
				return nil, errors.New("gone")
			}}
			h := startSized(t, cfg, sz.w, sz.h, nil)
			h.waitFor("the list", 5*time.Second, func(s snapshot) bool { return s.selected() == "sdx" })
			// The user moves to sdy; sdz is docked at that moment.
			h.key(tea.KeyDown)
			h.waitFor("sdy chosen", 5*time.Second, func(s snapshot) bool { return s.selected() == "sdy" })
			fd.set(sdx, sdy, sdz)
			fd.ch <- disk.Hotplug{Action: "add", Name: "sdz", MajMin: "65:144"}
			s := h.waitFor("sdz listed", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "sdz") })
			if s.selected() != "sdy" {
				t.Fatalf("the disk docked as the user chose took the selection (%s):\n%s", s.selected(), s.view)
			}
			h.enter()
			s = h.onScreen(scrDetails)
			if !strings.Contains(s.body, "/dev/sdy") {
				t.Fatalf("Enter did not choose sdy:\n%s", s.body)
			}
			h.esc()
			h.onScreen(scrDisks)
			// Untouched for a second, a newly docked disk is selected; an
			// Enter just after is held back, with the reason on screen.
			time.Sleep(1100 * time.Millisecond)
			sdw := usbDisk("sdw", "65:96", "W1")
			fd.set(sdx, sdy, sdz, sdw)
			cfg.DeviceTarget = nil
			fd.ch <- disk.Hotplug{Action: "add", Name: "sdw", MajMin: "65:96"}
			h.waitFor("sdw selected", 5*time.Second, func(s snapshot) bool { return s.selected() == "sdw" })
			h.enter()
			time.Sleep(100 * time.Millisecond)
			s = h.snap()
			if s.screen != scrDisks {
				t.Fatalf("Enter pressed as the selection moved chose %s", s.selected())
			}
			if v := flat(s.view); !strings.Contains(v, "the selection moved to sdw") || !strings.Contains(v, "press it again to choose sdw") {
				t.Errorf("the held-back Enter is not explained:\n%s", s.view)
			}
			time.Sleep(time.Second)
			h.enter()
			h.onScreen(scrDetails)
		})
	}
}

// Defect 5: a refused disk's whole reason is in the list, and Enter on it
// shows the reason and the fix.
func TestRefusedDiskReasonAndFix(t *testing.T) {
	eachSize(t, func(t *testing.T, w, hgt int) {
		mnt := "/media/someone/a-rather-long-mount-point-name/with/several/levels"
		fd := &fakeDiscovery{}
		fd.set(disk.Disk{Name: "sdq", Path: "/dev/sdq", MajMin: "65:0", Size: 1 << 40, LogicalSector: 512, PhysicalSector: 512,
			Transport: "usb-storage", Vendor: "WD", Model: "Elements",
			Partitions: []disk.Partition{{Name: "sdq1", Path: "/dev/sdq1", Number: 1, Size: 1 << 39, Mounts: []string{mnt}}}})
		h := startSized(t, Config{Scan: fd.scan}, w, hgt, nil)
		s := h.waitFor("the refused disk", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "refused:") })
		if !strings.Contains(nospace(s.view), nospace("refused: sdq1: mounted at "+mnt)) {
			t.Errorf("the reason is cut:\n%s", s.view)
		}
		for _, l := range strings.Split(s.view, "\n") {
			if strings.HasSuffix(l, "…") && !strings.Contains(l, "Dock a disk now…") {
				t.Errorf("a line is cut with an ellipsis: %q", l)
			}
		}
		h.enter()
		s = h.waitFor("the reason screen", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "Why sdq cannot be prepared") })
		for _, want := range []string{"✗ sdq1: mounted at " + mnt, "fix: unmount it (umount " + mnt + ", or eject it in the file manager)"} {
			if !strings.Contains(nospace(s.body), nospace(want)) {
				t.Errorf("reason screen lacks %q:\n%s", want, s.body)
			}
		}
		if strings.Contains(s.view, "enter choose") {
			t.Errorf("the help offers to choose a refused disk:\n%s", s.view)
		}
		h.enter() // does nothing
		h.esc()
		h.onScreen(scrDisks)
	})
}

// Found trying the wizard: a key the list does not take (Home, a letter)
// pressed between a list change that moved the selection and Enter ended
// the hold, so that Enter chose the disk just docked.
func TestStrayKeyDoesNotReleaseHeldEnter(t *testing.T) {
	fd := &fakeDiscovery{ch: make(chan disk.Hotplug, 4)}
	sdx, sdw := usbDisk("sdx", "65:112", "X1"), usbDisk("sdw", "65:96", "W1")
	fd.set(sdx)
	h := startSized(t, Config{Scan: fd.scan, Hotplug: fd.ch}, 80, 24, nil)
	h.waitFor("the list", 5*time.Second, func(s snapshot) bool { return s.selected() == "sdx" })
	time.Sleep(1100 * time.Millisecond)
	fd.set(sdx, sdw)
	fd.ch <- disk.Hotplug{Action: "add", Name: "sdw", MajMin: "65:96"}
	h.waitFor("sdw selected", 5*time.Second, func(s snapshot) bool { return s.selected() == "sdw" })
	h.key(tea.KeyHome)
	h.key('x')
	h.enter()
	time.Sleep(100 * time.Millisecond)
	if s := h.snap(); s.screen != scrDisks {
		t.Fatalf("Enter after a stray key, as the selection moved, chose %s:\n%s", s.selected(), s.view)
	}
}
