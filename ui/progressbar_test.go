package ui

import (
	"fmt"
	"strings"
	"testing"

	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

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

// Found trying the wizard: the progress screen cut the engine line with
// an ellipsis ("served to mkfs.ext4 throug…" at 80 columns, "served…" at
// 60); it is wrapped whole now.
func TestProgressEngineLineWhole(t *testing.T) {
	msg := "image file: AES-XTS in luksdock, served to mkfs.ext4 through FUSE"
	for _, w := range []int{60, 80} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			m := New(Config{Keyboard: func() []string { return nil }})
			m.c.width = w
			m.c.events = []pipeline.Event{{Kind: pipeline.EventPlan, Engine: pipeline.EngineUserspace, Message: msg}}
			v, _ := m.screens[scrProgress].View()
			if !strings.Contains(flat(ansi.Strip(v)), "engine: userspace — "+msg) {
				t.Errorf("the engine line is cut at %d columns:\n%s", w, v)
			}
			for _, l := range strings.Split(v, "\n") {
				if lipgloss.Width(l) > w {
					t.Errorf("line wider than %d: %q", w, l)
				}
			}
		})
	}
}
