package stop

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// TestContext: a signal during the run cancels it and says luksdock is
// stopping safely; a signal after the run has returned stops nothing and
// says so, so that stderr never claims a stop that did not happen.
func TestContext(t *testing.T) {
	var during testkit.LockedBuffer
	ctx, stop, finished := Context(&during)
	syscall.Kill(syscall.Getpid(), syscall.SIGINT)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGINT during the run did not cancel it")
	}
	if !strings.Contains(during.String(), "interrupt: stopping safely after the current step") {
		t.Errorf("stderr: %q", during.String())
	}
	if finished() == nil {
		t.Errorf("finished() = nil after a signal during the run")
	}
	stop()

	var after testkit.LockedBuffer
	ctx, stop, finished = Context(&after)
	defer stop()
	if finished() != nil {
		t.Errorf("finished() = %v without a signal", finished())
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(after.String(), "terminated: the run has already finished") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s := after.String(); !strings.Contains(s, "the run has already finished") || strings.Contains(s, "stopping safely") {
		t.Errorf("stderr after the run: %q", s)
	}
	if ctx.Err() != nil {
		t.Errorf("a signal after the run cancelled it")
	}
}
