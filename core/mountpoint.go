package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/pipeline"
)

// Person is who a mount is for: the user behind sudo or pkexec, else the
// one running luksdock (root).
type Person struct {
	Name string
	UID  int
	GID  int
}

// MountUser is the person luksdock open mounts for: SUDO_UID, else
// PKEXEC_UID, else the current user, as pipeline.ResolveOwner decides it.
func MountUser(getenv func(string) string) (Person, error) {
	o, _, err := pipeline.ResolveOwner("", getenv)
	if err != nil {
		return Person{}, err
	}
	if getenv("SUDO_UID") == "" && getenv("PKEXEC_UID") == "" {
		o.UID, o.GID = os.Getuid(), os.Getgid()
	}
	p := Person{Name: strconv.Itoa(o.UID), UID: o.UID, GID: o.GID}
	if u, err := user.LookupId(strconv.Itoa(o.UID)); err == nil {
		p.Name = u.Username
	}
	return p, nil
}

// MediaDir is /media/USER, where the desktop (udisks) mounts a user's
// removable disks.
func MediaDir(p Person) string { return filepath.Join("/media", p.Name) }

// chooseMountpoint returns where to mount: explicit (which must be an
// empty directory that is no mountpoint, made if missing), or
// /media/USER/LABEL, with a number appended when that is taken (LABEL1,
// LABEL2, as udisks does). made reports whether the directory was made.
func chooseMountpoint(explicit string, p Person, label string) (mnt string, made bool, err error) {
	if explicit != "" {
		mnt = filepath.Clean(explicit)
		if !filepath.IsAbs(mnt) {
			if mnt, err = filepath.Abs(mnt); err != nil {
				return "", false, err
			}
		}
		made, err = usableDir(mnt)
		return mnt, made, err
	}
	media := MediaDir(p)
	if err := makeMediaDir(media, p); err != nil {
		return "", false, err
	}
	if label == "" || strings.ContainsAny(label, "/\x00") || label == "." || label == ".." {
		label = "disk"
	}
	for i := 0; i < 100; i++ {
		mnt = filepath.Join(media, label)
		if i > 0 {
			mnt += strconv.Itoa(i)
		}
		if made, err = usableDir(mnt); err == nil {
			return mnt, made, nil
		}
	}
	return "", false, err
}

// usableDir makes dir if missing (mode 0700: the mounted filesystem's own
// top directory shows once mounted) or checks that it is an empty
// directory and no mountpoint.
func usableDir(dir string) (made bool, err error) {
	if err := os.Mkdir(dir, 0o700); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrExist) {
		return false, refused("mountpoint %s: %v", dir, err)
	}
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() {
		return false, refused("mountpoint %s is not a directory", dir)
	}
	if isMountpoint(dir) {
		return false, refused("%s is already a mountpoint", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) > 0 {
		return false, refused("mountpoint %s is not empty", dir)
	}
	return false, nil
}

func isMountpoint(dir string) bool {
	for _, m := range (disk.Sys{Root: "/"}).MountInfo() {
		if m.MountPoint == dir {
			return true
		}
	}
	return false
}

// makeMediaDir makes /media/USER as udisks does: owned by root, mode 0750,
// with an ACL entry that lets the user in (user:USER:r-x). On a filesystem
// without ACLs the directory's group is the user's primary group instead.
func makeMediaDir(dir string, p Person) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return refused("%s: %v", filepath.Dir(dir), err)
	}
	err := os.Mkdir(dir, 0o750)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return refused("%s: %v", dir, err)
	}
	if p.UID == 0 {
		return nil
	}
	if err := setUserACL(dir, p.UID); err != nil {
		return os.Chown(dir, 0, p.GID)
	}
	return nil
}

// setUserACL sets the POSIX access ACL u::rwx,u:UID:r-x,g::r-x,m::r-x,o::---
// on dir (the system.posix_acl_access extended attribute, in the kernel's
// format: version 2, then tag, permissions and id per entry, sorted by tag).
func setUserACL(dir string, uid int) error {
	const (
		userObj, userTag, groupObj, mask, other = 0x01, 0x02, 0x04, 0x10, 0x20
		undefined                               = 0xffffffff
	)
	entries := []struct {
		tag, perm uint16
		id        uint32
	}{
		{userObj, 7, undefined}, {userTag, 5, uint32(uid)}, {groupObj, 5, undefined}, {mask, 5, undefined}, {other, 0, undefined},
	}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return unix.Setxattr(dir, "system.posix_acl_access", b, 0)
}

// ext4Label reads the label of the ext2/3/4 filesystem on dev ("" and
// false when dev holds none).
func ext4Label(dev string) (string, bool) {
	f, err := os.Open(dev)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return "", false
	}
	if binary.LittleEndian.Uint16(sb[56:]) != 0xEF53 {
		return "", false
	}
	l := sb[120:136]
	if i := strings.IndexByte(string(l), 0); i >= 0 {
		l = l[:i]
	}
	return string(l), true
}

// mountExt4 mounts the ext4 filesystem on dev at mnt with the options the
// desktop uses for removable disks (nosuid, nodev).
func mountExt4(dev, mnt string, readOnly bool) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(dev, mnt, "ext4", flags, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, mnt, err)
	}
	return nil
}
