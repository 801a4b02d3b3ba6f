package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Issue 19: the disk's life after prepare with the kernel engine (dm-crypt)
// on USB docks. Disk A: prepared; `luksdock open` (for SUDO_UID 1000, so at
// /media/1000/LABEL) as /dev/mapper/luks-UUID; close refused while a
// process has its cwd inside (exit 3, named); closed with --no-power-off;
// stock cryptsetup + e2fsck + the file read back; passwd and recovery-key
// --replace, each proved at stock cryptsetup's prompt (old refused, new
// accepted); unlocked and mounted by hand, then reported by open and closed
// by close; opened with the new recovery key, the file read back; closed
// with power-off: the SCSI disk and the USB device are gone from the
// guest. Disk B: prepared, retired; blkid -p and cryptsetup isLuks find
// nothing in the guest and, after the guest exits, on the host's image.
// An image file in the guest: prepared, `luksdock open --image` (a loop
// device for the LUKS range, then dm-crypt), a file written, closed; stock
// losetup + cryptsetup + e2fsck -fn find the file, and no loop device or
// mapping is left.
func TestLifecycleKernelEngine(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	a := Disk{ID: "diska", Image: newImage(t, dir, "a.img", 160<<20), Transport: "bot", Vendor: "WD", Product: "Elements", Serial: "LCA0000001"}
	b := Disk{ID: "diskb", Image: newImage(t, dir, "b.img", 96<<20), Transport: "bot", Vendor: "WD", Product: "Elements", Serial: "LCB0000002"}
	newPass := "vivid-Ocelot-parsnip-42-lantern"
	files := map[string][]byte{"newpass": []byte(newPass + "\n")}
	low := "--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{a, b}, Files: files, Timeout: 18 * time.Minute, Script: `
label=lcdisk01
n=$(wait_disk ` + a.Serial + ` 60) || fail "disk A did not appear"
` + strings.Replace(guestPrepare, "--json", "--recovery-key /tmp/rk1 --json", 1) + `
[ "$(cat /tmp/prepare.rc)" = 0 ] || { cat /tmp/prepare.err; fail "prepare A exited $(cat /tmp/prepare.rc)"; }
tail -n 1 /tmp/rk1 > /tmp/rk1.key
p=${n}1
SUDO_UID=1000 SUDO_GID=1000 luksdock open --device /dev/$n --passphrase-file /e2e/pass --json </dev/null > /tmp/open.json 2>/tmp/open.err || { cat /tmp/open.json /tmp/open.err; fail "luksdock open"; }
emit open /tmp/open.json
mp=/media/1000/$label
grep -q " $mp ext4 " /proc/mounts || fail "not mounted at $mp: $(cat /proc/mounts)"
dmsetup ls
dd if=/dev/urandom of=$mp/e2e-file bs=64k count=16 2>/dev/null || fail "writing a file"
sum=$(sha256sum < $mp/e2e-file)
( cd $mp && exec sleep 120 ) & bp=$!
usleep 300000
luksdock close --device /dev/$n --no-power-off </dev/null > /tmp/busy.out 2>&1; echo $? > /tmp/busy.rc
cat /tmp/busy.out
[ "$(cat /tmp/busy.rc)" = 3 ] || fail "close while busy exited $(cat /tmp/busy.rc)"
grep -q "pid $bp (sleep): cwd $mp" /tmp/busy.out || fail "close did not name the sleep in $mp"
grep -q " $mp ext4 " /proc/mounts || fail "close while busy unmounted it"
kill $bp; wait $bp 2>/dev/null
run luksdock close --device /dev/$n --no-power-off
grep -q " $mp " /proc/mounts && fail "still mounted after close"
[ -e $mp ] && fail "close left $mp"
[ "$(dmsetup ls)" = "No devices found" ] || fail "a mapping is left after close: $(dmsetup ls)"
cryptsetup open /dev/$p lc0 < /e2e/pass || fail "stock cryptsetup open after close"
run mount -t ext4 -o ro /dev/mapper/lc0 /mnt
[ "$(sha256sum < /mnt/e2e-file)" = "$sum" ] || fail "the file written through luksdock open differs"
run umount /mnt
run cryptsetup close lc0
` + guestCheckVolume + `
luksdock passwd --device /dev/$n --passphrase-file /e2e/pass --new-passphrase-file /e2e/newpass ` + low + ` </dev/null || fail "luksdock passwd"
cryptsetup open --test-passphrase /dev/$p < /e2e/pass && fail "the old passphrase still opens after passwd"
cryptsetup open --test-passphrase /dev/$p < /e2e/newpass || fail "stock cryptsetup refuses the new passphrase"
cryptsetup open --test-passphrase /dev/$p < /tmp/rk1.key || fail "the recovery key no longer opens after passwd"
luksdock recovery-key --replace --device /dev/$n --passphrase-file /e2e/newpass --recovery-key /tmp/rk2 ` + low + ` </dev/null || fail "luksdock recovery-key --replace"
tail -n 1 /tmp/rk2 > /tmp/rk2.key
cryptsetup open --test-passphrase /dev/$p < /tmp/rk1.key && fail "the old recovery key still opens"
cryptsetup open --test-passphrase /dev/$p < /tmp/rk2.key || fail "stock cryptsetup refuses the new recovery key"
cryptsetup open --test-passphrase /dev/$p < /e2e/newpass || fail "the passphrase no longer opens after recovery-key"
# Unlocked and mounted by hand (as the desktop would): open reports it,
# close unmounts and locks it.
cryptsetup open /dev/$p byhand < /e2e/newpass || fail "stock cryptsetup open with the new passphrase"
mkdir -p /mnt/h && run mount -t ext4 /dev/mapper/byhand /mnt/h
luksdock open --device /dev/$n --passphrase-file /e2e/pass </dev/null && fail "open with the old passphrase succeeded on a disk unlocked by hand"
luksdock open --device /dev/$n --passphrase-file /e2e/newpass </dev/null > /tmp/already.out || fail "open of a disk unlocked by hand"
grep -q "already open: /mnt/h" /tmp/already.out || fail "open did not report /mnt/h: $(cat /tmp/already.out)"
run luksdock close --device /dev/$n --no-power-off
grep -q " /mnt/h " /proc/mounts && fail "close left /mnt/h mounted"
[ -e /dev/mapper/byhand ] && fail "close left the mapping byhand"
mkdir -p /mnt/lc
run luksdock open --device /dev/$n --recovery-key-file /tmp/rk2 --mountpoint /mnt/lc
[ "$(sha256sum < /mnt/lc/e2e-file)" = "$sum" ] || fail "the file differs after passwd and recovery-key"
luksdock close --device /dev/$n --json </dev/null > /tmp/close.json 2>/tmp/close.err || { cat /tmp/close.json /tmp/close.err; fail "luksdock close (power-off)"; }
emit close /tmp/close.json
d=$(deadline 10); while [ -e /sys/block/$n ]; do past $d && fail "/sys/block/$n still there after power-off"; usleep 50000; done
grep -l ` + a.Serial + ` /sys/bus/usb/devices/*/serial 2>/dev/null && fail "the USB device of disk A is still there after power-off"
mark closed

label=lcdisk02
n=$(wait_disk ` + b.Serial + ` 60) || fail "disk B did not appear"
` + guestPrepare + `
[ "$(cat /tmp/prepare.rc)" = 0 ] || { cat /tmp/prepare.err; fail "prepare B exited $(cat /tmp/prepare.rc)"; }
luksdock retire --device /dev/$n --confirm wrong </dev/null && fail "retire with a wrong --confirm"
cryptsetup open --test-passphrase /dev/${n}1 < /e2e/pass || fail "a refused retire changed the disk"
luksdock retire --device /dev/$n --confirm $n --json </dev/null > /tmp/retire.json 2>/tmp/retire.err || { cat /tmp/retire.json /tmp/retire.err; fail "luksdock retire"; }
emit retire /tmp/retire.json
blkid -p /dev/$n && fail "blkid -p still finds something on /dev/$n"
[ -e /dev/${n}1 ] && fail "the kernel still has partition ${n}1"
cryptsetup isLuks /dev/$n && fail "cryptsetup isLuks /dev/$n"
sync
mark retired

# An image (luksdock open --image): prepared in the guest, opened with the
# kernel engine (a loop device for the LUKS range, dm-crypt over it), a
# file written, closed; stock losetup, cryptsetup and e2fsck then find the
# file, and no loop device or mapping is left.
img=/tmp/lc-image.img
# busybox sh runs its own losetup applet first; util-linux's by path.
ul=
for f in /usr/sbin/losetup /usr/bin/losetup; do [ -z "$ul" ] && [ -x $f ] && [ ! -L $f ] && ul=$f; done
[ -n "$ul" ] || fail "no util-linux losetup in the guest"
loops() { cat /sys/block/loop*/loop/backing_file 2>/dev/null; }
luksdock prepare --image $img --size 64M --label lcimage --passphrase-file /e2e/pass --confirm lc-image.img --engine kernel ` + low + ` </dev/null > /tmp/prep-img.out 2>&1 || { cat /tmp/prep-img.out; fail "prepare --image"; }
[ -z "$(loops)" ] || fail "prepare --image left a loop device: $($ul -a)"
[ "$(dmsetup ls)" = "No devices found" ] || fail "prepare --image left a mapping: $(dmsetup ls)"
luksdock open --image $img --passphrase-file /e2e/pass --mountpoint /mnt/img --json </dev/null > /tmp/open-img.json 2>/tmp/open-img.err || { cat /tmp/open-img.json /tmp/open-img.err; fail "luksdock open --image"; }
emit openimg /tmp/open-img.json
grep -q " /mnt/img ext4 " /proc/mounts || fail "open --image did not mount at /mnt/img: $(cat /proc/mounts)"
$ul -a
dmsetup table
[ "$(loops)" = "$img" ] || fail "open --image: the loop devices are not one on $img: $($ul -a)"
dmsetup table | grep -q " crypt aes-xts-plain64 .* 7:" || fail "open --image: no dm-crypt mapping over a loop device: $(dmsetup table)"
dd if=/dev/urandom of=/mnt/img/img-file bs=64k count=8 2>/dev/null || fail "writing a file on the opened image"
isum=$(sha256sum < /mnt/img/img-file)
luksdock close --image $img --json </dev/null > /tmp/close-img.json 2>/tmp/close-img.err || { cat /tmp/close-img.json /tmp/close-img.err; fail "luksdock close --image"; }
emit closeimg /tmp/close-img.json
grep -q " /mnt/img " /proc/mounts && fail "still mounted after close --image"
[ "$(dmsetup ls)" = "No devices found" ] || fail "a mapping is left after close --image: $(dmsetup ls)"
[ -z "$(loops)" ] || fail "a loop device is left after close --image: $($ul -a)"
ss=$(sfdisk -d $img | sed -n 's/^sector-size: //p')
set -- $(partx -g -o START,SECTORS -n 1 $img)
[ -n "$ss" ] && [ -n "$2" ] || fail "no partition 1 on $img: $(sfdisk -d $img)"
l=$($ul -f --show -o $(($1 * ss)) --sizelimit $(($2 * ss)) $img) || fail "losetup of partition 1"
cryptsetup open $l lcimg < /e2e/pass || fail "stock cryptsetup open of the image's partition 1"
e2fsck -fn /dev/mapper/lcimg > /tmp/fsck-img.out 2>&1 || { cat /tmp/fsck-img.out; fail "e2fsck -fn of the image not clean after close"; }
cat /tmp/fsck-img.out
run mount -t ext4 -o ro /dev/mapper/lcimg /mnt
[ "$(sha256sum < /mnt/img-file)" = "$isum" ] || fail "the file written through open --image differs or is missing"
run umount /mnt
run cryptsetup close lcimg
run $ul -d $l
mark image
`})
	mustMark(t, vm, "closed", 12*time.Minute) // ~4 min idle; TCG under load is slower
	openJSON, err := vm.Blob("open", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Engine, Cleartext, Mountpoint, Label string
	}
	if err := json.Unmarshal(openJSON, &o); err != nil || o.Engine != "kernel" || !strings.HasPrefix(o.Cleartext, "/dev/mapper/luks-") || o.Mountpoint != "/media/1000/lcdisk01" {
		t.Errorf("open --json: %v %s", err, openJSON)
	}
	closeJSON, _ := vm.Blob("close", 10*time.Second)
	var c struct {
		PoweredOff bool   `json:"powered_off"`
		PowerOff   string `json:"power_off"`
	}
	if err := json.Unmarshal(closeJSON, &c); err != nil || !c.PoweredOff || !strings.Contains(c.PowerOff, "disabled its USB port") {
		t.Errorf("close --json: %v %s", err, closeJSON)
	}
	mustMark(t, vm, "retired", 4*time.Minute)
	mustMark(t, vm, "image", 4*time.Minute)
	var oi struct{ Engine, Cleartext, Mountpoint string }
	if b, err := vm.Blob("openimg", 10*time.Second); err != nil || json.Unmarshal(b, &oi) != nil || oi.Engine != "kernel" || !strings.HasPrefix(oi.Cleartext, "/dev/mapper/luks-") || oi.Mountpoint != "/mnt/img" {
		t.Errorf("open --image --json: %v %+v", err, oi)
	}
	var ci struct {
		Unmounted, Locked bool
	}
	if b, err := vm.Blob("closeimg", 10*time.Second); err != nil || json.Unmarshal(b, &ci) != nil || !ci.Unmounted || !ci.Locked {
		t.Errorf("close --image --json: %v %+v", err, ci)
	}
	mustExit(t, vm, time.Minute)
	// On the host: the retired image carries nothing blkid recognises.
	if out, err := exec.Command("blkid", "-p", b.Image).CombinedOutput(); err == nil {
		t.Errorf("blkid -p finds on the retired image: %s", out)
	}
	if out, err := exec.Command("blkid", "-p", "-O", "1048576", b.Image).CombinedOutput(); err == nil && strings.Contains(string(out), "LUKS") {
		t.Errorf("blkid -p at 1 MiB finds on the retired image: %s", out)
	}
}
