package reliability

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/procwatch"
	"luksdock/internal/testkit"
	"luksdock/recovery"
)

// watch is what a watched run exposed: every distinct argv and environment
// of luksdock and its descendants, the files created in the watched
// directories (with their contents as they were when closed after writing).
type watch struct {
	mu       sync.Mutex
	argv     map[string]bool
	env      map[string]bool
	comms    map[string]bool
	samples  int
	created  []string
	contents map[string][]byte
	// coreLimit is luksdock's "Max core file size" line of /proc/PID/limits,
	// serverCoreLimit the userspace volume server's (it holds the key).
	coreLimit, serverCoreLimit string
}

// coreLimitOf is the "Max core file size" line of /proc/PID/limits.
func coreLimitOf(pid int) string {
	b, err := readProcFile(pid, "limits")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Max core file size") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return ""
}

func (w *watch) sample(pid int) {
	ps := append([]procwatch.Proc{{PID: pid, Comm: "luksdock"}}, descendants(pid)...)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples++
	// the last reading counts: the first may come before main runs
	if l := coreLimitOf(pid); l != "" {
		w.coreLimit = l
	}
	for _, p := range ps {
		if p.Comm == "luksdock-volume" {
			if l := coreLimitOf(p.PID); l != "" {
				w.serverCoreLimit = l
			}
		}
		if c, err := readProcFile(p.PID, "cmdline"); err == nil && len(c) > 0 {
			w.argv[string(c)] = true
		}
		if e, err := readProcFile(p.PID, "environ"); err == nil && len(e) > 0 {
			w.env[string(e)] = true
		}
		w.comms[p.Comm] = true
	}
}

// inotify watches dirs (and directories created in them) for created and
// written files.
type inotify struct {
	fd    int
	mu    sync.Mutex
	dirs  map[int32]string
	onNew func(path string, isDir bool)
	onCW  func(path string)
}

func newInotify(t *testing.T, dirs []string) *inotify {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	in := &inotify{fd: fd, dirs: map[int32]string{}}
	for _, d := range dirs {
		in.add(d)
	}
	return in
}

func (in *inotify) add(dir string) {
	wd, err := unix.InotifyAddWatch(in.fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE)
	if err == nil {
		in.mu.Lock()
		in.dirs[int32(wd)] = dir
		in.mu.Unlock()
	}
}

// poll reads pending events.
func (in *inotify) poll() {
	procwatch.ReadEvents(in.fd, func(ev procwatch.Event) {
		in.mu.Lock()
		dir := in.dirs[ev.Wd]
		in.mu.Unlock()
		if dir == "" || ev.Name == "" {
			return
		}
		p := filepath.Join(dir, ev.Name)
		switch {
		case ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			isDir := ev.Mask&unix.IN_ISDIR != 0
			in.onNew(p, isDir)
			if isDir {
				in.add(p)
			}
		case ev.Mask&unix.IN_CLOSE_WRITE != 0:
			in.onCW(p)
		}
	})
}

// watchedRun runs luksdock while sampling /proc every 2 ms and watching
// dirs with inotify.
func watchedRun(t *testing.T, tmpdir string, stdin []byte, dirs []string, skip func(string) bool, args ...string) (result, *watch) {
	t.Helper()
	w := &watch{argv: map[string]bool{}, env: map[string]bool{}, comms: map[string]bool{}, contents: map[string][]byte{}}
	shims := slowTools(t, "cryptsetup", "mkfs.ext4", "e2fsck") // before the watch starts
	in := newInotify(t, dirs)
	defer unix.Close(in.fd)
	in.onNew = func(p string, isDir bool) {
		w.mu.Lock()
		w.created = append(w.created, p)
		w.mu.Unlock()
	}
	in.onCW = func(p string) {
		if skip(p) {
			return
		}
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() && st.Size() < 64<<20 {
			if b, err := os.ReadFile(p); err == nil {
				w.mu.Lock()
				w.contents[p] = b
				w.mu.Unlock()
			}
		}
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = caseEnv(tmpdir)
	// The tools run through shims that sleep first, so the sampler sees
	// every one of them alive however fast the machine is.
	cmd.Env[0] = "PATH=" + shims + ":" + strings.TrimPrefix(cmd.Env[0], "PATH=")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				in.poll()
				return
			default:
			}
			w.sample(cmd.Process.Pid)
			in.poll()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	err := cmd.Wait()
	close(done)
	wg.Wait()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r, w
}

// secretForms are the ways a secret could show up in text or bytes.
func secretForms(pass string, key []byte) map[string][]byte {
	return map[string][]byte{
		"passphrase":        []byte(pass),
		"volume key":        key,
		"volume key hex":    []byte(hex.EncodeToString(key)),
		"volume key HEX":    []byte(strings.ToUpper(hex.EncodeToString(key))),
		"volume key base64": []byte(base64.StdEncoding.EncodeToString(key)),
		// cryptsetup prints the key as "xx xx xx ..." in luksDump
		"volume key spaced": []byte(strings.TrimSpace(fmt.Sprintf("% x", key[:16]))),
	}
}

