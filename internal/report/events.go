// Package report writes what luksdock's commands print on standard output:
// the pipeline's events (text for people, one JSON object per line for
// scripts) and each command's result, as text or JSON. The rule: package
// main chooses which writer and where; every line a command prints for its
// result is written here, so the CLI's files hold no rendering. Warnings
// that go to standard error are returned or written to the writer given.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/tty"
	"luksdock/pipeline"
)

// JSONRefusal prints, for --json, the failed event of an error that came
// before the pipeline ran (a bad target, plan or passphrase), so that
// automation reading standard output learns why nothing happened.
func JSONRefusal(w io.Writer, err error, step pipeline.StepID) {
	if err == nil {
		return
	}
	e := pipeline.Event{Time: time.Now(), Kind: pipeline.EventFailed, Step: step, Message: err.Error(), State: pipeline.StateAfter(""), Reasons: pipeline.Refusals(err)}
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		if pe.Step != "" {
			e.Step = pe.Step
		}
		e.Message, e.Failure = pe.Err.Error(), pipeline.KindOf(pe)
		if pe.State != "" {
			e.State = pe.State
		}
	}
	JSONEvents(w)(e)
}

// Events is a run's event writer: JSONEvents with --json, else
// TextEvents (total: the number of steps when no plan event says it).
func Events(w io.Writer, asJSON bool, total int) func(pipeline.Event) {
	if asJSON {
		return JSONEvents(w)
	}
	return TextEvents(w, total)
}

// JSONEvents prints one JSON event per line.
func JSONEvents(w io.Writer) func(pipeline.Event) {
	enc := json.NewEncoder(w)
	return func(e pipeline.Event) { _ = enc.Encode(e) }
}

// TextEvents prints what the events say, folded into a pipeline.Progress:
// each step with the command it really runs (from its start event) and how
// it ended, and the progress of long steps: on a terminal one line updated
// in place, else a line every 10%. total is the number of steps when no
// plan event will say it (verify).
func TextEvents(w io.Writer, total int) func(pipeline.Event) {
	var p pipeline.Progress
	tty := tty.Is(w)
	inLine := false // a progress line without its newline is on the terminal
	lastTenth := -1
	return func(e pipeline.Event) {
		if inLine && e.Kind != pipeline.EventProgress {
			fmt.Fprintln(w)
			inLine = false
		}
		s := p.Apply(e)
		switch e.Kind {
		case pipeline.EventPlan:
			total = len(e.Steps)
			fmt.Fprintf(w, "engine: %s (%s)\n", e.Engine, e.Message)
		case pipeline.EventWarning:
			fmt.Fprintf(w, "warning: %s\n", e.Message)
		case pipeline.EventInfo:
			fmt.Fprintf(w, "note: %s\n", e.Message)
		case pipeline.EventProgress:
			line := progressLine(e.Progress)
			if tty {
				fmt.Fprintf(w, "\r      %-72s", line)
				inLine = true
			} else if tenth := int(10 * e.Progress.Fraction); tenth != lastTenth {
				lastTenth = tenth
				fmt.Fprintf(w, "      %s\n", line)
			}
		case pipeline.EventStart:
			lastTenth = -1
			fmt.Fprintf(w, "[%d/%d] %s\n", p.Index(e.Step)+1, max(total, len(p.Steps)), s.Title)
			if s.Ran != "" {
				fmt.Fprintf(w, "      $ %s\n", strings.ReplaceAll(s.Ran, "\n", "\n        "))
			}
		case pipeline.EventDone:
			fmt.Fprintf(w, "      done in %s: %s\n", e.Elapsed.Round(time.Millisecond), e.Message)
		case pipeline.EventFailed:
			if s == nil || s.Started.IsZero() && s.State == pipeline.StepFailed {
				// refused before any step ran (a wrong --confirm): no step
				// header above it says what this is
				verb := "failed"
				if e.Failure == pipeline.KindRefused {
					verb = "refused"
				}
				fmt.Fprintf(w, "%s before any step ran: %s\n", verb, e.Message)
			} else if s.State == pipeline.StepStopped {
				fmt.Fprintf(w, "      STOPPED: %s\n", e.Message)
			} else {
				fmt.Fprintf(w, "      FAILED: %s\n", e.Message)
			}
		case pipeline.EventResult:
			r := e.Result
			fmt.Fprintf(w, "\nDone: %s is a verified backup disk.\n", r.Target)
			fmt.Fprintf(w, "  partition:    %s\n", r.Partition)
			fmt.Fprintf(w, "  LUKS%d UUID:   %s\n", r.LUKS.Version, r.LUKS.UUID)
			fmt.Fprintf(w, "  cipher:       %s, %d-byte sectors, data at %d, %s\n", r.LUKS.Cipher, r.LUKS.SectorSize, r.LUKS.DataOffset, disk.SizeString(r.LUKS.DataSize))
			fmt.Fprintf(w, "  label:        %s (ext4, e2fsck -fn clean)\n", r.FSLabel)
			fmt.Fprintf(w, "  owner:        %s (of the top directory, mode %s)\n", r.Owner, r.TopDirMode)
			dock := fmt.Sprintf("the dock reports %d-byte logical, %d-byte physical sectors", r.LogicalSector, r.PhysicalSector)
			if r.PhysicalSector == 0 {
				dock = "an image file, read here as 512-byte sectors"
			}
			fmt.Fprintf(w, "  found with:   %s (%s)\n", pipeline.SectorViewsText(r.SectorViews), dock)
			if r.LUKS.Subsystem != "" {
				fmt.Fprintf(w, "  set:          %s (in the LUKS2 subsystem field)\n", r.LUKS.Subsystem)
			}
			if r.RecoveryKey {
				fmt.Fprintf(w, "  recovery key: opens it too (verified)")
				if r.RecoveryKeyFile != "" {
					fmt.Fprintf(w, "; written to %s: print it, keep the paper away from this disk, then delete the file", r.RecoveryKeyFile)
				}
				fmt.Fprintln(w)
			}
			if len(r.RemovedKeyslots) > 0 {
				fmt.Fprintf(w, "  keyslots:     the interrupted run's recovery key no longer opens it (keyslots %v removed); only the passphrase%s do\n",
					r.RemovedKeyslots, map[bool]string{true: " and this run's recovery key", false: ""}[r.RecoveryKey])
			}
			if r.HeaderBackup != "" {
				fmt.Fprintf(w, "  header backup: %s\n", r.HeaderBackup)
				fmt.Fprintf(w, "                 with it, any passphrase the disk has now opens the disk forever, even after you change or remove that passphrase: keep it as safe as the passphrase\n")
			}
		}
	}
}

