package pipeline

import (
	"strings"
	"testing"
)

// Every step of the table says the disk's state after it and when it
// fails inside it, runs a function and has a command; a step the table
// does not know is never reported as ready.
func TestStepTableComplete(t *testing.T) {
	seen := map[StepID]bool{}
	for _, d := range stepTable {
		if seen[d.id] {
			t.Errorf("step %q is in the table twice", d.id)
		}
		seen[d.id] = true
		if d.after == "" || d.failed == "" {
			t.Errorf("step %q: no state after it (%q) or when it fails inside it (%q)", d.id, d.after, d.failed)
		}
		if d.run == nil || d.command == nil || (d.title == "") == (d.titleOf == nil) {
			t.Errorf("step %q: a function, a command and one title are required", d.id)
		}
	}
	for _, id := range []StepID{StepPreflight, StepWipe, StepPartition, StepFormat, StepRecoveryKey, StepOpen,
		StepMkfs, StepClose, StepVerify, StepHeaderBackup, StepResume, StepErase, StepSurfaceCheck} {
		if !seen[id] {
			t.Errorf("step %q is not in the step table", id)
		}
	}
	if s := StateAfter("no-such-step"); s == stateReady || !strings.Contains(s, "do not use") {
		t.Errorf("an unknown step's state is %q", s)
	}
	if s := StateFailedIn(StepWipe, StepPreflight); s != statePartWiped {
		t.Errorf("failed in wipe: %q", s)
	}
	if s := StateFailedIn(StepOpen, StepFormat); s != stateFormatted {
		t.Errorf("failed in open after luks-format: %q", s)
	}
}
