// Package procmem reads another process's memory for the secret-in-memory
// tests (reliability/memory_test.go on the host, e2e/guestwatch in the
// QEMU guest): every readable mapping that could hold data (/proc/PID/mem),
// with whether it is locked (smaps VmFlags "lo"), and the process's VmLck.
// RunTraced runs a program under ptrace so that its memory can be read at
// its exit, after everything it does on the way out (deferred wipes) has
// run. It judges nothing: the tests say what may be found where.
package procmem

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Region is a run of pages of one mapping that are not all zero (pages of
// zeros hold no secret and are left out, so that a snapshot stays small).
type Region struct {
	Start  uint64
	Name   string // the mapping's name ("" for anonymous memory)
	Locked bool   // VmFlags has "lo": mlock'd
	Data   []byte
}

// Snapshot is one process's memory at one moment.
type Snapshot struct {
	PID     int
	VmLck   string // /proc/PID/status VmLck, e.g. "8 kB"
	Regions []Region
	Size    int64 // bytes read (zero pages included)
}

// VmLckKB is VmLck in KiB.
func (s *Snapshot) VmLckKB() int {
	n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(s.VmLck, "kB")))
	return n
}

type mapping struct {
	start, end uint64
	perms      string
	name       string
	flags      string
}

// Read reads pid's memory: pid may be a process or one of its threads
// (needed at an exit stop, when the leader may have let go of the memory
// already). Mappings of files that are not writable (the program and its
// libraries) are skipped: no secret is in them.
func Read(pid int) (*Snapshot, error) { return read(pid, nil) }

// read is Read of the mappings keep accepts (all when keep is nil).
func read(pid int, keep func(start, end uint64) bool) (*Snapshot, error) {
	s := &Snapshot{PID: pid}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmLck:"); ok {
			s.VmLck = strings.TrimSpace(v)
		}
	}
	sm, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return nil, err
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return nil, err
	}
	defer mem.Close()
	maps := parseSmaps(sm)
	buf := make([]byte, 1<<20)
	for _, m := range maps {
		if !m.secretMayLive() || keep != nil && !keep(m.start, m.end) {
			continue
		}
		s.readMapping(mem, m, buf)
	}
	if s.Size == 0 {
		return nil, errors.New("no readable memory")
	}
	return s, nil
}

// parseSmaps reads the mappings of /proc/PID/smaps, with their VmFlags.
func parseSmaps(sm []byte) []*mapping {
	var maps []*mapping
	sc := bufio.NewScanner(bytes.NewReader(sm))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		f := strings.Fields(l)
		if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
			a, b, _ := strings.Cut(f[0], "-")
			lo, err1 := strconv.ParseUint(a, 16, 64)
			hi, err2 := strconv.ParseUint(b, 16, 64)
			if err1 != nil || err2 != nil {
				continue
			}
			m := &mapping{start: lo, end: hi, perms: f[1]}
			if len(f) >= 6 {
				m.name = strings.Join(f[5:], " ")
			}
			maps = append(maps, m)
			continue
		}
		if v, ok := strings.CutPrefix(l, "VmFlags:"); ok && len(maps) > 0 {
			maps[len(maps)-1].flags = " " + strings.TrimSpace(v) + " "
		}
	}
	return maps
}

// secretMayLive says whether m is read: readable, not the kernel's
// [vvar]/[vsyscall], and not a file mapped read-only (the program and its
// libraries).
func (m *mapping) secretMayLive() bool {
	if m.perms[0] != 'r' || m.name == "[vvar]" || m.name == "[vsyscall]" || m.name == "[vvar_vclock]" {
		return false
	}
	return m.perms[1] == 'w' || m.name == "" || strings.HasPrefix(m.name, "[")
}

// readMapping adds m's pages that are not all zeros to s, as regions of
// consecutive such pages.
func (s *Snapshot) readMapping(mem *os.File, m *mapping, buf []byte) {
	const page = 4096
	zero := make([]byte, page)
	locked := strings.Contains(m.flags, " lo ")
	var cur *Region
	for off := m.start; off < m.end; off += uint64(len(buf)) {
		b := buf[:min(uint64(len(buf)), m.end-off)]
		n, _ := mem.ReadAt(b, int64(off))
		s.Size += int64(n)
		for p := 0; p < n; p += page {
			pg := b[p:min(p+page, n)]
			if bytes.Equal(pg, zero[:len(pg)]) {
				cur = nil
				continue
			}
			if cur == nil {
				s.Regions = append(s.Regions, Region{Start: off + uint64(p), Name: m.name, Locked: locked})
				cur = &s.Regions[len(s.Regions)-1]
			}
			cur.Data = append(cur.Data, pg...)
		}
		if n < len(b) {
			return // the rest is not readable
		}
	}
}

// Hit is one copy of a form found in a snapshot.
type Hit struct {
	Form    string `json:"form"`
	Addr    uint64 `json:"addr"`
	Region  string `json:"region"`
	Locked  bool   `json:"locked"`
	Context string `json:"context"` // the bytes around it (%q), to tell what holds it
}

