package reliability

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/testkit"
)

// TestHangupDuringFormat (issue 20, item 14): `luksdock prepare` runs on a
// terminal (a pseudo-terminal: its standard input, output and error, and
// its controlling terminal, luksdock the session leader, as a login shell's
// job is after the shell has gone) and the terminal hangs up when Format
// LUKS2 starts: the master side is closed, as sshd does when the
// connection drops, so the kernel sends SIGHUP and every later write to the
// terminal fails with EIO. luksdock must stop as for SIGTERM — finish the
// step, close, exit 130, not be killed by the signal — leave a LUKS header
// that stock cryptsetup reads (not "partition 1: empty"), nothing mapped,
// mounted or running, and record how it ended in the journal file of its
// state directory.
func TestHangupDuringFormat(t *testing.T) {
	requireEnv(t)
	dir := t.TempDir()
	img := sparseImage(t, dir, imgSize)
	pass := passFile(t, []byte(testPass+"\n"))
	tmpdir := t.TempDir()
	// a key derivation slow enough that the hang-up lands in the step
	args := append(prepareArgs(img, pass), "--pbkdf", "argon2id", "--pbkdf-memory", "65536", "--pbkdf-force-iterations", "8", "--pbkdf-parallel", "1")

	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = caseEnv(tmpdir)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var mu sync.Mutex
	var out bytes.Buffer
	seen := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		once := sync.Once{}
		for {
			k, err := master.Read(buf)
			mu.Lock()
			out.Write(buf[:k])
			found := strings.Contains(out.String(), "Format LUKS2")
			mu.Unlock()
			if found {
				// Stop reading, so that the close below is not held
				// up by a read in progress: the hang-up comes now.
				once.Do(func() { close(seen) })
				return
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-seen:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("Format LUKS2 did not start:\n%s", out.String())
	}
	master.Close() // the hang-up
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("luksdock did not end within 2 minutes of the hang-up")
	}
	mu.Lock()
	t.Logf("on the terminal before the hang-up:\n%s", out.String())
	mu.Unlock()
	st := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if st.Signaled() {
		t.Fatalf("luksdock was killed by %v (the hang-up ended it mid-step)", st.Signal())
	}
	if code := st.ExitStatus(); code != 130 {
		t.Fatalf("luksdock exited %d (%v), want 130 (stopped)", code, werr)
	}
	journal, err := os.ReadFile(filepath.Join(tmpdir, "state", "journal.log"))
	if err != nil {
		t.Fatalf("no journal: %v", err)
	}
	j := string(journal)
	t.Logf("journal: %s", j)
	for _, want := range []string{"prepare " + img + ": did not finish (interrupted in step ", "disk state: ", "[stopped by hangup: the terminal hung up"} {
		if !strings.Contains(j, want) {
			t.Errorf("the journal lacks %q", want)
		}
	}
	if strings.Contains(j, testPass) {
		t.Error("the journal holds the passphrase")
	}
	part, ok := testkit.Partition1(t, img)
	if !ok {
		t.Fatal("no partition 1: the run stopped before the partition step")
	}
	hdr := testkit.HeaderCopy(t, part)
	if err := exec.Command("cryptsetup", "isLuks", hdr).Run(); err != nil {
		t.Errorf("partition 1 holds no LUKS header after the format step (cryptsetup isLuks: %v)", err)
	}
	if opensSlot(t, hdr, testPass) != 0 {
		t.Error("the passphrase does not open the LUKS header the stopped run left")
	}
	noLeftovers(t, tmpdir, img, nil)
}

// TestOutputReaderGone (issue 20, item 14): `luksdock prepare --json |
// reader` where the reader goes away when Format LUKS2 starts (a closed
// terminal's tee, a dropped ssh's pipe): every later write to standard
// output fails with EPIPE. That must not kill luksdock (Go's default for
// SIGPIPE on standard output) nor stop the run: it ends 0 with a disk that
// stock cryptsetup opens and e2fsck finds clean (the oracle), and the
// journal says so.
func TestOutputReaderGone(t *testing.T) {
	requireEnv(t)
	dir := t.TempDir()
	img := sparseImage(t, dir, imgSize)
	pass := passFile(t, []byte(testPass+"\n"))
	tmpdir := t.TempDir()
	cmd := exec.Command(bin, prepareArgs(img, pass, "--json")...)
	cmd.Env = caseEnv(tmpdir)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var got bytes.Buffer
	buf := make([]byte, 1)
	for !bytes.Contains(got.Bytes(), []byte(`"step":"luks-format"`)) {
		if _, err := r.Read(buf); err != nil {
			t.Fatalf("luksdock's output ended before luks-format: %v\n%s", err, got.String())
		}
		got.Write(buf)
	}
	r.Close() // the reader is gone
	err = cmd.Wait()
	st := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if st.Signaled() {
		t.Fatalf("luksdock was killed by %v when its standard output's reader went away", st.Signal())
	}
	if err != nil {
		t.Fatalf("luksdock: %v\n%s", err, stderr.String())
	}
	if finished, why, _ := oracle(t, img, testPass, "backups01"); !finished {
		t.Errorf("the disk is not finished: %s", why)
	}
	journal, _ := os.ReadFile(filepath.Join(tmpdir, "state", "journal.log"))
	if !strings.Contains(string(journal), "prepare "+img+": a verified backup disk") {
		t.Errorf("journal: %q", journal)
	}
}
