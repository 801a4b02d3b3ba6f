// Package reliability proves that luksdock fails safe: faults (SIGKILL,
// SIGINT/SIGTERM, I/O errors, a second luksdock), hostile and wrong input,
// and secret hygiene. Every test drives the built luksdock binary (or, where
// a race must be forced, the pipeline package) against image files and loop
// devices, and checks the outcome with tools no one here wrote: cryptsetup,
// e2fsck, dumpe2fs, blkid, sfdisk, losetup and /proc.
//
// The suite needs root, loop devices, FUSE, cryptsetup and e2fsprogs; without
// them every test skips with the exact reason. The kernel engine needs
// device-mapper, which these machines lack: its variants belong to the QEMU
// suite in e2e/.
package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/disk"
	"luksdock/internal/procwatch"
	"luksdock/internal/testkit"
)

// bin is the luksdock binary built once for the whole suite
// (testkit.BuildLuksdock).
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "luksdock-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	invDir = filepath.Join(dir, "state")
	// The without-root cases run luksdock as nobody.
	os.Chmod(dir, 0o755)
	// Without root every test skips (requireEnv).
	if os.Geteuid() == 0 {
		if bin, err = testkit.BuildLuksdock(); err != nil {
			fmt.Fprintf(os.Stderr, "building luksdock: %v\n", err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	testkit.RemoveBuilt()
	os.Exit(code)
}

// requireEnv skips the test, with the reason, unless the suite can run
// here: root, loop devices, FUSE, cryptsetup, e2fsprogs, util-linux.
func requireEnv(t *testing.T) {
	t.Helper()
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "blkid", "sfdisk", "losetup", "partx", "blockdev", "setpriv", "mount", "umount")
	testkit.NeedFUSE(t)
	testkit.NeedLoop(t)
}

// lowCost are the PBKDF flags every test run uses.
var lowCost = []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

// testPass is a long random-looking passphrase: long enough that finding its
// bytes anywhere by chance is impossible, typeable, valid UTF-8.
const testPass = "Tr0ub4dor&3-correct-horse-battery-staple-9f2c41e7"

// result is one finished luksdock run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runOpts tweak a luksdock run.
type runOpts struct {
	stdin  []byte
	tmpdir string   // TMPDIR for luksdock; a fresh one when empty
	pre    []string // argv prefix, e.g. setpriv ...
}

// caseEnv is the environment luksdock runs with: PATH, and TMPDIR pointing
// at a directory private to the test case, so its FUSE mountpoints and temp
// files can be attributed; an erase keeps its position in TMPDIR/state.
func caseEnv(tmpdir string) []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TMPDIR=" + tmpdir, "LC_ALL=C",
		"LUKSDOCK_INVENTORY=" + filepath.Join(invDir, "inventory.json"), "LUKSDOCK_STATE_DIR=" + filepath.Join(tmpdir, "state")}
}

// invDir holds the suite's inventory of prepared disks, so that no test
// writes the machine's own (/var/lib/luksdock).
var invDir string

func luksdock(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	if o.tmpdir == "" {
		o.tmpdir = t.TempDir()
	}
	argv := append(append([]string{}, o.pre...), bin)
	argv = append(argv, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = caseEnv(o.tmpdir)
	if o.stdin != nil {
		cmd.Stdin = bytes.NewReader(o.stdin)
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running luksdock %v: %v", args, err)
		}
		r.code = ee.ExitCode()
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			r.code = 128 + int(st.Signal())
		}
	}
	return r
}

// passFile writes a passphrase file (content exactly as given).
func passFile(t *testing.T, content []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// prepareArgs is a full prepare command line for an image.
func prepareArgs(img, pass string, extra ...string) []string {
	a := []string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(img)}
	a = append(a, lowCost...)
	return append(a, extra...)
}

// sparseImage creates a sparse file disk.img of size bytes in dir.
func sparseImage(t *testing.T, dir string, size int64) string {
	t.Helper()
	return testkit.SparseFile(t, filepath.Join(dir, "disk.img"), size)
}

// withContent fills a few places of an image with non-zero bytes so that any
// write shows in its hash, and gives it an old ext4 filesystem.
func withContent(t *testing.T, img string) {
	t.Helper()
	mustRun(t, "mkfs.ext4", "-q", "-F", "-L", "olddata", img)
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testkit.Run(t, "", name, args...)
}

