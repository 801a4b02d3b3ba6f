package pipeline

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// What luksdock prints last when a run ends early (the CLI's stderr line,
// the wizard's exit summary) names the step by its title, as every other
// line for people does, not by its ID ("preflight: ...").
func TestErrorNamesTheStepByTitle(t *testing.T) {
	tg, err := ImageTarget(filepath.Join(t.TempDir(), "title.img"), 80<<20)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(tg, Options{Label: "title1", Engine: EngineUserspace})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = p.Run(ctx, "title.img", []byte("correct horse"), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "Check the target: interrupted before this step") {
		t.Errorf("stopped before the first step: %v", err)
	}
	_, err = p.Run(context.Background(), "not-it", []byte("correct horse"), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "Check the target: ") {
		t.Errorf("a wrong confirmation: %v", err)
	}
	if got := (&Error{Step: StepErase, Title: "Erase the whole disk", Err: context.Canceled}).Error(); got != "Erase the whole disk: context canceled" {
		t.Errorf("with the plan's title: %q", got)
	}
}
