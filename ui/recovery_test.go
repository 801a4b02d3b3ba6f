package ui

// The Recovery screen's walker types back the groups asked for (Enter
// alone once they were).
func init() {
	walkers[scrRecovery] = func(h *harness, s snapshot) {
		if s.screen == scrRecovery && containsAll(s.view, "✓ recovery key typed back") {
			h.enter()
			return
		}
		h.typeBackRecovery()
	}
}
