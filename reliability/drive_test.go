package reliability

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/procwatch"
)

// trigger says when to signal a running luksdock.
type trigger struct {
	// event and step: signal when luksdock prints an event of this kind for
	// this step ("start", "done").
	event, step string
	// child and step: signal while the real binary of the tool child runs
	// during step and has begun its work on the disk (see midtool_test.go):
	// /proc/PID/exe is the real tool, the tool is traced (ptrace), and the
	// signal is sent once it has changed bytes of file (a writer) or holds
	// the disk open and has read from it (a reader).
	child string
	// file is the target the tool writes: the image file, or for a loop
	// device its partition node (what cryptsetup and the volume server
	// write). It is snapshotted before the tool execs.
	file string
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
	// slow: names a tool that is held until the trigger's do has returned
	// (at most 60 s: a shim earlier in PATH waits for a gate file, then
	// execs the real one), to keep luksdock in a step for an event trigger
	// (TestTwoAtOnce). A fixed delay (300 ms) was too short on a loaded
	// machine: the second luksdock started after the first had ended.
	// Child triggers do not use it: they throttle the real tool itself.
	slow string
	// ns: run luksdock in the mount namespace of this process (nsenter).
	ns int
	// do, when set, is run instead of sending a signal.
	do func()
}

func (tr trigger) String() string {
	s := tr.sig.String()
	if tr.group {
		s += " to the process group"
	}
	if tr.child != "" {
		if tr.writes() {
			return s + " while " + tr.child + " writes in " + tr.step
		}
		return s + " while " + tr.child + " reads in " + tr.step
	}
	if tr.delay > 0 {
		return s + " " + tr.delay.String() + " after " + tr.event + " of " + tr.step
	}
	return s + " at " + tr.event + " of " + tr.step
}

// writes says whether the tool of a child trigger writes the disk (and
// must have changed bytes of it before the signal) or only reads it.
func (tr trigger) writes() bool { return tr.step == "luks-format" || tr.step == "mkfs" }

// argvOfStep says whether a run of tr.child with this command line is the
// one of tr.step (cryptsetup runs in luks-format and in verify).
func (tr trigger) argvOfStep(cmdline string) bool {
	if tr.child != "cryptsetup" {
		return true // mkfs.ext4 runs only in mkfs, e2fsck only in verify
	}
	switch tr.step {
	case "luks-format":
		return strings.Contains(cmdline, " luksFormat ")
	case "verify":
		return strings.Contains(cmdline, " --test-passphrase ") || strings.Contains(cmdline, " --dump-volume-key ")
	}
	return false
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
	// Child triggers: the real tool's pid and executable, and how its
	// progress was seen before the signal (toolProgress).
	toolPID      int
	toolExe      string
	toolProgress string
	// notes: what happened to each run of the child tool (why it was
	// not the one signalled), for the failure message.
	notes []string
	// toolAliveAfter: the tool was running (the real binary, continued)
	// as the signal was sent.
	toolAliveAfter bool
}

