package core

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/disk"
	"luksdock/inventory"
	"luksdock/pipeline"
)

// A target given wrongly is a usage error, before anything is looked up.
func TestLookupChoice(t *testing.T) {
	for _, c := range []struct {
		device, image string
		size          bool
		want          string
	}{
		{"", "", false, "give --device /dev/sdX or --image PATH"},
		{"/dev/sdz", "x.img", false, "not both"},
		{"/dev/sdz", "", true, "--size goes with --image only"},
	} {
		_, err := Lookup(c.device, c.image, 0, c.size, false)
		var tc ErrTargetChoice
		if !errors.As(err, &tc) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// PlanPrepare refuses a label another disk of the set has, for the
// wizard's inventory and labels as for the CLI's, and a free label passes
// with the recovery key asked for in the plan.
func TestPlanPrepareLabelInSet(t *testing.T) {
	dir := t.TempDir()
	tgt, err := ImageTarget(filepath.Join(dir, "d.img"), 80<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	inv := &inventory.File{Disks: []inventory.Record{{LUKSUUID: "00000000-0000-0000-0000-000000000001", Label: "backups01", Set: "offsite"}}}
	req := PrepareRequest{Target: tgt, Options: pipeline.Options{Label: "backups01", Set: "offsite"}, Inventory: inv, WantRecoveryKey: true}
	if _, err := PlanPrepare(req); pipeline.KindOf(err) != pipeline.KindRefused || !strings.Contains(err.Error(), "Next free label: backups02") {
		t.Fatalf("a label of the set: %v", err)
	}
	req.Options.Label = "backups02"
	p, err := PlanPrepare(req)
	if err != nil {
		t.Fatalf("a free label: %v", err)
	}
	if p.Plan.Opts.RecoveryKey == nil || p.Plan.Steps[3].ID != pipeline.StepFormat || p.Plan.Steps[4].ID != pipeline.StepRecoveryKey {
		t.Errorf("the recovery key is not in the plan: %+v", p.Plan.Steps)
	}
}

func TestAttachedLabels(t *testing.T) {
	d := []disk.Disk{{Content: disk.Signature{Label: "a"}, Partitions: []disk.Partition{{Content: disk.Signature{Label: "b"}}, {}}}}
	if got := AttachedLabels(d); strings.Join(got, ",") != "a,b" {
		t.Errorf("labels %v", got)
	}
}
