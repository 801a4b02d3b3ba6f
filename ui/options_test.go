package ui

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
		// in the user's words, not Go's ("user: unknown user ...")
		if b := flat(s.body); !strings.Contains(b, "there is no user named no-such-user-here on this computer") || strings.Contains(b, "unknown user") {
			t.Errorf("the wrong owner is not said in the user's words:\n%s", s.body)
		}
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

// Defect 6: the Options footer is whole, the full help lists each key
// once, a focused field is always on screen, and what is typed in a text
// field is text (? and q included).
func TestOptionsFooterHelpAndScrolling(t *testing.T) {
	eachSize(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "opt.img")
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, nil)
		h.toOptions()
		s := h.snap()
		for _, want := range []string{"enter continue", "esc back", "tab/↓ next field"} {
			if !strings.Contains(s.view, want) {
				t.Errorf("footer lacks %q:\n%s", want, s.view)
			}
		}
		// ? and q in the label are text.
		h.typ("?q")
		s = h.waitFor("?q in the label", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.field("Label"), "backups01?q") })
		if s.screen != scrOptions || strings.Contains(s.view, "ctrl+w delete word") {
			t.Errorf("? or q was taken as a command:\n%s", s.view)
		}
		// F1: the full help, each key once.
		h.tm.Send(tea.KeyPressMsg{Code: tea.KeyF1})
		s = h.waitFor("the full help", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "ctrl+w delete word") })
		if n := strings.Count(s.view, "more help"); n != 1 {
			t.Errorf("the full help lists help %d times:\n%s", n, s.view)
		}
		if strings.Contains(s.view, "?/F1") {
			t.Errorf("the help offers ? while ? types into the label:\n%s", s.view)
		}
		h.tm.Send(tea.KeyPressMsg{Code: tea.KeyF1})
		h.key(tea.KeyBackspace)
		h.key(tea.KeyBackspace)
		// Every field, in turn, is on screen when it has the focus.
		for _, name := range []string{"Partition table", "LUKS version", "Header backup", "Recovery key", "Set", "Owner", "Overwrite first", "Read it all back", "PBKDF", "Label"} {
			h.key(tea.KeyTab)
			s = h.waitFor(name+" focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› "+name) })
		}
		// → on the PBKDF field (shift+tab from Label) changes what is shown.
		h.tm.Send(tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift})
		s = h.waitFor("PBKDF focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› PBKDF") })
		before := s.view
		h.key(tea.KeyRight)
		s = h.waitFor("PBKDF changed", 5*time.Second, func(s snapshot) bool { return s.view != before && strings.Contains(s.view, "› PBKDF") })
		if !strings.Contains(s.view, "[cryptsetup's default]") {
			t.Errorf("the changed PBKDF choice is not on screen:\n%s", s.view)
		}
	})
}

// Defect 3 (UI side): the header-backup path goes through the pluggable
// check (pipeline.CheckHeaderBackupPath after the merge): its refusal is
// shown on Options, and the path it returns is what the plan uses.
func TestHeaderBackupCheckPlugged(t *testing.T) {
	img := filepath.Join(t.TempDir(), "hb.img")
	cfg := imageConfig(img, 128<<20)
	var mu sync.Mutex
	var asked [][2]string
	dir := t.TempDir()
	cfg.CheckHeaderBackup = func(target, backup string) (string, error) {
		mu.Lock()
		asked = append(asked, [2]string{target, backup})
		mu.Unlock()
		if strings.Contains(backup, "on-target") {
			return "", errors.New("the header backup would be written onto the target itself")
		}
		return filepath.Join(dir, backup), nil
	}
	h := start(t, cfg, nil)
	h.toOptions()
	for range 3 {
		h.key(tea.KeyTab)
	}
	h.typ("on-target.hdr")
	h.enter()
	s := h.waitFor("the refusal", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "onto the target itself") })
	if s.screen != scrOptions {
		t.Fatalf("a refused header path left Options: %s", s.screen)
	}
	h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})
	h.typ("ok.hdr")
	h.waitFor("ready", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "✓ ready") })
	s = h.optionsToPlan(testPass)
	if !strings.Contains(flat(s.body), "Header backup: "+filepath.Join(dir, "ok.hdr")) {
		t.Errorf("the plan does not use the checked path:\n%s", s.body)
	}
	mu.Lock()
	defer mu.Unlock()
	// The check runs as the path is typed and again on Enter, always
	// against the chosen target; the last call is the path the plan uses.
	if len(asked) < 2 || asked[len(asked)-1][1] != "ok.hdr" {
		t.Errorf("check called with %q", asked)
	}
	for _, a := range asked {
		if a[0] != img {
			t.Errorf("check called for target %q, want %q", a[0], img)
		}
	}
}

// A new user's defect: a label (or set) longer than the field once allowed
// was cut at 64 characters and then refused as "64 bytes". What was typed
// is kept whole and refused with its own length and the limit.
func TestOptionsLongEntriesRefusedWhole(t *testing.T) {
	img := filepath.Join(t.TempDir(), "long.img")
	h := startSized(t, imageConfig(img, 128<<20), 100, 40, nil)
	h.toOptions()
	h.focusField("Label")
	long := strings.Repeat("b", 70)
	h.setText(long)
	s := h.waitFor("the long label refused", 5*time.Second, func(s snapshot) bool {
		return strings.Contains(flat(s.body), "is 70 bytes; ext4 labels hold at most 16 bytes")
	})
	if !strings.Contains(nospace(s.body), long) {
		t.Errorf("the label field does not hold all 70 characters typed:\n%s", s.body)
	}
	h.setText("backups01")
	h.focusField("Set")
	h.setText(strings.Repeat("s", 80))
	h.waitFor("the long set refused", 5*time.Second, func(s snapshot) bool {
		return strings.Contains(flat(s.body), "is 80 bytes; the LUKS2 subsystem field holds at most 47")
	})
}
