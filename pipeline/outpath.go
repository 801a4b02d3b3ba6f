package pipeline

import (
	"os"
	"path/filepath"
	"slices"

	"luksdock/disk"
)

// CheckOutputPath checks where luksdock is to create a file for the user
// that opens the disk (what: "recovery key file", "header backup"): the
// path must not exist yet (luksdock never overwrites), its directory must,
// and that directory must not be on the target itself — a way in that is
// kept on the disk it opens is lost with it. "On the target" is decided
// from the kernel's view: the file system holding the directory, followed
// down through device-mapper, md and loop devices (disk.Sys.Beneath), must
// not be the target disk or one of its partitions, nor a loop device backed
// by the target image. It returns the absolute path.
//
// The header backup's check on the core branch
// (CheckHeaderBackupPath(target, backup string)) is meant to become a call
// of this one, so both refuse the same things.
func CheckOutputPath(t *Target, what, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", refused("%s %s: %v", what, path, err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return "", refused("%s %s already exists; refusing to overwrite it", what, abs)
	}
	dir := filepath.Dir(abs)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", refused("%s directory %s does not exist", what, dir)
	}
	if t == nil {
		return abs, nil
	}
	if t.Image {
		if img, err := filepath.Abs(t.Path); err == nil && abs == img {
			return "", refused("%s %s is the target image itself", what, abs)
		}
	}
	sys := t.sys
	if sys.Root == "" {
		sys = disk.Sys{Root: "/"}
	}
	disks, loopFiles, err := sys.Beneath(dir)
	if err != nil {
		return "", refused("%s %s: finding the disk it would be on: %v", what, abs, err)
	}
	if !t.Image && slices.Contains(disks, t.Name) {
		return "", refused("%s %s would be on %s, the disk being prepared; keep it somewhere else", what, abs, t.Path)
	}
	if t.Image {
		img, _ := filepath.Abs(t.Path)
		for _, f := range loopFiles {
			if f == img || sameFile(f, img) {
				return "", refused("%s %s would be inside %s, the image being prepared; keep it somewhere else", what, abs, t.Path)
			}
		}
	}
	return abs, nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}
