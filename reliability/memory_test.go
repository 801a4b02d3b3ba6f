package reliability

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"luksdock/internal/procmem"
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
//     tool points) and of the volume server;
//   - controls: the scan finds the passphrase in luksdock's locked memory at
//     the tool points (it holds it until it returns) and the volume key in
//     the volume server's.
//
// Reading the memory (and running under ptrace) is internal/procmem, which
// e2e/guestwatch uses for the same test with the kernel engine.

// memSnap is one process's memory at one point.
type memSnap struct {
	*procmem.Snapshot
	point, who string
	pid        int
	err        error
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

// tracedRun runs luksdock under ptrace (procmem.RunTracedStops) so that its
// memory can be read at its exit, and calls atStop with every stopped tool
// shim (a descendant of luksdock in state T running a shim from shims)
// before continuing it. It must not run beside other tests (RunTraced
// waits with wait4(-1)).
func tracedRun(t *testing.T, tmpdir, shims string, stdin []byte, atStop func(tool string, pid int), args ...string) (result, *memSnap) {
	t.Helper()
	return tracedRunEnv(t, tmpdir, nil, shims, stdin, atStop, args...)
}

// tracedRunEnv is tracedRun with extra environment entries.
func tracedRunEnv(t *testing.T, tmpdir string, extraEnv []string, shims string, stdin []byte, atStop func(tool string, pid int), args ...string) (result, *memSnap) {
	t.Helper()
	env := append(caseEnv(tmpdir), extraEnv...)
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

	var exitSnap *memSnap
	closeChild := func() { inR.Close(); outW.Close(); errW.Close() }
	code, runErr := procmem.RunTracedStops(bin, append([]string{bin}, args...),
		&os.ProcAttr{Env: env, Files: []*os.File{inR, outW, errW}}, shims,
		func(int) { closeChild() },
		atStop,
		func(tid int) {
			s, err := procmem.Read(tid)
			exitSnap = &memSnap{Snapshot: s, pid: tid, err: err}
		})
	if runErr != nil {
		closeChild()
	}
	wg.Wait()
	if runErr != nil {
		t.Fatalf("running luksdock under ptrace: %v", runErr)
	}
	return result{code: code, stdout: so.String(), stderr: se.String()}, exitSnap
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
				ps, err := procmem.Read(p)
				s := &memSnap{Snapshot: ps, err: err, point: point, who: who, pid: p}
				mu.Lock()
				snaps = append(snaps, s)
				mu.Unlock()
			}
			add("luksdock", pid)
			for _, v := range procmem.VolumeServers(pid) {
				add("volume server", v)
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
		if e.s == nil {
			t.Errorf("%s: luksdock's memory was not read at its exit", e.name)
			continue
		}
		e.s.point, e.s.who = e.name+", at its exit", "luksdock"
		snaps = append(snaps, e.s)
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
	forms := procmem.Forms([]byte(testPass), rk, key)

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
		hits := s.Find(forms)
		atExit := strings.HasSuffix(s.point, "at its exit")
		type tally struct {
			n     int
			first procmem.Hit
		}
		counts := map[string]*tally{}
		for _, h := range hits {
			where := "unlocked"
			if h.Locked {
				where = "locked"
			}
			if s.who == "volume server" && strings.Contains(h.Form, "half") {
				where = "schedule" // the AES key schedules begin with the halves
			}
			k := h.Form + " (" + where + ")"
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
				t.Errorf("%s: %s (pid %d) still holds %d copies of the %s, the first at %#x (%q) in %s", s.point, s.who, s.pid, c.n, k, c.first.Addr, c.first.Region, c.first.Context)
			case !c.first.Locked:
				t.Errorf("%s: %s (pid %d) holds %d copies of the %s outside locked memory, the first at %#x (%q) in %s", s.point, s.who, s.pid, c.n, c.first.Form, c.first.Addr, c.first.Region, c.first.Context)
			}
		}
		sort.Strings(sum)
		t.Logf("%s: %s (pid %d): %d MiB read, VmLck %s; found: %s", s.point, s.who, s.pid, s.Size>>20, s.VmLck, strings.Join(sum, ", "))
		if !atExit && len(hits) > 0 && s.VmLckKB() == 0 {
			t.Errorf("%s: %s holds secrets with VmLck %s: nothing is locked in memory", s.point, s.who, s.VmLck)
		}
		if s.who == "luksdock" && !atExit {
			// luksdock holds the passphrase until the command returns.
			if _, ok := counts["passphrase (locked)"]; !ok {
				t.Errorf("control: the passphrase is not found in luksdock's locked memory at %s: the scan finds nothing", s.point)
			}
		}
		if s.who == "volume server" {
			n := 0
			for _, h := range hits {
				if h.Form == "volume key" {
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
