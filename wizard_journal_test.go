package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"luksdock/core"
	"luksdock/pipeline"
)

// Found trying the wizard: a hang-up on the Done screen, after the disk
// was made and verified, journalled a second line saying the last run
// "nothing was prepared [stopped by hangup]". The disk's own line says the
// wizard ended by the hang-up after the run finished; a run that failed or
// no run at all is still journalled as before.
func TestWizardJournalHangupAfterRun(t *testing.T) {
	read := func(t *testing.T, results []*pipeline.Result, lastErr error, sig os.Signal) string {
		dir := t.TempDir()
		t.Setenv("LUKSDOCK_STATE_DIR", dir)
		core.JournalWizard(results, lastErr, sig)
		b, err := os.ReadFile(filepath.Join(dir, core.JournalFile))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	r := &pipeline.Result{Target: "/tmp/c.img", FSLabel: "backups02"}
	j := read(t, []*pipeline.Result{r}, nil, syscall.SIGHUP)
	if strings.Contains(j, "nothing was prepared") || strings.Contains(j, "stopped by") || strings.Count(j, "\n") != 1 {
		t.Errorf("a hang-up after a finished run is told as a stopped run:\n%s", j)
	}
	if !strings.Contains(j, "wizard /tmp/c.img: a verified backup disk") || !strings.Contains(j, "then ended by hangup") {
		t.Errorf("the disk's line does not say the wizard ended by the hang-up after it:\n%s", j)
	}
	if j := read(t, nil, nil, syscall.SIGHUP); !strings.Contains(j, "wizard (its last run): nothing was prepared [stopped by hangup") {
		t.Errorf("a hang-up with no run:\n%s", j)
	}
	fail := &pipeline.Error{Kind: pipeline.KindInterrupted, Step: "erase", Err: errors.New("interrupted")}
	if j := read(t, []*pipeline.Result{r}, fail, syscall.SIGHUP); !strings.Contains(j, "wizard /tmp/c.img: a verified backup disk (LUKS UUID , label backups02)\n") ||
		!strings.Contains(j, "wizard (its last run): did not finish (interrupted in step erase)") || !strings.Contains(j, "[stopped by hangup") {
		t.Errorf("a hang-up during a second run:\n%s", j)
	}
}
