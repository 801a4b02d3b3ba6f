package core

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
)

// PowerOff makes a USB disk safe to pull, as `udisksctl power-off` does:
// it flushes the disk (fsync and BLKFLSBUF on the whole disk, claimed
// exclusively for reading, which fails while anything still holds it and
// does not make udev re-read the partition table when it is closed), removes the
// SCSI device (writing 1 to /sys/block/NAME/device/delete: the kernel
// sends SYNCHRONIZE CACHE and, where the driver manages it, stops the
// drive), then disables the USB port the dock hangs on (writing 1 to the
// USB device's "remove" attribute), so the dock powers the drive down.
// It returns what it did, in words.
func PowerOff(name string) (string, error) {
	sys := disk.Sys{Root: "/"}
	d, err := sys.Disk(name)
	if err != nil {
		return "", err
	}
	if d.USB == nil {
		return "", fmt.Errorf("%s is not on USB; it is not powered off", d.Path)
	}
	if len(d.InUse) > 0 {
		var why []string
		for _, r := range d.InUse {
			why = append(why, r.String())
		}
		return "", fmt.Errorf("%s is still in use (%s); it is not powered off", d.Path, strings.Join(why, "; "))
	}
	if err := flushDisk(d.Path); err != nil {
		return "", fmt.Errorf("%s is still held by another program (%v); it is not powered off", d.Path, err)
	}
	sysDev, err := filepath.EvalSymlinks(filepath.Join("/sys/block", name))
	if err != nil {
		return "", err
	}
	usb := usbDeviceOf(sysDev)
	if err := os.WriteFile(filepath.Join("/sys/block", name, "device", "delete"), []byte("1"), 0); err != nil {
		return "", fmt.Errorf("removing the SCSI device %s: %w", name, err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !sys.Present(name) {
			break
		}
	}
	did := fmt.Sprintf("flushed %s and removed it from the kernel (SCSI delete)", d.Path)
	if usb == "" {
		return did + "; no USB device above it was found, so the port was left on", nil
	}
	if err := os.WriteFile(filepath.Join(usb, "remove"), []byte("1"), 0); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return did + "; this kernel cannot disable the USB port (no remove attribute): the drive may keep spinning until unplugged", nil
		}
		return did + fmt.Sprintf("; disabling the USB port %s failed: %v", filepath.Base(usb), err), nil
	}
	return did + fmt.Sprintf(" and disabled its USB port (%s): it can be unplugged", filepath.Base(usb)), nil
}

// flushDisk claims the whole disk exclusively for reading (refused while
// anything holds it; closing it does not make udev re-read the partition
// table, see disk.ClaimExclusive), writes back what the kernel holds for it
// (sync, fsync) and drops its buffer cache (BLKFLSBUF).
func flushDisk(path string) error {
	f, err := disk.ClaimExclusive(path)
	if err != nil {
		return err
	}
	defer f.Close()
	unix.Sync()
	_ = f.Sync()
	_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	return nil
}

// usbDeviceOf is the sysfs directory of the USB device (not interface)
// above a block device: the nearest ancestor with idVendor, as udev's parent with subsystem usb, devtype usb_device.
func usbDeviceOf(sysDev string) string {
	for p := filepath.Dir(sysDev); p != "/" && p != "/sys" && p != "."; p = filepath.Dir(p) {
		if _, err := os.Stat(filepath.Join(p, "idVendor")); err == nil {
			return p
		}
	}
	return ""
}