// progressLine is one progress event for people: percent, bytes, rate, ETA.
func progressLine(p *pipeline.Advance) string {
	s := fmt.Sprintf("%5.1f%%  %s of %s", 100*p.Fraction, disk.SizeString(p.Done), disk.SizeString(p.Total))
	if p.Rate > 0 {
		s += fmt.Sprintf(", %.0f MB/s", p.Rate/1e6)
		if p.Done < p.Total {
			s += ", " + time.Duration(p.ETA*float64(time.Second)).Round(time.Second).String() + " left"
		}
	}
	if p.Bad > 0 {
		s += fmt.Sprintf(", %d BAD sectors", p.Bad)
	}
	return s
}

// Prepared is the end of a prepare run's report, after its events (err:
// how it failed, nil when the disk is verified): where the disk was
// recorded, and whether a stop signal came too late to stop anything.
func Prepared(out, stderr io.Writer, o core.PrepareOutcome, err error, asJSON bool) {
	if err == nil {
		if o.RecordErr != nil {
			fmt.Fprintf(stderr, "luksdock: warning: the disk is ready, but it was not recorded in the inventory: %v\n", o.RecordErr)
		} else if !asJSON {
			fmt.Fprintf(out, "  inventory:    recorded in %s\n", o.InventoryPath)
		}
	}
	if o.Signal != nil && err == nil {
		// The signal came during the last step or after it: every
		// step finished, nothing was stopped, the disk is verified.
		fmt.Fprintln(stderr, "luksdock: the signal came as the run was completing: all steps finished and the disk is verified")
	}
}

// Warning is a warning before a run starts ("" for none): with asJSON a
// "warning" event of the preflight on out, else a line on stderr.
func Warning(out, stderr io.Writer, asJSON bool, w string) {
	switch {
	case w == "":
	case asJSON:
		JSONEvents(out)(pipeline.Event{Time: time.Now(), Kind: pipeline.EventWarning, Step: pipeline.StepPreflight, Message: w})
	default:
		Warnf(stderr, "%s", w)
	}
}