// recoveryKeyForms are the ways a recovery key could show up: as printed,
// without its dashes, in upper case, and one group alone with its
// neighbour (16 characters of a 71).
func recoveryKeyForms(rk []byte) map[string][]byte {
	bare := bytes.ReplaceAll(rk, []byte("-"), nil)
	return map[string][]byte{
		"recovery key":                rk,
		"recovery key without dashes": bare,
		"recovery key upper case":     bytes.ToUpper(rk),
		"recovery key groups 4-5":     bare[24:40],
	}
}

func scan(t *testing.T, where string, data []byte, forms map[string][]byte) {
	t.Helper()
	for name, f := range forms {
		if len(f) > 0 && bytes.Contains(data, f) {
			t.Errorf("the %s appears in %s", name, where)
		}
	}
}

// keyslotAreas returns the keyslot areas of partition 1 (absolute offsets
// in img), from cryptsetup's JSON metadata.
func keyslotAreas(t *testing.T, img string) [][2]int64 {
	hdr, ok := headerCopy(t, img)
	if !ok {
		t.Fatal("no partition 1")
	}
	out, err := exec.Command("cryptsetup", "luksDump", "--dump-json-metadata", hdr).Output()
	if err != nil {
		t.Fatalf("cryptsetup luksDump --dump-json-metadata: %v", err)
	}
	var m struct {
		Keyslots map[string]struct {
			Area struct{ Offset, Size string } `json:"area"`
		} `json:"keyslots"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	start, _, _ := partStart(t, img)
	var areas [][2]int64
	for _, ks := range m.Keyslots {
		o, _ := strconv.ParseInt(ks.Area.Offset, 10, 64)
		s, _ := strconv.ParseInt(ks.Area.Size, 10, 64)
		areas = append(areas, [2]int64{start + o, start + o + s})
	}
	if len(areas) == 0 {
		t.Fatal("no keyslot in the header")
	}
	return areas
}

// TestSecretHygiene runs prepare (passphrase from a file, with a header
// backup) and verify (passphrase on stdin) while sampling the argv and
// environment of luksdock and every descendant every 2 ms, capturing stdout,
// stderr and --json, and watching $TMPDIR (fresh), /tmp, /dev/shm, /var/tmp
// and the image's, header backup's and recovery key file's directories with
// inotify. prepare makes a recovery key (--recovery-key) and verify proves
// it (--recovery-key-file). Neither the passphrase, the volume key
// (recovered afterwards with cryptsetup luksDump --dump-volume-key) nor the
// recovery key may appear in any of them (the recovery key file aside), nor
// in the image outside the keyslot areas, nor in the decrypted filesystem;
// every temp file luksdock made must be gone.
func TestSecretHygiene(t *testing.T) {
	requireEnv(t)
	imgDir, bkDir, tmpdir := t.TempDir(), t.TempDir(), t.TempDir()
	img := filepath.Join(imgDir, "disk.img")
	passDir := t.TempDir()
	pf := filepath.Join(passDir, "pass")
	if err := os.WriteFile(pf, []byte(testPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(bkDir, "header.bin")
	rkDir := t.TempDir()
	rkFile := filepath.Join(rkDir, "backups01.recovery")
	// invDir: the inventory the run records the disk in is scanned too.
	os.MkdirAll(invDir, 0o700)
	dirs := []string{tmpdir, imgDir, bkDir, rkDir, invDir, "/tmp", "/dev/shm", "/var/tmp"}
	// The image is scanned below, whole; the recovery key file holds the
	// key by design and is checked on its own.
	skip := func(p string) bool { return p == img || p == rkFile }
	args := append(prepareArgs(img, pf, "--json", "--header-backup", backup, "--recovery-key", rkFile), "--size", "96M")
	pr, pw := watchedRun(t, tmpdir, nil, dirs, skip, args...)
	if pr.code != 0 {
		t.Fatalf("prepare: %v", pr)
	}
	vr, vw := watchedRun(t, tmpdir, []byte(testPass+"\n"), dirs, skip, "verify", "--image", img, "--passphrase-file", "-", "--recovery-key-file", rkFile, "--json")
	if vr.code != 0 {
		t.Fatalf("verify: %v", vr)
	}
	p1, _ := testkit.Partition1(t, img)
	key, err := testkit.VolumeKey(t, p1, testPass)
	if err != nil || len(key) != 64 {
		t.Fatalf("cryptsetup could not recover a 64-byte volume key: %v", err)
	}
	forms := secretForms(testPass, key)
	rk, err := recovery.ReadFile(rkFile, nil)
	if err != nil {
		t.Fatalf("the recovery key file: %v", err)
	}
	for name, f := range recoveryKeyForms(rk) {
		forms[name] = f
	}
	if st, err := os.Stat(rkFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("recovery key file: %v, mode %v; want 0600", err, st.Mode())
	}
	if !strings.Contains(vr.stdout, `"recovery_key":true`) {
		t.Errorf("verify did not prove the recovery key: %s", vr.stdout)
	}
	// The sampler must have seen the keyslot being added, or the recovery
	// key's absence from argv proves nothing.
	sawAddKey := false
	for a := range pw.argv {
		sawAddKey = sawAddKey || strings.Contains(a, "cryptsetup\x00luksAddKey\x00")
	}
	if !sawAddKey {
		t.Error("the /proc sampler never saw cryptsetup luksAddKey")
	}

	for _, w := range []*watch{pw, vw} {
		// The sampler must have seen the tools, or it proves nothing.
		for _, tool := range []string{"cryptsetup", "e2fsck"} {
			if !w.comms[tool] {
				t.Errorf("the /proc sampler never saw %s (%d samples, saw %v)", tool, w.samples, w.comms)
			}
		}
		for a := range w.argv {
			scan(t, "argv "+strings.ReplaceAll(a, "\x00", " "), []byte(a), forms)
		}
		for e := range w.env {
			scan(t, "an environment", []byte(e), forms)
		}
		for p, c := range w.contents {
			scan(t, "file "+p, c, forms)
		}
	}
	// No core file can hold a secret: luksdock runs with RLIMIT_CORE 0.
	for _, w := range []*watch{pw, vw} {
		if w.coreLimit != "Max core file size 0 0 bytes" {
			t.Errorf("luksdock's core file limit: %q, want 0 (a core dump would hold the passphrase and the volume key)", w.coreLimit)
		}
		if w.serverCoreLimit != "Max core file size 0 0 bytes" {
			t.Errorf("the volume server's core file limit: %q, want 0 (a core dump would hold the volume key; sampler saw %v)", w.serverCoreLimit, w.comms)
		}
	}
	if !pw.comms["mkfs.ext4"] {
		t.Errorf("the /proc sampler never saw mkfs.ext4 during prepare (saw %v)", pw.comms)
	}
	for _, out := range []struct{ name, s string }{{"prepare stdout (--json)", pr.stdout}, {"prepare stderr", pr.stderr}, {"verify stdout (--json)", vr.stdout}, {"verify stderr", vr.stderr}} {
		scan(t, out.name, []byte(out.s), forms)
	}

	// Temp files: what luksdock created must be gone, except the image and
	// the header backup.
	var created []string
	for _, w := range []*watch{pw, vw} {
		for _, p := range w.created {
			// /tmp, /dev/shm and /var/tmp are shared with other processes:
			// their files were scanned above but are not attributed here.
			if strings.HasPrefix(p, tmpdir+"/") || strings.HasPrefix(p, imgDir+"/") || strings.HasPrefix(p, bkDir+"/") || strings.HasPrefix(p, rkDir+"/") {
				created = append(created, p)
			}
		}
	}
	for _, p := range created {
		if p == img || p == backup || p == rkFile {
			continue
		}
		if state := filepath.Join(tmpdir, "state"); p == state || strings.HasPrefix(p, state+"/") {
			// LUKSDOCK_STATE_DIR: the journal of how runs ended (journal.log,
			// no secret: checked below) is kept on purpose
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("temp file left behind: %s", p)
		}
	}
	if j, err := os.ReadFile(filepath.Join(tmpdir, "state", "journal.log")); err == nil {
		scan(t, "the journal of runs", j, forms)
	} else {
		t.Errorf("no journal of runs: %v", err)
	}
	t.Logf("files and directories luksdock created: %v", created)
	t.Logf("/proc samples: prepare %d (%d argv, %d environments), verify %d", pw.samples, len(pw.argv), len(pw.env), vw.samples)
	if st, err := os.Stat(backup); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("header backup: %v, mode %v; want 0600", err, st.Mode())
	}
	if b, err := os.ReadFile(backup); err == nil {
		scan(t, "the header backup", b, forms)
	}

	// The image, outside the keyslot areas, and the decrypted filesystem.
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range keyslotAreas(t, img) {
		for i := a[0]; i < a[1] && i < int64(len(data)); i++ {
			data[i] = 0
		}
	}
	scan(t, "the image outside the keyslot area", data, forms)
	ok, why, plain := oracle(t, img, testPass, "backups01")
	if !ok {
		t.Fatalf("independent check: %s", why)
	}
	pd, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	scan(t, "the decrypted filesystem", pd, forms)
	// Controls: the scans find what they look for where it is.
	if b, _ := os.ReadFile(pf); !bytes.Contains(b, forms["passphrase"]) {
		t.Fatal("control: the passphrase is not found in the passphrase file")
	}
	if b, _ := os.ReadFile(rkFile); !bytes.Contains(b, forms["recovery key"]) {
		t.Fatal("control: the recovery key is not found in its file")
	}
	if !pw.argv[string(bytes.Join([][]byte{[]byte(bin)}, nil))+"\x00"+strings.Join(args, "\x00")+"\x00"] {
		t.Errorf("control: the sampler did not record luksdock's own argv")
	}
}

// slowTools makes one directory of shims (sleep 0.3 s, then exec the real
// tool) for the named tools, created before any watch starts.
func slowTools(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		sh := slowShim(t, tool, "")
		if err := os.Rename(filepath.Join(sh, tool), filepath.Join(dir, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
