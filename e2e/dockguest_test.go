package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
	"luksdock/inventory"
)

// The dock service in a real Debian 12 system: systemd, udev and the .deb
// installed, booted with Debian's stock kernel and initrd (both from the
// root's linux-image-amd64) under QEMU. The root is made with mmdebstrap
// once a day and cached as a tarball in /var/tmp/luksdock-dockguest; the
// .deb is built by cmd/mkdeb.

// The libtss2 libraries are what systemd-cryptenroll and systemd's
// cryptsetup token plugin dlopen for a TPM2 (TestDockTPM2DebianGuest);
// esys pulls in the TCTIs and tpm-udev. dbus, dbus-user-session,
// libnotify-bin, xvfb and dunst make a desktop user's session bus with a
// notification server on it (dunst, on an Xvfb display), where the dock
// run's notification must arrive (TestDockServiceDebianGuest). udisks2
// and libblockdev-crypto2 (its LUKS plugin, a Recommends that minbase
// leaves out) are the desktop's disk service, which luksdock open and
// close must not confuse (TestOpenCloseBesideUdisksDebianGuest). Changing
// this list changes the cache key, so the cached root is made anew.
var dockRootPackages = []string{"systemd-sysv", "udev", "cryptsetup-bin", "e2fsprogs", "linux-image-amd64", "initramfs-tools", "kmod",
	"libtss2-esys-3.0.2-0", "libtss2-rc0", "libtss2-mu0",
	"dbus", "dbus-user-session", "libnotify-bin", "xvfb", "dunst",
	"udisks2", "libblockdev-crypto2"}

// dockRootTar returns the cached Debian 12 root tarball, making it first
// when today's is missing.
func dockRootTar(t *testing.T) string {
	t.Helper()
	const suite = "bookworm"
	h := sha256.Sum256([]byte(suite + " minbase " + strings.Join(dockRootPackages, ",")))
	cache := "/var/tmp/luksdock-dockguest"
	prefix := suite + "-" + hex.EncodeToString(h[:6]) + "-"
	tarball := filepath.Join(cache, prefix+time.Now().UTC().Format("20060102")+".tar")
	if _, err := os.Stat(tarball); err == nil {
		t.Logf("using the cached Debian root %s", tarball)
		return tarball
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Fatalf("mmdebstrap is not installed (apt-get install mmdebstrap): the dock guest needs it")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := filepath.Glob(filepath.Join(cache, prefix+"*.tar"))
	tmp := tarball + fmt.Sprintf(".%d.tmp", os.Getpid())
	t0 := time.Now()
	cmd := exec.Command("mmdebstrap", "--quiet", "--format=tar", "--variant=minbase", "--include="+strings.Join(dockRootPackages, ","), suite, tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("mmdebstrap %s: %v\n%s", suite, err, out)
	}
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	for _, o := range old {
		os.Remove(o)
	}
	t.Logf("made the Debian root %s with mmdebstrap in %s", tarball, time.Since(t0).Round(time.Second))
	return tarball
}

// buildDeb builds the .deb with cmd/mkdeb ($LUKSDOCK_E2E_DEB names a ready one).
func buildDeb(t *testing.T, dir string) string {
	t.Helper()
	if p := os.Getenv("LUKSDOCK_E2E_DEB"); p != "" {
		return p
	}
	out := filepath.Join(dir, "deb")
	// cmd/mkdeb is a module of its own (scripts/package runs it the same way).
	cmd := exec.Command("go", "run", ".", "-out", out)
	cmd.Dir = filepath.Join(repoRoot(t), "cmd", "mkdeb")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cmd/mkdeb: %v\n%s", err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("cmd/mkdeb made %v", debs)
	}
	return debs[0]
}