// event is what luksdock --json prints, as far as these tests look.
type event struct {
	Kind    string `json:"event"`
	Step    string `json:"step"`
	Message string `json:"message"`
	State   string `json:"state"`
	Result  *struct {
		FSLabel string `json:"fs_label"`
	} `json:"result"`
	// Steps: the plan event's steps.
	Steps []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"steps"`
}

// parseEvents reads the JSON event lines of --json output.
func parseEvents(t *testing.T, out string) []event {
	t.Helper()
	var evs []event
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("--json printed a line that is not JSON: %q: %v", sc.Text(), err)
		}
		evs = append(evs, e)
	}
	return evs
}

// --- loop devices ---

// attachLoop is testkit.AttachLoop: it drops the partition entries and the
// read-only flag an earlier user left on the loop number, and detaches the
// device (dropping its partition entries) when the test ends.
var attachLoop = testkit.AttachLoop

// --- mounts and processes ---

// mount is one line of /proc/self/mountinfo.
type mount struct{ point, fstype, source, majmin string }

// mountsOf lists the mounts in the mount namespace of process pid ("self"
// for this one).
func mountsOf(t *testing.T, pid string) []mount {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []mount
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		for i, x := range f {
			if x == "-" && i+2 < len(f) && len(f) > 4 {
				out = append(out, mount{point: unescape(f[4]), fstype: f[i+1], source: f[i+2], majmin: f[2]})
				break
			}
		}
	}
	return out
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// mountsUnder lists mounts at or below dir.
func mountsUnder(t *testing.T, dir string) []mount {
	return mountsUnderOf(t, "self", dir)
}

// mountsUnderOf lists mounts at or below dir in pid's mount namespace.
func mountsUnderOf(t *testing.T, pid, dir string) []mount {
	var out []mount
	for _, m := range mountsOf(t, pid) {
		if m.point == dir || strings.HasPrefix(m.point, dir+"/") {
			out = append(out, m)
		}
	}
	return out
}

// waitNoMounts waits up to timeout for every mount under dir to go and
// returns those still there.
func waitNoMounts(t *testing.T, dir string, timeout time.Duration) []mount {
	deadline := time.Now().Add(timeout)
	for {
		m := mountsUnder(t, dir)
		if len(m) == 0 || time.Now().After(deadline) {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// descendants returns root's descendants (not root itself).
func descendants(root int) []procwatch.Proc {
	return procwatch.Descendants(procwatch.Scan(), root)
}

func alive(pid int) bool { return procwatch.Alive(pid) }

// --- independent oracle ---

// partStart returns partition 1's start and size in bytes, read by sfdisk.
func partStart(t *testing.T, img string) (int64, int64, bool) {
	t.Helper()
	p, ok := testkit.Partition1(t, img)
	return p.Base, p.Size, ok
}

// headerCopy copies the first 32 MiB of partition 1 into a private file, for
// cryptsetup to read without a loop device.
func headerCopy(t *testing.T, img string) (string, bool) {
	t.Helper()
	p, ok := testkit.Partition1(t, img)
	if !ok {
		return "", false
	}
	return testkit.HeaderCopy(t, p), true
}

// oracle is the independent answer to "is this image a finished backup
// disk?": cryptsetup reads partition 1's LUKS header and recovers the volume
// key with pass, golang.org/x/crypto/xts (not luksdock's AES-XTS) decrypts
// what was written of the data segment into a private file
// (testkit.DecryptXTSWritten: checkDetectAndRecover compares its verdict
// with luksdock verify, which decrypts every sector), and e2fsck -fn and
// dumpe2fs must find a clean ext4 labelled label. It also returns the
// plaintext path.
func oracle(t *testing.T, img, pass, label string) (finished bool, why, plain string) {
	t.Helper()
	p, ok := testkit.Partition1(t, img)
	if !ok {
		return false, "no partition table (sfdisk)", ""
	}
	v, err := testkit.Unlock(t, p, pass)
	if err != nil {
		return false, "partition 1: " + err.Error(), ""
	}
	if v.Seg.Version != 2 {
		return false, fmt.Sprintf("partition 1 holds LUKS%d, not LUKS2", v.Seg.Version), ""
	}
	if v.Seg.Cipher != "aes-xts-plain64" {
		t.Fatalf("unexpected cipher %q", v.Seg.Cipher)
	}
	plain = testkit.DecryptXTSWritten(t, v)
	if out, err := exec.Command("e2fsck", "-fn", plain).CombinedOutput(); err != nil {
		return false, fmt.Sprintf("e2fsck -fn: %v: %s", err, lastLines(string(out), 3)), plain
	}
	out, err := exec.Command("dumpe2fs", "-h", plain).CombinedOutput()
	if err != nil {
		return false, "dumpe2fs -h: " + lastLines(string(out), 2), plain
	}
	if !strings.Contains(string(out), "Filesystem volume name:   "+label+"\n") {
		return false, "label is not " + label, plain
	}
	return true, "clean ext4 labelled " + label, plain
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// luksAt reports what blkid -p finds at partition 1 of img (its TYPE), or ""
// when there is no partition table.
func luksAt(t *testing.T, img string) string {
	t.Helper()
	start, _, ok := partStart(t, img)
	if !ok {
		return ""
	}
	out, _ := exec.Command("blkid", "-p", "-O", strconv.FormatInt(start, 10), "-s", "TYPE", "-o", "value", img).Output()
	return strings.TrimSpace(string(out))
}

// noLeftovers checks what a luksdock run must never leave behind: a FUSE
// mount or a temp directory under its TMPDIR, a loop device on img, a
// process it started.
func noLeftovers(t *testing.T, tmpdir, img string, kids []int) {
	t.Helper()
	if m := waitNoMounts(t, tmpdir, 5*time.Second); len(m) > 0 {
		t.Errorf("mount left behind under luksdock's TMPDIR: %+v", m)
		for _, x := range m {
			exec.Command("umount", "-l", x.point).Run() // so the next cases and TempDir cleanup can go on
		}
	}
	if l := disk.Host.LoopsBackedBy(img); len(l) > 0 {
		t.Errorf("loop device left on %s: %v", img, l)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range kids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			t.Errorf("process %d (%s) started by luksdock is still running 10s later", pid, strings.TrimSpace(string(comm)))
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		left, _ := filepath.Glob(filepath.Join(tmpdir, "luksdock-*"))
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			// The volume server makes its private directory and removes it
			// when its owner dies, so nothing may be left.
			var what []string
			for _, d := range left {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					what = append(what, filepath.Join(d, e.Name()))
				}
			}
			mi, _ := os.ReadFile("/proc/self/mountinfo")
			t.Errorf("temp directories left in TMPDIR: %v (holding %v; luksdock mounts: %v)", left, what, strings.Count(string(mi), "fuse.luksdock"))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readProcFile(pid int, name string) ([]byte, error) {
	return os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
}

// abortFUSE aborts the FUSE connections of the mounts under dir
// (/sys/fs/fuse/connections/N/abort), which ends every request waiting on
// them, and lazily unmounts them. It returns the mountpoints it aborted.
func abortFUSE(t *testing.T, dir string) []string {
	var out []string
	for _, m := range mountsUnder(t, dir) {
		if !strings.HasPrefix(m.fstype, "fuse") {
			continue
		}
		if _, minor, ok := strings.Cut(m.majmin, ":"); ok {
			os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0)
		}
		exec.Command("umount", "-l", m.point).Run()
		out = append(out, m.point)
	}
	return out
}

// stuckThreads describes the threads of pid that wait in the kernel on a
// FUSE request.
func stuckThreads(pid int) string {
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		st, _ := os.ReadFile(task + "/stack")
		if strings.Contains(string(st), "fuse") {
			fmt.Fprintf(&b, "thread %s:\n%s", filepath.Base(task), st)
		}
	}
	return b.String()
}

// tableType is the partition table sfdisk finds ("gpt", "dos", "").
func tableType(t *testing.T, img string) string {
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		return ""
	}
	var d struct {
		PT struct{ Label string } `json:"partitiontable"`
	}
	json.Unmarshal(out, &d)
	return d.PT.Label
}
