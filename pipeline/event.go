// Package pipeline is luksdock's one implementation of preparing a backup
// disk: a Plan of steps (wipe, partition, luksFormat, open, mkfs.ext4, close,
// verify, header backup) that emits Events as it runs. `luksdock prepare`
// prints those events; the wizard renders them. Neither does disk work of its
// own.
package pipeline

import (
	"encoding/json"
	"errors"
	"time"

	"luksdock/disk"
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
	StepRecoveryKey  StepID = "recovery-key"
	StepOpen         StepID = "open"
	StepMkfs         StepID = "mkfs"
	StepClose        StepID = "close"
	StepVerify       StepID = "verify"
	StepHeaderBackup StepID = "header-backup"
)

// Engine is how the LUKS volume is opened to make the filesystem.
type Engine string

// The engines. EngineAuto is a choice only: a plan resolves it.
const (
	EngineAuto      Engine = "auto"
	EngineKernel    Engine = "kernel"    // cryptsetup open: dm-crypt
	EngineUserspace Engine = "userspace" // AES-XTS in luksdock, served through FUSE
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
	EventStart   EventKind = "start"   // Step began; Command is the command it really runs
	EventDone    EventKind = "done"    // Step finished (Message: what it did)
	EventFailed  EventKind = "failed"  // Step failed (Message: the error; State: the disk's state; Failure: its kind)
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
	Engine  Engine        `json:"engine,omitempty"`
	Failure Kind          `json:"kind,omitempty"`
	// Reasons are a refused disk's reasons, each with its fix (the
	// message says both in one line), as list --json gives them.
	Reasons []Refusal `json:"reasons,omitempty"`
	Steps   []Step    `json:"steps,omitempty"`
	Result  *Result   `json:"result,omitempty"`
	// Version is the luksdock that runs (internal/version.String()), on
	// the plan event, the first of a prepare run.
	Version string `json:"version,omitempty"`
	// Progress: with EventProgress (erase.go).
	Progress *Advance `json:"progress,omitempty"`
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
	Target       string         `json:"target"`
	Partition    string         `json:"partition"`
	Table        disk.TableType `json:"table,omitempty"`
	Engine       Engine         `json:"engine"`
	Size         int64          `json:"size"`
	LUKS         luks.Info      `json:"luks"`
	FSLabel      string         `json:"fs_label"`
	FSBlockSize  int            `json:"fs_block_size,omitempty"`
	FsckClean    bool           `json:"fsck_clean"`
	Fsck         []string       `json:"fsck,omitempty"`
	HeaderBackup string         `json:"header_backup,omitempty"`
	// Owner is the owner "UID:GID" of the filesystem's top directory
	// (debugfs stat <2>), and TopDirMode its permission bits ("0755").
	Owner      string `json:"owner"`
	TopDirMode string `json:"top_dir_mode,omitempty"`
	// SectorViews lists the logical sector sizes (512, 4096) with which a
	// Linux kernel finds the LUKS volume: the docks this disk unlocks in.
	SectorViews []int `json:"sector_views"`
	// LogicalSector and PhysicalSector are what the dock (or, for an image,
	// luksdock) reports for the target.
	LogicalSector  int `json:"logical_sector"`
	PhysicalSector int `json:"physical_sector,omitempty"`
	// RecoveryKey says that a recovery key opens the disk too (proved by
	// verify); RecoveryKeyFile is where it was written. Never the key.
	RecoveryKey     bool   `json:"recovery_key"`
	RecoveryKeyFile string `json:"recovery_key_file,omitempty"`
	// RemovedKeyslots are the keyslots of an interrupted run that this run,
	// continuing its erase, removed: the recovery key that run made no
	// longer opens the disk; only RecoveryKey (this run's) does.
	RemovedKeyslots []int `json:"removed_keyslots,omitempty"`
	// Version is the luksdock that verified the disk
	// (internal/version.String()), to quote in a bug report.
	Version string `json:"version,omitempty"`
}

// Refusal is one reason a disk is refused and what to do about it.
type Refusal struct {
	Text string `json:"text"`
	Fix  string `json:"fix,omitempty"`
}

// Refusals are the reasons, with their fixes, of a disk refusal in err's
// chain (disk.RefusedError); nil for any other error.
func Refusals(err error) []Refusal {
	var re *disk.RefusedError
	if !errors.As(err, &re) {
		return nil
	}
	out := make([]Refusal, len(re.Reasons))
	for i, r := range re.Reasons {
		out[i] = Refusal{Text: r.Text, Fix: r.Fix}
	}
	return out
}
