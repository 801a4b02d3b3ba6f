#!/bin/sh
# Benchmark of luksdock's userspace engine (issue 2, "Performance"):
#   - AES-256-XTS throughput of the engine (1 core, all cores) beside
#     `openssl speed -evp aes-256-xts` measured in the same run;
#   - LUKS2 luksFormat (small PBKDF) + mkfs.ext4 + e2fsck -fn through the
#     FUSE-served volume on sparse images of 1 GiB, 64 GiB and 1 TiB: wall
#     time per step, bytes written to the image, peak RSS.
# Needs root (FUSE mount) and /dev/fuse. Installs cryptsetup-bin, e2fsprogs
# and openssl with apt-get when they are missing. Sparse images go to
# $TMPDIR (default /tmp); about 1.1 GiB is really allocated at 1 TiB.
# Extra arguments are passed to `go test` (e.g. -bench UserspaceMkfs/1TiB).
set -eu
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
	echo "bench-userspace: must run as root (the FUSE mount and cryptsetup need it)" >&2
	exit 2
fi
need=""
command -v cryptsetup >/dev/null 2>&1 || need="$need cryptsetup-bin"
command -v mkfs.ext4 >/dev/null 2>&1 || need="$need e2fsprogs"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
if [ -n "$need" ]; then
	echo "bench-userspace: installing$need" >&2
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
if [ ! -c /dev/fuse ]; then
	echo "bench-userspace: /dev/fuse is missing (modprobe fuse)" >&2
	exit 2
fi
if ! command -v go >/dev/null 2>&1; then
	echo "bench-userspace: the Go toolchain (go) is not on PATH" >&2
	exit 2
fi
echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec go test -run '^$' -bench 'XTSvsOpenSSL|UserspaceMkfs' -benchtime 1x "$@" ./luks/
