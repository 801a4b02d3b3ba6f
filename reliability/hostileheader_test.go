package reliability

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// argon2Image is a finished backup disk whose keyslot uses argon2id at a
// small cost (8 MiB, t=4): the header hostile cases edit.
func argon2Image(t *testing.T, extra ...string) string {
	t.Helper()
	img := sparseImage(t, t.TempDir(), imgSize)
	pass := passFile(t, []byte(testPass+"\n"))
	args := []string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(img)}
	if len(extra) == 0 {
		extra = []string{"--pbkdf", "argon2id", "--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4"}
	}
	if r := luksdock(t, runOpts{}, append(args, extra...)...); r.code != 0 {
		t.Fatalf("prepare: %v", r)
	}
	return img
}

// measured is a luksdock run with its wall time and the peak resident
// memory of luksdock and every child it waited for (wait4's rusage).
type measured struct {
	result
	took   time.Duration
	maxRSS int64 // bytes
}

func luksdockMeasured(t *testing.T, stdin []byte, args ...string) measured {
	t.Helper()
	return luksdockMeasuredWithin(t, 3*time.Minute, stdin, args...)
}

// luksdockMeasuredWithin is luksdockMeasured killing luksdock after limit.
func luksdockMeasuredWithin(t *testing.T, limit time.Duration, stdin []byte, args ...string) measured {
	t.Helper()
	// GNU time starts luksdock and reports its peak RSS (and that of the
	// children it waited for). The test binary's own rusage of its child
	// cannot: Go starts children sharing its memory until exec, and the
	// kernel carries that high-water mark, the test binary's, into the
	// child's ru_maxrss (seen as the same 1740 MiB for every case after
	// other tests had grown this binary).
	dir := t.TempDir()
	rssFile := filepath.Join(dir, "maxrss")
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile, bin}, args...)...)
	cmd.Env = caseEnv(dir)
	cmd.Stdin = bytes.NewReader(stdin)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// At the limit the whole group goes, GNU time and luksdock: killing
	// GNU time alone left luksdock running, holding the output pipes, and
	// Wait waiting for it (a case meant to fail at the limit hung).
	var killed atomic.Bool
	timer := time.AfterFunc(limit, func() { killed.Store(true); syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	timer.Stop()
	m := measured{result: result{stdout: so.String(), stderr: se.String()}, took: time.Since(t0)}
	if killed.Load() {
		t.Errorf("luksdock %s still ran after %s: killed", args[0], limit)
		m.code, m.maxRSS = -1, -1
		return m
	}
	if ee, ok := err.(*exec.ExitError); ok {
		m.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatalf("GNU time wrote no peak RSS: %v", err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(lastLines(string(b), 1)), 10, 64)
	if err != nil {
		t.Fatalf("GNU time's peak RSS %q: %v", b, err)
	}
	m.maxRSS = kib << 10
	return m
}

// TestHostileHeaders: luksdock verify of a disk whose LUKS header was
// edited (cryptsetup-made, checksums recomputed: cryptsetup reads the
// metadata) into what a damaged disk or an attacker hands over. Each is
// refused before any key derivation, exit 5 with the numbers, in seconds
// and without the memory the header asks for; cryptsetup decides when the
// two implementations disagree.
func TestHostileHeaders(t *testing.T) {
	requireEnv(t)
	orig := argon2Image(t)
	base, _, ok := partStart(t, orig)
	if !ok {
		t.Fatal("no partition 1")
	}
	right := []byte(testPass + "\n")
	for _, c := range []struct {
		name  string
		edit  func(t *testing.T, m map[string]any)
		stdin []byte
		extra []string
		code  int
		want  []string
	}{
		{name: "argon2-time-2^31", edit: func(t *testing.T, m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "kdf")["time"] = 1 << 31 },
			code: 5, want: []string{"not a disk luksdock or cryptsetup would make", "2147483648 argon2 passes"}},
		{name: "pbkdf2-iterations-2^32-1", edit: func(t *testing.T, m map[string]any) {
			salt := testkit.Obj(t, m, "keyslots", "0", "kdf")["salt"]
			testkit.Obj(t, m, "keyslots", "0")["kdf"] = map[string]any{"type": "pbkdf2", "hash": "sha256", "iterations": 1<<32 - 1, "salt": salt}
		}, code: 5, want: []string{"not a disk luksdock or cryptsetup would make", "4294967295 PBKDF2 iterations"}},
		{name: "digest-iterations-2^31", edit: func(t *testing.T, m map[string]any) { testkit.Obj(t, m, "digests", "0")["iterations"] = 1 << 31 },
			code: 5, want: []string{"not a disk luksdock or cryptsetup would make", "digest 0 asks for 2147483648 PBKDF2 iterations"}},
		{name: "argon2-memory-4GiB+1KiB", edit: func(t *testing.T, m map[string]any) {
			testkit.Obj(t, m, "keyslots", "0", "kdf")["memory"] = 4<<20 + 1
		}, code: 5, want: []string{"not a disk luksdock or cryptsetup would make", "4194305 KiB"}},
		{name: "argon2-memory-4GiB-beyond-max-unlock-time", edit: func(t *testing.T, m map[string]any) {
			testkit.Obj(t, m, "keyslots", "0", "kdf")["memory"] = 4 << 20
		}, extra: []string{"--max-unlock-time", "1s"}, code: 5, want: []string{"keyslot 0 would take about", "m=4194304 KiB", "--max-unlock-time 1s"}},
		{name: "area-over-json", edit: func(t *testing.T, m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "area")["offset"] = "8192" },
			code: 5, want: []string{"not a disk luksdock or cryptsetup would make", "overlaps the JSON metadata area"}},
		{name: "area-over-data", edit: func(t *testing.T, m map[string]any) {
			testkit.Obj(t, m, "keyslots", "0", "area")["offset"] = "16773120"
		}, code: 5, want: []string{"not a disk luksdock or cryptsetup would make", "overlaps the data segment"}},
		{name: "af-stripes-2000", edit: func(t *testing.T, m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "af")["stripes"] = 2000 },
			code: 5, want: []string{"cryptsetup unlocks it with the passphrase", "af.stripes 2000"}},
		{name: "af-stripes-2000-wrong-passphrase", edit: func(t *testing.T, m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "af")["stripes"] = 2000 },
			stdin: []byte("not-the-passphrase\n"), code: 6, want: []string{"does not unlock any keyslot"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			mustRun(t, "cp", "--sparse=always", orig, img)
			testkit.EditLUKS2(t, img, base, func(m map[string]any) { c.edit(t, m) })
			before := testkit.SHA256File(t, img)
			stdin := c.stdin
			if stdin == nil {
				stdin = right
			}
			r := luksdockMeasured(t, stdin, append([]string{"verify", "--image", img, "--passphrase-file", "-"}, c.extra...)...)
			if r.code != c.code {
				t.Errorf("exit %d, want %d\n%v", r.code, c.code, r.result)
			}
			for _, w := range c.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if c.code == 5 && strings.Contains(r.stderr, "does not unlock any keyslot") {
				t.Errorf("reported as a wrong passphrase:\n%s", r.stderr)
			}
			// Bounds: a refusal runs at most the small real KDF (8 MiB);
			// what the header asks for is gigabytes and hours.
			if r.took > 30*time.Second {
				t.Errorf("verify took %s", r.took)
			}
			if r.maxRSS > 256<<20 {
				t.Errorf("peak resident memory %d MiB (luksdock or a child): the header's cost was paid", r.maxRSS>>20)
			}
			if testkit.SHA256File(t, img) != before {
				t.Errorf("verify changed the image")
			}
			t.Logf("exit %d in %s, peak RSS %d MiB: %s", r.code, r.took.Round(time.Millisecond), r.maxRSS>>20, strings.TrimSpace(lastLines(r.stderr, 1)))
		})
	}
}