// drive runs luksdock with --json, watches its events on stdout and its
// descendants in /proc, and sends tr.sig when tr matches.
func drive(t *testing.T, tmpdir string, tr trigger, args ...string) driven {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if tr.ns != 0 {
		argv := append(nsenter(tr.ns), bin)
		cmd = exec.Command(argv[0], append(argv[1:], args...)...)
	}
	cmd.Env = caseEnv(tmpdir)
	gate := ""
	if tr.slow != "" {
		gate = filepath.Join(t.TempDir(), "gate")
		dir := slowShim(t, tr.slow, gate)
		defer os.WriteFile(gate, nil, 0o644) // never leave the tool waiting
		cmd.Env = append(cmd.Env[:0:0], cmd.Env...)
		cmd.Env[0] = "PATH=" + dir + ":" + strings.TrimPrefix(cmd.Env[0], "PATH=")
	}
	if tr.child != "" {
		cmd.Env = append(cmd.Env[:0:0], cmd.Env...)
		cmd.Env[0] = "PATH=" + stopShim(t, tr.child) + ":" + strings.TrimPrefix(cmd.Env[0], "PATH=")
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
		mu       sync.Mutex
		d        = driven{comms: map[int]string{}}
		step     string // step of the last start event
		fired    bool
		real     string           // the real tool (child triggers)
		lastDone string           // step of the last done event
		tried    = map[int]bool{} // tool pids already handled
		servers  []int            // tr.server: the volume servers, stopped; killed after luksdock
	)
	if tr.child != "" {
		real = realTool(t, tr.child)
	}
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
		if tr.server && servers == nil {
			servers = stopServers(pid) // an event trigger: found now
		}
		defer func() {
			for _, w := range servers {
				st, _ := readProcFile(w, "stat")
				syscall.Kill(w, syscall.SIGKILL)
				d.serverKills = append(d.serverKills, strings.TrimSpace(string(st)))
			}
		}()
		if tr.do != nil {
			tr.do()
			if gate != "" {
				os.WriteFile(gate, nil, 0o644)
			}
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
			kids := childTree(pid)
			mu.Lock()
			for _, k := range kids {
				if _, ok := d.comms[k.PID]; !ok {
					d.comms[k.PID] = k.Comm
					d.kids = append(d.kids, k.PID)
				}
				// The step's tool can start before its start event is
				// read here: the done event of the step before counts.
				inStep := step == tr.step || stepIndex[lastDone] == stepIndex[tr.step]-1
				if tr.child == "" || k.Comm != tr.child || tried[k.PID] || procState(k.PID) != 'T' {
					continue
				}
				// The stop shim of tr.child stopped itself before its
				// exec: the step's tool is traced from its exec until it
				// has done part of its work; any other run of the tool
				// just goes on.
				tried[k.PID] = true
				// Events can lag behind the process table: the tool's
				// command line says which step it belongs to too.
				inStep = inStep || tr.argvOfStep(readCmdline(k.PID))
				if fired || !inStep {
					d.notes = append(d.notes, fmt.Sprintf("%s %d (%s) let go: fired %v, step %q, last done %q", tr.child, k.PID, readCmdline(k.PID), fired, step, lastDone))
					syscall.Kill(k.PID, syscall.SIGCONT)
					continue
				}
				mu.Unlock()
				ok, ev, why := catchMidTool(pid, k.PID, real, tr.writes(), tr.file, func() {
					// While the tool is held the run cannot have gone past
					// it (a quick mkfs, then close, would end the server).
					if tr.server {
						found := stopServers(pid)
						mu.Lock()
						servers = found
						mu.Unlock()
					}
				})
				mu.Lock()
				if !ok {
					d.notes = append(d.notes, fmt.Sprintf("%s %d not caught at work: %s", tr.child, k.PID, why))
				}
				if ok && !fired {
					// catchMidTool detached from the tool: it is running,
					// with part of its work done, as the signal is sent.
					d.toolPID, d.toolExe, d.toolProgress = k.PID, real, ev
					d.toolAliveAfter = alive(k.PID) && exeOf(k.PID) == real
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
		if e.Kind == "done" {
			lastDone = e.Step
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

// stopServers finds luksdock's userspace volume servers (children of pid,
// found before the kill: afterwards they belong to init) and stops them,
// so that none can see luksdock die and unmount (as with a whole cgroup
// killed at once); the caller kills them after luksdock.
func stopServers(pid int) []int {
	var servers []int
	for _, p := range descendants(pid) {
		if strings.TrimSpace(readCmdline(p.PID)) == "luksdock-userspace-volume" {
			servers = append(servers, p.PID)
		}
	}
	for _, w := range servers {
		syscall.Kill(w, syscall.SIGSTOP)
		procwatch.WaitStopped(w, 10*time.Millisecond)
	}
	return servers
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

// slowShim makes a directory holding a script named tool that waits, then
// execs the real tool: until the gate file exists (at most 60 s), or with
// no gate 300 ms.
func slowShim(t *testing.T, tool, gate string) string {
	real, err := exec.LookPath(tool)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	wait := "sleep 0.3"
	if gate != "" {
		wait = fmt.Sprintf("i=0\nwhile [ ! -e %s ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done", gate)
	}
	script := fmt.Sprintf("#!/bin/sh\n%s\nexec %s \"$@\"\n", wait, real)
	if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
