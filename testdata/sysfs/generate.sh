#!/bin/bash
# Generates the sysfs/proc fixture trees used by disk/sysfs_test.go.
# Each directory below testdata/sysfs/ is a Root for disk.Sys: it mirrors the
# layout the kernel exposes (sys/block/NAME -> ../devices/..., sys/dev/block/
# MAJ:MIN, sys/class/block, device paths through /usbN/B-P/B-P:1.0/hostH/
# targetH:0:0/H:0:0:0/block/NAME, attribute files formatted as the kernel
# prints them: size in 512-byte sectors, "0\n"/"1\n" flags, space-padded SCSI
# vendor/model strings). dev/NAME files are small disk images (made with
# sfdisk/mkfs/cryptsetup) that the probe reads instead of the device node.
# Needs: bash, coreutils (ln -r), python3, sfdisk, mkfs.ext4, mkfs.vfat
# (dosfstools), cryptsetup.
# Re-run from anywhere: testdata/sysfs/generate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

R= # current root
attr() { mkdir -p "$(dirname "$R/$1")"; printf '%s\n' "$2" >"$R/$1"; }
rawattr() { mkdir -p "$(dirname "$R/$1")"; printf '%s' "$2" >"$R/$1"; }
link() { mkdir -p "$(dirname "$R/$1")" "$R/$2"; ln -sfnr "$R/$2" "$R/$1"; }

# blockdev DEVDIR NAME MAJ MIN SECTORS [LBS PBS ROT REMOVABLE RO SEQ]
blockdev() {
	local dir=$1 name=$2 maj=$3 min=$4 sectors=$5 lbs=${6:-512} pbs=${7:-512} rot=${8:-1} rem=${9:-0} ro=${10:-0} seq=${11:-1}
	local d=$dir/block/$name
	[ -n "${NOBLOCKDIR:-}" ] && d=$dir/$name # NVMe namespaces sit directly below the controller
	attr "$d/dev" "$maj:$min"
	attr "$d/size" "$sectors"
	attr "$d/ro" "$ro"
	attr "$d/removable" "$rem"
	attr "$d/hidden" 0
	attr "$d/diskseq" "$seq"
	attr "$d/queue/logical_block_size" "$lbs"
	attr "$d/queue/physical_block_size" "$pbs"
	attr "$d/queue/rotational" "$rot"
	rawattr "$d/uevent" "MAJOR=$maj
MINOR=$min
DEVNAME=$name
DEVTYPE=disk
DISKSEQ=$seq
"
	mkdir -p "$R/$d/holders" "$R/$d/slaves"
	link "sys/block/$name" "$d"
	link "sys/class/block/$name" "$d"
	link "sys/dev/block/$maj:$min" "$d"
	link "$d/subsystem" "sys/class/block"
	[ -d "$R/$dir" ] && [ "$(basename "$dir")" != virtual ] && link "$d/device" "$dir" || true
}

# partdev DISKDIR PNAME MAJ MIN NUMBER START SECTORS
partdev() {
	local dd=$1 name=$2 maj=$3 min=$4 num=$5 start=$6 sectors=$7
	local d=$dd/$name
	attr "$d/dev" "$maj:$min"
	attr "$d/partition" "$num"
	attr "$d/start" "$start"
	attr "$d/size" "$sectors"
	attr "$d/ro" 0
	rawattr "$d/uevent" "MAJOR=$maj
MINOR=$min
DEVNAME=$name
DEVTYPE=partition
PARTN=$num
"
	mkdir -p "$R/$d/holders"
	link "sys/class/block/$name" "$d"
	link "sys/dev/block/$maj:$min" "$d"
}

# dmdev NAME MIN DMNAME UUID SECTORS SLAVE_DIRS...
dmdev() {
	local name=$1 min=$2 dmname=$3 uuid=$4 sectors=$5; shift 5
	local d=sys/devices/virtual/block/$name
	blockdev sys/devices/virtual "$name" 253 "$min" "$sectors" 512 512 0
	attr "$d/dm/name" "$dmname"
	attr "$d/dm/uuid" "$uuid"
	for s in "$@"; do
		link "$d/slaves/$(basename "$s")" "$s"
		link "$s/holders/$name" "$d"
	done
}

