package pipeline

import (
	"errors"
	"fmt"
)

// Exit codes of luksdock, documented in --help and README.
const (
	ExitOK          = 0
	ExitUsage       = 2   // bad flags or arguments
	ExitRefused     = 3   // refused by safety: confirmation, policy, preflight
	ExitStepFailed  = 4   // a step failed while running
	ExitVerifyFail  = 5   // the disk was made but did not verify, or verify failed
	ExitInterrupted = 130 // stopped by SIGINT/SIGTERM between steps
)

// Error is a pipeline failure: which step, what happened, the state the disk
// is left in, and the exit code it maps to.
type Error struct {
	Code  int
	Step  StepID
	State string
	Err   error
}

func (e *Error) Error() string {
	if e.Step != "" {
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ExitCode maps an error from this package to luksdock's exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ExitStepFailed
}

func refused(format string, a ...any) error {
	return &Error{Code: ExitRefused, Step: StepPreflight, State: stateUnchanged, Err: fmt.Errorf(format, a...)}
}

// ErrConfirm is the refusal when --confirm does not name the target.
var ErrConfirm = errors.New("confirmation does not match")

// States the disk can be left in, reported on failure.
const (
	stateUnchanged   = "unchanged: nothing was written"
	stateWiped       = "old signatures wiped; no partition table: prepare it again"
	statePartitioned = "partitioned, no LUKS header: prepare it again"
	stateFormatted   = "partitioned, LUKS header, no filesystem: prepare it again"
	stateNoVerify    = "LUKS and filesystem made but NOT verified: do not use it; prepare it again"
	stateVerifyFail  = "verification FAILED: do not use this disk; prepare it again"
	stateReady       = "ready: verified backup disk"
)

// States of a disk whose step failed (or stopped) part way: a step that
// writes may have written some of its changes.
const (
	statePartWiped       = "old signatures partly wiped: the old partition table and filesystems may be damaged, no new layout was written; prepare it again"
	statePartPartitioned = "old signatures wiped; the new partition table may be incomplete: prepare it again"
	statePartFormatted   = "partitioned; the LUKS header may be missing or incomplete: prepare it again"
	statePartMkfs        = "partitioned, LUKS header, filesystem incomplete: prepare it again"
)

// StateFailedIn is the disk's state when step failed after done (the last
// step that completed): the steps that write say that they may have written
// part of their changes; the others leave the state after done.
func StateFailedIn(step, done StepID) string {
	if s, ok := eraseState(step, true); ok {
		return s
	}
	switch step {
	case StepWipe:
		return statePartWiped
	case StepPartition:
		return statePartPartitioned
	case StepFormat:
		return statePartFormatted
	case StepMkfs:
		return statePartMkfs
	}
	return StateAfter(done)
}

// StateAfter is the disk's state once step has completed.
func StateAfter(step StepID) string {
	if s, ok := eraseState(step, false); ok {
		return s
	}
	switch step {
	case "", StepPreflight:
		return stateUnchanged
	case StepWipe:
		return stateWiped
	case StepPartition:
		return statePartitioned
	case StepFormat, StepOpen:
		return stateFormatted
	case StepMkfs, StepClose:
		return stateNoVerify
	default:
		return stateReady
	}
}
