// Package pipeline is luksdock's one implementation of preparing a backup
// disk: a Plan of steps (wipe, partition, luksFormat, open, mkfs.ext4, close,
// verify, header backup) that emits Events as it runs. `luksdock prepare`
// prints those events; the wizard renders them. Neither does disk work of its
// own.
package pipeline

import (
	"encoding/json"
	"time"

	"luksdock/luks"
)

// StepID names a step of the pipeline.
type StepID string

// The steps, in the order they run.
const (
	StepPreflight    StepID = "preflight"
	StepWipe         StepID = "wipe"
	StepPartition    StepID = "partition"
	StepFormat       StepID = "luks-format"
	StepOpen         StepID = "open"
	StepMkfs         StepID = "mkfs"
	StepClose        StepID = "close"
	StepVerify       StepID = "verify"
	StepHeaderBackup StepID = "header-backup"
)

// Step is one entry of a plan: what it does and the shell command a person
// would type to do the same by hand.
type Step struct {
	ID      StepID `json:"id"`
	Title   string `json:"title"`
	Command string `json:"command"`
	// Slow says why a step may take seconds, for the progress display.
	Slow string `json:"slow,omitempty"`
}

// EventKind says what an Event reports.
type EventKind string

// The kinds of event, in the order a run emits them.
const (
	EventPlan    EventKind = "plan"    // Steps, Engine, Message (why this engine)
	EventStart   EventKind = "start"   // Step began
	EventDone    EventKind = "done"    // Step finished (Message: what it did)
	EventFailed  EventKind = "failed"  // Step failed (Message: the error; State: the disk's state)
	EventWarning EventKind = "warning" // Message
	EventInfo    EventKind = "info"    // Message
	EventResult  EventKind = "result"  // Result: the run passed verification
)

// Event is what the pipeline reports as it runs. It never holds a secret.
type Event struct {
	Time    time.Time     `json:"time"`
	Kind    EventKind     `json:"event"`
	Step    StepID        `json:"step,omitempty"`
	Command string        `json:"command,omitempty"`
	Message string        `json:"message,omitempty"`
	State   string        `json:"state,omitempty"`
	Elapsed time.Duration `json:"-"`
	Engine  string        `json:"engine,omitempty"`
	Steps   []Step        `json:"steps,omitempty"`
	Result  *Result       `json:"result,omitempty"`
	// Version is the luksdock that runs (internal/version.String()), on
	// the plan event, the first of a prepare run.
	Version string `json:"version,omitempty"`
	// Progress: with EventProgress (erase.go).
	Progress *Progress `json:"progress,omitempty"`
}

// MarshalJSON adds elapsed_ms.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		plain
		ElapsedMS int64 `json:"elapsed_ms,omitempty"`
	}{plain(e), e.Elapsed.Milliseconds()})
}

// Result describes a verified backup disk.
type Result struct {
	Target       string    `json:"target"`
	Partition    string    `json:"partition"`
	Table        string    `json:"table,omitempty"`
	Engine       string    `json:"engine"`
	Size         int64     `json:"size"`
	LUKS         luks.Info `json:"luks"`
	FSLabel      string    `json:"fs_label"`
	FsckClean    bool      `json:"fsck_clean"`
	Fsck         []string  `json:"fsck,omitempty"`
	HeaderBackup string    `json:"header_backup,omitempty"`
	// Version is the luksdock that verified the disk
	// (internal/version.String()), to quote in a bug report.
	Version string `json:"version,omitempty"`
}
