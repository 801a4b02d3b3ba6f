package reliability

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/testkit"
	"luksdock/recovery"
)

// The memory test: where the secrets live inside the running luksdock and
// its volume server. It runs the real binary (prepare with a recovery key,
// then verify with both secrets; userspace engine, an image, small KDF
// costs) and reads every readable mapping of the process through
// /proc/PID/mem at fixed points:
//
//   - while mkfs.ext4 runs (prepare; the volume was handed over just
//     before) and while e2fsck runs (prepare's verify step and the verify
//     command; the volume was handed over just before). A shim named after
//     the tool stops itself before it execs the real tool; while it is
//     stopped, luksdock waits for it, and its memory, its volume server's
//     and their VmLck are read; then the shim is continued.
//   - when luksdock exits (after the verify): luksdock runs under ptrace
//     (PTRACE_O_TRACEEXIT on every thread), and its memory is read at the
//     exit stop, after every deferred wipe has run.
//
// The volume key is learnt afterwards with cryptsetup luksDump
// --dump-volume-key on the image (the passphrase on standard input), so the
// snapshots are kept in this process's memory and scanned at the end. Every
// form of every secret found is counted with where it lies. The rule:
//
//   - outside memory locked by mlock (smaps VmFlags "lo") no copy of any
//     secret, in luksdock or in the volume server, at any point; the only
//     exception is the server's AES key schedules, which begin with one
//     half of the key each, so the halves are not searched in the server;
//   - at the exit stop no copy at all, locked or not;
//   - VmLck > 0 in /proc/PID/status of luksdock while it holds a secret (the
//     tool points) and of the volume server.

// memRegion is one readable mapping's bytes.
type memRegion struct {
	start  uint64
	name   string
	locked bool // VmFlags has "lo"
	dump   bool // VmFlags lacks "dd": it would be in a core dump
	data   []byte
}

// memSnap is one process's memory at one point.
type memSnap struct {
	point, who string
	pid        int
	vmLck      string // /proc/PID/status VmLck
	regions    []memRegion
	size       int
	err        error
}

// readMem reads every readable mapping of pid (a process, or a thread id
// whose memory is the process's) with its smaps flags.
func readMem(pid int) (*memSnap, error) {
	s := &memSnap{pid: pid}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmLck:"); ok {
			s.vmLck = strings.TrimSpace(v)
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
	type mapping struct {
		start, end uint64
		perms      string
		name       string
		flags      string
	}
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
	for _, m := range maps {
		if m.perms[0] != 'r' || m.name == "[vvar]" || m.name == "[vsyscall]" || m.name == "[vvar_vclock]" {
			continue
		}
		// File mappings that are not writable hold the program and
		// libraries: no secret can be in them.
		if m.perms[1] != 'w' && m.name != "" && !strings.HasPrefix(m.name, "[") {
			continue
		}
		buf := make([]byte, m.end-m.start)
		n, _ := mem.ReadAt(buf, int64(m.start))
		s.regions = append(s.regions, memRegion{start: m.start, name: m.name, locked: strings.Contains(m.flags, " lo "), dump: !strings.Contains(m.flags, " dd "), data: buf[:n]})
		s.size += n
	}
	if s.size == 0 {
		return nil, errors.New("no readable memory")
	}
	return s, nil
}

// memHit is one copy of a secret found in a snapshot.
type memHit struct {
	form    string
	addr    uint64
	region  string
	locked  bool
	context string // the bytes around it, to tell what holds it
}

func (s *memSnap) find(forms map[string][]byte) []memHit {
	var hits []memHit
	for _, r := range s.regions {
		for name, f := range forms {
			if len(f) == 0 {
				continue
			}
			for off := 0; ; {
				i := bytes.Index(r.data[off:], f)
				if i < 0 {
					break
				}
				at := off + i
				ctx := fmt.Sprintf("%q", r.data[max(at-48, 0):min(at+len(f)+48, len(r.data))])
				hits = append(hits, memHit{form: name, addr: r.start + uint64(at), region: r.name, locked: r.locked, context: ctx})
				off += i + 1
			}
		}
	}
	sort.Slice(hits, func(i, j int) bool {
		return hits[i].form < hits[j].form || hits[i].form == hits[j].form && hits[i].addr < hits[j].addr
	})
	return hits
}

