package ui

import (
	"strings"
	"time"
)

// The Options screen's walker takes the choices shown once they are
// checked.
func init() {
	walkers[scrOptions] = func(h *harness, s snapshot) {
		h.waitFor("the options checked", 10*time.Second, func(s snapshot) bool {
			return s.screen != scrOptions || strings.Contains(s.body, "✓ ready")
		})
		h.enter()
	}
}

// containsAll reports whether s contains every one of want.
func containsAll(s string, want ...string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
