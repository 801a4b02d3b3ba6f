package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MountInfo is one line of /proc/self/mountinfo.
type MountInfo struct {
	MajMin     string // "8:17"
	Root       string // path inside the filesystem that is mounted
	MountPoint string
	FSType     string
	Source     string
}

// ParseMountInfo parses the text of /proc/self/mountinfo. Malformed lines
// are skipped. Octal escapes (\040 for space) are decoded.
func ParseMountInfo(text string) []MountInfo {
	var out []MountInfo
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		if !strings.Contains(f[2], ":") {
			continue
		}
		out = append(out, MountInfo{
			MajMin: f[2], Root: unescapeOctal(f[3]), MountPoint: unescapeOctal(f[4]),
			FSType: f[sep+1], Source: unescapeOctal(f[sep+2]),
		})
	}
	return out
}

// unescapeOctal decodes the \ooo escapes the kernel uses in mountinfo and
// /proc/swaps.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// SwapEntry is one active swap area from /proc/swaps.
type SwapEntry struct{ Filename, Type string }

// ParseSwaps parses /proc/swaps (header line first).
func ParseSwaps(text string) []SwapEntry {
	var out []SwapEntry
	for i, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 2 {
			continue
		}
		out = append(out, SwapEntry{Filename: unescapeOctal(f[0]), Type: f[1]})
	}
	return out
}

// usage is the system-wide picture of what is using block devices, keyed by
// kernel name.
type usage struct {
	table   []MountInfo         // the mount table read
	mounts  map[string][]string // block device name -> mount points
	swap    map[string]bool     // block device name -> active swap on it
	loopsOn map[string][]Reason // block device name -> "loop3 is backed by the file /x/img on it"
}

func (s Sys) loadUsage() *usage {
	u := &usage{mounts: map[string][]string{}, swap: map[string]bool{}, loopsOn: map[string][]Reason{}}
	mounts := s.MountInfo()
	u.table = mounts
	for _, m := range mounts {
		name := s.nameOfMajMin(m.MajMin)
		if name == "" && strings.HasPrefix(m.Source, "/dev/") {
			// btrfs and others report an anonymous device number; the
			// source names the block device.
			name = s.nameOfDevPath(m.Source)
		}
		if name != "" {
			u.mounts[name] = appendUnique(u.mounts[name], m.MountPoint)
		}
	}
	sw, _ := os.ReadFile(s.p("proc", "swaps"))
	for _, e := range ParseSwaps(string(sw)) {
		if e.Type == "partition" {
			if name := s.nameOfDevPath(e.Filename); name != "" {
				u.swap[name] = true
			}
			continue
		}
		// A swap file: in use of the device holding the file.
		if name := s.nameOfMajMin(fileDevice(mounts, e.Filename)); name != "" {
			u.mounts[name] = appendUnique(u.mounts[name], "swap file "+e.Filename)
		}
	}
	// Loop devices attached to a block device itself (losetup /dev/loop0
	// /dev/sdi1, as for a VM disk), or to a file on one: users of that
	// device, as a dm or md holder is (the kernel records no holder link
	// for them).
	ents, _ := os.ReadDir(s.p("sys", "block"))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		dev, file := s.loopBacking(e.Name(), mounts)
		switch {
		case dev == "":
		case file == "":
			u.loopsOn[dev] = append(u.loopsOn[dev], Reason{fmt.Sprintf("%s is attached to %s itself (a loop device)", e.Name(), dev), fixLoop(e.Name())})
		default:
			u.loopsOn[dev] = append(u.loopsOn[dev], Reason{fmt.Sprintf("%s is backed by the file %s on it", e.Name(), file), fixLoop(e.Name())})
		}
	}
	return u
}

// loopBacking says what loop device name is attached to: dev is the kernel
// name of the block device it reads, either its backing device itself (file
// "") or the device of the filesystem holding its backing file (file set);
// both "" for an unbound loop device or a file on no block device.
func (s Sys) loopBacking(name string, mounts []MountInfo) (dev, file string) {
	bf := sysfsAttr(s.p("sys", "block", name, "loop", "backing_file"))
	if bf == "" {
		return "", ""
	}
	path := strings.TrimSuffix(bf, " (deleted)")
	var st unix.Stat_t
	err := unix.Stat(s.p(strings.TrimPrefix(path, "/")), &st)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK:
		return s.nameOfMajMin(fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))), ""
	case err != nil && strings.HasPrefix(path, "/dev/"):
		// a node that has gone, or a fixture tree: judge by the name
		if n := s.nameOfDevPath(path); n != "" {
			return n, ""
		}
	}
	return s.nameOfMajMin(fileDevice(mounts, path)), bf
}

