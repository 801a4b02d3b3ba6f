package stop

import (
	"context"
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

// TestHangup: the wizard's watcher is cancelled by a SIGHUP (the terminal
// hung up) and says which signal it was; without one it says nil and the
// context stays alive until stop.
func TestHangup(t *testing.T) {
	ctx, stop, hungUp := Hangup(context.Background())
	if hungUp() != nil || ctx.Err() != nil {
		t.Fatalf("before a signal: hungUp() = %v, ctx.Err() = %v", hungUp(), ctx.Err())
	}
	syscall.Kill(syscall.Getpid(), syscall.SIGHUP)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGHUP did not cancel the wizard's context")
	}
	if s := hungUp(); s != syscall.SIGHUP {
		t.Errorf("hungUp() = %v, want SIGHUP", s)
	}
	stop()

	ctx, stop, hungUp = Hangup(context.Background())
	stop()
	if hungUp() != nil || ctx.Err() == nil {
		t.Errorf("after stop without a signal: hungUp() = %v, ctx.Err() = %v", hungUp(), ctx.Err())
	}
}
