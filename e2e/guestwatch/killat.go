package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"luksdock/internal/procwatch"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// KillReport is what `guestwatch killat` saw. The e2e test decodes it with
// the same field names.
type KillReport struct {
	Command []string `json:"command"`
	Trigger string   `json:"trigger"`
	// Fired is false when the trigger never matched (CMD ran to its end).
	Fired bool `json:"fired"`
	// FiredBy is the event line or the descendant's command line that
	// matched.
	FiredBy string `json:"fired_by,omitempty"`
	// Alive says CMD was still running (it existed and was not a zombie)
	// just before the SIGKILL was sent.
	Alive   bool   `json:"alive"`
	KillErr string `json:"kill_err,omitempty"`
	// KillDelayMS is the time from the trigger matching to the SIGKILL
	// (-after plus the helper's own latency).
	KillDelayMS float64 `json:"kill_delay_ms"`
	// Events are CMD's JSON event lines in order; BeforeKill is false for
	// those read after the SIGKILL (written by CMD before it died, still in
	// the pipe).
	Events []KillEvent `json:"events"`
	// Children are CMD's descendants when it was killed (orphaned by the
	// SIGKILL, not killed) and how long each lived on.
	Children []KillChild `json:"children"`
	// DMAtKill are the device-mapper mappings just before the SIGKILL;
	// DMAtExit those when CMD had been reaped.
	DMAtKill []string `json:"dm_at_kill"`
	DMAtExit []string `json:"dm_at_exit"`
	// ExitCode is CMD's exit status, 128+N for a signal N.
	ExitCode int `json:"exit_code"`
	// With -exe: the matched descendant (the real tool, by /proc/PID/exe).
	// With -progress write: the disk's written sectors (/sys/block/DISK/
	// stat) when the tool was first seen and when the kill was decided,
	// and the tool's wchar then. With -progress read: the bytes the tool
	// had read (rchar) since it was first seen holding the disk open.
	ToolPID         int    `json:"tool_pid,omitempty"`
	ToolExe         string `json:"tool_exe,omitempty"`
	ToolAliveAtKill bool   `json:"tool_alive_at_kill,omitempty"`
	DiskSectorsSeen int64  `json:"disk_sectors_seen,omitempty"`
	DiskSectorsKill int64  `json:"disk_sectors_kill,omitempty"`
	ToolIOBytes     int64  `json:"tool_io_bytes,omitempty"`
}

// KillEvent is one JSON event line of CMD.
type KillEvent struct {
	Event      string `json:"event"`
	Step       string `json:"step,omitempty"`
	State      string `json:"state,omitempty"`
	BeforeKill bool   `json:"before_kill"`
}

// KillChild is one descendant of CMD at the kill.
type KillChild struct {
	PID     int    `json:"pid"`
	Comm    string `json:"comm"`
	Exe     string `json:"exe"`
	Cmdline string `json:"cmdline"`
	// GoneAfterS is how long after the SIGKILL it was gone (reaped or a
	// zombie); Left is set if it was still running when -orphans expired.
	GoneAfterS float64 `json:"gone_after_s"`
	Left       bool    `json:"left"`
	start      string
}

