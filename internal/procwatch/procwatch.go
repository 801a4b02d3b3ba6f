// Package procwatch holds the two low-level readers that the secret-hygiene
// watchers share (the host tests in reliability/ and the QEMU guest helper
// e2e/guestwatch): decoding pending inotify events, and reading the process
// table from /proc (pid, ppid, comm) to walk a process's descendants; and
// a process's peak RSS, which the benchmarks read.
//
// It uses only the standard library and golang.org/x/sys/unix (no cgo), so
// guestwatch still builds as a static binary.
package procwatch

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event is one inotify event: the watch descriptor it came from, the name
// of the entry in the watched directory ("" for events on the directory
// itself) and the event mask (unix.IN_*).
type Event struct {
	Wd   int32
	Name string
	Mask uint32
}

// ReadEvents reads the events pending on the inotify descriptor fd (opened
// with unix.IN_NONBLOCK) and calls fn for each, in order, until a read
// returns nothing or fails.
func ReadEvents(fd int, fn func(Event)) {
	var buf [64 << 10]byte
	for {
		n, err := unix.Read(fd, buf[:])
		if n <= 0 || err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			start := off + unix.SizeofInotifyEvent
			end := start + int(ev.Len)
			if end > n {
				return
			}
			fn(Event{Wd: ev.Wd, Name: string(bytes.TrimRight(buf[start:end], "\x00")), Mask: ev.Mask})
			off = end
		}
	}
}

// Proc is a process as /proc/PID/stat shows it.
type Proc struct {
	PID, PPID int
	// Comm is the command name (at most 15 bytes; it may hold spaces and
	// parentheses).
	Comm string
}

// Scan reads every process in /proc, in the order /proc lists them.
// Processes that go away during the scan are left out.
func Scan() []Proc {
	ents, _ := os.ReadDir("/proc")
	out := make([]Proc, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		ppid, comm, ok := parseStat(b)
		if !ok {
			continue
		}
		out = append(out, Proc{PID: pid, PPID: ppid, Comm: comm})
	}
	return out
}

// parseStat returns the ppid and comm of a /proc/PID/stat line,
// "PID (COMM) STATE PPID ...". COMM may itself hold ')', so it runs to the
// last one.
func parseStat(b []byte) (ppid int, comm string, ok bool) {
	l, r := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if l < 0 || r < l {
		return 0, "", false
	}
	f := bytes.Fields(b[r+1:])
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, _ = strconv.Atoi(string(f[1]))
	return ppid, string(b[l+1 : r]), true
}

// Descendants returns root's descendants in ps (not root itself), breadth
// first, each process's children in the order of ps.
func Descendants(ps []Proc, root int) []Proc {
	kids := map[int][]Proc{}
	for _, p := range ps {
		kids[p.PPID] = append(kids[p.PPID], p)
	}
	var out []Proc
	seen := map[int]bool{root: true} // a scan is not atomic: no loops
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		for _, c := range kids[queue[0]] {
			if !seen[c.PID] {
				seen[c.PID] = true
				out = append(out, c)
				queue = append(queue, c.PID)
			}
		}
	}
	return out
}

// PeakRSS is the peak resident set size (VmHWM of /proc/PID/status) of
// process pid in bytes, or -1 if it cannot be read (the process is gone).
func PeakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return kb * 1024
		}
	}
	return -1
}

// Children lists pid's child processes from /proc/PID/task/TID/children
// (each thread's own children: a Go program forks from any of its
// threads): a few small reads, where Scan reads every process. nil when
// pid is gone or the kernel lacks CONFIG_PROC_CHILDREN (then use Scan).
func Children(pid int) []int {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(dir + t.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Alive reports whether pid exists and is not a zombie (an exited process
// its parent has not yet reaped).
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	r := bytes.LastIndexByte(b, ')')
	return r > 0 && len(b) > r+2 && b[r+2] != 'Z'
}

// Comm is the command name of pid ("" when it is gone).
func Comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// WaitStopped waits, at most for limit, until every thread of pid is
// stopped (state T or t: a SIGSTOP or a ptrace stop) or pid is gone, so
// that what is read of it next (its children, its counters) no longer
// changes under the reader.
func WaitStopped(pid int, limit time.Duration) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task/"
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(100 * time.Microsecond) {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		all := true
		for _, t := range tasks {
			b, err := os.ReadFile(dir + t.Name() + "/stat")
			if err != nil {
				continue // a thread that just ended
			}
			if st := stateOf(b); st != 'T' && st != 't' && st != 'Z' {
				all = false
				break
			}
		}
		if all {
			return
		}
	}
}

// stateOf is the state letter of a /proc/PID/stat line (0 if unreadable).
func stateOf(b []byte) byte {
	r := bytes.LastIndexByte(b, ')')
	if r < 0 || r+2 >= len(b) {
		return 0
	}
	return b[r+2]
}
