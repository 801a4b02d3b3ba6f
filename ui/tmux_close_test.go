package ui

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"luksdock/internal/procwatch"
	"luksdock/internal/testkit"
)

// Issue 19, the userspace engine (this host has no device-mapper; the
// kernel engine is e2e.TestWizardClosesKernelOpen): a disk opened with
// `luksdock open` is closed from the wizard, in a real terminal, with the
// built binary. Once as the image the wizard is given (--image), once as a
// disk the wizard's own discovery finds (the image on a loop device, opened
// with --device; its partition node made by luksdock with BLKPG). The disk
// list says the disk is open and where; Details and the Actions screen lead
// to Close. Afterwards, with real tools: the mount is gone from
// /proc/self/mountinfo, the loop device on the volume holder's FUSE file is
// gone, the holder has exited, stock cryptsetup accepts the passphrase, and
// luksdock open works again.
func TestTerminalClosesOpenDisk(t *testing.T) {
	for _, device := range []bool{false, true} {
		name := "image"
		if device {
			name = "loop device"
		}
		t.Run(name, func(t *testing.T) {
			img, _ := knownImage(t, "wzclose2")
			dir := filepath.Dir(img)
			mnt := filepath.Join(dir, "mnt")
			bin := testkit.Luksdock(t)
			target, row := []string{"--image", img}, "disk.img"
			if device {
				testkit.NeedLoop(t)
				loop := testkit.AttachLoop(t, img)
				target, row = []string{"--device", loop}, filepath.Base(loop)
			}
			o := openDisk(t, bin, mnt, target)
			t.Cleanup(func() { exec.Command(bin, "close", "--mountpoint", mnt).Run() })
			backing := loopBacking(o.Cleartext)
			if !strings.Contains(backing, "luksdock-fuse-") {
				t.Fatalf("luksdock open's cleartext %s is not a loop device on the holder's FUSE file: %q", o.Cleartext, backing)
			}

			cmd := fmt.Sprintf("%s --engine userspace >%s/out.txt 2>%s/err.txt; sleep 60", bin, dir, dir)
			if !device {
				cmd = fmt.Sprintf("%s --image %s --engine userspace >%s/out.txt 2>%s/err.txt; sleep 60", bin, img, dir, dir)
			}
			env := []string{"NO_COLOR=1", "TERM=xterm-256color"}
			for _, k := range []string{"LUKSDOCK_INVENTORY", "LUKSDOCK_RUN_DIR", "LUKSDOCK_CONFIG_DIR"} {
				env = append(env, k+"="+os.Getenv(k))
			}
			tm := newTmux(t, 100, 50, env, cmd)
			s := tm.waitFor(15*time.Second, "Choose", row)
			// the open's decrypted volume (a loop device on the holder's
			// FUSE file) is part of this disk, not a row of its own
			if regexp.MustCompile(`\b` + regexp.QuoteMeta(filepath.Base(o.Cleartext)) + `\b`).MatchString(s) {
				t.Errorf("the disk list shows %s, the open's decrypted volume, as a disk:\n%s", filepath.Base(o.Cleartext), s)
			}
			chooseRow(tm, row, mnt, "wzclose2")
			waitFlat(tm, 15*time.Second, "Known disk: wzclose2", "Open now: mounted at "+mnt)
			tm.keys("Enter")
			s = waitFlat(tm, 5*time.Second, "What to do with this disk", "Open now: mounted at "+mnt, "› Close")
			if strings.Contains(s, "Prepare again") || strings.Contains(s, "Retire") {
				t.Errorf("the Actions screen offers to prepare or retire the open disk:\n%s", s)
			}
			tm.keys("Enter")
			waitFlat(tm, 5*time.Second, "Close: unmount, lock, power off", "unmounts it from "+mnt)
			tm.keys("Enter")
			waitFlat(tm, 60*time.Second, "unmounted "+mnt+" and locked")
			tm.keys("Enter")
			tm.waitFor(15*time.Second, "Choose")

			if l := inMountinfo(mnt); l != "" {
				t.Errorf("still in /proc/self/mountinfo after the wizard's Close: %s", l)
			}
			deadline := time.Now().Add(10 * time.Second)
			for procwatch.Alive(o.Holder) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if procwatch.Alive(o.Holder) {
				t.Errorf("the volume holder (pid %d, %s) still runs after the wizard's Close", o.Holder, procwatch.Comm(o.Holder))
			}
			if b := loopBacking(o.Cleartext); b == backing {
				t.Errorf("%s is still attached to the holder's file %s", o.Cleartext, b)
			}
			if out, _ := exec.Command("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").CombinedOutput(); strings.Contains(string(out), backing) {
				t.Errorf("a loop device is left on the holder's FUSE file:\n%s", out)
			}
			if !opens(t, img, testPass) {
				t.Error("stock cryptsetup refuses the passphrase after the wizard's Close")
			}
			o2 := openDisk(t, bin, mnt, target)
			if o2.Already {
				t.Error("luksdock open after the wizard's Close says it was already open")
			}
			if out, err := exec.Command(bin, "close", "--mountpoint", mnt).CombinedOutput(); err != nil {
				t.Errorf("luksdock close: %v\n%s", err, out)
			}
		})
	}
}

