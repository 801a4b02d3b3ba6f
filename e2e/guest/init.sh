#!/bin/busybox sh
# /init of the luksdock end-to-end guest (built by e2e/initramfs.go).
#
# Channels: ttyS0 is the kernel console; ttyS1 is the data channel to the
# Go test (scenario stdout/stderr, "@@E2E" markers, and lines the host
# sends). The scenario is /e2e/scenario.sh from the per-boot overlay
# archive. Its exit status is reported as "@@E2E exit N" on both ports,
# then the guest powers off (QEMU runs with -no-reboot).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=linux
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /mnt
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/cryptsetup /run/lock
# What udev/systemd provide on a real system: /dev/fd and the std links.
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /tmp
echo "@@E2E init $(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
echo /sbin/modprobe > /proc/sys/kernel/modprobe
kver=$(uname -r)
while read -r m; do
	opt=
	case $m in '?'*) opt=1; m=${m#?} ;; esac
	if ! insmod "/lib/modules/$kver/$m" 2>/tmp/insmod.err; then
		grep -q 'File exists' /tmp/insmod.err || [ -n "$opt" ] ||
			echo "@@E2E init-error insmod $m: $(cat /tmp/insmod.err)" > /dev/ttyS0
	fi
done < /etc/e2e/modules
rm -f /tmp/insmod.err
stty -F /dev/ttyS1 raw -echo 2>/dev/null
[ -e /dev/ttyS2 ] && stty -F /dev/ttyS2 sane 2>/dev/null
echo "@@E2E modules-loaded $(cut -d' ' -f1 /proc/uptime)" > /dev/ttyS0
cd /tmp
/bin/sh -c '. /lib/e2e.sh; . /e2e/scenario.sh' < /dev/ttyS1 > /dev/ttyS1 2>&1
rc=$?
sync
echo "@@E2E exit $rc" > /dev/ttyS1
echo "@@E2E exit $rc" > /dev/ttyS0
poweroff -f