// stopTools makes shims that stop themselves (SIGSTOP) right before they
// exec the real tool.
func stopTools(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		sh := stopShim(t, tool)
		if err := os.Rename(filepath.Join(sh, tool), filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tracedRun runs luksdock under ptrace so that its memory can be read at
// its exit, and calls atStop with every stopped tool shim (a descendant of
// luksdock in state T running a shim from shims) before continuing it.
// Tracing every thread is needed because Go's os.Exit runs on whichever
// thread holds the main goroutine; the exit stop of the thread that calls
// exit_group keeps the memory in place while it is read. It must not run
// beside other tests (it waits for any traced thread with wait4(-1)).
func tracedRun(t *testing.T, tmpdir, shims string, stdin []byte, atStop func(tool string, pid int), args ...string) (result, *memSnap) {
	t.Helper()
	env := caseEnv(tmpdir)
	env[0] = "PATH=" + shims + ":" + strings.TrimPrefix(env[0], "PATH=")
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	var so, se bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(&so, outR) }()
	go func() { defer wg.Done(); io.Copy(&se, errR) }()
	go func() { inW.Write(stdin); inW.Close() }()

	type exitInfo struct {
		code int
		snap *memSnap
		err  error
	}
	done := make(chan exitInfo, 1)
	started := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // every ptrace request from this thread
		defer runtime.UnlockOSThread()
		p, err := os.StartProcess(bin, append([]string{bin}, args...), &os.ProcAttr{
			Env: env, Files: []*os.File{inR, outW, errW},
			Sys: &syscall.SysProcAttr{Ptrace: true},
		})
		inR.Close()
		outW.Close()
		errW.Close()
		if err != nil {
			started <- 0
			done <- exitInfo{err: err}
			return
		}
		pid := p.Pid
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
			started <- 0
			done <- exitInfo{err: fmt.Errorf("no stop at exec: %v %v", err, ws)}
			return
		}
		if err := unix.PtraceSetOptions(pid, unix.PTRACE_O_TRACECLONE|unix.PTRACE_O_TRACEEXIT|unix.PTRACE_O_EXITKILL); err != nil {
			started <- 0
			done <- exitInfo{err: err}
			return
		}
		unix.PtraceCont(pid, 0)
		started <- pid
		var info exitInfo
		info.code = -1
		for {
			tid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				break // ECHILD: all gone
			}
			switch {
			case ws.Exited() || ws.Signaled():
				if tid == pid {
					if ws.Exited() {
						info.code = ws.ExitStatus()
					} else {
						info.code = 128 + int(ws.Signal())
					}
					done <- info
					return
				}
			case ws.Stopped():
				sig := ws.StopSignal()
				switch {
				case sig == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_EXIT:
					if info.snap == nil && info.err == nil {
						// The thread that calls exit_group stops first,
						// with the memory still in place.
						info.snap, info.err = readMem(tid)
					}
					unix.PtraceCont(tid, 0)
				case sig == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_CLONE:
					unix.PtraceCont(tid, 0)
				case sig == unix.SIGSTOP:
					// a new thread's first stop (nothing here sends
					// luksdock SIGSTOP)
					unix.PtraceCont(tid, 0)
				default:
					unix.PtraceCont(tid, int(sig))
				}
			}
		}
		done <- info
	}()
	pid := <-started
	var info exitInfo
	if pid != 0 {
		// Continue the stopped shims after atStop has looked.
		seen := map[int]bool{}
	poll:
		for {
			select {
			case info = <-done:
				break poll
			default:
			}
			for _, p := range descendants(pid) {
				if seen[p.PID] || procState(p.PID) != 'T' {
					continue
				}
				cmd := readCmdline(p.PID)
				if !strings.Contains(cmd, shims+"/") {
					continue
				}
				seen[p.PID] = true
				tool := filepath.Base(strings.Fields(strings.ReplaceAll(cmd, "\x00", " "))[1])
				atStop(tool, pid)
				syscall.Kill(p.PID, syscall.SIGCONT)
			}
			time.Sleep(2 * time.Millisecond)
		}
	} else {
		info = <-done
	}
	wg.Wait()
	if info.err != nil && info.snap == nil && pid == 0 {
		t.Fatalf("running luksdock under ptrace: %v", info.err)
	}
	if info.err != nil {
		t.Errorf("reading luksdock's memory at its exit: %v", info.err)
	}
	return result{code: info.code, stdout: so.String(), stderr: se.String()}, info.snap
}