// TestHostileHeaderOtherCommands: the commands other than verify that make
// cryptsetup derive a key from a disk someone handed over (passwd,
// recovery-key, open) refuse a header no tool writes before cryptsetup
// starts, exit 5 with the numbers, in seconds and without the header's
// cost; nothing is written. Before this rule passwd and recovery-key ran
// cryptsetup on a keyslot asking for 2^31 argon2 passes until killed. The
// run is killed after 60 s, far beyond the refusal's milliseconds.
func TestHostileHeaderOtherCommands(t *testing.T) {
	requireEnv(t)
	orig := argon2Image(t)
	base, _, ok := partStart(t, orig)
	if !ok {
		t.Fatal("no partition 1")
	}
	testkit.EditLUKS2(t, orig, base, func(m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "kdf")["time"] = 1 << 31 })
	newPass := passFile(t, []byte("a-new-passphrase-for-the-hostile-disk\n"))
	for _, c := range []struct {
		name string
		args func(img string) []string
	}{
		{"passwd", func(img string) []string {
			return []string{"passwd", "--image", img, "--passphrase-file", "-", "--new-passphrase-file", newPass}
		}},
		{"recovery-key", func(img string) []string {
			return []string{"recovery-key", "--replace", "--image", img, "--passphrase-file", "-", "--recovery-key", filepath.Join(t.TempDir(), "new.recovery")}
		}},
		{"open", func(img string) []string {
			return []string{"open", "--image", img, "--passphrase-file", "-", "--engine", "userspace", "--mountpoint", t.TempDir()}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			mustRun(t, "cp", "--sparse=always", orig, img)
			before := testkit.SHA256File(t, img)
			r := luksdockMeasuredWithin(t, time.Minute, []byte(testPass+"\n"), c.args(img)...)
			if r.code != 5 {
				t.Errorf("exit %d, want 5\n%v", r.code, r.result)
			}
			for _, w := range []string{"not a disk luksdock or cryptsetup would make", "keyslot 0 asks for 2147483648 argon2 passes"} {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if r.took > 30*time.Second {
				t.Errorf("%s took %s: cryptsetup ran the key derivation the header asks for", c.name, r.took)
			}
			if r.maxRSS > 256<<20 {
				t.Errorf("peak resident memory %d MiB (luksdock or a child)", r.maxRSS>>20)
			}
			if testkit.SHA256File(t, img) != before {
				t.Errorf("%s changed the image", c.name)
			}
			t.Logf("exit %d in %s, peak RSS %d MiB: %s", r.code, r.took.Round(time.Millisecond), r.maxRSS>>20, strings.TrimSpace(lastLines(r.stderr, 1)))
		})
	}
}

