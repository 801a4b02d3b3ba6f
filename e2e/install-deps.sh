#!/bin/sh
# Install what the VM end-to-end tests (go test ./e2e/) need on a fresh
# Debian/Ubuntu machine, through apt. Run as root. Idempotent: packages
# already installed are left alone (apt-get update only runs when something
# is missing).
set -eu
pkgs="qemu-system-x86 linux-image-amd64 busybox-static cryptsetup-bin e2fsprogs fdisk util-linux mount bsdutils dmsetup smartmontools kmod cpio file"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "e2e/install-deps.sh: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The kernel image must be readable to be handed to QEMU.
ls /boot/vmlinuz-* >/dev/null
