package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// pauseatCmd runs CMD with its standard output passed through, and stops
// CMD (SIGSTOP) as soon as it has read CMD's JSON event line of kind -event
// for step -step; then it writes CMD's pid to -pidfile. The scenario
// continues CMD with `kill -CONT`. Holding luksdock right after one step's
// event lets the host change the dock (slow its writes) before the next
// step's tool starts, so that what keeps that tool running long enough for
// the scenario to act is its own I/O on a slow dock, never a delay at its
// start; and the moment does not depend on how fast a poll of /proc runs
// on a loaded host. The exit status is CMD's (128+N for a signal N).
func pauseatCmd(args []string) int {
	fs := flag.NewFlagSet("pauseat", flag.ExitOnError)
	event := fs.String("event", "", "stop CMD at this JSON event kind (start, done)")
	step := fs.String("step", "", "... of this step")
	pidfile := fs.String("pidfile", "", "write CMD's pid here once it is stopped")
	fs.Parse(args)
	cmdArgs := fs.Args()
	if *event == "" || *step == "" || *pidfile == "" || len(cmdArgs) == 0 {
		usage()
	}
	cmd, stdout, rc := startPiped(cmdArgs)
	if rc != 0 {
		return rc
	}
	paused := false
	forwardEvents(stdout, func(_ []byte, e lineEvent) {
		if paused || e.Event != *event || e.Step != *step {
			return
		}
		paused = true
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP); err != nil {
			fmt.Fprintf(os.Stderr, "guestwatch: stopping %d: %v\n", cmd.Process.Pid, err)
		} else if err := writeAtomic(*pidfile, strconv.Itoa(cmd.Process.Pid)+"\n"); err != nil {
			fmt.Fprintf(os.Stderr, "guestwatch: %v\n", err)
		}
	})
	return exitStatus(cmd.Wait())
}

// writeAtomic writes s to path through a temporary file and a rename, so a
// scenario polling for path never reads it half written.
func writeAtomic(path, s string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
