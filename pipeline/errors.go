package pipeline

import (
	"errors"
	"fmt"
)

// Kind says what sort of failure an Error is. The CLI maps each kind to its
// exit code (main.go); the wizard to its words. The zero Kind is KindStep.
type Kind string

// The kinds of failure.
const (
	KindStep            Kind = "step-failed"      // a step failed while running
	KindRefused         Kind = "refused"          // refused by safety before anything was written
	KindNotVerified     Kind = "not-verified"     // the disk is not a verified backup disk
	KindWrongPassphrase Kind = "wrong-passphrase" // verify: the passphrase opens no keyslot
	KindInterrupted     Kind = "interrupted"      // stopped (context cancelled) at a step boundary
)

// Error is a pipeline failure: its kind, which step, what happened and the
// state the disk is left in.
type Error struct {
	Kind Kind
	Step StepID
	// Title is the step's title in the run's plan ("": StepTitle's, the
	// table's general title for a step whose title depends on the plan).
	Title string
	State string
	Err   error
}

// Error names the step by its title, for people (the ID is in Step, and in
// the JSON events).
func (e *Error) Error() string {
	if e.Step == "" {
		return e.Err.Error()
	}
	title := e.Title
	if title == "" {
		title = StepTitle(e.Step)
	}
	return fmt.Sprintf("%s: %v", title, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Unchanged reports whether the run that failed wrote nothing to the disk
// (what it held before is intact).
func (e *Error) Unchanged() bool { return e.State == stateUnchanged }

// KindOf is the kind of err: an *Error's own, KindStep for any other error,
// "" for nil.
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var pe *Error
	if errors.As(err, &pe) && pe.Kind != "" {
		return pe.Kind
	}
	return KindStep
}

func refused(format string, a ...any) error {
	return &Error{Kind: KindRefused, Step: StepPreflight, State: stateUnchanged, Err: fmt.Errorf(format, a...)}
}

// ErrConfirm is the refusal when --confirm does not name the target.
var ErrConfirm = errors.New("confirmation does not match")

// States the disk can be left in, reported on failure.
const (
	stateUnchanged    = "unchanged: nothing was written"
	stateWiped        = "old signatures wiped; no partition table: prepare it again"
	statePartitioned  = "partitioned, no LUKS header: prepare it again"
	stateFormatted    = "partitioned, LUKS header, no filesystem: prepare it again"
	stateNoVerify     = "LUKS and filesystem made but NOT verified: do not use it; prepare it again"
	stateVerifyFail   = "verification FAILED: do not use this disk; prepare it again"
	stateReady        = "ready: verified backup disk"
	stateBackupFailed = stateReady + " (but the header backup failed)"
)

// States of a disk whose step failed (or stopped) part way: a step that
// writes may have written some of its changes.
const (
	statePartWiped       = "old signatures partly wiped: the old partition table and filesystems may be damaged, no new layout was written; prepare it again"
	statePartPartitioned = "old signatures wiped; the new partition table may be incomplete: prepare it again"
	statePartFormatted   = "partitioned; the LUKS header may be missing or incomplete: prepare it again"
	statePartRecoveryKey = "partitioned, LUKS header; the recovery keyslot may be missing, no filesystem: prepare it again"
	statePartMkfs        = "partitioned, LUKS header, filesystem incomplete: prepare it again"
)
