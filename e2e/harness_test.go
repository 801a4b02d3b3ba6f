package e2e

import (
	"regexp"
	"testing"
	"time"
)

// TestHarnessStockTools checks the harness itself, without luksdock: the
// stock kernel boots under TCG, a hot-plugged usb-bot disk attaches with
// the vendor/model/serial given to QEMU, stock cryptsetup makes and opens a
// dm-crypt volume on it, ext4 mounts, and after an undock and a re-dock of
// the same block node the data is still there. When this fails, the other
// VM tests' failures are about the harness, not luksdock.
func TestHarnessStockTools(t *testing.T) {
	g := skipUnlessVM(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "h", Image: newImage(t, dir, "h.img", 96<<20), Vendor: "HARNESS", Product: "SELFTEST", Serial: "HS0001", Hotplug: true}
	vm := boot(t, dir, Config{Guest: g, Disks: []Disk{d}, Script: `
mark ready
n=$(wait_disk HS0001 60) || fail "disk did not appear"
[ "$(cat /sys/block/$n/device/vendor | tr -d ' ')" = HARNESS ] || fail "vendor: $(cat /sys/block/$n/device/vendor)"
[ "$(cat /sys/block/$n/device/model | tr -d ' ')" = SELFTEST ] || fail "model: $(cat /sys/block/$n/device/model)"
[ "$(cat /sys/block/$n/size)" = 196608 ] || fail "size: $(cat /sys/block/$n/size) sectors"
run cryptsetup luksFormat --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /e2e/pass /dev/$n
run cryptsetup open --key-file /e2e/pass /dev/$n v
run mkfs.ext4 -q -L selftest /dev/mapper/v
run mount /dev/mapper/v /mnt
echo survives > /mnt/f
run umount /mnt
run cryptsetup close v
sync
mark undock-me
host_wait undocked
wait_gone $n 30
mark redock-me
n=$(wait_disk HS0001 60) || fail "disk did not come back"
run cryptsetup open --key-file /e2e/pass /dev/$n v
run mount -o ro /dev/mapper/v /mnt
[ "$(cat /mnt/f)" = survives ] || fail "data lost across undock/re-dock"
run umount /mnt
run cryptsetup close v
mark ok
`})
	mustMark(t, vm, "ready", 90*time.Second)
	if err := vm.Plug(d.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm.WaitLine("console", regexp.MustCompile(`HARNESS +SELFTEST`), 0, time.Minute); err != nil {
		t.Errorf("the kernel did not print the SCSI inquiry with the vendor/model given to QEMU: %v", err)
	}
	if _, _, err := vm.WaitLine("console", regexp.MustCompile(`\] Attached SCSI disk`), 0, time.Minute); err != nil {
		t.Errorf("no \"Attached SCSI disk\" on the console: %v", err)
	}
	mustMark(t, vm, "undock-me", 2*time.Minute)
	if err := vm.Unplug(d.ID); err != nil {
		t.Fatal(err)
	}
	vm.Send("undocked")
	mustMark(t, vm, "redock-me", time.Minute)
	if err := vm.Plug(d.ID); err != nil {
		t.Fatal(err)
	}
	mustMark(t, vm, "ok", 2*time.Minute)
	mustExit(t, vm, time.Minute)
	t.Logf("guest boot to scenario end: %.1f s", vm.Elapsed().Seconds())
}
