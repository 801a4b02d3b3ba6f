package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"luksdock/disk"
)

// CheckHeaderBackupPath checks backup, the path for the LUKS header backup
// of target (a disk's device path or an image file): CheckOutputPath for
// a "header backup". NewPlan calls it, so prepare refuses at preflight; the
// wizard's Options screen calls it too.
func CheckHeaderBackupPath(target, backup string) (abs string, err error) {
	return CheckOutputPath(target, "header backup", backup)
}

// CheckOutputPath checks path, where luksdock is to create a file that
// opens the disk target (what: "header backup", "recovery key file"), and
// returns it made absolute (a relative path is taken from the current
// directory). A way in kept on the disk it opens is lost with it, so it
// refuses, saying why: the target itself (by any path that resolves to it),
// a file in a directory on a filesystem that lives on the target (a
// partition of it, a dm/md device or loop device built on it, a loop device
// backed by the image), a path that exists (never overwritten), and a
// directory that does not exist. It writes nothing.
func CheckOutputPath(target, what, path string) (abs string, err error) {
	if path == "" {
		return "", fmt.Errorf("no %s path given", what)
	}
	abs, err = filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: %v", what, path, err)
	}
	dir := filepath.Dir(abs)
	st, err := os.Stat(dir)
	if err != nil || !st.IsDir() {
		return "", fmt.Errorf("%s directory %s does not exist", what, dir)
	}
	keep := "; keep the " + what + " on another disk"
	if resolved(abs) == resolved(target) || sameFile(resolved(abs), target) {
		// by path too: an image still to be created does not exist yet
		return "", fmt.Errorf("%s %s is the target %s itself%s", what, abs, target, keep)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", fmt.Errorf("%s %s already exists; refusing to overwrite it", what, abs)
	} else if !errors.Is(err, fs.ErrNotExist) {
		// a name too long, a directory not searchable: the file could not
		// be made either, and that is known before the disk is written
		return "", fmt.Errorf("%s %s: %v", what, abs, errors.Unwrap(err))
	}
	if on := fsOnTarget(target, st); on != "" {
		return "", fmt.Errorf("%s %s would be written to %s, which is on the target %s and is destroyed with it%s", what, abs, on, target, keep)
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
	sys := disk.Host
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
