package procmem

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"luksdock/internal/procwatch"
)

// VolumeServer is the command name of luksdock's volume server (the
// userspace engine's process that holds the volume key), whose memory the
// tests read beside luksdock's own.
const VolumeServer = "luksdock-volume"

// RunTracedStops is RunTraced that also lets the caller look while the
// program's tools run. shims is a directory of scripts, one per tool, that
// stop themselves (SIGSTOP) before they exec the real tool; the caller puts
// it first in the program's PATH. Each time a descendant of the program
// that runs a script from shims is stopped, atStop is called with the
// tool's name and the program's pid, and then the script is continued
// (SIGCONT). The same rule as RunTraced: nothing else in this process may
// wait for children while it runs.
func RunTracedStops(path string, argv []string, attr *os.ProcAttr, shims string, started func(pid int), atStop func(tool string, pid int), atExit func(tid int)) (int, error) {
	pids := make(chan int, 1)
	done := make(chan struct{})
	var code int
	var err error
	go func() {
		defer close(done)
		code, err = RunTraced(path, argv, attr, func(pid int) {
			if started != nil {
				started(pid)
			}
			pids <- pid
		}, atExit)
		if err != nil {
			close(pids)
		}
	}()
	if pid, ok := <-pids; ok {
		dir := filepath.Clean(shims)
		seen := map[int]bool{}
	poll:
		for {
			select {
			case <-done:
				break poll
			default:
			}
			for _, p := range tree(pid) {
				if seen[p] || state(p) != 'T' {
					continue
				}
				b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
				f := strings.Split(string(b), "\x00")
				if len(f) < 2 || filepath.Dir(f[1]) != dir { // a shim runs as "sh SCRIPT ARGS..."
					continue
				}
				seen[p] = true
				if atStop != nil {
					atStop(filepath.Base(f[1]), pid)
				}
				syscall.Kill(p, syscall.SIGCONT)
			}
			time.Sleep(time.Millisecond)
		}
	}
	<-done
	return code, err
}

// VolumeServers lists the volume servers below pid.
func VolumeServers(pid int) []int {
	var out []int
	for _, p := range tree(pid)[1:] {
		if procwatch.Comm(p) == VolumeServer {
			out = append(out, p)
		}
	}
	return out
}

// tree is root and every process below it: from /proc/PID/task/*/children
// (a few small reads, so that polling keeps up in a slow guest), or a scan
// of every process where the kernel lacks that file.
func tree(root int) []int {
	out := []int{root}
	if _, err := os.Stat("/proc/" + strconv.Itoa(root) + "/task/" + strconv.Itoa(root) + "/children"); os.IsNotExist(err) {
		for _, p := range procwatch.Descendants(procwatch.Scan(), root) {
			out = append(out, p.PID)
		}
		return out
	}
	for i := 0; i < len(out); i++ {
		out = append(out, procwatch.Children(out[i])...)
	}
	return out
}

// state is the state letter of /proc/PID/stat (0 when gone).
func state(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	r := strings.LastIndexByte(s, ')')
	if r < 0 || r+2 >= len(s) {
		return 0
	}
	return s[r+2]
}
