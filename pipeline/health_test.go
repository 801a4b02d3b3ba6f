package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/disk"
	"luksdock/health"
	"luksdock/internal/testkit"
)

// TestHealthConfirmation: the recorded smartctl outputs (package health's
// testdata) decide whether a plan for a real block device (a loop device,
// with the report of a drive attached) is refused, warned about or clean:
// a failing or degrading disk needs AcceptUnhealthy, and then the plan
// warns loudly; a healthy disk is neither refused nor warned about; a dock
// without SMART pass-through is a warning, not a refusal.
func TestHealthConfirmation(t *testing.T) {
	testkit.NeedRoot(t) // a loop device as the target
	img := testkit.SparseFile(t, filepath.Join(t.TempDir(), "d.img"), 128<<20)
	dev := testkit.AttachLoop(t, img)
	report := func(name string) *health.Report {
		b, err := os.ReadFile(filepath.Join("..", "health", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := health.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		return &r
	}
	unreadable := &health.Report{Verdict: health.Unknown, Why: health.NotReadable}
	for _, c := range []struct {
		name    string
		h       *health.Report
		accept  bool
		refused string
		warning string
	}{
		{"failing", report("smartctl-derived-failing.json"), false, "SMART: FAILING, 41234 power-on hours, reallocated 1975", ""},
		{"failing accepted", report("smartctl-derived-failing.json"), true, "", "UNHEALTHY DISK, used because of --accept-unhealthy: SMART: FAILING"},
		{"degrading", report("smartctl-derived-degrading.json"), false, "SMART: DEGRADING", ""},
		{"degrading accepted", report("smartctl-derived-degrading.json"), true, "", "UNHEALTHY DISK"},
		{"healthy", report("smartctl-qemu-sata-healthy.json"), false, "", ""},
		{"not readable", unreadable, false, "", "health not readable through this dock"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg, err := DeviceTarget(disk.Sys{Root: "/"}, dev)
			if err != nil {
				t.Fatal(err)
			}
			if tg.Health != nil {
				t.Fatalf("a loop device has a health report: %+v", tg.Health)
			}
			tg.Health = c.h
			p, err := NewPlan(tg, Options{Label: "backups01", AcceptUnhealthy: c.accept})
			if c.refused != "" {
				if err == nil || KindOf(err) != KindRefused || !strings.Contains(err.Error(), c.refused) || !strings.Contains(err.Error(), "--accept-unhealthy") {
					t.Fatalf("want refusal %q, got %v", c.refused, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := strings.Join(p.Warnings, "\n")
			if c.warning == "" && (strings.Contains(w, "SMART") || strings.Contains(w, "health")) {
				t.Errorf("healthy disk warned about: %s", w)
			}
			if !strings.Contains(w, c.warning) {
				t.Errorf("warnings %q lack %q", w, c.warning)
			}
			if c.h.Verdict != health.Unknown && !strings.Contains(p.Script(), "# health (smartctl -d sat): "+c.h.Summary()) {
				t.Errorf("the plan script does not show the health:\n%s", p.Script())
			}
		})
	}
}
