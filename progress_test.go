package main

import (
	"bytes"
	"strings"
	"testing"

	"luksdock/pipeline"
)

// TestTextProgress: without a terminal, prepare prints a progress line at
// each new tenth (no carriage returns), with percent, bytes, rate and ETA,
// and the bad-sector count when there is one.
func TestTextProgress(t *testing.T) {
	var b bytes.Buffer
	emit := textEvents(&b, 3)
	emit(pipeline.Event{Kind: pipeline.EventStart, Step: pipeline.StepSurfaceCheck, Message: "Read the whole disk back"})
	const total = 1000 << 20
	for done := int64(0); done <= total; done += 25 << 20 {
		p := &pipeline.Progress{Done: done, Total: total, Fraction: float64(done) / total, Rate: 150e6, ETA: float64(total-done) / 150e6}
		if done > total/2 {
			p.Bad = 3
		}
		emit(pipeline.Event{Kind: pipeline.EventProgress, Step: pipeline.StepSurfaceCheck, Progress: p})
	}
	out := b.String()
	if strings.Contains(out, "\r") {
		t.Errorf("carriage returns without a terminal:\n%q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 12 { // the start line, 0%, 10%, ..., 100%
		t.Errorf("%d lines, want 12:\n%s", len(lines), out)
	}
	for _, want := range []string{"  0.0%  0 B of 1000.0 MiB, 150 MB/s, 7s left", " 50.0%  500.0 MiB of 1000.0 MiB, 150 MB/s, 3s left", "100.0%  1000.0 MiB of 1000.0 MiB, 150 MB/s, 3 BAD sectors"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
