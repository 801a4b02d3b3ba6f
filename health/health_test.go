package health

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func load(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRecordings(t *testing.T) {
	h, err := Parse(load(t, "smartctl-qemu-sata-healthy.json"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Verdict != OK || h.Bad() || h.Model != "QEMU-SATA-OLD" || h.Serial != "SATA0000123" || h.DeviceType != "sat" ||
		h.LogicalSector != 512 || h.Passed == nil || !*h.Passed || h.PowerOnHours == nil || h.Reallocated == nil || *h.Reallocated != 0 || len(h.Problems) != 0 {
		t.Errorf("healthy: %+v", h)
	}
	if s := h.Summary(); !strings.HasPrefix(s, "SMART health OK, 1 power-on hours, reallocated 0") {
		t.Errorf("summary %q", s)
	}

	f, err := Parse(load(t, "smartctl-derived-failing.json"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Verdict != Failing || !f.Bad() || *f.Reallocated != 1975 || *f.Pending != 8 || *f.OfflineUncorrectable != 3 || *f.PowerOnHours != 41234 {
		t.Errorf("failing: %+v", f)
	}
	for _, want := range []string{"health assessment is FAILED", "attribute 5 Reallocated_Sector_Ct is at or below its failure threshold (1 <= 36)", "1975 reallocated sectors", "8 sectors pending"} {
		if !slices.ContainsFunc(f.Problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("failing: no problem %q in %q", want, f.Problems)
		}
	}
	if s := f.Summary(); !strings.HasPrefix(s, "SMART: FAILING, 41234 power-on hours, reallocated 1975, pending 8, offline uncorrectable 3: ") {
		t.Errorf("summary %q", s)
	}

	d, err := Parse(load(t, "smartctl-derived-degrading.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Verdict != Degrading || !d.Bad() || len(d.Problems) != 2 || !strings.Contains(d.Summary(), "SMART: DEGRADING") {
		t.Errorf("degrading: %+v", d)
	}

	if _, err := Parse(load(t, "smartctl-qemu-usb-storage-sat.json")); !errors.Is(err, ErrNoSMART) {
		t.Errorf("usb-storage: %v", err)
	}
	if _, err := Parse([]byte("Smartctl open device: /dev/sdz failed")); err == nil {
		t.Error("text accepted as JSON")
	}
}

// TestRead drives Read with the recordings: the order of device types
// tried, that every command is read-only, and the reasons it gives.
func TestRead(t *testing.T) {
	var calls [][]string
	fake := func(outs map[string]string) Runner {
		return func(ctx context.Context, args ...string) ([]byte, error) {
			calls = append(calls, args)
			typ := "auto"
			if i := slices.Index(args, "-d"); i >= 0 {
				typ = args[i+1]
			}
			return load(t, outs[typ]), nil
		}
	}
	usbNone := "smartctl-qemu-usb-storage-sat.json"
	calls = nil
	r := Read(context.Background(), fake(map[string]string{"auto": usbNone, "sat": usbNone, "usbjmicron": usbNone}), "/dev/sdj", true, "152D")
	if r.Verdict != Unknown || r.Why != NotReadable {
		t.Errorf("USB dock without pass-through: %+v", r)
	}
	var types []string
	for _, c := range calls {
		types = append(types, strings.Join(c, " "))
		for _, a := range c {
			// read-only: only these options ever
			if strings.HasPrefix(a, "-") && !slices.Contains([]string{"--json=c", "-i", "-H", "-A", "-d"}, a) {
				t.Errorf("smartctl option %s is not one of the read-only ones", a)
			}
		}
	}
	want := []string{"--json=c -i -H -A /dev/sdj", "--json=c -i -H -A -d sat /dev/sdj", "--json=c -i -H -A -d usbjmicron /dev/sdj"}
	if !slices.Equal(types, want) {
		t.Errorf("tried %q, want %q", types, want)
	}
	calls = nil
	r = Read(context.Background(), fake(map[string]string{"auto": usbNone, "sat": "smartctl-derived-failing.json"}), "/dev/sdj", true, "0bda")
	if r.Verdict != Failing || r.DeviceType != "sat" || len(calls) != 2 {
		t.Errorf("SAT dock: %+v after %d calls", r, len(calls))
	}
	r = Read(context.Background(), fake(map[string]string{"auto": "smartctl-qemu-sata-healthy.json"}), "/dev/sda", false, "")
	if r.Verdict != OK {
		t.Errorf("internal: %+v", r)
	}
	r = Read(context.Background(), nil, "/dev/sda", false, "")
	if r.Verdict != Unknown || !strings.Contains(r.Why, "apt install smartmontools") {
		t.Errorf("no smartctl: %+v", r)
	}
}
