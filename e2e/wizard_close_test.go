package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 19: a disk opened with the kernel engine (`luksdock open --device`:
// a dm-crypt mapping luks-UUID over its partition, mounted under /media) is
// closed from the wizard. The disk list offers it (its only uses are that
// mapping and its mount) and says where it is mounted; Details and the
// Actions screen lead to Close, which unmounts, locks and powers the USB
// disk off. Afterwards, in the guest: no mapping (`dmsetup ls`, /dev/mapper),
// no mount, the mountpoint gone, the disk powered off; on the host the image
// still opens with stock cryptsetup and `luksdock verify` finds the file
// written while it was open.
func TestWizardClosesKernelOpen(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "wzc", Image: newImage(t, dir, "wzc.img", 128<<20), Transport: "uas",
		Vendor: "TOSHIBA", Product: "CLOSEDISK", Serial: "WZC0000001"}
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{d}, Terminal: true, Timeout: 10 * time.Minute, Script: `
label=wzclose1
n=$(wait_disk ` + d.Serial + ` 60) || fail "the disk did not appear"
` + guestPrepare + `
[ "$(cat /tmp/prepare.rc)" = 0 ] || { cat /tmp/prepare.err; fail "prepare exited $(cat /tmp/prepare.rc)"; }
p=${n}1
SUDO_UID=1000 SUDO_GID=1000 luksdock open --device /dev/$n --passphrase-file /e2e/pass </dev/null >/tmp/open.out 2>&1 || { cat /tmp/open.out; fail "luksdock open"; }
cat /tmp/open.out
mp=/media/1000/$label
grep -q " $mp ext4 " /proc/mounts || fail "not mounted at $mp: $(cat /proc/mounts)"
dmsetup ls
echo "written while open" > $mp/e2e-file || fail "writing a file"
luksdock list </dev/null
mark opened $n $mp
stty -F /dev/ttyS2 rows 24 cols 80
TERM=xterm-256color script -q -e -c 'luksdock' /dev/null </dev/ttyS2 >/dev/ttyS2 2>&1
mark wizard-exit $?
echo "+ dmsetup ls"; dmsetup ls
echo "+ ls /dev/mapper"; ls /dev/mapper
[ "$(dmsetup ls)" = "No devices found" ] || fail "a mapping is left after the wizard's Close: $(dmsetup ls)"
[ "$(ls /dev/mapper)" = control ] || fail "/dev/mapper holds more than control: $(ls /dev/mapper)"
grep " $mp " /proc/self/mountinfo && fail "$mp is still mounted"
[ -e $mp ] && fail "Close left the mountpoint $mp"
d=$(deadline 10); while [ -e /sys/block/$n ]; do past $d && fail "/sys/block/$n still there: not powered off"; usleep 50000; done
grep -l ` + d.Serial + ` /sys/bus/usb/devices/*/serial 2>/dev/null && fail "the USB device is still there after the power-off"
sync
mark closed
`})
	w := newWizardDriver(t, vm)
	opened := mustMark(t, vm, "opened", 4*time.Minute)
	if len(opened) != 2 {
		t.Fatalf("opened: %v", opened)
	}
	name, mp := opened[0], opened[1]
	q := regexp.QuoteMeta
	// the list offers it, selected (the only disk it offers), and says where it is open
	w.mustScreen("the open disk offered in the list", regexp.MustCompile(`(?s)Choose the disk.*› `+q(name)+`\b.*open: mounted at\s+`+q(mp)+`.*Enter offers Close`), time.Minute)
	w.send("\r")
	w.mustScreen("Details of the open disk", regexp.MustCompile(`(?s)Is this the disk.*Open now: mounted at\s+`+q(mp)), 30*time.Second)
	w.send("\r")
	w.mustScreen("the Actions screen offering Close first", regexp.MustCompile(`(?s)What to do with this disk.*Open now: mounted at\s+`+q(mp)+`.*› Close`), 10*time.Second)
	if txt := w.screen.Text(); strings.Contains(txt, "Prepare again") || strings.Contains(txt, "Retire") {
		t.Errorf("the Actions screen offers to prepare or retire an open disk:\n%s", txt)
	}
	w.send("\r")
	w.mustScreen("the Close screen", regexp.MustCompile(`(?s)Close: unmount, lock, power off.*unmounts it from\s+`+q(mp)), 10*time.Second)
	w.send("\r")
	w.mustScreen("Close done", regexp.MustCompile(`(?s)unmounted\s+`+q(mp)+`\s+and\s+locked.*You can pull the disk now`), 2*time.Minute)
	t.Logf("wizard after Close:\n%s", w.screen.Text())
	w.send("\r")
	w.mustScreen("back on the disk list", regexp.MustCompile(`Choose the disk`), 10*time.Second)
	w.send("q")
	if _, _, err := vm.WaitMark("wizard-exit", 10*time.Second); err != nil {
		w.send("y") // "quit?" prompt
	}
	if rc := mustMark(t, vm, "wizard-exit", 20*time.Second); len(rc) != 1 || rc[0] != "0" {
		t.Errorf("wizard exited with %v, want 0", rc)
	}
	mustMark(t, vm, "closed", time.Minute)
	mustExit(t, vm, time.Minute)

	// On the host: stock cryptsetup still accepts the passphrase, luksdock
	// verify (userspace engine) finds the volume and its filesystem clean,
	// and luksdock open shows the file written while it was open.
	loop, code := runHost(t, "", "losetup", "--find", "--show", "--read-only", "--offset", "1048576", d.Image)
	if code != 0 {
		t.Fatalf("losetup: %s", loop)
	}
	loop = strings.TrimSpace(loop)
	out, code := runHost(t, testPassphrase+"\n", "cryptsetup", "open", "--test-passphrase", loop)
	runHost(t, "", "losetup", "-d", loop)
	if code != 0 {
		t.Errorf("host: stock cryptsetup refuses the passphrase after the wizard's Close (exit %d): %s", code, out)
	}
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte(testPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runHost(t, "", bin, "verify", "--image", d.Image, "--passphrase-file", pass, "--engine", "userspace"); code != 0 {
		t.Errorf("host: luksdock verify after the wizard's Close exited %d:\n%s", code, out)
	}
	mnt := filepath.Join(dir, "mnt")
	// luksdock open's record, and the inventory, in the test's directory
	host := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "LUKSDOCK_RUN_DIR="+filepath.Join(dir, "run"), "LUKSDOCK_INVENTORY="+filepath.Join(dir, "inventory.json"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := host("open", "--image", d.Image, "--passphrase-file", pass, "--engine", "userspace", "--mountpoint", mnt); err != nil {
		t.Fatalf("host: luksdock open after the wizard's Close: %v\n%s", err, out)
	}
	defer host("close", "--mountpoint", mnt) // when reading failed before the close below
	b, err := os.ReadFile(filepath.Join(mnt, "e2e-file"))
	if out, err := host("close", "--mountpoint", mnt); err != nil {
		t.Errorf("host: luksdock close: %v\n%s", err, out)
	}
	if err != nil || string(b) != "written while open\n" {
		t.Errorf("host: the file written while the disk was open reads %q, %v", b, err)
	}
}
