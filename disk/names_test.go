package disk

import (
	"strings"
	"testing"
)

func TestVendorModel(t *testing.T) {
	for _, c := range []struct{ vendor, model, want string }{
		{"ATA", "Samsung SSD 870", "Samsung SSD 870"},
		{"WD", "Elements 25A3", "WD Elements 25A3"},
		{"", "QEMU HARDDISK", "QEMU HARDDISK"},
	} {
		if got := (Disk{Vendor: c.vendor, Model: c.model}).VendorModel(); got != c.want {
			t.Errorf("%q %q: %q, want %q", c.vendor, c.model, got, c.want)
		}
	}
}

// A refusal says its fix (issue 20 item 16), and a refused internal disk
// is not said to need --allow-internal (item 24): it is refused regardless.
func TestVerdictFixAndInternal(t *testing.T) {
	v := Verdict{Refused: []Reason{{Text: "sda holds the running system (mounted at /)", Fix: fixSystem}}, Internal: true, InternalReason: "not on USB: sata"}
	err := v.Check("/dev/sda", false)
	if err == nil || !strings.Contains(err.Error(), "holds the running system") || !strings.Contains(err.Error(), "to fix: none: this is the disk the running system lives on") {
		t.Errorf("Check: %v", err)
	}
	for _, allow := range []bool{false, true} {
		for _, r := range v.Reasons(allow) {
			if strings.Contains(r.Text, "needs --allow-internal") {
				t.Errorf("allowInternal=%v: %q", allow, r.Text)
			}
		}
	}
	spare := Verdict{Internal: true, InternalReason: "not on USB: sata"}
	if rs := spare.Reasons(false); len(rs) != 1 || !strings.Contains(rs[0].Text, "needs --allow-internal") {
		t.Errorf("an internal disk that is not refused: %+v", rs)
	}
}