// chooseRow selects the row named row in the disk list, which must say
// that it is open at mnt, and chooses it. Other tests on this machine may
// attach loop devices meanwhile: the wizard moves the selection to a disk
// just docked and holds Enter back, so it tries again until Details of the
// row (its label) is shown.
func chooseRow(tm *tmux, row, mnt, label string) {
	tm.t.Helper()
	details := func(s string) bool {
		return strings.Contains(s, "Is this the") || strings.Contains(s, "cannot be prepared")
	}
	for try := 0; try < 10; try++ {
		s := tm.screen()
		for _, k := range []string{"Down", "Up"} {
			for i := 0; i < 30 && !strings.Contains(s, "› "+row+" "); i++ {
				tm.keys(k)
				time.Sleep(100 * time.Millisecond)
				s = tm.screen()
			}
		}
		waitFlat(tm, 15*time.Second, "› "+row+" ", "open: mounted at "+mnt+": Enter offers Close")
		tm.keys("Enter")
		time.Sleep(time.Second)
		s = tm.screen()
		for deadline := time.Now().Add(15 * time.Second); details(s) && strings.Contains(s, "Reading ") && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			s = tm.screen()
		}
		switch {
		case details(s) && strings.Contains(flat(s), "Known disk: "+label):
			return
		case details(s): // another row's
			tm.keys("Escape")
			time.Sleep(500 * time.Millisecond)
		}
	}
	tm.t.Fatalf("could not choose %s:\n%s", row, tm.screen())
}

// waitFlat is tm.waitFor on the screen's words, so that a line wrapped
// anywhere still matches; it returns the screen as it is.
func waitFlat(tm *tmux, timeout time.Duration, want ...string) string {
	tm.t.Helper()
	var s string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		s = tm.screen()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(flat(s), w)
		}
		if ok {
			return s
		}
	}
	tm.t.Fatalf("timed out waiting for %q on the terminal:\n%s", want, s)
	return ""
}

// openedJSON is what the tests read of luksdock open --json.
type openedJSON struct {
	Cleartext  string `json:"cleartext"`
	Mountpoint string `json:"mountpoint"`
	Holder     int    `json:"holder_pid"`
	Already    bool   `json:"already_open"`
}

// openDisk runs luksdock open (userspace engine) on target at mnt.
func openDisk(t *testing.T, bin, mnt string, target []string) openedJSON {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"open", "--passphrase-file", "-", "--mountpoint", mnt, "--engine", "userspace", "--json"}, target...)...)
	cmd.Stdin = strings.NewReader(testPass + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("luksdock open %v: %v\n%s", target, err, out)
	}
	var o openedJSON
	if err := json.Unmarshal(out, &o); err != nil || o.Mountpoint != mnt || o.Holder == 0 {
		t.Fatalf("luksdock open --json: %v %s", err, out)
	}
	if inMountinfo(mnt) == "" {
		t.Fatalf("luksdock open did not mount %s", mnt)
	}
	return o
}

// loopBacking is the backing file of loop device dev ("" when unbound).
func loopBacking(dev string) string {
	b, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file"))
	return strings.TrimSpace(string(b))
}

// inMountinfo is the line of /proc/self/mountinfo for mountpoint mnt ("":
// none).
func inMountinfo(mnt string) string {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == mnt {
			return l
		}
	}
	return ""
}