// Beneath lists the block devices that block device name is built on,
// recursively: a partition's disk, a dm or md device's members (slaves), a
// loop device's backing device or the device holding its backing file.
// files are the loop backing files met on the way (as sysfs names them).
func (s Sys) Beneath(name string) (devs, files []string) {
	mounts := s.MountInfo()
	seen := map[string]bool{}
	var walk func(n string, depth int)
	walk = func(n string, depth int) {
		if n == "" || seen[n] || depth > 16 {
			return
		}
		seen[n] = true
		devs = append(devs, n)
		cls := s.p("sys", "class", "block", n)
		if _, err := os.Stat(filepath.Join(cls, "partition")); err == nil {
			if t, err := filepath.EvalSymlinks(cls); err == nil {
				walk(filepath.Base(filepath.Dir(t)), depth+1)
			}
		}
		slaves, _ := os.ReadDir(filepath.Join(cls, "slaves"))
		for _, e := range slaves {
			walk(e.Name(), depth+1)
		}
		if strings.HasPrefix(n, "loop") {
			dev, file := s.loopBacking(n, mounts)
			if file != "" {
				files = append(files, strings.TrimSuffix(file, " (deleted)"))
			}
			walk(dev, depth+1)
		}
	}
	walk(name, 0)
	return devs, files
}

// MountInfo reads Root/proc/self/mountinfo: luksdock's one reader of the
// mount table.
func (s Sys) MountInfo() []MountInfo {
	mi, _ := os.ReadFile(s.p("proc", "self", "mountinfo"))
	return ParseMountInfo(string(mi))
}

// fileDevice returns the major:minor of the mounted filesystem holding the
// absolute path file (the longest mount point that is a prefix of it).
func fileDevice(mounts []MountInfo, file string) string {
	m, _ := mountOf(mounts, file)
	return m.MajMin
}

// mountOf is the mount holding the absolute path file: the longest mount
// point that is a prefix of it (false: none).
func mountOf(mounts []MountInfo, file string) (MountInfo, bool) {
	best, found := MountInfo{}, false
	for _, m := range mounts {
		mp := m.MountPoint
		if mp == "/" || file == mp || strings.HasPrefix(file, strings.TrimSuffix(mp, "/")+"/") {
			if !found || len(mp) > len(best.MountPoint) {
				best, found = m, true
			}
		}
	}
	return best, found
}

// VolumeFSType is the filesystem type of luksdock's own FUSE mounts: the
// userspace engine's volume server (luks.MountUserspace) serves a disk's
// decrypted volume there as a file, and a loop device on that file is
// what luksdock open mounts (and prepare formats and verifies).
const VolumeFSType = "fuse.luksdock"

// OwnVolumeLoop reports whether a loop device whose backing file is backing
// (as sysfs names it) is luksdock's own decrypted volume: the file lies on
// a luksdock FUSE mount (VolumeFSType). Such a loop device is part of the
// disk luksdock has open or is preparing, not a disk: Scan leaves it out.
// Only the mount table is read, never the FUSE file itself, so a stuck
// volume server cannot hang discovery.
func OwnVolumeLoop(backing string, mounts []MountInfo) bool {
	path := strings.TrimSuffix(backing, " (deleted)")
	if !filepath.IsAbs(path) {
		return false
	}
	m, ok := mountOf(mounts, filepath.Clean(path))
	return ok && m.FSType == VolumeFSType
}

// nameOfDevPath maps "/dev/sdb2" or "/dev/mapper/vg-swap" to a kernel name.
func (s Sys) nameOfDevPath(p string) string {
	if strings.HasPrefix(p, "/dev/mapper/") {
		want := strings.TrimPrefix(p, "/dev/mapper/")
		ents, _ := os.ReadDir(s.p("sys", "block"))
		for _, e := range ents {
			if sysfsAttr(s.p("sys", "block", e.Name(), "dm", "name")) == want {
				return e.Name()
			}
		}
	}
	if t, err := filepath.EvalSymlinks(s.p(strings.TrimPrefix(p, "/"))); err == nil {
		p = t
	}
	name := filepath.Base(p)
	if _, err := os.Stat(s.p("sys", "class", "block", name)); err == nil {
		return name
	}
	return ""
}

func appendUnique(l []string, v string) []string {
	for _, x := range l {
		if x == v {
			return l
		}
	}
	return append(l, v)
}