// modhexBytes decodes a recovery key's characters to its 32 random bytes.
func modhexBytes(rk []byte) []byte {
	bare := bytes.ReplaceAll(rk, []byte("-"), nil)
	out := make([]byte, len(bare)/2)
	for i := range out {
		out[i] = byte(strings.IndexByte(recovery.Alphabet, bare[2*i]))<<4 | byte(strings.IndexByte(recovery.Alphabet, bare[2*i+1]))
	}
	return out
}

// memoryForms are the forms searched in memory: the passphrase; the
// recovery key as printed, without dashes and as its 32 bytes; the volume
// key, each of its halves (one AES-256 key each), in hex, and each line of
// cryptsetup's luksDump printout of it ("xx xx ..." 16 bytes a line).
func memoryForms(pass string, rk, key []byte) map[string][]byte {
	f := map[string][]byte{
		"passphrase":              []byte(pass),
		"recovery key":            rk,
		"recovery key bare":       bytes.ReplaceAll(rk, []byte("-"), nil),
		"recovery key bytes":      modhexBytes(rk),
		"volume key":              key,
		"volume key first half":   key[:32],
		"volume key second half":  key[32:],
		"volume key hex":          []byte(hex.EncodeToString(key)),
		"volume key hex (halves)": []byte(hex.EncodeToString(key[:32])),
	}
	for i := 0; i < len(key); i += 16 {
		f[fmt.Sprintf("volume key luksDump line %d", i/16+1)] = []byte(strings.TrimSpace(fmt.Sprintf("% x", key[i:i+16])))
	}
	return f
}

// vmLckKB is the number in a VmLck value ("12 kB").
func vmLckKB(s string) int {
	n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(s, "kB")))
	return n
}

