package reliability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// trigger says when to signal a running luksdock.
type trigger struct {
	// event and step: signal when luksdock prints an event of this kind for
	// this step ("start", "done").
	event, step string
	// child and step: signal while a descendant process named child is
	// alive during step (per /proc).
	child string
	// until: with child, the child may also be caught in any later step up
	// to this one (a child that runs in the background across steps).
	until string
	// delay: with event, signal this long after the event.
	delay time.Duration
	sig   syscall.Signal
	// group: signal luksdock's whole process group, as a terminal's Ctrl-C
	// does (luksdock runs in a process group of its own).
	group bool
	// server: also SIGKILL the userspace engine's volume server
	// (luksdock-userspace-volume, in a session of its own), as when a whole
	// cgroup is killed.
	server bool
	// slow: names a tool that is given 300 ms more to run (a shim earlier in
	// PATH sleeps, then execs the real one), so that a fast tool such as
	// e2fsck can be caught alive.
	slow string
	// do, when set, is run instead of sending a signal.
	do func()
}

func (tr trigger) String() string {
	s := tr.sig.String()
	if tr.group {
		s += " to the process group"
	}
	if tr.child != "" {
		s += " while " + tr.child + " runs in " + tr.step
		if tr.until != "" {
			s += ".." + tr.until
		}
		if tr.slow != "" {
			s += " (slowed)"
		}
		return s
	}
	if tr.delay > 0 {
		return s + " " + tr.delay.String() + " after " + tr.event + " of " + tr.step
	}
	return s + " at " + tr.event + " of " + tr.step
}

// driven is the outcome of a luksdock run that a test signalled.
type driven struct {
	events []event
	stderr string
	code   int
	fired  bool   // the trigger fired
	at     string // the last event seen before the signal
	kids   []int  // every descendant seen
	comms  map[int]string
	// deadlock: after SIGKILL the process could not die for 5s; its
	// threads stuck on a FUSE request (the connection was then aborted).
	deadlock string
	// serverKills: /proc/PID/stat of each volume server killed (tr.server).
	serverKills []string
}

// drive runs luksdock with --json, watches its events on stdout and its
// descendants in /proc, and sends tr.sig when tr matches.
func drive(t *testing.T, tmpdir string, tr trigger, args ...string) driven {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = caseEnv(tmpdir)
	if tr.slow != "" {
		cmd.Env = append(cmd.Env[:0:0], cmd.Env...)
		cmd.Env[0] = "PATH=" + slowShim(t, tr.slow) + ":" + strings.TrimPrefix(cmd.Env[0], "PATH=")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var se bytes.Buffer
	cmd.Stderr = &se
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	var (
		mu    sync.Mutex
		d     = driven{comms: map[int]string{}}
		step  string // step of the last start event
		fired bool
	)
	fire := func() {
		// called with mu held
		if fired {
			return
		}
		fired = true
		if len(d.events) > 0 {
			e := d.events[len(d.events)-1]
			d.at = e.Kind + ":" + e.Step
		}
		target := pid
		if tr.group {
			target = -pid
		}
		var servers []int // found before the kill: afterwards they belong to init
		if tr.server {
			for _, p := range descendants(pid) {
				if strings.TrimSpace(readCmdline(p.PID)) == "luksdock-userspace-volume" {
					servers = append(servers, p.PID)
				}
			}
		}
		for _, w := range servers { // first, or it may already be unmounting
			st, _ := readProcFile(w, "stat")
			syscall.Kill(w, syscall.SIGKILL)
			d.serverKills = append(d.serverKills, strings.TrimSpace(string(st)))
		}
		if tr.do != nil {
			tr.do()
			return
		}
		syscall.Kill(target, tr.sig)
		if tr.sig == syscall.SIGKILL {
			go func() {
				time.Sleep(5 * time.Second)
				if alive(pid) || zombieWithThreads(pid) {
					mu.Lock()
					d.deadlock = stuckThreads(pid)
					mu.Unlock()
					abortFUSE(t, tmpdir)
				}
			}()
		}
	}
	done := make(chan struct{})
	pollDone := make(chan struct{})
	go func() { // descendants
		defer close(pollDone)
		for {
			select {
			case <-done:
				return
			default:
			}
			kids := descendants(pid)
			mu.Lock()
			for _, k := range kids {
				if _, ok := d.comms[k.PID]; !ok {
					d.comms[k.PID] = k.Comm
					d.kids = append(d.kids, k.PID)
				}
				if tr.child != "" && k.Comm == tr.child && tr.inSteps(step) {
					fire()
				}
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Errorf("--json printed a line that is not JSON: %q", sc.Text())
			continue
		}
		mu.Lock()
		d.events = append(d.events, e)
		if e.Kind == "start" {
			step = e.Step
		}
		if tr.event != "" && e.Kind == tr.event && e.Step == tr.step && !fired {
			if tr.delay > 0 {
				go func() {
					time.Sleep(tr.delay)
					mu.Lock()
					fire()
					mu.Unlock()
				}()
			} else {
				fire()
			}
		}
		mu.Unlock()
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(60 * time.Second):
		t.Fatalf("luksdock did not exit within 60s")
	}
	close(done)
	<-pollDone
	mu.Lock()
	defer mu.Unlock()
	d.fired, d.stderr = fired, se.String()
	if werr != nil {
		if ee, ok := werr.(*exec.ExitError); ok {
			d.code = ee.ExitCode()
			if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
				d.code = 128 + int(st.Signal())
			}
		} else {
			t.Fatal(werr)
		}
	}
	return d
}

// inSteps says whether step is tr.step or, with until, between the two.
func (tr trigger) inSteps(step string) bool {
	if step == tr.step {
		return true
	}
	if tr.until == "" {
		return false
	}
	from, to, at := slices.Index(steps, tr.step), slices.Index(steps, tr.until), slices.Index(steps, step)
	return from >= 0 && at > from && at <= to
}

func readCmdline(pid int) string {
	b, _ := readProcFile(pid, "cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// lastDone is the last step luksdock reported done.
func (d driven) lastDone() string {
	s := ""
	for _, e := range d.events {
		if e.Kind == "done" {
			s = e.Step
		}
	}
	return s
}

func (d driven) has(kind string) bool {
	for _, e := range d.events {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// stepIndex orders the pipeline's steps.
var stepIndex = map[string]int{"": -1, "preflight": 0, "wipe": 1, "partition": 2, "luks-format": 3, "open": 4, "mkfs": 5, "close": 6, "verify": 7}

// zombieWithThreads reports a process whose main thread exited but another
// thread is still in the kernel (it cannot be reaped yet).
func zombieWithThreads(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	return len(tasks) > 1
}

// slowShim makes a directory holding a script named tool that sleeps 300 ms
// and then execs the real tool.
func slowShim(t *testing.T, tool string) string {
	real, err := exec.LookPath(tool)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nsleep 0.3\nexec %s \"$@\"\n", real)
	if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