// TestVerifyStoppedEndsChildren: SIGINT or SIGTERM to a verify while its
// cryptsetup runs a key derivation ends that cryptsetup with luksdock (it
// runs in a process group of its own, so only luksdock's own death can end
// it). The keyslot's cost is raised to half a minute.
func TestVerifyStoppedEndsChildren(t *testing.T) {
	requireEnv(t)
	img := slowKeyslotImage(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			stoppedEndsCryptsetup(t, sig, "verify", "--image", img, "--passphrase-file", "-", "--max-unlock-time", "1h")
		})
	}
}

// TestCommandsStoppedEndChildren: the same for the other commands whose
// cryptsetup derives a key from the disk's keyslot (passwd and
// recovery-key --replace ask it which keyslot the passphrase opens first),
// with SIGTERM and SIGKILL: every cryptsetup runs through one function
// (luks.runTool: a process group of its own, Pdeathsig SIGKILL), and no
// command leaves its cryptsetup computing. (open and host enroll use that
// function too; open's userspace engine derives the key in-process, its
// kernel engine needs device-mapper, proved in the QEMU guest.)
func TestCommandsStoppedEndChildren(t *testing.T) {
	requireEnv(t)
	img := slowKeyslotImage(t)
	newPass := passFile(t, []byte("a-new-passphrase-for-the-stopped-run\n"))
	for _, c := range []struct {
		name string
		args []string
	}{
		{"passwd", []string{"passwd", "--image", img, "--passphrase-file", "-", "--new-passphrase-file", newPass}},
		{"recovery-key", []string{"recovery-key", "--replace", "--image", img, "--passphrase-file", "-", "--recovery-key", filepath.Join(t.TempDir(), "new.recovery")}},
	} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			t.Run(c.name+"/"+sig.String(), func(t *testing.T) {
				before := testkit.SHA256File(t, img)
				stoppedEndsCryptsetup(t, sig, c.args...)
				if testkit.SHA256File(t, img) != before {
					t.Errorf("the stopped %s changed the image", c.name)
				}
			})
		}
	}
}

