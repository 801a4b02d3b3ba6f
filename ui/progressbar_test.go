package ui

import (
	"fmt"
	"strings"
	"testing"

	"charm.land/lipgloss/v2"

	"luksdock/pipeline"
)

// Found trying the wizard at 60x18: the erase's progress bar and its
// percentage were wider than the screen, so "100.0%" wrapped to a line of
// its own.
func TestProgressBarFitsTheWidth(t *testing.T) {
	for _, w := range []int{60, 80, 100} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			m := New(Config{Keyboard: func() []string { return nil }})
			m.c.width = w
			out := progressLines(m.c, &pipeline.Advance{Done: 1 << 30, Total: 1 << 30, Fraction: 1, Rate: 4e8})
			first := strings.Split(out, "\n")[0]
			if lipgloss.Width(first) > w || !strings.HasSuffix(first, "100.0%") {
				t.Errorf("the bar line is %d wide at %d columns: %q", lipgloss.Width(first), w, first)
			}
		})
	}
}
