package disk

import (
	"errors"
	"strings"
	"testing"
)

// TestIdentityCheckEachField: every field of a disk's identity, changed on
// its own, fails Check with ErrDiskChanged naming it (a different disk
// docked under the same name differs in one field at least); CheckDevice
// ignores only the partition table's GUID.
func TestIdentityCheckEachField(t *testing.T) {
	a := Identity{Name: "sdi", MajMin: "8:128", DiskSeq: 23, Size: 500 << 30, Model: "TM3500630AS", Serial: "152D203380B6", WWN: "0x5000c500", DiskGUID: "0c7e5d1a"}
	for _, c := range []struct {
		field  string
		change func(*Identity)
		device bool // CheckDevice catches it too
	}{
		{"name", func(i *Identity) { i.Name = "sdj" }, true},
		{"major:minor", func(i *Identity) { i.MajMin = "8:144" }, true},
		{"disk sequence", func(i *Identity) { i.DiskSeq = 24 }, true},
		{"size", func(i *Identity) { i.Size -= 512 }, true},
		{"model", func(i *Identity) { i.Model = "other" }, true},
		{"serial", func(i *Identity) { i.Serial = "000000000001" }, true},
		{"WWN", func(i *Identity) { i.WWN = "0x5000c501" }, true},
		{"partition table GUID", func(i *Identity) { i.DiskGUID = "deadbeef" }, false},
	} {
		b := a
		c.change(&b)
		err := a.Check(b)
		if !errors.Is(err, ErrDiskChanged) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s changed: Check = %v", c.field, err)
		}
		err = a.CheckDevice(b)
		if c.device && (!errors.Is(err, ErrDiskChanged) || !strings.Contains(err.Error(), c.field)) {
			t.Errorf("%s changed: CheckDevice = %v", c.field, err)
		}
		if !c.device && err != nil {
			t.Errorf("%s changed: CheckDevice = %v, want nil", c.field, err)
		}
	}
}