// slowKeyslotImage is a finished disk whose keyslot 0 asks for 4000
// argon2 passes over 8 MiB: half a minute of key derivation (the key it
// derives no longer opens the keyslot; it is stopped long before), within
// what InspectHeader accepts.
func slowKeyslotImage(t *testing.T) string {
	t.Helper()
	img := argon2Image(t)
	base, _, _ := partStart(t, img)
	testkit.EditLUKS2(t, img, base, func(m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "kdf")["time"] = 4000 })
	return img
}

// stoppedEndsCryptsetup runs luksdock with args (the passphrase on
// standard input), waits for its cryptsetup child, sends luksdock sig 100
// ms into the key derivation, and requires that cryptsetup be gone within
// 3 s of luksdock's end.
func stoppedEndsCryptsetup(t *testing.T, sig syscall.Signal, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = caseEnv(t.TempDir())
	cmd.Stdin = strings.NewReader(testPass + "\n")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var kid int
	for deadline := time.Now().Add(120 * time.Second); kid == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, p := range descendants(cmd.Process.Pid) {
			if p.Comm == "cryptsetup" {
				kid = p.PID
			}
		}
	}
	if kid == 0 {
		t.Fatalf("luksdock %s never started cryptsetup", args[0])
	}
	time.Sleep(100 * time.Millisecond) // into the key derivation
	cmd.Process.Signal(sig)
	cmd.Wait()
	for deadline := time.Now().Add(3 * time.Second); alive(kid) && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if alive(kid) {
		stat, _ := os.ReadFile("/proc/" + strconv.Itoa(kid) + "/stat")
		syscall.Kill(kid, syscall.SIGKILL)
		t.Fatalf("cryptsetup (pid %d) still runs 3 s after luksdock %s ended by %v: %s", kid, args[0], sig, stat)
	}
}

// TestVerifyDamagedFilesystem: a disk whose LUKS header is sound and whose
// passphrase is right but whose ext4 inside the volume is damaged (blocks
// marked in use that no file owns: e2fsck -fn finds bitmap differences,
// while the label, the superblock and the top directory still read) is not
// verified: exit 5, e2fsck's words. The damage is made outside luksdock:
// cryptsetup recovers the key, x/crypto/xts decrypts, debugfs damages,
// `cryptsetup reencrypt --encrypt` encrypts again. This is the only check
// that catches it: without the "e2fsck -fn is not clean" rule verify says
// the disk is verified. (The userspace engine; the kernel engine's verify
// runs the same verifyDevice check after dm-crypt maps the volume, proved
// on a kernel with device-mapper in the QEMU guest only.)
func TestVerifyDamagedFilesystem(t *testing.T) {
	requireEnv(t)
	img := sparseImage(t, t.TempDir(), imgSize)
	if r := luksdock(t, runOpts{}, prepareArgs(img, passFile(t, []byte(testPass+"\n")))...); r.code != 0 {
		t.Fatalf("prepare: %v", r)
	}
	part, _ := testkit.Partition1(t, img)
	vol, err := testkit.Unlock(t, part, testPass)
	if err != nil {
		t.Fatal(err)
	}
	plain := testkit.DecryptXTS(t, vol)
	if out, err := exec.Command("e2fsck", "-fn", plain).CombinedOutput(); err != nil {
		t.Fatalf("control: the prepared filesystem is not clean: %v\n%s", err, out)
	}
	mustRun(t, "debugfs", "-w", "-R", "setb 3000 16", plain)
	out, err := exec.Command("e2fsck", "-fn", plain).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Block bitmap differences") {
		t.Fatalf("the damage is not what e2fsck should find: %v\n%s", err, out)
	}
	testkit.EncryptCryptsetup(t, plain, vol.Key, vol.Seg.SectorSize)
	cipher, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(cipher, part.Base+vol.Seg.Offset); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r := luksdock(t, runOpts{stdin: []byte(testPass + "\n")}, "verify", "--image", img, "--passphrase-file", "-", "--engine", "userspace")
	if r.code != 5 || !strings.Contains(r.stderr, "e2fsck -fn is not clean") || !strings.Contains(r.stderr, "Block bitmap differences") {
		t.Fatalf("verify of a damaged filesystem: %v", r)
	}
	t.Logf("%s", strings.TrimSpace(lastLines(r.stderr, 1)))
}
