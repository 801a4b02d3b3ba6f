package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHealthInGuest (issue 11): a SATA disk (ide-hd on AHCI, which answers
// ATA SMART commands) and a legacy usb-storage dock (which passes no ATA
// command) in the guest. Stock smartctl reads the SATA disk's identity and
// health; `luksdock list --json` shows the same (verdict ok, the drive's
// model and serial, power-on hours, the attribute counts) for it and says
// "health not readable through this dock" for the USB disk; `prepare
// --dry-run --allow-internal` puts the health in the plan. With
// LUKSDOCK_E2E_RECORD=DIR the raw smartctl outputs are saved there (the
// health package's testdata was recorded so).
func TestHealthInGuest(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	sata := Disk{ID: "sata", Image: newImage(t, dir, "sata.img", 128<<20), Transport: "ahci", Product: "QEMU-SATA-OLD", Serial: "SATA0000123"}
	usb := Disk{ID: "dock", Image: newImage(t, dir, "usb.img", 128<<20), Transport: "storage", Serial: "USBSTOR0001"}
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{sata, usb}, Timeout: 3 * time.Minute, Script: `
u=$(wait_disk ` + usb.Serial + ` 60) || fail "usb disk did not appear"
s=
d=$(deadline 30)
while [ -z "$s" ]; do
	for b in /sys/block/sd*; do grep -q '^` + sata.Product + ` *$' $b/device/model 2>/dev/null && s=${b##*/}; done
	past $d && fail "SATA disk did not appear"; usleep 50000
done
smartctl --json=c -i -H -A /dev/$s > /tmp/smart-sata.json; echo "smartctl exit $?"
emit smart-sata /tmp/smart-sata.json
smartctl --json=c -i -H -A -d sat /dev/$u > /tmp/smart-usb.json; echo "smartctl exit $?"
emit smart-usb /tmp/smart-usb.json
luksdock list --json </dev/null > /tmp/list.json 2>/tmp/list.err || { cat /tmp/list.err; fail "luksdock list"; }
emit list /tmp/list.json
luksdock list </dev/null 2>&1
luksdock prepare --device /dev/$s --allow-internal --label x --dry-run --passphrase-file /e2e/pass </dev/null > /tmp/plan.txt 2>&1 || { cat /tmp/plan.txt; fail "prepare --dry-run"; }
emit plan /tmp/plan.txt
mark names $s $u
`})
	names := mustMark(t, vm, "names", 2*time.Minute)
	blob := func(name string) []byte {
		b, err := vm.Blob(name, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rec := os.Getenv("LUKSDOCK_E2E_RECORD"); rec != "" {
			os.WriteFile(filepath.Join(rec, name+".json"), b, 0o644)
		}
		return b
	}
	smartSATA, _ := blob("smart-sata"), blob("smart-usb")
	listJSON, plan := blob("list"), blob("plan")
	mustExit(t, vm, time.Minute)

	// What stock smartctl says about the SATA disk.
	var stock struct {
		Model       string `json:"model_name"`
		Serial      string `json:"serial_number"`
		SmartStatus struct {
			Passed bool `json:"passed"`
		} `json:"smart_status"`
		PowerOn struct {
			Hours int64 `json:"hours"`
		} `json:"power_on_time"`
	}
	if err := json.Unmarshal(smartSATA, &stock); err != nil || stock.Model != sata.Product || stock.Serial != sata.Serial || !stock.SmartStatus.Passed {
		t.Fatalf("stock smartctl on the SATA disk: %+v %v\n%s", stock, err, smartSATA)
	}
	var entries []struct {
		Name   string `json:"name"`
		Health *struct {
			Verdict      string `json:"verdict"`
			Why          string `json:"why"`
			Model        string `json:"model"`
			Serial       string `json:"serial"`
			Passed       *bool  `json:"smart_passed"`
			PowerOnHours *int64 `json:"power_on_hours"`
			Logical      int    `json:"logical_sector"`
		} `json:"health"`
	}
	if err := json.Unmarshal(listJSON, &entries); err != nil {
		t.Fatalf("list --json: %v\n%s", err, listJSON)
	}
	seen := 0
	for _, e := range entries {
		switch e.Name {
		case names[0]:
			seen++
			h := e.Health
			if h == nil || h.Verdict != "ok" || h.Model != stock.Model || h.Serial != stock.Serial || h.Passed == nil || !*h.Passed ||
				h.PowerOnHours == nil || *h.PowerOnHours != stock.PowerOn.Hours || h.Logical != 512 {
				b, _ := json.Marshal(h)
				t.Errorf("SATA disk %s: health %s; stock smartctl says model %q serial %q, %d hours", e.Name, b, stock.Model, stock.Serial, stock.PowerOn.Hours)
			}
		case names[1]:
			seen++
			if e.Health == nil || e.Health.Verdict != "unknown" || !strings.Contains(e.Health.Why, "health not readable through this dock") {
				b, _ := json.Marshal(e.Health)
				t.Errorf("USB disk %s: health %s", e.Name, b)
			}
		}
	}
	if seen != 2 {
		t.Errorf("list --json lacks the disks %v:\n%s", names, listJSON)
	}
	if !strings.Contains(string(plan), "# health (smartctl -d ") || !strings.Contains(string(plan), "SMART health OK") || !strings.Contains(string(plan), sata.Serial) {
		t.Errorf("the plan does not show the health:\n%s", plan)
	}
}
