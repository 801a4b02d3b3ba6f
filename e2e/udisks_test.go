package e2e

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// udisksScenario runs in the Debian dock guest (dockGuestRoot) with udisks2
// running, as on a desktop. A disk docked on USB is prepared there and not
// enrolled, so the dock service leaves it alone. Each outcome is read from
// udisks itself (udisksctl info: the encrypted block's CleartextDevice,
// the cleartext block's CryptoBackingDevice, the filesystem's MountPoints
// and IdLabel) or from stock tools:
//
//  1. luksdock open (for alice, SUDO_UID 1000): udisks shows the disk
//     unlocked, its filesystem mounted at /media/alice/LABEL, the label;
//  2. luksdock close --no-power-off: udisks shows it locked (CleartextDevice
//     '/'), nothing mounted; luksdock's mountpoint directory is gone;
//  3. udisks unlocks and mounts it the desktop way (udisksctl unlock,
//     mount): the file written through luksdock reads back; udisksctl
//     unmount and lock work;
//  4. unlocked and mounted by udisks again: luksdock open reports it
//     ("already open" at udisks' mountpoint, exit 0, nothing done) and
//     luksdock close unmounts and locks it: udisks shows it locked and
//     removes its own mountpoint directory (its state is not confused);
//  5. luksdock open works again (the file reads back) and luksdock close
//     powers the drive off: udisks drops the drive, udisksctl status still
//     answers.
//
// Meanwhile the journal of udisks2 is collected for the host, which
// requires that none of its warning or error lines names the disk.
const udisksScenario = `#!/bin/bash
exec 3<>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 2>/dev/null
mark() { echo "@@E2E $*" >&3; }
end() { mark exit "$1"; sync; systemctl poweroff --force --force; sleep 600; }
fail() { echo "FAIL: $*" >&3; journalctl -b --no-pager -n 150 >&3; end 1; }
wait_for() { local n=0; until eval "$1"; do sleep 1; n=$((n+1)); [ $n -ge $2 ] && return 1; done; return 0; }
emit() { mark blob-begin "$1"; base64 "$2" >&3; mark blob-end "$1"; }
# prop DEV NAME: the value udisks shows for the property NAME of block DEV.
prop() { udisksctl info -b "$1" 2>/dev/null | sed -n "s/^ *$2: *//p" | head -1; }
# objpath DEV: udisks' object path for the block device DEV.
objpath() { echo "/org/freedesktop/UDisks2/block_devices/$(basename "$1" | sed 's/-/_2d/g')"; }
show() { echo "== udisksctl info -b $1 ($2)" >&3; udisksctl info -b "$1" >&3 2>&3; }
label=udisks01

mark booted
useradd -m -u 1000 -U -s /bin/bash alice || fail "useradd alice"
wait_for '[ -b /dev/sda ]' 120 || fail "no /dev/sda"
luksdock prepare --device /dev/sda --label $label --passphrase-file /root/pass --confirm sda --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >&3 2>&3 || fail prepare
udevadm settle
uuid=$(cryptsetup luksUUID /dev/sda1) || fail "no LUKS on /dev/sda1"
serial=$(udevadm info -q property -n /dev/sda | sed -n 's/^ID_SERIAL_SHORT=//p')
[ -n "$serial" ] || fail "no ID_SERIAL_SHORT for /dev/sda"

systemctl start udisks2 || fail "systemctl start udisks2"
wait_for 'udisksctl status >/dev/null 2>&1' 60 || fail "udisksctl status does not answer"
since=$(date '+%Y-%m-%d %H:%M:%S'); sleep 1
udisksctl status >&3
udisksctl status | grep -q "$serial" || fail "udisks does not list the docked drive ($serial): $(udisksctl status)"
wait_for '[ "$(prop /dev/sda1 IdType)" = crypto_LUKS ]' 30 || fail "udisks does not see the LUKS volume on /dev/sda1"
[ "$(prop /dev/sda1 CleartextDevice)" = "'/'" ] || fail "udisks shows /dev/sda1 unlocked before any open: $(prop /dev/sda1 CleartextDevice)"

# Checks that udisks shows the disk unlocked as $dm, mounted at $1 only.
udisks_open() {
	local obj want=$1; obj="'$(objpath /dev/$dm)'"
	wait_for '[ "$(prop /dev/sda1 CleartextDevice)" = "$obj" ]' 30 || { show /dev/sda1 unlocked; fail "udisks: /dev/sda1 CleartextDevice is $(prop /dev/sda1 CleartextDevice), want $obj ($2)"; }
	wait_for '[ "$(prop /dev/$dm MountPoints)" = "$want" ]' 30 || { show /dev/$dm mounted; fail "udisks: /dev/$dm MountPoints are '$(prop /dev/$dm MountPoints)', want $want ($2)"; }
	[ "$(prop /dev/$dm CryptoBackingDevice)" = "'$(objpath /dev/sda1)'" ] || fail "udisks: /dev/$dm CryptoBackingDevice is $(prop /dev/$dm CryptoBackingDevice) ($2)"
	[ "$(prop /dev/$dm IdLabel)" = $label ] || fail "udisks: /dev/$dm IdLabel is '$(prop /dev/$dm IdLabel)', want $label ($2)"
	[ "$(prop /dev/$dm IdType)" = ext4 ] || fail "udisks: /dev/$dm IdType is '$(prop /dev/$dm IdType)' ($2)"
	show /dev/sda1 "$2"; show /dev/$dm "$2"
}
# Checks that udisks shows the disk locked, no cleartext device left.
udisks_locked() {
	wait_for '[ "$(prop /dev/sda1 CleartextDevice)" = "'"'/'"'" ]' 30 || { show /dev/sda1 locked; fail "udisks: /dev/sda1 CleartextDevice is $(prop /dev/sda1 CleartextDevice) after $1, want '/'"; }
	[ -e /dev/$dm ] && udisksctl info -b /dev/$dm >/dev/null 2>&1 && fail "udisks still has /dev/$dm after $1"
	ls /dev/mapper | grep -q luks && fail "a mapping is left after $1: $(ls /dev/mapper)"
	grep -q " /media/" /proc/mounts && fail "a mount is left after $1: $(grep /media/ /proc/mounts)"
	show /dev/sda1 "$1"
}
# dmof: the dm-N of the disk's mapping.
dmof() { basename "$(readlink -f /dev/mapper/luks-$uuid)"; }

# 1. luksdock open, for alice: udisks sees what the desktop would.
SUDO_UID=1000 SUDO_GID=1000 luksdock open --device /dev/sda --passphrase-file /root/pass > /tmp/open1.out 2>&3 || fail "luksdock open: $(cat /tmp/open1.out)"
cat /tmp/open1.out >&3
mnt=$(tail -1 /tmp/open1.out)
[ "$mnt" = /media/alice/$label ] || fail "luksdock open mounted at '$mnt', want /media/alice/$label"
dm=$(dmof); [ -b /dev/$dm ] || fail "no dm device for /dev/mapper/luks-$uuid"
udisks_open "$mnt" "after luksdock open"
findmnt -no OPTIONS "$mnt" >&3
echo "written through luksdock open beside udisks" > "$mnt/beside-udisks" || fail "write to $mnt"
sum=$(sha256sum < "$mnt/beside-udisks")
mark opened

# 2. luksdock close without power-off: udisks shows it locked.
luksdock close --device /dev/sda --no-power-off >&3 2>&3 || fail "luksdock close --no-power-off"
udisks_locked "luksdock close"
[ -e "$mnt" ] && fail "luksdock's mountpoint $mnt is left after close"
mark closed

# 3. The desktop way: udisks unlocks and mounts it.
udisksctl unlock -b /dev/sda1 --key-file <(tr -d '\n' < /root/pass) > /tmp/unlock.out 2>&1 || fail "udisksctl unlock: $(cat /tmp/unlock.out)"
cat /tmp/unlock.out >&3
dm=$(dmof); [ -b /dev/$dm ] || fail "udisksctl unlock made no /dev/mapper/luks-$uuid: $(ls /dev/mapper)"
udisksctl mount -b /dev/$dm > /tmp/mount.out 2>&1 || fail "udisksctl mount: $(cat /tmp/mount.out)"
cat /tmp/mount.out >&3
umnt=$(findmnt -no TARGET /dev/$dm)
[ -n "$umnt" ] || fail "udisksctl mount mounted nothing"
findmnt -no OPTIONS /dev/$dm >&3
udisks_open "$umnt" "after udisksctl unlock and mount"
[ "$(sha256sum < "$umnt/beside-udisks")" = "$sum" ] || fail "the file written through luksdock open differs when udisks mounts the disk"
udisksctl unmount -b /dev/$dm >&3 2>&3 || fail "udisksctl unmount"
udisksctl lock -b /dev/sda1 >&3 2>&3 || fail "udisksctl lock"
udisks_locked "udisksctl unmount and lock"
mark desktop

# 4. Unlocked and mounted by udisks: luksdock open reports it, luksdock
# close locks it, and udisks follows.
udisksctl unlock -b /dev/sda1 --key-file <(tr -d '\n' < /root/pass) >&3 2>&3 || fail "udisksctl unlock (2)"
dm=$(dmof)
udisksctl mount -b /dev/$dm >&3 2>&3 || fail "udisksctl mount (2)"
umnt=$(findmnt -no TARGET /dev/$dm)
udisks_open "$umnt" "unlocked and mounted by udisks"
SUDO_UID=1000 SUDO_GID=1000 luksdock open --device /dev/sda --passphrase-file /root/pass > /tmp/open2.out 2>&3 || fail "luksdock open of the disk udisks has open: $(cat /tmp/open2.out)"
cat /tmp/open2.out >&3
grep -qx "/dev/sda is already open: $umnt" /tmp/open2.out || fail "luksdock open did not report udisks' mount $umnt: $(cat /tmp/open2.out)"
[ "$(tail -1 /tmp/open2.out)" = "$umnt" ] || fail "luksdock open's last line is not udisks' mountpoint: $(cat /tmp/open2.out)"
[ "$(findmnt -no TARGET /dev/$dm | wc -l)" = 1 ] || fail "luksdock open mounted the disk udisks has open a second time: $(findmnt /dev/$dm)"
udisks_open "$umnt" "after luksdock open of the disk udisks has open"
luksdock close --device /dev/sda --no-power-off > /tmp/close2.out 2>&3 || fail "luksdock close of the disk udisks has open: $(cat /tmp/close2.out)"
cat /tmp/close2.out >&3
grep -q "unmounted $umnt and locked" /tmp/close2.out || fail "luksdock close did not say it unmounted $umnt: $(cat /tmp/close2.out)"
udisks_locked "luksdock close of the disk udisks had open"
# udisks notices that its mount is gone and removes its own mountpoint.
wait_for '[ ! -e "$umnt" ]' 30 || fail "udisks did not clean up its mountpoint $umnt after luksdock close"
mark udisks-closed

# 5. luksdock open again, then close with power-off: udisks drops the drive.
SUDO_UID=1000 SUDO_GID=1000 luksdock open --device /dev/sda --passphrase-file /root/pass > /tmp/open3.out 2>&3 || fail "luksdock open (again): $(cat /tmp/open3.out)"
mnt=$(tail -1 /tmp/open3.out); dm=$(dmof)
[ "$mnt" = /media/alice/$label ] || fail "luksdock open (again) mounted at '$mnt'"
udisks_open "$mnt" "after luksdock open (again)"
[ "$(sha256sum < "$mnt/beside-udisks")" = "$sum" ] || fail "the file differs at the second luksdock open"
luksdock close --device /dev/sda > /tmp/close3.out 2>&3 || fail "luksdock close with power-off: $(cat /tmp/close3.out)"
cat /tmp/close3.out >&3
wait_for '[ ! -e /sys/block/sda ]' 30 || fail "the disk was not powered off"
wait_for '! udisksctl status | grep -q "$serial"' 30 || fail "udisks still lists the powered-off drive: $(udisksctl status)"
udisksctl status >&3 2>&3 || fail "udisksctl status fails after the power-off"
udisksctl info -b /dev/sda1 >/dev/null 2>&1 && fail "udisks still has /dev/sda1 after the power-off"
systemctl is-active -q udisks2 || fail "udisks2 is not running at the end: $(systemctl status udisks2 --no-pager)"
sleep 2
systemctl list-units --all --no-legend 'luksdock-dock@*' | grep -q . && fail "the dock service took the disk that is not enrolled: $(systemctl list-units --all --no-legend 'luksdock-dock@*')"
mark powered-off

journalctl -u udisks2 --since "$since" --no-pager -o short-monotonic > /tmp/udisks.log
journalctl -u udisks2 --since "$since" --no-pager -o cat -p warning > /tmp/udisks-warn.log
echo "sda $dm luks-$uuid $label $serial" > /tmp/names
emit journal /tmp/udisks.log
emit warnings /tmp/udisks-warn.log
emit names /tmp/names
end 0
`

