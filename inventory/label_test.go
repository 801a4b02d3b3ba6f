package inventory

import (
	"strings"
	"testing"
)

// TestCheckLabel is the set-label rule on its own: within a set a label
// another disk of the set has is refused (naming that disk and the next
// free label); the disk being prepared over does not clash with itself;
// without a set the same clash is only a warning; another set's disk, or no
// inventory, is no clash.
func TestCheckLabel(t *testing.T) {
	f := &File{}
	f.Put(rec("1", "backups01", "offsite"))
	f.Put(rec("2", "backups02", "offsite"))
	f.Put(rec("3", "loose01", ""))
	for _, c := range []struct {
		name, set, label, replacing string
		attached                    []string
		warn, err                   string // substrings; "" means none
	}{
		{"same set", "offsite", "backups02", "", nil, "", "two disks of a set must not share a label: label backups02: the inventory already has backups02 in set offsite (LUKS UUID 2"},
		{"next free label named", "offsite", "backups01", "", []string{"backups03"}, "", "Next free label: backups04"},
		{"prepared over itself", "offsite", "backups02", "2", nil, "", ""},
		{"prepared over itself, UUID case", "offsite", "backups02", "2", nil, "", ""},
		{"another set", "home", "backups02", "", nil, "", ""},
		{"new label", "offsite", "backups09", "", nil, "", ""},
		{"no set: a warning", "", "loose01", "", nil, "docked together, the desktop mounts the second at loose011", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			warn, err := CheckLabel(f, c.set, c.label, c.replacing, c.attached)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Errorf("error %v, want %q", err, c.err)
			}
			if c.warn == "" && warn != "" || c.warn != "" && !strings.Contains(warn, c.warn) {
				t.Errorf("warning %q, want %q", warn, c.warn)
			}
		})
	}
	if w, err := CheckLabel(nil, "offsite", "backups01", "", nil); w != "" || err != nil {
		t.Errorf("no inventory: %q, %v", w, err)
	}
}
