package testkit

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// What a test needs from the machine, with one meaning everywhere (see the
// package comment): NeedRoot, NeedTools, NeedFUSE and NeedLoop skip the test loudly,
// with the reason and what to install, when the machine lacks it.

// NeedRoot skips t unless it runs as root (loop devices, FUSE mounts,
// block-device ioctls, mount), then requires tools as NeedTools does.
func NeedRoot(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, fmt.Sprintf("needs root (loop devices, FUSE and other mounts, block-device ioctls); euid is %d: run as root, as scripts/test does", os.Geteuid()))
	}
	NeedTools(t, tools...)
}

// NeedTools skips t when one of tools is not on PATH, naming the Debian
// package that has it.
func NeedTools(t testing.TB, tools ...string) {
	t.Helper()
	var missing []string
	pkgs := map[string]bool{}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
			pkgs[DebianPackage(tool)] = true
		}
	}
	if len(missing) == 0 {
		return
	}
	var p []string
	for k := range pkgs {
		p = append(p, k)
	}
	sort.Strings(p)
	skipOrFail(t, fmt.Sprintf("%s not installed (apt-get install %s; scripts/test installs it)", strings.Join(missing, ", "), strings.Join(p, " ")))
}

// NeedFUSE skips t unless /dev/fuse can be opened (the userspace engine
// serves its volume through it).
func NeedFUSE(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		skipOrFail(t, fmt.Sprintf("FUSE is not available (%v): the userspace engine cannot run (modprobe fuse)", err))
	}
	f.Close()
}

// NeedLoop skips t unless the machine has loop devices (/dev/loop-control).
func NeedLoop(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		skipOrFail(t, fmt.Sprintf("loop devices are not available (%v; modprobe loop)", err))
	}
}

// skipOrFail skips t with "SKIP: why". Under -fuzz it fails instead: a
// skip there would silently throw every generated input away.
func skipOrFail(t testing.TB, why string) {
	t.Helper()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		t.Fatalf("%s (a fuzz target cannot run without it)", why)
		return
	}
	t.Skip("SKIP: " + why)
}

// DebianPackage is the Debian package that installs tool.
func DebianPackage(tool string) string {
	switch tool {
	case "cryptsetup":
		return "cryptsetup-bin"
	case "mkfs.ext4", "mke2fs", "e2fsck", "dumpe2fs", "tune2fs", "e2label", "debugfs":
		return "e2fsprogs"
	case "mkfs.vfat", "fsck.vfat":
		return "dosfstools"
	case "mkfs.xfs":
		return "xfsprogs"
	case "mkfs.btrfs":
		return "btrfs-progs"
	case "mkntfs":
		return "ntfs-3g"
	case "pvcreate", "vgcreate", "lvcreate":
		return "lvm2"
	case "sfdisk", "fdisk":
		return "fdisk"
	case "mount", "umount":
		return "mount"
	case "mkswap", "blkid", "losetup", "partx", "wipefs", "blockdev", "setpriv", "unshare", "lsblk":
		return "util-linux"
	case "sgdisk", "gdisk":
		return "gdisk"
	case "parted":
		return "parted"
	case "tmux":
		return "tmux"
	case "man":
		return "man-db"
	case "dpkg", "dpkg-deb":
		return "dpkg"
	case "lintian":
		return "lintian"
	case "mmdebstrap":
		return "mmdebstrap"
	case "smartctl":
		return "smartmontools"
	case "go":
		return "golang-go"
	case "tar":
		return "tar"
	case "chroot":
		return "coreutils"
	}
	return tool
}