// TestOpenCloseBesideUdisksDebianGuest: see udisksScenario. On the host:
// no warning or error line of udisks2's journal names the disk (its
// kernel name, the dm device, the mapping, the label, the serial or a
// /media mountpoint).
func TestOpenCloseBesideUdisksDebianGuest(t *testing.T) {
	dir := dockGuestDir(t)
	deb := buildDeb(t, dir)
	rootImg, kernel, initrd := dockGuestRoot(t, dir, deb, udisksScenario)
	backup := newImage(t, dir, "backup.img", 256<<20)
	vm := bootDockGuest(t, dir, rootImg, kernel, initrd, nil,
		Disk{ID: "d1", Image: backup, Vendor: "WDC", Product: "WD40EFRX", Serial: "WD-UDISKS001"})
	for _, m := range []string{"booted", "opened", "closed", "desktop", "udisks-closed", "powered-off"} {
		mustMark(t, vm, m, 10*time.Minute)
		t.Logf("guest: %s", m)
	}
	journal, err := vm.Blob("journal", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	warnings, err := vm.Blob("warnings", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	names, err := vm.Blob("names", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	mustExit(t, vm, 5*time.Minute)
	t.Logf("udisks2's journal while luksdock opened and closed the disk:\n%s", journal)
	var alts []string
	for _, n := range strings.Fields(string(names)) {
		alts = append(alts, regexp.QuoteMeta(n))
	}
	alts = append(alts, "/media/")
	aboutDisk := regexp.MustCompile(strings.Join(alts, "|"))
	for _, l := range strings.Split(strings.TrimSpace(string(warnings)), "\n") {
		if aboutDisk.MatchString(l) {
			t.Errorf("udisks2 warned about the disk: %s", l)
		} else if l != "" {
			t.Logf("udisks2 warning not about the disk: %s", l)
		}
	}
	// udisks logs what it did itself (the desktop-way unlock and mount):
	// the journal read is the one it writes to.
	if !strings.Contains(string(journal), "Mounted /dev/") {
		t.Errorf("udisks2's journal does not record its own mount: was it read?\n%s", journal)
	}
}