// dockGuestRoot unpacks the root, installs the .deb with dpkg and the
// scenario service, and returns the root filesystem image and the stock
// kernel and initrd.
func dockGuestRoot(t *testing.T, dir, deb, scenario string) (rootImg, kernel, initrd string) {
	t.Helper()
	root, err := os.MkdirTemp("/var/tmp", "luksdock-dockroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if out, err := exec.Command("tar", "-xf", dockRootTar(t), "-C", root, "--numeric-owner").CombinedOutput(); err != nil {
		t.Fatalf("unpacking the root: %v\n%s", err, out)
	}
	b, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	write := func(p string, data []byte, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("tmp/luksdock.deb", b, 0o644)
	if out, err := exec.Command("chroot", root, "dpkg", "-i", "/tmp/luksdock.deb").CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i in the root: %v\n%s", err, out)
	}
	os.Remove(filepath.Join(root, "tmp/luksdock.deb"))
	write("etc/hostname", []byte("dockguest\n"), 0o644)
	write("etc/machine-id", []byte("0123456789abcdef0123456789abcdef\n"), 0o444)
	write("etc/fstab", []byte("/dev/vda / ext4 rw,errors=remount-ro 0 1\n"), 0o644)
	write("root/pass", []byte(testPassphrase+"\n"), 0o600)
	write("usr/local/sbin/e2e-scenario", []byte(scenario), 0o755)
	write("etc/systemd/system/luksdock-e2e.service", []byte(`[Unit]
Description=luksdock e2e scenario
After=multi-user.target systemd-udevd.service
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/e2e-scenario
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
`), 0o644)
	if err := os.MkdirAll(filepath.Join(root, "etc/systemd/system/multi-user.target.wants"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/luksdock-e2e.service", filepath.Join(root, "etc/systemd/system/multi-user.target.wants/luksdock-e2e.service")); err != nil {
		t.Fatal(err)
	}
	ks, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	is, _ := filepath.Glob(filepath.Join(root, "boot/initrd.img-*"))
	if len(ks) != 1 || len(is) != 1 {
		t.Fatalf("the root's /boot has kernels %v and initrds %v, want one each", ks, is)
	}
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	for _, c := range [][2]string{{ks[0], kernel}, {is[0], initrd}} {
		if out, err := exec.Command("cp", c[0], c[1]).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	rootImg = filepath.Join(dir, "root.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, rootImg, "2G").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	return rootImg, kernel, initrd
}

// dockScenario runs in the guest as a systemd service. It prepares and
// enrolls the docked disk, then lets the host undock and dock it through
// QMP: the dock service must run the configured command, record it, lock
// the disk and power it off; undocked mid-run it must record an
// interruption and leave no mapping, and the next docking must succeed; an
// unknown LUKS disk must start nothing. A desktop user, alice, is logged
// in meanwhile (loginctl enable-linger: systemd --user and its session bus
// at /run/user/1000/bus, dbus-user-session) with a notification server
// (dunst on an Xvfb display); dbus-monitor, run as alice, records the
// org.freedesktop.Notifications calls on her bus, which the host reads.
const dockScenario = `#!/bin/bash
exec 3<>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 2>/dev/null
mark() { echo "@@E2E $*" >&3; }
end() { mark exit "$1"; sync; systemctl poweroff --force --force; sleep 600; }
fail() { echo "FAIL: $*" >&3; journalctl -b --no-pager -n 200 >&3; end 1; }
host_wait() { while read -r l <&3; do l=${l%$'\r'}; [ "$l" = "$1" ] && return 0; done; fail "no host $1"; }
wait_for() { local n=0; until eval "$1"; do sleep 1; n=$((n+1)); [ $n -ge $2 ] && return 1; done; return 0; }
emit() { mark blob-begin "$1"; base64 "$2" >&3; mark blob-end "$1"; }
runs() { journalctl -u 'luksdock-dock@*' --no-pager | grep -c "$1"; }
cmdfile() { printf '#!/bin/sh\n%s\n' "$1" > /etc/luksdock/run/set-offsite; chmod 755 /etc/luksdock/run/set-offsite; }

mark booted
# A desktop user with a session bus and a notification server on it.
as_alice() { setpriv --reuid=1000 --regid=1000 --clear-groups env HOME=/home/alice XDG_RUNTIME_DIR=/run/user/1000 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus PATH=/usr/bin:/bin "$@"; }
useradd -m -u 1000 -U -s /bin/bash alice || fail "useradd alice"
loginctl enable-linger alice || fail "loginctl enable-linger alice"
wait_for '[ -S /run/user/1000/bus ]' 120 || fail "no session bus for alice: $(systemctl status user@1000.service --no-pager 2>&1 | tail -20)"
as_alice Xvfb :99 -nolisten tcp >/tmp/xvfb.log 2>&1 &
wait_for '[ -S /tmp/.X11-unix/X99 ]' 60 || fail "Xvfb did not start: $(cat /tmp/xvfb.log)"
( cd /home/alice && as_alice env DISPLAY=:99 dunst >/tmp/dunst.log 2>&1 & )
wait_for 'as_alice dbus-send --session --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.NameHasOwner string:org.freedesktop.Notifications 2>/dev/null | grep -q "boolean true"' 60 || fail "dunst did not take org.freedesktop.Notifications: $(cat /tmp/dunst.log)"
( cd / && as_alice dbus-monitor --session "interface='org.freedesktop.Notifications'" >/tmp/notify.log 2>&1 & )
sleep 1
wait_for '[ -b /dev/sda ]' 120 || fail "no /dev/sda"
luksdock prepare --device /dev/sda --label backups01 --set offsite --passphrase-file /root/pass --confirm sda --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >&3 2>&3 || fail prepare
luksdock host enroll --device /dev/sda --passphrase-file /root/pass >&3 2>&3 || fail enroll
stat -c 'keyfile %a %U %s' /etc/luksdock/keys/*.key >&3
mkdir -p /etc/luksdock/run
cmdfile 'echo "backed up by the guest" > "$LUKSDOCK_MOUNT/from-guest"; env | grep ^LUKSDOCK_ > "$LUKSDOCK_MOUNT/env"'
udevadm settle
# Enrolling a docked disk may start a run at once: udev re-reads the disk's
# partitions when a writer closes it, and the partition's "add" now finds
# the key. Let it finish; the dockings below are counted from here.
sleep 3
wait_for '! systemctl list-units --no-legend --state=activating,active "luksdock-dock@*" | grep -q .' 300 || fail "a run started by the enrollment did not end"
base=$(runs "docked as"); locked0=$(runs "; locked"); int0=$(runs INTERRUPTED)
mark enrolled
host_wait replugged
wait_for '[ "$(runs "; locked")" -ge $((locked0 + 1)) ]' 300 || fail "the dock service did not finish a run"
wait_for '! systemctl is-active -q luksdock-dock@sda1.service' 60 || fail "the service is still active"
journalctl -u 'luksdock-dock@*' --no-pager >&3
ls /dev/mapper | grep -q luksdock && fail "a mapping is left: $(ls /dev/mapper)"
[ -e /sys/block/sda ] && fail "the disk was not powered off"
luksdock inventory --json > /tmp/inv1.json; emit inv1 /tmp/inv1.json
mark run1

cmdfile 'touch /run/started; exec sleep 600'
rm -f /run/started
mark ready2
host_wait replugged2
wait_for '[ -e /run/started ]' 300 || fail "the second run did not start"
mark running
host_wait unplugged
wait_for '[ "$(runs INTERRUPTED)" -ge $((int0 + 1)) ]' 120 || fail "the undock mid-run was not recorded"
wait_for '! systemctl is-active -q luksdock-dock@sda1.service' 60 || fail "the service is still active after the undock"
sleep 2
ls /dev/mapper | grep -q luksdock && fail "a mapping is left after the undock: $(ls /dev/mapper)"
grep -q /run/luksdock/dock /proc/mounts && fail "a mount is left after the undock"
luksdock inventory --json > /tmp/inv2.json; emit inv2 /tmp/inv2.json
cmdfile 'echo again > "$LUKSDOCK_MOUNT/from-guest-2"'
mark ready3
host_wait replugged3
wait_for '[ "$(runs "; locked")" -ge $((locked0 + 2)) ]' 300 || fail "the docking after the interruption did not finish"
wait_for '! systemctl is-active -q luksdock-dock@sda1.service' 60
journalctl -u 'luksdock-dock@*' --no-pager >&3
luksdock inventory --json > /tmp/inv3.json; emit inv3 /tmp/inv3.json
sync; emit notify /tmp/notify.log
mark run3

cmdfile 'touch /run/unknown-ran'
mark ready4
host_wait plugged-unknown
wait_for 'ls /sys/block | grep -q ^sd' 120 || fail "the unknown disk did not appear"
udevadm settle
sleep 10
[ -e /run/unknown-ran ] && fail "the command ran for an unknown disk"
systemctl list-units --all --no-legend 'luksdock-dock@*' >&3
[ "$(runs "docked as")" -eq $((base + 3)) ] || fail "the dock service saw the unknown disk: $(runs 'docked as') dockings, $base before the three of this test"
end 0
`

// TestDockServiceDebianGuest: see dockScenario.
func TestDockServiceDebianGuest(t *testing.T) {
	dir := dockGuestDir(t)
	deb := buildDeb(t, dir)
	rootImg, kernel, initrd := dockGuestRoot(t, dir, deb, dockScenario)
	backup := newImage(t, dir, "backup.img", 256<<20)
	unknown := newImage(t, dir, "unknown.img", 64<<20)
	testkit.Run(t, "x", "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", unknown)
	vm := bootDockGuest(t, dir, rootImg, kernel, initrd, nil,
		Disk{ID: "d1", Image: backup, Vendor: "WDC", Product: "WD40EFRX", Serial: "WD-DOCK0001"},
		Disk{ID: "d2", Image: unknown, Vendor: "Seagate", Product: "Expansion", Serial: "NA-UNKNOWN", Hotplug: true})
	redock := func(word string) { t.Helper(); redockGuest(t, vm, "d1", word) }
	enrolledThenRun(t, vm)
	inv := func(name string) *inventory.Record {
		t.Helper()
		b, err := vm.Blob(name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		var f inventory.File
		if err := json.Unmarshal(b, &f); err != nil || len(f.Disks) != 1 {
			t.Fatalf("inventory %s: %v\n%s", name, err, b)
		}
		return &f.Disks[0]
	}
	if r := inv("inv1"); r.LastBackup() == nil || r.LastBackup().Outcome != "ok" || r.LastBackup().Host != "dockguest" {
		t.Errorf("inventory after the first docking: %+v", r.Backups)
	}
	mustMark(t, vm, "ready2", time.Minute)
	redock("replugged2")
	mustMark(t, vm, "running", 10*time.Minute)
	if err := vm.Unplug("d1"); err != nil {
		t.Fatalf("undock mid-run: %v", err)
	}
	vm.Send("unplugged")
	mustMark(t, vm, "ready3", 5*time.Minute)
	if r := inv("inv2"); r.LastBackup() == nil || r.LastBackup().Outcome != "interrupted" {
		t.Errorf("inventory after the undock mid-run: %+v", r.Backups)
	}
	if err := vm.Plug("d1"); err != nil {
		t.Fatal(err)
	}
	vm.Send("replugged3")
	mustMark(t, vm, "run3", 10*time.Minute)
	// The last three runs are this test's dockings (a run the enrollment
	// itself started may come before them).
	inv3 := inv("inv3")
	if r := inv3; r.LastBackup() == nil || len(r.Backups) < 3 || !slices.Equal(outcomes(r.Backups[len(r.Backups)-3:]), []string{"ok", "interrupted", "ok"}) {
		t.Errorf("inventory after the docking that followed the interruption: %+v", r.Backups)
	}
	// The logged-in user was told, on her own session bus: a Notify call
	// from luksdock with the run's summary for each docking.
	mon, err := vm.Blob("notify", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	calls := notifyCalls(string(mon))
	t.Logf("Notify calls on alice's session bus: %q", calls)
	for _, want := range []string{"luksdock: backups01 ok", "luksdock: backup to backups01 interrupted"} {
		if !slices.ContainsFunc(calls, func(c []string) bool { return len(c) > 3 && c[0] == "luksdock" && c[3] == want }) {
			t.Errorf("no Notify call with the summary %q on alice's session bus; dbus-monitor saw:\n%s", want, mon)
		}
	}
	mustMark(t, vm, "ready4", time.Minute)
	if err := vm.Plug("d2"); err != nil {
		t.Fatal(err)
	}
	vm.Send("plugged-unknown")
	mustExit(t, vm, 5*time.Minute)

	// On the host: the command's files are on the disk (cryptsetup
	// decrypts, debugfs reads), and the history file has two good runs.
	plain := decryptedDisk(t, backup)
	for path, want := range map[string]string{"/from-guest": "backed up by the guest\n", "/from-guest-2": "again\n"} {
		out, _ := exec.Command("debugfs", "-R", "cat "+path, plain).Output()
		if string(out) != want {
			t.Errorf("%s on the disk holds %q, want %q", path, out, want)
		}
	}
	env, _ := exec.Command("debugfs", "-R", "cat /env", plain).Output()
	if !strings.Contains(string(env), "LUKSDOCK_MOUNT=/run/luksdock/dock/backups01") || !strings.Contains(string(env), "LUKSDOCK_SET=offsite") {
		t.Errorf("the command's environment: %s", env)
	}
	// The disk was unmounted cleanly at the end of the last run: its
	// journal holds nothing debugfs would miss (it does not replay it).
	if h, _ := exec.Command("dumpe2fs", "-h", plain).Output(); strings.Contains(string(h), "needs_recovery") {
		t.Errorf("the disk's filesystem was not cleanly unmounted (needs_recovery):\n%s", h)
	}
	hist, _ := exec.Command("debugfs", "-R", "cat /.luksdock/history.jsonl", plain).Output()
	// The disk carries its history: one line for each run that ended ok in
	// the guest (its inventory, inv3: a run the enrollment started too),
	// in order, known by run ID; interrupted runs are not on the disk.
	t.Logf("the disk's history, read on the host: %s", hist)
	var onDisk, good []string
	for _, l := range strings.Split(strings.TrimSuffix(string(hist), "\n"), "\n") {
		var b inventory.Backup
		if err := json.Unmarshal([]byte(l), &b); err != nil || b.ID == "" {
			t.Errorf("a line of the disk's history is not a run: %q (%v)", l, err)
		}
		onDisk = append(onDisk, b.ID)
	}
	for _, b := range inv3.Backups {
		if b.Outcome == "ok" {
			good = append(good, b.ID)
		}
	}
	if len(good) < 2 || !slices.Equal(onDisk, good) {
		t.Errorf("the disk's history holds runs %v, the guest's inventory the good runs %v", onDisk, good)
	}
}

// notifyCalls are the arguments of each org.freedesktop.Notifications
// Notify method call in dbus-monitor's output, as strings: app name,
// replaces_id (left empty), icon, summary, body, then the strings of the
// hints.
func notifyCalls(mon string) [][]string {
	var calls [][]string
	var cur []string
	in := false
	for _, l := range strings.Split(mon, "\n") {
		switch {
		case strings.HasPrefix(l, "method call ") || strings.HasPrefix(l, "signal ") || strings.HasPrefix(l, "method return ") || strings.HasPrefix(l, "error "):
			if in {
				calls = append(calls, cur)
			}
			in = strings.HasPrefix(l, "method call ") && strings.Contains(l, "member=Notify")
			cur = nil
		case in && strings.HasPrefix(strings.TrimSpace(l), "string \""):
			v := strings.TrimSpace(l)
			cur = append(cur, strings.TrimSuffix(strings.TrimPrefix(v, "string \""), "\""))
		case in && strings.HasPrefix(strings.TrimSpace(l), "uint32 ") && len(cur) == 1:
			cur = append(cur, "") // replaces_id: the summary is then cur[3]
		}
	}
	if in {
		calls = append(calls, cur)
	}
	return calls
}

// outcomes are the runs' outcomes, in order.
func outcomes(runs []inventory.Backup) []string {
	var o []string
	for _, r := range runs {
		o = append(o, r.Outcome)
	}
	return o
}

// bootDockGuest boots the Debian guest with systemd and udev from rootImg
// (dockGuestRoot), the disks docked and qemu added to QEMU's command line.
func bootDockGuest(t *testing.T, dir, rootImg, kernel, initrd string, qemu []string, disks ...Disk) *VM {
	t.Helper()
	return boot(t, dir, Config{
		Guest:      &Guest{Kernel: kernel, Initramfs: initrd},
		RootDisk:   rootImg,
		KernelArgs: "systemd.show_status=0",
		MemoryMB:   1024,
		Timeout:    25 * time.Minute,
		Disks:      disks,
		QEMUArgs:   qemu,
	})
}

// redockGuest undocks the disk id and docks it again (QMP), then tells the
// guest's scenario word.
func redockGuest(t *testing.T, vm *VM, id, word string) {
	t.Helper()
	if err := vm.Unplug(id); err != nil {
		t.Fatalf("undock: %v", err)
	}
	if err := vm.Plug(id); err != nil {
		t.Fatalf("dock: %v", err)
	}
	if err := vm.Send(word); err != nil {
		t.Fatal(err)
	}
}

// enrolledThenRun waits for the scenario's boot and enrollment, redocks d1
// ("replugged") and waits for the first docking's run.
func enrolledThenRun(t *testing.T, vm *VM) {
	t.Helper()
	mustMark(t, vm, "booted", 10*time.Minute)
	mustMark(t, vm, "enrolled", 10*time.Minute)
	redockGuest(t, vm, "d1", "replugged")
	mustMark(t, vm, "run1", 10*time.Minute)
}

// dockGuestDir skips loudly where the QEMU suite cannot run, requires
// root (the guest's root is made with chroot and mkfs -d) and returns the
// test's scratch directory.
func dockGuestDir(t *testing.T) string {
	t.Helper()
	if os.Getenv("LUKSDOCK_E2E") == "0" || testing.Short() {
		t.Skip("SKIPPED: VM end-to-end tests disabled (LUKSDOCK_E2E=0 or -short)")
	}
	if _, err := QEMUBinary(); err != nil {
		t.Skipf("SKIPPED: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the dock guest needs root (chroot for dpkg, mkfs -d)")
	}
	return scratchDir(t)
}

// decryptedDisk is the plaintext of the backup disk image's LUKS volume
// (partition 1), decrypted with stock cryptsetup and the test passphrase,
// for debugfs to read on the host.
func decryptedDisk(t *testing.T, img string) string {
	t.Helper()
	p1, ok := testkit.Partition1(t, img)
	if !ok {
		t.Fatal("the backup disk has no partition 1")
	}
	v, err := testkit.Unlock(t, p1, testPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	return testkit.DecryptCryptsetup(t, v)
}
