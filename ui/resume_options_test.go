package ui

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luksdock/disk"
	"luksdock/pipeline"

	"luksdock/internal/testkit"
)

// TestSavedEraseProposesItsOptions (issue 20, item 2): an erase of an
// image labelled backups08 with --table none and a surface check is
// stopped at its first progress event (through the pipeline, as Ctrl+C
// does). Choosing the image again in the wizard, the Options screen must
// propose the interrupted run's options — label backups08 (not the next in
// the series, backups09, whose plan would start over), no partition table,
// overwrite and read back on — so that going on with them the plan
// continues the erase.
func TestSavedEraseProposesItsOptions(t *testing.T) {
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "sfdisk", "losetup")
	t.Setenv("LUKSDOCK_STATE_DIR", t.TempDir())
	img := interruptedErase(t, 256<<20, pipeline.Options{Label: "backups08", Table: disk.TableNone, Erase: true, SurfaceCheck: true, PBKDF: testPBKDF})

	h := start(t, imageConfig(img, 0), nil)
	h.toOptions()
	s := h.waitFor("the options", 5*time.Second, func(s snapshot) bool { return s.field("Label") != "" })
	t.Logf("options:\n%s", s.body)
	if got := s.field("Label"); got != "backups08" {
		t.Errorf("Label %q, want backups08 (the interrupted erase's)", got)
	}
	for name, want := range map[string]string{"Partition table": "[none]", "Overwrite first": "[on]", "Read it all back": "[on]"} {
		if got := s.field(name); !strings.Contains(got, want) {
			t.Errorf("%s shows %q, want %s (the interrupted erase's)", name, got, want)
		}
	}
	if !strings.Contains(flat(s.body), "the label of this disk's interrupted erase") {
		t.Errorf("the label's help does not say where the suggestion comes from:\n%s", s.body)
	}
	s = h.optionsToPlan(testPass)
	if body := flat(s.body); !strings.Contains(body, "Continue the interrupted erase") || strings.Contains(body, "starting over") {
		t.Errorf("the plan with the proposed options does not continue the erase:\n%s", s.body)
	}
}

// interruptedErase makes an image of size bytes and prepares it with opts
// (an erase among them) until the erase's first progress event, where it
// stops the run as Ctrl+C does: the image is left partly erased, its
// position saved in the state directory.
func interruptedErase(t *testing.T, size int64, opts pipeline.Options) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "big.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	tg, err := pipeline.ImageTarget(img, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.NewPlan(tg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = p.Run(ctx, filepath.Base(img), []byte(testPass), func(e pipeline.Event) {
		if e.Kind == pipeline.EventProgress && e.Step == pipeline.StepErase {
			cancel()
		}
	})
	if pipeline.KindOf(err) != pipeline.KindInterrupted {
		t.Fatalf("setup: the erase was not interrupted: %v", err)
	}
	return img
}
