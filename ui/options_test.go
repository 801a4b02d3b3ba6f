package ui

import (
	"regexp"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"luksdock/disk"
	"luksdock/pipeline"
)

// The Options screen's walker takes the choices shown once they are
// checked.
func init() {
	walkers[scrOptions] = func(h *harness, s snapshot) {
		h.waitFor("the options checked", 10*time.Second, func(s snapshot) bool {
			return s.screen != scrOptions || strings.Contains(s.body, "✓ ready")
		})
		h.enter()
	}
}

// containsAll reports whether s contains every one of want.
func containsAll(s string, want ...string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// flagRe finds a command-line flag in a screen's words.
var flagRe = regexp.MustCompile(`(^|[\s("'])--[a-z]`)

// Issue 20 item 12: what the Options screen says about a wrong or
// incomplete choice names the screen's fields, never a flag the wizard's
// user did not see (--surface-check, --erase, --owner, --set, --table).
func TestOptionsSpeakInScreenWords(t *testing.T) {
	eachSize20(t, func(t *testing.T, w, hgt int) {
		d := disk.Disk{Name: "sdy", Path: "/dev/sdy", MajMin: "65:128", Size: 1 << 40, LogicalSector: 4096, PhysicalSector: 4096,
			Transport: "usb-storage", Vendor: "WD", Model: "Elements", Serial: "X1", USB: &disk.USBInfo{VendorID: "1058", ProductID: "25a2", Port: "2-1", Speed: "5000"}}
		cfg := Config{
			Scan: func() ([]disk.Disk, error) { return []disk.Disk{d}, nil },
			DeviceTarget: func(string) (*pipeline.Target, error) {
				d := d
				return &pipeline.Target{Path: d.Path, Name: d.Name, Size: d.Size, Disk: &d, Verdict: disk.Assess(d)}, nil
			},
		}
		h := startSized(t, cfg, w, hgt, nil)
		h.walkTo(scrOptions)
		noFlag := func(what string, s snapshot) {
			t.Helper()
			if m := flagRe.FindString(s.body); m != "" {
				t.Errorf("%s: the Options screen names a flag (%q):\n%s", what, m, s.body)
			}
		}
		s := h.snap()
		noFlag("as offered", s)
		h.focusField("Partition table")
		h.key(tea.KeyLeft) // MBR, on a 4096-byte dock
		s = h.waitFor("MBR's warning", 5*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "the MBR counts 4096-byte sectors") })
		noFlag("MBR", s)
		h.key(tea.KeyRight) // GPT
		h.focusField("Read it all back")
		h.key(tea.KeyRight)
		s = h.waitFor("the check alone refused", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(flat(s.body), "✗ Read it all back reads back what Overwrite first writes: turn Overwrite first on too")
		})
		noFlag("Read it all back alone", s)
		h.key(tea.KeyLeft)
		h.focusField("Owner")
		h.typ("no-such-user-here")
		s = h.waitFor("the wrong owner refused", 5*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), `✗ Owner "no-such-user-here"`) })
		noFlag("a wrong owner", s)
		h.setText("")
		s = h.waitFor("the owner explained", 5*time.Second, func(s snapshot) bool { return strings.Contains(flat(s.body), "now 0:0") })
		noFlag("the owner as resolved", s)
		h.focusField("Set")
		h.typ("offsite")
		h.focusField("LUKS version")
		h.key(tea.KeyRight) // LUKS1
		s = h.waitFor("a set on LUKS1 refused", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(flat(s.body), "✗ Set is kept in the LUKS2 subsystem field")
		})
		noFlag("a set on LUKS1", s)
	})
}
