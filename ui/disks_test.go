package ui

import (
	"strings"
	"time"
)

// The disk list's walker chooses the row selected, once one that can be
// prepared is.
func init() {
	walkers[scrDisks] = func(h *harness, s snapshot) {
		h.waitFor("a disk that can be prepared, selected", 10*time.Second, func(s snapshot) bool {
			return s.selected() != "" && !strings.Contains(s.view, "Looking for disks") && !strings.Contains(s.view, "Enter shows why the selected disk is refused")
		})
		h.enter()
	}
}
