package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/luks"
)

// TestRunReportsWhatItRuns: a run leaves its plan as confirmed, and its
// start events carry the command each step really runs: mkfs.ext4 with the
// block size for the 4096-byte LUKS sectors cryptsetup chose, on the volume
// really opened. Folded into a Progress, every step ends done with that
// command; a run stopped before it starts ends with the first step stopped.
func TestRunReportsWhatItRuns(t *testing.T) {
	testkit.NeedRoot(t) // FUSE for the userspace engine
	img := filepath.Join(t.TempDir(), "run.img")
	tg, err := ImageTarget(img, 80<<20)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(tg, Options{Label: "real1", Engine: EngineUserspace, PBKDF: luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	planned := append([]Step(nil), p.Steps...)
	var prog Progress
	var mkfs string
	res, err := p.Run(context.Background(), "run.img", []byte("correct horse"), func(e Event) {
		prog.Apply(e)
		if e.Kind == EventStart && e.Step == StepMkfs {
			mkfs = e.Command
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Steps, planned) || p.Target.Create != true {
		t.Errorf("the run changed its plan")
	}
	if res.LUKS.SectorSize != 4096 || !strings.Contains(mkfs, " -b 4096 ") || strings.HasSuffix(planned[5].Command, "/volume") ||
		!strings.HasPrefix(mkfs, "mkfs.ext4 ") || !strings.HasSuffix(mkfs, "/volume") {
		t.Errorf("sector size %d; mkfs start event %q (planned %q)", res.LUKS.SectorSize, mkfs, planned[5].Command)
	}
	if res.Table != "gpt" {
		t.Errorf("Result.Table = %q", res.Table)
	}
	for _, s := range prog.Steps {
		if s.State != StepDone {
			t.Errorf("step %s: %s", s.ID, s.State)
		}
	}
	if prog.Result == nil || prog.Failure != nil || prog.Steps[5].Ran != mkfs {
		t.Errorf("progress: result %v, failure %v, mkfs ran %q", prog.Result, prog.Failure, prog.Steps[5].Ran)
	}

	// Stopped before it starts: nothing runs, the first step is stopped.
	tg2, _ := ImageTarget(filepath.Join(t.TempDir(), "stop.img"), 80<<20)
	p2, err := NewPlan(tg2, Options{Label: "real2", Engine: EngineUserspace})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var prog2 Progress
	_, err = p2.Run(ctx, "stop.img", []byte("correct horse"), func(e Event) { prog2.Apply(e) })
	if KindOf(err) != KindInterrupted || prog2.Steps[0].State != StepStopped || prog2.Steps[1].State != StepPending {
		t.Errorf("stopped run: %v; steps %s %s", err, prog2.Steps[0].State, prog2.Steps[1].State)
	}
	if _, err := os.Stat(tg2.Path); err == nil {
		t.Errorf("a stopped run created the image")
	}
}
