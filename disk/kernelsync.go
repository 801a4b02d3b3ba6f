package disk

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SyncPartition makes the running kernel see partition 1 of the disk open as
// f (its kernel name is name) at l, and waits for its device node. It asks the
// kernel to re-read the table (BLKRRPART); where that creates no node — kernels
// built without partition-table parsers succeed and add nothing — it adds the
// partition itself (BLKPG add-partition). It returns the node's path, or a
// clear error after timeout.
func SyncPartition(f *os.File, name string, l Layout, timeout time.Duration) (string, string, error) {
	part := PartitionName(name, 1)
	node := "/dev/" + part
	fd := int(f.Fd())
	how := "BLKRRPART"
	if err := unix.IoctlSetInt(fd, unix.BLKRRPART, 0); err != nil {
		// Some drivers refuse a re-read; BLKPG below still works on them.
		how = "BLKRRPART failed (" + err.Error() + ")"
	}
	if waitNode(part, l, 2*time.Second) {
		return node, how, nil
	}
	// Drop any stale entry, then add ours.
	_ = blkpg(fd, unix.BLKPG_DEL_PARTITION, 1, 0, 0)
	if err := blkpg(fd, unix.BLKPG_ADD_PARTITION, 1, l.Start, l.Size); err != nil {
		return "", how, fmt.Errorf("the kernel did not create %s after BLKRRPART, and BLKPG add-partition failed: %w", node, err)
	}
	how += ", then BLKPG add-partition"
	if waitNode(part, l, timeout) {
		return node, how, nil
	}
	return "", how, fmt.Errorf("the partition node %s did not appear within %s (%s)", node, timeout, how)
}

func blkpg(fd, op, pno int, start, length int64) error {
	p := unix.BlkpgPartition{Start: start, Length: length, Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: int32(op), Datalen: int32(unsafe.Sizeof(p)), Data: (*byte)(unsafe.Pointer(&p))}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	if e != 0 {
		return e
	}
	return nil
}

// waitNode waits until sysfs knows the partition at exactly l's start and
// size (a stale entry from an earlier layout does not count) and /dev has a
// node with the same device number.
func waitNode(part string, l Layout, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(filepath.Join("/sys/class/block", part, "dev")); err == nil && geometryIs(part, l) {
			var st unix.Stat_t
			want := strings.TrimSpace(string(b))
			if unix.Stat("/dev/"+part, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK &&
				fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))) == want {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// geometryIs reports whether the kernel's partition part starts and ends
// where l says (sysfs counts 512-byte sectors whatever the disk's own).
func geometryIs(part string, l Layout) bool {
	start, err1 := os.ReadFile(filepath.Join("/sys/class/block", part, "start"))
	size, err2 := os.ReadFile(filepath.Join("/sys/class/block", part, "size"))
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.TrimSpace(string(start)) == fmt.Sprint(l.Start/512) && strings.TrimSpace(string(size)) == fmt.Sprint(l.Size/512)
}

// DropPartitions makes the running kernel forget every partition of the disk
// open as f (kernel name name), for a disk that now has no table (LUKS on
// the whole disk): it asks for a re-read (BLKRRPART), then deletes what is
// left (BLKPG del-partition). It says how.
func DropPartitions(f *os.File, name string) (string, error) {
	fd := int(f.Fd())
	how := "BLKRRPART"
	if err := unix.IoctlSetInt(fd, unix.BLKRRPART, 0); err != nil {
		how = "BLKRRPART failed (" + err.Error() + ")"
	}
	left, _ := filepath.Glob(filepath.Join("/sys/class/block", name, name+"*", "partition"))
	for _, p := range left {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &n); err != nil || n <= 0 {
			continue
		}
		if err := blkpg(fd, unix.BLKPG_DEL_PARTITION, n, 0, 0); err != nil {
			return how, fmt.Errorf("the kernel keeps partition %d of %s: BLKPG del-partition: %w", n, name, err)
		}
		how += fmt.Sprintf(", BLKPG del-partition %d", n)
	}
	return how, nil
}
