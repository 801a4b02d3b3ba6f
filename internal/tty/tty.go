// Package tty answers one question for luksdock: is this a terminal?
package tty

import (
	"golang.org/x/sys/unix"
)

// fder is an *os.File, or anything else with a file descriptor.
type fder interface{ Fd() uintptr }

// Is reports whether v (an *os.File, a reader or a writer) is a terminal.
func Is(v any) bool {
	f, ok := v.(fder)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