// lvmVG is the volume group of an LVM device-mapper name "VG-LV", in
// which LVM doubles each dash of VG and LV ("my--vg-root" is VG "my-vg").
func lvmVG(dmName string) string {
	var vg strings.Builder
	for i := 0; i < len(dmName); i++ {
		if dmName[i] == '-' {
			if i+1 < len(dmName) && dmName[i+1] == '-' {
				vg.WriteByte('-')
				i++
				continue
			}
			break
		}
		vg.WriteByte(dmName[i])
	}
	return vg.String()
}

// holderKind describes a holder of a block device in words, and how to
// release it.
func (s Sys) holderKind(name string) Reason {
	dir := s.p("sys", "block", name)
	if uuid := sysfsAttr(filepath.Join(dir, "dm", "uuid")); uuid != "" || strings.HasPrefix(name, "dm-") {
		dmName := sysfsAttr(filepath.Join(dir, "dm", "name"))
		switch {
		case strings.HasPrefix(uuid, "CRYPT-"):
			return Reason{fmt.Sprintf("open dm-crypt mapping %q (%s)", dmName, name),
				fmt.Sprintf("close the mapping (cryptsetup close %s).", dmName)}
		case strings.HasPrefix(uuid, "LVM-"):
			vg := lvmVG(dmName)
			return Reason{fmt.Sprintf("active LVM volume %q (%s)", dmName, name),
				fmt.Sprintf("deactivate the volume group (vgchange -an %s).", vg)}
		default:
			return Reason{fmt.Sprintf("device-mapper device %q (%s)", dmName, name),
				fmt.Sprintf("remove the device-mapper device (dmsetup remove %s).", dmName)}
		}
	}
	if strings.HasPrefix(name, "md") {
		level := sysfsAttr(filepath.Join(dir, "md", "level"))
		return Reason{fmt.Sprintf("member of md array %s %s", name, level),
			fmt.Sprintf("stop the array (mdadm --stop /dev/%s).", name)}
	}
	return Reason{"held by " + name, "close what uses it (" + name + ")."}
}

// stackUse collects, for block device name, everything stacked on it
// (holders, recursively) and their mounts and swap.
func (s Sys) stackUse(u *usage, name string, depth int) (holders, mounts []string, inUse []Reason, swap bool) {
	ents, _ := os.ReadDir(s.p("sys", "class", "block", name, "holders"))
	for _, e := range ents {
		h := e.Name()
		holders = append(holders, h)
		inUse = append(inUse, s.holderKind(h))
		for _, m := range u.mounts[h] {
			mounts = appendUnique(mounts, m)
			inUse = append(inUse, mountedReason(h, m))
		}
		if u.swap[h] {
			swap = true
			inUse = append(inUse, Reason{fmt.Sprintf("%s is active swap", h), fixSwapoff(h)})
		}
		inUse = append(inUse, u.loopsOn[h]...)
		if depth < 8 {
			_, m2, i2, sw2 := s.stackUse(u, h, depth+1)
			for _, m := range m2 {
				mounts = appendUnique(mounts, m)
			}
			inUse = append(inUse, i2...)
			swap = swap || sw2
		}
	}
	return
}

// mountedReason is dev mounted at m (a mount point, or "swap file PATH").
func mountedReason(dev, m string) Reason {
	fix := fixUnmount(m)
	if f, ok := strings.CutPrefix(m, "swap file "); ok {
		fix = "turn the swap file off (swapoff " + f + ")."
	}
	return Reason{fmt.Sprintf("%s is mounted at %s", dev, m), fix}
}

// apply fills Mounts, Swap, Holders and InUse of a disk and its partitions.
func (u *usage) apply(s Sys, d *Disk) {
	fill := func(name string) (mounts []string, swap bool, holders []string, inUse []Reason) {
		for _, m := range u.mounts[name] {
			mounts = appendUnique(mounts, m)
			inUse = append(inUse, mountedReason(name, m))
		}
		if u.swap[name] {
			swap = true
			inUse = append(inUse, Reason{fmt.Sprintf("%s is active swap", name), fixSwapoff(name)})
		}
		inUse = append(inUse, u.loopsOn[name]...)
		h, m2, i2, sw2 := s.stackUse(u, name, 0)
		holders = h
		for _, m := range m2 {
			mounts = appendUnique(mounts, m)
		}
		inUse = append(inUse, i2...)
		return mounts, swap || sw2, holders, inUse
	}
	d.Mounts, d.Swap, d.Holders, d.InUse = fill(d.Name)
	for i := range d.Partitions {
		p := &d.Partitions[i]
		if !p.InKernel {
			continue
		}
		p.Mounts, p.Swap, p.Holders, p.InUse = fill(p.Name)
	}
	sort.Strings(d.Mounts)
}
