# Shared by scripts/demo, scripts/test and scripts/bench: install what
# luksdock needs on a Debian/Ubuntu machine and find a Go toolchain.
# shellcheck shell=bash

GO_VERSION=1.26.8

need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$0: run as root (it installs packages and uses loop devices): sudo $0 $*" >&2
		exit 2
	fi
}

# apt_install PKG... installs the packages that are missing.
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "==> installing ${missing[*]}" >&2
	if [ -z "${APT_UPDATED:-}" ]; then
		apt-get update -qq >&2
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# ensure_go puts a Go >= $GO_VERSION on PATH. Debian's own golang-go is too
# old for this module, so when no recent Go is installed it bootstraps from
# Debian's Go: the official toolchain is a module, fetched through the Go
# module proxy with `go mod download`.
ensure_go() {
	export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"
	if command -v go >/dev/null && go_ok "$(command -v go)"; then return 0; fi
	local cache="${XDG_CACHE_HOME:-$HOME/.cache}/luksdock-go"
	if [ -x "$cache/go/bin/go" ] && go_ok "$cache/go/bin/go"; then
		export PATH="$cache/go/bin:$PATH"
		return 0
	fi
	apt_install golang-go ca-certificates
	local tmp mod dir
	tmp=$(mktemp -d)
	mod="golang.org/toolchain@v0.0.1-go${GO_VERSION}.linux-$(dpkg --print-architecture)"
	(cd "$tmp" && /usr/lib/go/bin/go mod init bootstrap >/dev/null 2>&1 &&
		GOFLAGS=-modcacherw GOPATH="$tmp/gopath" /usr/lib/go/bin/go mod download -json "$mod" >"$tmp/dl.json")
	dir=$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' "$tmp/dl.json")
	[ -d "$dir" ] || { echo "could not fetch Go $GO_VERSION" >&2; exit 1; }
	mkdir -p "$cache"
	rm -rf "$cache/go"
	cp -a "$dir" "$cache/go"
	chmod -R u+w "$cache/go"
	chmod +x "$cache/go/bin/"* "$cache/go/pkg/tool/"*/*
	rm -rf "$tmp"
	export PATH="$cache/go/bin:$PATH"
	go_ok "$cache/go/bin/go" || { echo "Go bootstrap failed" >&2; exit 1; }
}

go_ok() {
	local v
	v=$("$1" env GOVERSION 2>/dev/null) || return 1
	v=${v#go}
	[ "$(printf '%s\n%s\n' "$GO_VERSION" "$v" | sort -V | head -1)" = "$GO_VERSION" ] || [ "${v%.*}" = "${GO_VERSION%.*}" ]
}

# Runtime tools luksdock drives, and what its tests check results with.
RUNTIME_PKGS=(cryptsetup-bin e2fsprogs fuse3 util-linux fdisk)
TEST_PKGS=(lvm2 dosfstools xfsprogs btrfs-progs ntfs-3g tmux kmod cpio busybox-static qemu-system-x86 linux-image-amd64 time openssl man-db bash-completion lintian mmdebstrap dpkg-dev smartmontools gdisk parted argon2 python3-cryptography swtpm swtpm-tools libtss2-esys-3.0.2-0 libtss2-rc0 libtss2-mu0 libtss2-tcti-swtpm0 systemd)
