package pipeline

import (
	"errors"
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
		if d.run == nil || d.command == nil || d.title == "" {
			t.Errorf("step %q: a function, a command and a title are required", d.id)
		}
		// Messages that have no plan at hand name a step by StepTitle: a
		// title, never the ID (people would read "mkfs: ..." otherwise).
		if got := StepTitle(d.id); got == string(d.id) || got == "" {
			t.Errorf("StepTitle(%q) = %q: people would see the step's ID", d.id, got)
		}
		if got := (&Error{Step: d.id, Err: errTest}).Error(); !strings.HasPrefix(got, d.title+": ") {
			t.Errorf("an error in step %q without the plan's title reads %q", d.id, got)
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

var errTest = errors.New("it broke")