func killatCmd(args []string) int {
	fs := flag.NewFlagSet("killat", flag.ExitOnError)
	out := fs.String("out", "", "write the JSON report here")
	event := fs.String("event", "", "kill at this JSON event kind (start, done)")
	step := fs.String("step", "", "... of this step")
	child := fs.String("child", "", "kill when a descendant's command line matches this regular expression")
	after := fs.Duration("after", 0, "wait this long after the trigger before killing")
	orphans := fs.Duration("orphans", 30*time.Second, "how long to wait for the orphaned descendants to end")
	alsoComm := fs.String("also-comm", "", "at the kill, first SIGKILL every descendant with this process name (comm)")
	exeRe := fs.String("exe", "", "with -child: the descendant must be running a binary whose name matches this regular expression (/proc/PID/exe: the real tool, not a shim)")
	progress := fs.String("progress", "", "with -exe: kill only once the tool has done I/O on the disk: write (the disk's written sectors grew since the tool was seen) or read")
	diskName := fs.String("disk", "", "with -progress: the disk (sda) whose /sys/block/DISK/stat counts the I/O")
	killedFile := fs.String("killed-file", "", "create this file right after the kill (before the orphans are waited for)")
	pauseEvent := fs.String("pause-event", "", "stop CMD (SIGSTOP) at this JSON event kind, and write its pid to -pause-file; the scenario continues it (kill -CONT) once it has changed the dock")
	pauseStep := fs.String("pause-step", "", "... of this step")
	pauseFile := fs.String("pause-file", "", "with -pause-event: where CMD's pid goes once it is stopped")
	fs.Parse(args)
	if (*pauseEvent == "") != (*pauseFile == "") || (*pauseEvent == "") != (*pauseStep == "") {
		usage()
	}
	cmdArgs := fs.Args()
	if *out == "" || len(cmdArgs) == 0 || (*child == "") == (*event == "" || *step == "") {
		usage()
	}
	var childRe *regexp.Regexp
	if *child != "" {
		var err error
		if childRe, err = regexp.Compile(*child); err != nil {
			fmt.Fprintf(os.Stderr, "guestwatch: -child: %v\n", err)
			return 2
		}
	}
	var exeMatch *regexp.Regexp
	if *exeRe != "" {
		var err error
		if exeMatch, err = regexp.Compile("^(?:" + *exeRe + ")$"); err != nil {
			fmt.Fprintf(os.Stderr, "guestwatch: -exe: %v\n", err)
			return 2
		}
	}
	if (*progress != "") != (*diskName != "") || *progress != "" && *progress != "write" && *progress != "read" || *progress != "" && exeMatch == nil {
		usage()
	}
	rep := KillReport{Command: cmdArgs, Trigger: "child " + *child}
	if *event != "" {
		rep.Trigger = *event + " " + *step
	}

	cmd, stdout, rc := startPiped(cmdArgs)
	if rc != 0 {
		return rc
	}
	pid := cmd.Process.Pid

	var mu sync.Mutex
	killed := false
	var killedAt time.Time
	var once sync.Once
	// fire kills CMD (once), recording what was there at that moment.
	fire := func(by string) {
		once.Do(func() {
			t0 := time.Now()
			if *after > 0 {
				time.Sleep(*after)
			}
			// CMD stopped first, so the children recorded are all it
			// has: one forked between the look and the SIGKILL would
			// escape the check that every orphan ends by itself.
			syscall.Kill(pid, syscall.SIGSTOP)
			procwatch.WaitStopped(pid, 200*time.Millisecond)
			kids := descendants(pid)[1:]
			var cs []KillChild
			for _, k := range kids {
				c := KillChild{PID: k.pid}
				c.Comm, c.Exe, c.Cmdline, c.start = procInfo(k.pid)
				if c.start != "" {
					cs = append(cs, c)
				}
			}
			dm := dmNames()
			alive := procAlive(pid)
			mu.Lock()
			if rep.ToolPID != 0 {
				exe, _ := os.Readlink("/proc/" + strconv.Itoa(rep.ToolPID) + "/exe")
				rep.ToolAliveAtKill = procAlive(rep.ToolPID) && exe == rep.ToolExe

			}
			mu.Unlock()
			if *alsoComm != "" {
				for _, c := range cs {
					if c.Comm == *alsoComm {
						syscall.Kill(c.PID, syscall.SIGKILL)
					}
				}
			}
			kerr := syscall.Kill(pid, syscall.SIGKILL)
			now := time.Now()
			if *killedFile != "" {
				os.WriteFile(*killedFile, nil, 0o600)
			}
			mu.Lock()
			killed, killedAt = true, now
			rep.Fired, rep.FiredBy, rep.Alive = true, by, alive
			rep.KillDelayMS = float64(now.Sub(t0).Microseconds()) / 1000
			rep.Children, rep.DMAtKill = cs, dm
			if kerr != nil {
				rep.KillErr = kerr.Error()
			}
			mu.Unlock()
		})
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	readBase := int64(-1) // -progress read: the tool's rchar when first seen holding the disk
	if childRe != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, k := range descendants(pid)[1:] {
					b, err := os.ReadFile("/proc/" + strconv.Itoa(k.pid) + "/cmdline")
					if err != nil {
						continue
					}
					cl := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
					if !childRe.MatchString(cl) {
						continue
					}
					if exeMatch != nil {
						exe, _ := os.Readlink("/proc/" + strconv.Itoa(k.pid) + "/exe")
						if !exeMatch.MatchString(filepath.Base(exe)) {
							continue // a shim, or the tool not yet exec'd
						}
						if rep.ToolPID != k.pid {
							mu.Lock()
							rep.ToolPID, rep.ToolExe = k.pid, exe
							if *progress != "" {
								rep.DiskSectorsSeen = diskSectors(*diskName, *progress)
							}
							mu.Unlock()
						}
						switch *progress {
						case "write":
							// Work begun: the disk's written sectors
							// grew by at least 8 (4 KiB) since the tool
							// was seen.
							if diskSectors(*diskName, "write") < rep.DiskSectorsSeen+8 {
								continue
							}
							mu.Lock()
							rep.ToolIOBytes = procIOCounter(k.pid, "wchar")
							rep.DiskSectorsKill = diskSectors(*diskName, "write")
							mu.Unlock()
						case "read":
							// Work begun: the tool holds the disk (or
							// a mapping of it) open and has read 4 KiB
							// since it was first seen to hold it (what
							// it reads may come from the page cache, so
							// the disk's own counter cannot tell).
							if !holdsDisk(k.pid, *diskName) {
								continue
							}
							r := procIOCounter(k.pid, "rchar")
							if readBase < 0 {
								readBase = r
								continue
							}
							if r < readBase+4096 {
								continue
							}
							mu.Lock()
							rep.ToolIOBytes = r - readBase
							mu.Unlock()
						}
					}
					fire(cl)
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	// The event lines: matched before they are passed on, so the kill
	// follows the line as closely as this helper can.
	var fwg sync.WaitGroup // a kill -after the event, still to come
	paused := false
	forwardEvents(stdout, func(line []byte, e lineEvent) {
		if e.Event == "" {
			return
		}
		if !paused && *pauseEvent != "" && e.Event == *pauseEvent && e.Step == *pauseStep {
			paused = true
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				fmt.Fprintf(os.Stderr, "guestwatch: stopping %d: %v\n", pid, err)
			} else if err := writeAtomic(*pauseFile, strconv.Itoa(pid)+"\n"); err != nil {
				fmt.Fprintf(os.Stderr, "guestwatch: %v\n", err)
			}
		}
		mu.Lock()
		rep.Events = append(rep.Events, KillEvent{Event: e.Event, Step: e.Step, State: e.State, BeforeKill: !killed})
		mu.Unlock()
		if childRe == nil && e.Event == *event && e.Step == *step {
			by := strings.TrimSpace(string(line))
			if *after > 0 {
				// Keep reading meanwhile, so what CMD reports
				// before the kill is known as such.
				fwg.Add(1)
				go func() { defer fwg.Done(); fire(by) }()
			} else {
				fire(by)
			}
		}
	})
	// Before CMD is reaped, so a late kill cannot reach a reused pid.
	fwg.Wait()
	werr := cmd.Wait()
	close(stop)
	wg.Wait()
	rep.DMAtExit = dmNames()
	rep.ExitCode = exitStatus(werr)
	// The orphans: each must end by itself (the test judges how soon).
	deadline := time.Now().Add(*orphans)
	for i := range rep.Children {
		c := &rep.Children[i]
		for {
			if _, _, _, st := procInfo(c.PID); st != c.start || !procAlive(c.PID) {
				c.GoneAfterS = time.Since(killedAt).Seconds()
				break
			}
			if time.Now().After(deadline) {
				c.Left = true
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	b, err := json.Marshal(&rep)
	if err == nil {
		err = os.WriteFile(*out, b, 0o600)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: writing the report: %v\n", err)
		return 125
	}
	return 0
}

// procAlive reports whether pid exists and is not a zombie.
func procAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return false
}

// procInfo returns pid's comm, executable, command line (arguments joined by
// spaces) and start time (its identity against pid reuse); all empty when it
// is gone.
func procInfo(pid int) (comm, exe, cmdline, start string) {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	st, err := os.ReadFile(dir + "stat")
	if err != nil {
		return "", "", "", ""
	}
	s := string(st)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		if f := strings.Fields(s[i+1:]); len(f) > 19 {
			start = f[19] // field 22 of stat: starttime
		}
	}
	c, _ := os.ReadFile(dir + "comm")
	exe, _ = os.Readlink(dir + "exe")
	cl, _ := os.ReadFile(dir + "cmdline")
	return strings.TrimSpace(string(c)), exe, strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " ")), start
}