# usbdisk ROOTPORT PORT HOST DRIVER VID PID MFR PRODUCT SERIAL SPEED -> sets SCSIDEV
usbdisk() {
	local hc=$1 port=$2 host=$3 drv=$4
	local bus=${port%%-*}
	local u=sys/devices/pci0000:00/$hc/usb$bus/$port
	attr "$u/idVendor" "$5"
	attr "$u/idProduct" "$6"
	attr "$u/manufacturer" "$7"
	attr "$u/product" "$8"
	attr "$u/serial" "$9"
	attr "$u/speed" "${10}"
	attr "$u/busnum" "$bus"
	attr "$u/devpath" "${port#*-}"
	local i=$u/$port:1.0
	attr "$i/bInterfaceClass" 08
	attr "$i/bInterfaceProtocol" "$([ "$drv" = uas ] && echo 62 || echo 50)"
	mkdir -p "$R/sys/bus/usb/drivers/$drv"
	link "$i/driver" "sys/bus/usb/drivers/$drv"
	SCSIDEV=$i/host$host/target$host:0:0/$host:0:0:0
	mkdir -p "$R/sys/bus/scsi/drivers/sd"
	link "$SCSIDEV/driver" "sys/bus/scsi/drivers/sd"
}

# scsiinq DIR VENDOR(8) MODEL(16) REV(4): the kernel pads these with spaces
scsiinq() {
	mkdir -p "$R/$1"
	printf '%-8s\n' "$2" >"$R/$1/vendor"
	printf '%-16s\n' "$3" >"$R/$1/model"
	printf '%-4s\n' "$4" >"$R/$1/rev"
	attr "$1/type" 0
	attr "$1/scsi_level" 3
}