// Find returns every occurrence of every form, sorted by form and address.
func (s *Snapshot) Find(forms map[string][]byte) []Hit {
	var hits []Hit
	for _, r := range s.Regions {
		for name, f := range forms {
			if len(f) == 0 {
				continue
			}
			for off := 0; ; {
				i := bytes.Index(r.Data[off:], f)
				if i < 0 {
					break
				}
				at := off + i
				ctx := fmt.Sprintf("%q", r.Data[max(at-48, 0):min(at+len(f)+48, len(r.Data))])
				hits = append(hits, Hit{Form: name, Addr: r.Start + uint64(at), Region: r.Name, Locked: r.Locked, Context: ctx})
				off = at + 1
			}
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		return hits[i].Form < hits[j].Form || hits[i].Form == hits[j].Form && hits[i].Addr < hits[j].Addr
	})
	return hits
}

// RunTraced starts path (argv, attr) under ptrace, every thread traced
// (PTRACE_O_TRACECLONE) and stopped at its exit (PTRACE_O_TRACEEXIT), and
// waits for it. started is called with its pid once it runs; atExit with
// the thread id of the first exit stop, with the process's memory still in
// place (Go's os.Exit calls exit_group from whichever thread runs the main
// goroutine: that thread stops first). It returns the exit status (128+n
// for a signal). Signals are passed on to the program as they come. The
// program dies if this process does (PTRACE_O_EXITKILL). Nothing else in
// this process may wait for children while it runs: it waits with
// wait4(-1), which would take theirs.
func RunTraced(path string, argv []string, attr *os.ProcAttr, started func(pid int), atExit func(tid int)) (int, error) {
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // every ptrace request from this thread
		defer runtime.UnlockOSThread()
		a := *attr
		sys := syscall.SysProcAttr{}
		if a.Sys != nil {
			sys = *a.Sys
		}
		sys.Ptrace = true
		a.Sys = &sys
		p, err := os.StartProcess(path, argv, &a)
		if err != nil {
			done <- result{-1, err}
			return
		}
		pid := p.Pid
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
			done <- result{-1, fmt.Errorf("no stop at exec: %v %v", err, ws)}
			return
		}
		if err := unix.PtraceSetOptions(pid, unix.PTRACE_O_TRACECLONE|unix.PTRACE_O_TRACEEXIT|unix.PTRACE_O_EXITKILL); err != nil {
			p.Kill()
			done <- result{-1, err}
			return
		}
		unix.PtraceCont(pid, 0)
		if started != nil {
			started(pid)
		}
		exited := false
		for {
			tid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				done <- result{-1, fmt.Errorf("waiting for %d: %w", pid, err)}
				return
			}
			switch {
			case ws.Exited() || ws.Signaled():
				if tid == pid {
					if ws.Exited() {
						done <- result{ws.ExitStatus(), nil}
					} else {
						done <- result{128 + int(ws.Signal()), nil}
					}
					return
				}
			case ws.Stopped():
				sig := ws.StopSignal()
				switch {
				case sig == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_EXIT:
					if !exited && atExit != nil {
						exited = true
						atExit(tid)
					}
					unix.PtraceCont(tid, 0)
				case sig == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_CLONE:
					unix.PtraceCont(tid, 0)
				case sig == unix.SIGSTOP:
					// a new thread's first stop (nothing sends the
					// program SIGSTOP)
					unix.PtraceCont(tid, 0)
				default:
					unix.PtraceCont(tid, int(sig))
				}
			}
		}
	}()
	r := <-done
	return r.code, r.err
}

// Forms are the forms of the secrets the memory tests search for: the
// passphrase; the recovery key as printed, without dashes and as its 32
// bytes (rk may be nil); the volume key, each of its halves (one AES-256
// key each), in hex, and each line of cryptsetup's luksDump printout of it
// ("xx xx ..." 16 bytes a line).
func Forms(pass, rk, key []byte) map[string][]byte {
	f := map[string][]byte{"passphrase": pass}
	if len(rk) > 0 {
		bare := bytes.ReplaceAll(rk, []byte("-"), nil)
		raw := make([]byte, len(bare)/2)
		for i := range raw {
			raw[i] = byte(strings.IndexByte(modhex, bare[2*i]))<<4 | byte(strings.IndexByte(modhex, bare[2*i+1]))
		}
		f["recovery key"], f["recovery key bare"], f["recovery key bytes"] = rk, bare, raw
	}
	if len(key) == 64 {
		f["volume key"] = key
		f["volume key first half"], f["volume key second half"] = key[:32], key[32:]
		f["volume key hex"] = []byte(fmt.Sprintf("%x", key))
		f["volume key hex (halves)"] = []byte(fmt.Sprintf("%x", key[:32]))
		for i := 0; i < len(key); i += 16 {
			f[fmt.Sprintf("volume key luksDump line %d", i/16+1)] = []byte(strings.TrimSpace(fmt.Sprintf("% x", key[i:i+16])))
		}
	}
	return f
}

// modhex is the recovery key's alphabet (recovery.Alphabet).
const modhex = "cbdefghijklnrtuv"
