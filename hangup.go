package main

import (
	"fmt"
	"log/syslog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"luksdock/pipeline"
)

// A dropped SSH connection or a closed terminal window hangs the terminal
// up: the kernel sends SIGHUP, and afterwards every write to the terminal
// fails (EIO), as every write to a pipe whose reader is gone does (EPIPE,
// and SIGPIPE, which by default ends a Go program writing to standard
// output or standard error). None of that may end a run in the middle of a
// step: SIGHUP is a stop request like SIGTERM (signalContext, runWizard),
// failed writes are ignored (the messages are lost, not the disk), and how
// the run ended is always recorded where the person can read it later
// (journalRun).

var brokenOutputOnce sync.Once

// survivebrokenOutput makes a write to a standard output or standard error
// whose reader is gone return EPIPE instead of killing luksdock with
// SIGPIPE. A handler (not SIG_IGN) is installed, so the tools luksdock runs
// get the default disposition.
func surviveBrokenOutput() {
	brokenOutputOnce.Do(func() {
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGPIPE)
		go func() {
			for range ch {
			}
		}()
	})
}

// JournalFile is where journalRun appends, in pipeline.StateDir().
const JournalFile = "journal.log"

// journalRun records how a prepare or wizard run ended — the target, the
// outcome, the step and the disk's state, never a secret — for a person who
// was not there to see it: appended to StateDir()/journal.log (mode 0600),
// and sent to the system journal (syslog, tag luksdock) where there is one.
// A record that cannot be written is skipped: it must not change the run.
func journalRun(command, target string, res *pipeline.Result, err error, sig os.Signal) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", command, target)
	switch {
	case err == nil && res != nil:
		fmt.Fprintf(&b, "a verified backup disk (LUKS UUID %s, label %s)", res.LUKS.UUID, res.FSLabel)
	case err == nil:
		b.WriteString("nothing was prepared")
	default:
		if pe, ok := err.(*pipeline.Error); ok {
			fmt.Fprintf(&b, "did not finish (%s in step %s): %v; disk state: %s", pe.Kind, pe.Step, pe.Err, pe.State)
		} else {
			fmt.Fprintf(&b, "did not finish: %v", err)
		}
	}
	if sig != nil {
		how := "stopped by"
		if err == nil && res != nil {
			how = "the run had finished; then ended by" // nothing was stopped
		}
		fmt.Fprintf(&b, " [%s %s%s]", how, sig, map[bool]string{true: ": the terminal hung up (a dropped connection or a closed window)", false: ""}[sig == syscall.SIGHUP])
	}
	msg := strings.ReplaceAll(b.String(), "\n", " ")
	if w, err := syslog.New(syslog.LOG_NOTICE|syslog.LOG_USER, "luksdock"); err == nil {
		_ = w.Notice(msg)
		w.Close()
	}
	dir := pipeline.StateDir()
	if os.MkdirAll(dir, 0o700) != nil {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = fmt.Fprintf(f, "%s pid %d: %s\n", time.Now().UTC().Format(time.RFC3339), os.Getpid(), msg)
	_ = f.Sync()
}

// lastStop is the signal that stopped the run (signalContext, runWizard).
var lastStop atomic.Value
