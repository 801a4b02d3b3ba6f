// Package stop is how a luksdock process stops: a signal (SIGINT, SIGTERM,
// SIGHUP) is a request to stop safely after the step in progress, for the
// commands (Context) and the wizard (ui.Run) alike, and output whose
// reader is gone never ends it (SurviveBrokenOutput).
package stop

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// A dropped SSH connection or a closed terminal window hangs the terminal
// up: the kernel sends SIGHUP, and afterwards every write to the terminal
// fails (EIO), as every write to a pipe whose reader is gone does (EPIPE,
// and SIGPIPE, which by default ends a Go program writing to standard
// output or standard error). None of that may end a run in the middle of a
// step: SIGHUP is a stop request like SIGTERM (Context, and Hangup for
// ui.Run),
// failed writes are ignored (the messages are lost, not the disk), and how
// the run ended is always recorded where the person can read it later
// (core.JournalRun).

var brokenOutputOnce sync.Once

// SurviveBrokenOutput makes a write to a standard output or standard error
// whose reader is gone return EPIPE instead of killing luksdock with
// SIGPIPE. A handler (not SIG_IGN) is installed, so the tools luksdock runs
// get the default disposition.
func SurviveBrokenOutput() {
	brokenOutputOnce.Do(func() {
		ch := make(chan os.Signal, 8)
		signal.Notify(ch, syscall.SIGPIPE)
		go func() {
			for range ch {
			}
		}()
	})
}

// Context is cancelled by SIGINT, SIGTERM or SIGHUP (the terminal
// hung up: a dropped SSH connection). The pipeline finishes the step in
// progress, closes the volume and releases the disk. finished is called
// when the run has returned: it returns the signal taken before that (and
// so announced "stopping safely"), nil for none; a signal after it is only
// acknowledged. Writes to a standard output or error that is gone fail
// instead of ending luksdock (SurviveBrokenOutput).
func Context(stderr io.Writer) (ctx context.Context, stop func(), finished func() os.Signal) {
	SurviveBrokenOutput()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var mu sync.Mutex
	var done bool
	var got os.Signal
	go func() {
		for s := range ch {
			mu.Lock()
			if done {
				fmt.Fprintf(stderr, "luksdock: %v: the run has already finished\n", s)
			} else {
				got = s
				fmt.Fprintf(stderr, "luksdock: %v: stopping safely after the current step (an erase or surface check stops at its next request)...\n", s)
				cancel()
			}
			mu.Unlock()
		}
	}()
	finished = func() os.Signal {
		mu.Lock()
		defer mu.Unlock()
		done = true
		return got
	}
	return ctx, func() { signal.Stop(ch); cancel() }, finished
}

// Hangup is a context cancelled by SIGHUP alone (the terminal hung up: a
// dropped SSH connection, a closed terminal window), for the wizard
// (ui.Run), whose Ctrl+C is a key and not a signal. The run in progress
// finishes its step and stops as with Context. hungUp returns the SIGHUP
// that cancelled it, nil for none; stop ends the watching. Writes to a
// standard output or error that is gone fail instead of ending luksdock
// (SurviveBrokenOutput).
func Hangup(parent context.Context) (ctx context.Context, stop func(), hungUp func() os.Signal) {
	SurviveBrokenOutput()
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	var mu sync.Mutex
	var got os.Signal
	go func() {
		select {
		case s := <-ch:
			mu.Lock()
			got = s
			mu.Unlock()
			cancel()
		case <-ctx.Done():
		}
	}()
	hungUp = func() os.Signal {
		mu.Lock()
		defer mu.Unlock()
		return got
	}
	return ctx, func() { signal.Stop(ch); cancel() }, hungUp
}

// Quiet is a context cancelled by SIGINT, SIGTERM or SIGHUP, without
// Context's messages: for a run whose stop is its own to report (dock:
// systemd stops the unit with SIGTERM when the disk goes).
func Quiet(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
}
