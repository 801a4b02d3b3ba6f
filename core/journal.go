package core

import (
	"fmt"
	"log/syslog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"luksdock/pipeline"
)

// A dropped SSH connection or a closed terminal window hangs the terminal
// up: the person is not there to read how the run ended. So how every
// prepare or wizard run ended is recorded where they can read it later.

// JournalFile is where JournalRun appends, in pipeline.StateDir().
const JournalFile = "journal.log"

// JournalRun records how a prepare or wizard run ended — the target, the
// outcome, the step and the disk's state, never a secret — for a person who
// was not there to see it: appended to StateDir()/journal.log (mode 0600),
// and sent to the system journal (syslog, tag luksdock) where there is one.
// A record that cannot be written is skipped: it must not change the run.
func JournalRun(command, target string, res *pipeline.Result, err error, sig os.Signal) {
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

// JournalWizard records how the wizard's runs ended: each disk it made,
// then its last run when that failed or a signal ended the wizard. A signal
// that came after the last run finished (a hang-up on the Done screen) is
// told on that run's line, not as a run that prepared nothing.
func JournalWizard(results []*pipeline.Result, lastErr error, sig os.Signal) {
	for i, r := range results {
		var s os.Signal
		if i == len(results)-1 && lastErr == nil {
			s = sig
		}
		JournalRun("wizard", r.Target, r, nil, s)
	}
	if lastErr != nil || (sig != nil && len(results) == 0) {
		JournalRun("wizard", "(its last run)", nil, lastErr, sig)
	}
}