// TestSecretsInMemory: see the top of this file. Both key derivation
// functions, at small costs: PBKDF2 (what the other tests use) and
// Argon2id (cryptsetup's default, with its own working memory).
func TestSecretsInMemory(t *testing.T) {
	requireEnv(t)
	for _, c := range []struct {
		name string
		kdf  []string
	}{
		{"pbkdf2", lowCost},
		{"argon2id", []string{"--pbkdf", "argon2id", "--pbkdf-memory", "16384", "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "2"}},
	} {
		t.Run(c.name, func(t *testing.T) { secretsInMemory(t, c.kdf) })
	}
}

func secretsInMemory(t *testing.T, kdf []string) {
	dir, tmpdir := t.TempDir(), t.TempDir()
	img := filepath.Join(dir, "disk.img")
	pf := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pf, []byte(testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rkFile := filepath.Join(t.TempDir(), "backups01.recovery")
	os.MkdirAll(invDir, 0o700)
	shims := stopTools(t, "mkfs.ext4", "e2fsck")

	var mu sync.Mutex
	var snaps []*memSnap
	take := func(run string) func(tool string, pid int) {
		return func(tool string, pid int) {
			point := run + ", " + tool + " running"
			add := func(who string, p int) {
				s, err := readMem(p)
				if err != nil {
					s = &memSnap{err: err}
				}
				s.point, s.who, s.pid = point, who, p
				mu.Lock()
				snaps = append(snaps, s)
				mu.Unlock()
			}
			add("luksdock", pid)
			for _, d := range descendants(pid) {
				if d.Comm == "luksdock-volume" {
					add("volume server", d.PID)
				}
			}
		}
	}
	args := []string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", pf, "--confirm", filepath.Base(img),
		"--json", "--recovery-key", rkFile, "--engine", "userspace", "--size", "96M"}
	args = append(args, kdf...)
	pr, pexit := tracedRun(t, tmpdir, shims, nil, take("prepare"), args...)
	if pr.code != 0 {
		t.Fatalf("prepare: %v", pr)
	}
	vr, vexit := tracedRun(t, tmpdir, shims, []byte(testPass+"\n"), take("verify"), "verify", "--image", img, "--passphrase-file", "-", "--recovery-key-file", rkFile, "--engine", "userspace", "--json")
	if vr.code != 0 {
		t.Fatalf("verify: %v", vr)
	}
	for _, e := range []struct {
		s    *memSnap
		name string
	}{{pexit, "prepare"}, {vexit, "verify"}} {
		if e.s != nil {
			e.s.point, e.s.who = e.name+", at its exit", "luksdock"
			snaps = append(snaps, e.s)
		}
	}

	p1, _ := testkit.Partition1(t, img)
	key, err := testkit.VolumeKey(t, p1, testPass)
	if err != nil || len(key) != 64 {
		t.Fatalf("cryptsetup could not recover a 64-byte volume key: %v", err)
	}
	rk, err := recovery.ReadFile(rkFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	forms := memoryForms(testPass, rk, key)

	// The points that must have been seen: a snapshot proves nothing about
	// a point it missed.
	want := map[string]bool{
		"prepare, mkfs.ext4 running/luksdock": false, "prepare, mkfs.ext4 running/volume server": false,
		"prepare, e2fsck running/luksdock": false, "prepare, e2fsck running/volume server": false,
		"verify, e2fsck running/luksdock": false, "verify, e2fsck running/volume server": false,
		"prepare, at its exit/luksdock": false, "verify, at its exit/luksdock": false,
	}
	for _, s := range snaps {
		if s.err != nil {
			t.Errorf("%s, %s (pid %d): reading its memory: %v", s.point, s.who, s.pid, s.err)
			continue
		}
		k := s.point + "/" + s.who
		if _, ok := want[k]; ok {
			want[k] = true
		}
		hits := s.find(forms)
		atExit := strings.HasSuffix(s.point, "at its exit")
		type tally struct {
			n     int
			first memHit
		}
		counts := map[string]*tally{}
		for _, h := range hits {
			where := "unlocked"
			if h.locked {
				where = "locked"
			}
			if s.who == "volume server" && strings.Contains(h.form, "half") {
				where = "schedule" // the AES key schedules begin with the halves
			}
			k := h.form + " (" + where + ")"
			if counts[k] == nil {
				counts[k] = &tally{first: h}
			}
			counts[k].n++
		}
		var sum []string
		for k, c := range counts {
			sum = append(sum, fmt.Sprintf("%s ×%d", k, c.n))
			switch {
			case strings.HasSuffix(k, "(schedule)"):
			case atExit:
				t.Errorf("%s: %s (pid %d) still holds %d copies of the %s, the first at %#x (%q) in %s", s.point, s.who, s.pid, c.n, k, c.first.addr, c.first.region, c.first.context)
			case !c.first.locked:
				t.Errorf("%s: %s (pid %d) holds %d copies of the %s outside locked memory, the first at %#x (%q) in %s", s.point, s.who, s.pid, c.n, c.first.form, c.first.addr, c.first.region, c.first.context)
			}
		}
		sort.Strings(sum)
		t.Logf("%s: %s (pid %d): %d MiB read, VmLck %s; found: %s", s.point, s.who, s.pid, s.size>>20, s.vmLck, strings.Join(sum, ", "))
		if !atExit && len(hits) > 0 && vmLckKB(s.vmLck) == 0 {
			t.Errorf("%s: %s holds secrets with VmLck %s: nothing is locked in memory", s.point, s.who, s.vmLck)
		}
		if s.who == "volume server" {
			n := 0
			for _, h := range hits {
				if h.form == "volume key" {
					n++
				}
			}
			if n == 0 {
				t.Errorf("control: the volume key is not found in the volume server (pid %d) at %s: the scan finds nothing", s.pid, s.point)
			}
		}
	}
	for k, ok := range want {
		if !ok {
			t.Errorf("no snapshot of %s", k)
		}
	}
}
