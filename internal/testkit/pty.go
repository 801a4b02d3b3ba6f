package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RunOnPTY runs name with args on a new pseudo-terminal (its stdin, stdout
// and stderr, in a session of its own with the terminal as its controlling
// terminal), as a person at a terminal would: each time the output shows
// prompt (again), the next of lines is typed, followed by Enter. It returns
// everything the program printed and its exit error. It is how tests give
// a tool a passphrase "at its prompt" (cryptsetup reads a terminal
// differently from a pipe or a key file).
func RunOnPTY(timeout time.Duration, prompt string, lines []string, name string, args ...string) (string, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return "", err
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return "", fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return "", fmt.Errorf("ptsname: %w", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return "", err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		slave.Close()
		return "", err
	}
	// slave stays open here only to read the terminal's settings: a
	// program prints its prompt, then turns echo off and flushes pending
	// input (cryptsetup: tcsetattr TCSAFLUSH); a line typed before that
	// would be thrown away.
	defer slave.Close()
	echoOff := func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		return err == nil && tio.Lflag&unix.ECHO == 0
	}

	var (
		mu  sync.Mutex
		out bytes.Buffer
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			k, err := master.Read(buf)
			mu.Lock()
			out.Write(buf[:k])
			mu.Unlock()
			if err != nil { // EIO once the last slave descriptor closes
				return
			}
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	deadline := time.After(timeout)
	typed := 0
	for {
		select {
		case err := <-waited:
			slave.Close() // the reader sees EIO once no slave is open
			select {
			case <-readDone:
			case <-time.After(time.Second):
			}
			mu.Lock()
			defer mu.Unlock()
			return out.String(), err
		case <-deadline:
			cmd.Process.Kill()
			<-waited
			mu.Lock()
			defer mu.Unlock()
			return out.String(), fmt.Errorf("%s did not finish within %v", name, timeout)
		case <-time.After(2 * time.Millisecond):
		}
		mu.Lock()
		seen := strings.Count(out.String(), prompt)
		mu.Unlock()
		if typed < len(lines) && seen > typed && echoOff() {
			// Prompted, and the terminal is set up (echo off): what is
			// typed now is read by the program, not flushed.
			master.Write([]byte(lines[typed] + "\n"))
			typed++
		}
	}
}
