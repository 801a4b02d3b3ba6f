package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Beneath says what storage the file system holding path lives on: the
// kernel names of the whole disks under it (a partition counts as its
// disk; device-mapper, md and loop devices are followed down through their
// slaves) and the backing files of loop devices among them. path need not
// exist; its nearest existing parent directory is used. Used to refuse
// writing a recovery key or a header backup onto the disk it opens.
func (s Sys) Beneath(path string) (disks, loopFiles []string, err error) {
	name, err := s.fsDevice(path)
	if err != nil || name == "" {
		return nil, nil, err
	}
	seen := map[string]bool{}
	var walk func(n string, depth int)
	walk = func(n string, depth int) {
		if seen[n] || depth > 16 {
			return
		}
		seen[n] = true
		cls := s.p("sys", "class", "block", n)
		if _, err := os.Stat(filepath.Join(cls, "partition")); err == nil {
			if target, err := filepath.EvalSymlinks(cls); err == nil {
				n = filepath.Base(filepath.Dir(target))
				cls = s.p("sys", "class", "block", n)
			}
		}
		if bf := sysfsAttr(filepath.Join(cls, "loop", "backing_file")); bf != "" {
			bf = strings.TrimSuffix(bf, " (deleted)")
			loopFiles = appendUnique(loopFiles, bf)
			// The file itself lives on some disk too.
			if under, _ := s.fsDevice(bf); under != "" {
				walk(under, depth+1)
			}
		}
		slaves, _ := os.ReadDir(filepath.Join(cls, "slaves"))
		if len(slaves) == 0 {
			disks = appendUnique(disks, n)
		}
		for _, sl := range slaves {
			walk(sl.Name(), depth+1)
		}
	}
	walk(name, 0)
	return disks, loopFiles, nil
}

// fsDevice is the kernel name of the block device holding the file system
// of path (or of its nearest existing parent), "" when it is none (tmpfs).
func (s Sys) fsDevice(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	for {
		if err = unix.Stat(p, &st); err == nil {
			break
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		p = parent
	}
	mm := fmt.Sprintf("%d:%d", unix.Major(st.Dev), unix.Minor(st.Dev))
	if name := s.nameOfMajMin(mm); name != "" {
		return name, nil
	}
	// btrfs and overlays report an anonymous device number: the mount
	// table names the source.
	mi, _ := os.ReadFile(s.p("proc", "self", "mountinfo"))
	for _, m := range ParseMountInfo(string(mi)) {
		if m.MajMin == mm && strings.HasPrefix(m.Source, "/dev/") {
			return s.nameOfDevPath(m.Source), nil
		}
	}
	return "", nil
}
