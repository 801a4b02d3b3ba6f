package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"luksdock/disk"
)

// CheckHeaderBackupPath checks backup, the path for the LUKS header backup
// of target (a disk's device path or an image file), and returns it made
// absolute (a relative path is taken from the current directory). It
// refuses, saying why, a backup that would be destroyed with the disk or
// could not be written: the target itself (by any path that resolves to
// it), a file in a directory on a filesystem that lives on the target (a
// partition of it, a dm/md device or loop device built on it, a loop device
// backed by the image), a path that exists (never overwritten), and a
// directory that does not exist. It writes nothing. NewPlan calls it, so
// prepare refuses at preflight; the wizard's Options screen calls it too.
func CheckHeaderBackupPath(target, backup string) (abs string, err error) {
	if backup == "" {
		return "", errors.New("no header backup path given")
	}
	abs, err = filepath.Abs(backup)
	if err != nil {
		return "", fmt.Errorf("header backup %s: %v", backup, err)
	}
	dir := filepath.Dir(abs)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return "", fmt.Errorf("header backup directory %s does not exist", dir)
	}
	keep := "; keep the header backup on another disk"
	if resolved(abs) == resolved(target) || sameFile(resolved(abs), target) {
		// by path too: an image still to be created does not exist yet
		return "", fmt.Errorf("header backup %s is the target %s itself%s", abs, target, keep)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", fmt.Errorf("header backup %s already exists; refusing to overwrite it", abs)
	}
	if on := fsOnTarget(target, st); on != "" {
		return "", fmt.Errorf("header backup %s would be written to %s, which is on the target %s and is destroyed with it%s", abs, on, target, keep)
	}
	return abs, nil
}

// resolved is path made absolute with the symlinks of its directory
// resolved (the file itself need not exist).
func resolved(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(abs)); err == nil {
		abs = filepath.Join(dir, filepath.Base(abs))
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// sameFile reports whether paths a and b are the same file, or device
// nodes of the same block device.
func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	if err1 != nil || err2 != nil {
		return false
	}
	if os.SameFile(sa, sb) {
		return true
	}
	block := func(s os.FileInfo) bool { return s.Mode()&os.ModeDevice != 0 && s.Mode()&os.ModeCharDevice == 0 }
	return block(sa) && block(sb) && sa.Sys().(*syscall.Stat_t).Rdev == sb.Sys().(*syscall.Stat_t).Rdev
}

// fsOnTarget names the block device holding the filesystem of directory
// dir (its stat) when that device is built on target: the target disk or a
// partition, dm/md/loop device on it, or, for an image, a loop device backed
// by it. "" when it is not.
func fsOnTarget(target string, dir os.FileInfo) string {
	sys := disk.Sys{Root: "/"}
	name := sys.NameOfDevNum(uint64(dir.Sys().(*syscall.Stat_t).Dev))
	if name == "" {
		return "" // tmpfs, FUSE, a network filesystem: on no block device
	}
	devs, files := sys.Beneath(name)
	tname, terr := sys.NameOf(target)
	for _, d := range devs {
		if terr == nil && d == tname {
			return "/dev/" + name
		}
	}
	for _, f := range files {
		if sameFile(f, target) {
			return "/dev/" + name
		}
	}
	return ""
}
