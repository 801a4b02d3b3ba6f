package luks

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dmVersionIoctl is DM_VERSION: _IOWR(0xfd, 0, struct dm_ioctl).
const dmVersionIoctl = 0xc138fd00

// DeviceMapper reports whether this kernel has a working device-mapper, which
// the kernel engine (cryptsetup open) needs, and why not when it has none.
func DeviceMapper() (bool, string) {
	f, err := os.OpenFile("/dev/mapper/control", os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("device-mapper is not available (%v)", err)
	}
	defer f.Close()
	// struct dm_ioctl is 312 bytes: version[3] u32, data_size u32, ...
	var buf [312]byte
	binary.NativeEndian.PutUint32(buf[0:], 4)
	binary.NativeEndian.PutUint32(buf[12:], uint32(len(buf)))
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), dmVersionIoctl, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
		return false, fmt.Sprintf("device-mapper does not answer (%v)", e)
	}
	return true, fmt.Sprintf("device-mapper %d.%d.%d", binary.NativeEndian.Uint32(buf[0:]), binary.NativeEndian.Uint32(buf[4:]), binary.NativeEndian.Uint32(buf[8:]))
}

// FUSE reports whether the userspace data path can mount: /dev/fuse opens.
func FUSE() (bool, string) {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("FUSE is not available (%v); install fuse3 or load the fuse module", err)
	}
	f.Close()
	return true, "FUSE"
}