// dmNames lists the device-mapper mappings by name from sysfs (no exec, so
// it costs microseconds next to the kill).
func dmNames() []string {
	m, _ := filepath.Glob("/sys/block/dm-*/dm/name")
	names := []string{}
	for _, p := range m {
		if b, err := os.ReadFile(p); err == nil {
			names = append(names, strings.TrimSpace(string(b)))
		}
	}
	sort.Strings(names)
	return names
}

// diskSectors is the number of sectors written ("write") or read ("read")
// on the disk, from /sys/block/DISK/stat (fields 7 and 3).
func diskSectors(disk, what string) int64 {
	b, err := os.ReadFile("/sys/block/" + disk + "/stat")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	i := 6
	if what == "read" {
		i = 2
	}
	if len(f) <= i {
		return -1
	}
	n, _ := strconv.ParseInt(f[i], 10, 64)
	return n
}

// procIOCounter reads one counter of /proc/PID/io (wchar, rchar).
func procIOCounter(pid int, key string) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return -1
}

// holdsDisk says whether pid has the disk, one of its partitions or a
// device-mapper device open.
func holdsDisk(pid int, disk string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		l, _ := os.Readlink(dir + e.Name())
		if strings.HasPrefix(l, "/dev/"+disk) || strings.HasPrefix(l, "/dev/dm-") || strings.HasPrefix(l, "/dev/mapper/") {
			return true
		}
	}
	return false
}
