package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Loop is a loop device luksdock attached. It is configured to detach itself
// when its last user closes it (LO_FLAGS_AUTOCLEAR), so it cannot outlive
// luksdock even after SIGKILL.
type Loop struct {
	Path string
	f    *os.File
}

// AttachLoop binds a loop device to size bytes of file at offset. Used by the
// kernel engine to give an image's partition a block device for dm-crypt.
func AttachLoop(file string, offset, size int64) (*Loop, error) {
	back, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer back.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("loop devices are not available: %w", err)
	}
	defer ctl.Close()
	for try := 0; try < 10; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		lf, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(back.Fd())}
		cfg.Info.Offset, cfg.Info.Sizelimit = uint64(offset), uint64(size)
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		if err := unix.IoctlLoopConfigure(int(lf.Fd()), &cfg); err != nil {
			lf.Close()
			if err == unix.EBUSY { // raced with another user of that loop device
				continue
			}
			return nil, fmt.Errorf("LOOP_CONFIGURE %s: %w", path, err)
		}
		return &Loop{Path: path, f: lf}, nil
	}
	return nil, fmt.Errorf("no free loop device")
}

// Close drops luksdock's reference; the kernel detaches the loop device once
// nothing else (such as a dm-crypt mapping) holds it.
func (l *Loop) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// LoopBackedBy returns the loop device (/dev/loopN) whose backing file is
// the file with device number dev and inode ino, or "" if none is. Comparing
// the file itself, not its path, catches links and renames.
func (s Sys) LoopBackedBy(dev, ino uint64) string {
	if l := s.loopsBackedBy(dev, ino, true); len(l) > 0 {
		return l[0]
	}
	return ""
}

// LoopsBackedBy lists every loop device (/dev/loopN) whose backing file is
// file (compared by device and inode, as LoopBackedBy does), read
// from sysfs; nil if file does not exist. Used by close and open to find an
// image's loop devices, and by the reliability suite to prove none is left.
func (s Sys) LoopsBackedBy(file string) []string {
	var st unix.Stat_t
	if unix.Stat(file, &st) != nil {
		return nil
	}
	return s.loopsBackedBy(uint64(st.Dev), st.Ino, false)
}

func (s Sys) loopsBackedBy(dev, ino uint64, first bool) []string {
	var out []string
	m, _ := filepath.Glob(s.p("sys", "block", "loop*", "loop", "backing_file"))
	for _, bf := range m {
		p := strings.TrimSuffix(sysfsAttr(bf), " (deleted)")
		var st unix.Stat_t
		if p != "" && unix.Stat(p, &st) == nil && uint64(st.Dev) == dev && st.Ino == ino {
			out = append(out, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(bf))))
			if first {
				break
			}
		}
	}
	return out
}