mountinfo() { mkdir -p "$R/proc/self"; cat >"$R/proc/self/mountinfo"; }
swaps() { mkdir -p "$R/proc"; { printf 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n'; cat; } >"$R/proc/swaps"; }
basemounts() {
	cat <<'M'
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
24 1 0:5 / /dev rw,nosuid,relatime shared:8 - devtmpfs udev rw,size=8110712k,nr_inodes=2027678,mode=755
25 1 0:26 / /run rw,nosuid,nodev,noexec,relatime shared:14 - tmpfs tmpfs rw,size=1627584k,mode=755
M
}

image() { # image NAME SIZE: a zero file under dev/
	mkdir -p "$R/dev"
	rm -f "$R/dev/$1"
	truncate -s "$2" "$R/dev/$1"
}

newroot() { rm -rf "$here/$1"; R=$here/$1; mkdir -p "$R"; }

# 1. USB-BOT dock disk: JMicron bridge (BlacX-style), usb-storage, high speed,
#    a 500 GB Maxtor with an MBR and one LVM partition (type 8e).
newroot usb-bot
usbdisk 0000:00:1d.7 2-1 13 usb-storage 152d 2329 JMicron "USB to ATA/ATAPI bridge" 152D203380B6 480
scsiinq "$SCSIDEV" "MAXTOR S" TM3500630AS ""
blockdev "$SCSIDEV" sdi 8 128 976773168 512 512 1 0 0 23
partdev "$SCSIDEV/block/sdi" sdi1 8 129 1 2048 976771120
basemounts | mountinfo
: | swaps
image sdi 4M
printf 'label: dos\nlabel-id: 0x0c7e5d1a\nstart=2048, type=8e\n' | sfdisk -q "$R/dev/sdi" >/dev/null
# An LVM2 PV label at the partition's start (what pvcreate writes in sector 1).
python3 - "$R/dev/sdi" <<'PY'
import struct, sys, zlib
f = open(sys.argv[1], 'r+b')
lbl = bytearray(512)
lbl[0:8] = b'LABELONE'
struct.pack_into('<Q', lbl, 8, 1)
struct.pack_into('<I', lbl, 20, 32)
lbl[24:32] = b'LVM2 001'
lbl[32:64] = b'Hc3fS0A1b2C3d4E5f6G7h8I9j0K1l2M3'
struct.pack_into('<Q', lbl, 64, 976771120 * 512)
struct.pack_into('<I', lbl, 16, 0xffffffff & zlib.crc32(bytes(lbl[20:512])))
f.seek(2048 * 512 + 512)
f.write(lbl)
PY

# 2. UAS dock disk: ASMedia bridge, SuperSpeed, 1 TB with 4096-byte physical
#    sectors, holding nothing.
newroot usb-uas
usbdisk 0000:00:14.0 4-2 6 uas 174c 55aa "ASMedia" "ASM1153E" 00000000000000000000 5000
scsiinq "$SCSIDEV" ASMT 2115 0
blockdev "$SCSIDEV" sdc 8 32 1953525168 512 4096 1 0 0 7
basemounts | mountinfo
: | swaps
image sdc 64K

# 3. Internal SATA disk holding / (ext4 on sda2, EFI system partition sda1).
newroot sata-root
ATA=sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0
scsiinq "$ATA" ATA "Samsung SSD 860" 4B6Q
printf '\x00\x80\x00\x14S3Z9NB0K123456A     ' >"$R/$ATA/vpd_pg80"
attr "$ATA/wwid" "naa.5002538e40a1b2c3"
blockdev "$ATA" sda 8 0 1000215216 512 512 0 0 0 1
partdev "$ATA/block/sda" sda1 8 1 1 2048 1048576
partdev "$ATA/block/sda" sda2 8 2 2 1050624 999162880
{ basemounts; cat <<'M'
26 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw,errors=remount-ro
27 26 8:1 / /boot/efi rw,relatime shared:29 - vfat /dev/sda1 rw,fmask=0077,dmask=0077
M
} | mountinfo
: | swaps

# 4. NVMe root: nvme0n1p3 is LUKS (dm-0, open) holding LVM (dm-1 root at /,
#    dm-2 active swap).
newroot nvme-root
CTRL=sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0
attr "$CTRL/model" "Samsung SSD 970 EVO Plus 1TB            "
attr "$CTRL/serial" "S4EWNX0R123456W     "
attr "$CTRL/firmware_rev" "2B2QEXM7"
NOBLOCKDIR=1 blockdev "$CTRL" nvme0n1 259 0 1953525168 512 512 0 0 0 2
attr "$CTRL/nvme0n1/wwid" "eui.0025385b71b2c3d4"
partdev "$CTRL/nvme0n1" nvme0n1p1 259 1 1 2048 1048576
partdev "$CTRL/nvme0n1" nvme0n1p2 259 2 2 1050624 1953792
partdev "$CTRL/nvme0n1" nvme0n1p3 259 3 3 3004416 1950519296
dmdev dm-0 0 nvme0n1p3_crypt CRYPT-LUKS2-5e0b3a6f9d1c4b6c8a2e7f10c3d4e5f6-nvme0n1p3_crypt 1950486528 "$CTRL/nvme0n1/nvme0n1p3"
dmdev dm-1 1 vg0-root LVM-AbCdEfGhIjKlMnOpQrStUvWxYz012345AbCdEfGhIjKlMnOpQrStUvWxYz0123 1900000000 sys/devices/virtual/block/dm-0
dmdev dm-2 2 vg0-swap LVM-AbCdEfGhIjKlMnOpQrStUvWxYz012345SwApSwApSwApSwApSwApSwApSwAp01 16777216 sys/devices/virtual/block/dm-0
{ basemounts; cat <<'M'
26 1 253:1 / / rw,relatime shared:1 - ext4 /dev/mapper/vg0-root rw,errors=remount-ro
27 26 259:2 / /boot rw,relatime shared:29 - ext4 /dev/nvme0n1p2 rw
28 27 259:1 / /boot/efi rw,relatime shared:31 - vfat /dev/nvme0n1p1 rw,fmask=0077,dmask=0077
M
} | mountinfo
printf '/dev/dm-2                               partition\t8388604\t\t0\t\t-2\n' | swaps
mkdir -p "$R/dev/mapper"
ln -sfn ../dm-2 "$R/dev/mapper/vg0-swap"

# 5. Loop devices: loop0 bound to an image file on the root filesystem
#    (virtio vda), loop1 unbound (not listed), a zram swap device (not listed).
newroot loop
VDA=sys/devices/pci0000:00/0000:00:02.0/virtio1
attr "$VDA/vendor" 0x1af4
blockdev "$VDA" vda 254 0 536870912 512 512 0 0 0 1
attr "$VDA/block/vda/serial" "overlayblk"
blockdev sys/devices/virtual loop0 7 0 2097152 512 512 0 0 0 11
attr sys/devices/virtual/block/loop0/loop/backing_file "/var/tmp/disk.img"
attr sys/devices/virtual/block/loop0/loop/offset 0
attr sys/devices/virtual/block/loop0/loop/sizelimit 0
attr sys/devices/virtual/block/loop0/loop/autoclear 0
attr sys/devices/virtual/block/loop0/loop/partscan 0
blockdev sys/devices/virtual loop1 7 1 0 512 512 0 0 0 3
blockdev sys/devices/virtual zram0 252 0 16777216 4096 4096 0 0 0 4
{ basemounts; echo '26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw'; } | mountinfo
printf '/dev/zram0                              partition\t8388604\t\t0\t\t100\n' | swaps
image loop0 4M
mkfs.ext4 -q -F -L scratch -U 3e6e6f3a-2d1b-4c55-9a77-5b0a1c2d3e4f "$R/dev/loop0" >/dev/null

# 6. USB disk with a mounted partition: sdb1 (vfat "PHOTOS") at
#    /media/user/PHOTOS, and loop3 backed by a file on it.
newroot mounted-partition
usbdisk 0000:00:14.0 3-4.2 7 usb-storage 0bc2 2322 Seagate "Expansion Desk" NA4KXYZ1 480
scsiinq "$SCSIDEV" Seagate "Expansion Desk" 0915
blockdev "$SCSIDEV" sdb 8 16 3907029168 512 4096 1 0 0 5
partdev "$SCSIDEV/block/sdb" sdb1 8 17 1 2048 3907026944
blockdev sys/devices/virtual loop3 7 3 409600 512 512 0 0 0 12
attr sys/devices/virtual/block/loop3/loop/backing_file "/media/user/PHOTOS/vm disk.img"
{ basemounts; cat <<'M'
26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 26 8:17 / /media/user/PHOTOS rw,nosuid,nodev,relatime shared:60 - vfat /dev/sdb1 rw,uid=1000,gid=1000,fmask=0022,dmask=0022,codepage=437,iocharset=ascii,shortname=mixed,showexec,utf8,flush,errors=remount-ro
M
} | mountinfo
: | swaps
image sdb 2M
printf 'label: dos\nlabel-id: 0x5a6b7c8d\nstart=2048, type=c\n' | sfdisk -q "$R/dev/sdb" >/dev/null
image sdb1 1M
mkfs.vfat -F 12 -n PHOTOS -i 1a2b3c4d "$R/dev/sdb1" >/dev/null

# 7. USB disk under LVM: sdd1 is an active PV of vg1 (dm-0 vg1-data, not
#    mounted).
newroot lvm
usbdisk 0000:00:14.0 2-3 9 usb-storage 152d 0578 JMicron "USB 3.0 Device" 0123456789ABCDEF 5000
scsiinq "$SCSIDEV" WDC WD20EARS-00M 0A80
blockdev "$SCSIDEV" sdd 8 48 3907029168 512 4096 1 0 0 8
partdev "$SCSIDEV/block/sdd" sdd1 8 49 1 2048 3907026944
dmdev dm-0 0 vg1-data LVM-Qm9zVjFhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODlhYmNk 3907000000 "$SCSIDEV/block/sdd/sdd1"
{ basemounts; echo '26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw'; } | mountinfo
: | swaps

# 8. USB disk with an open dm-crypt holder: LUKS2 directly on sde, opened as
#    "backups01" (dm-0), not mounted.
newroot dm-crypt
usbdisk 0000:00:14.0 4-1 10 uas 174c 55aa "ASMedia" "ASM1153E" 000000000001 5000
scsiinq "$SCSIDEV" ST2000DM 008-2FR102 0001
blockdev "$SCSIDEV" sde 8 64 3907029168 512 4096 1 0 0 9
dmdev dm-0 0 backups01 CRYPT-LUKS2-1f3c5a2b7d9e4f60a1b2c3d4e5f60718-backups01 3906996400 "$SCSIDEV/block/sde"
{ basemounts; echo '26 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw'; } | mountinfo
: | swaps
image sde 4M
printf 'fixture' | cryptsetup luksFormat -q --type luks2 --label backups01 \
	--uuid 1f3c5a2b-7d9e-4f60-a1b2-c3d4e5f60718 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
	--luks2-metadata-size 16k --luks2-keyslots-size 1m --key-file=- "$R/dev/sde" >/dev/null
truncate -s 128K "$R/dev/sde" # the headers are all the probe reads

# 9. An internal SATA disk with nothing on it and nothing using it: eligible
#    only with --allow-internal.
newroot sata-spare
ATA=sys/devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0
scsiinq "$ATA" ATA "ST4000DM004-2CV1" 0001
printf '\x00\x80\x00\x14            ZFN0ABCD' >"$R/$ATA/vpd_pg80"
attr "$ATA/wwid" "naa.5000c500c1d2e3f4"
blockdev "$ATA" sdb 8 16 7814037168 512 4096 1 0 0 3
{ basemounts; echo '26 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw'; } | mountinfo
: | swaps
image sdb 64K

echo "generated: $(ls -d "$here"/*/ | xargs -n1 basename | tr '\n' ' ')"
