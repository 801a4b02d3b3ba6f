package e2e

import (
	"strings"
	"testing"
	"time"
)

// Issue 6 faults with the kernel engine (the host has no device-mapper): a
// SIGKILL of luksdock while cryptsetup luksFormat, mkfs.ext4, or the verify
// step's e2fsck runs. The tools are slowed by a shim (sleep, then the real
// tool) so the kill lands inside the step on any machine. After each kill:
// no dm-crypt mapping is left (luksdock marks its mappings for deferred
// removal while it holds them), no luksdock-made loop device; luksdock verify
// does not pass a disk killed before its filesystem was made; and a new run
// prepares the disk from scratch and verifies it.
func TestSIGKILLKernelEngine(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "kill", Image: newImage(t, dir, "disk.img", 128<<20), Transport: "bot",
		Vendor: "WDC", Product: "WD5000AAKX", Serial: "WCC2EKILL01"}
	script := `label=backups03
n=$(wait_disk ` + d.Serial + ` 60) || fail "disk did not appear"
mkdir -p /tmp/slow
for tool in cryptsetup mkfs.ext4 e2fsck; do
	real=$(command -v $tool) || fail "no $tool"
	printf '#!/bin/sh\nsleep 1\nexec %s "$@"\n' "$real" > /tmp/slow/$tool
	chmod +x /tmp/slow/$tool
done
for step in luks-format mkfs verify; do
	case $step in
	luks-format) pat='[c]ryptsetup .*luksFormat' ;;
	mkfs) pat='[m]kfs.ext4 ' ;;
	verify) pat='[e]2fsck -fn' ;;
	esac
	( PATH=/tmp/slow:$PATH
` + strings.TrimSpace(guestPrepare) + ` ) &
	wait_proc "$pat" 120 || fail "step $step never started: $(cat /tmp/prepare.err)"
	kill -9 $(pidof luksdock) || fail "no luksdock to kill in $step"
	wait
	i=0
	while dmsetup ls 2>/dev/null | grep -q luksdock && [ $i -lt 300 ]; do i=$((i + 1)); usleep 50000; done
	mark dmsetup-$step $(dmsetup ls 2>&1)
	mark losetup-$step $(losetup -a 2>&1)
	luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel </dev/null >/tmp/verify.out 2>/tmp/verify.err
	mark verify-$step $?
	cat /tmp/verify.err
	mark dmsetup-after-verify-$step $(dmsetup ls 2>&1)
done
` + guestPrepare + `
cat /tmp/prepare.err
mark final $(cat /tmp/prepare.rc)
mark dmsetup-final $(dmsetup ls 2>&1)
luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel </dev/null >/dev/null 2>/tmp/verify.err
mark verify-final $?
`
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{d}, Timeout: 5 * time.Minute, Script: script})
	for _, step := range []string{"luks-format", "mkfs", "verify"} {
		if dm := strings.Join(mustMark(t, vm, "dmsetup-"+step, 3*time.Minute), " "); dm != "No devices found" {
			t.Errorf("SIGKILL in %s: device-mapper mapping left: %q", step, dm)
		}
		if l := strings.Join(mustMark(t, vm, "losetup-"+step, 10*time.Second), " "); l != "" {
			t.Errorf("SIGKILL in %s: loop device left: %q", step, l)
		}
		code := strings.Join(mustMark(t, vm, "verify-"+step, 2*time.Minute), "")
		t.Logf("SIGKILL in %s: luksdock verify exit %s", step, code)
		switch {
		case step == "luks-format" && code == "0":
			t.Errorf("verify passed a disk killed during luksFormat, before any filesystem was made")
		case code != "0" && code != "5":
			t.Errorf("SIGKILL in %s: verify exit %s, want 0 (the step's tool finished on its own) or 5", step, code)
		}
		if dm := strings.Join(mustMark(t, vm, "dmsetup-after-verify-"+step, 30*time.Second), " "); dm != "No devices found" {
			t.Errorf("after verify (%s): mapping left: %q", step, dm)
		}
	}
	if rc := strings.Join(mustMark(t, vm, "final", 3*time.Minute), ""); rc != "0" {
		t.Errorf("a new prepare after the kills: exit %s", rc)
	}
	if dm := strings.Join(mustMark(t, vm, "dmsetup-final", 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("mapping left after the final run: %q", dm)
	}
	if rc := strings.Join(mustMark(t, vm, "verify-final", 2*time.Minute), ""); rc != "0" {
		t.Errorf("verify after the final run: exit %s", rc)
	}
	mustExit(t, vm, time.Minute)
}
