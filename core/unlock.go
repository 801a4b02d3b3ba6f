package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/internal/secret"
	"luksdock/luks"
	"luksdock/pipeline"
)

// What luksdock open, luksdock close and the dock run share: what unlocks
// a LUKS volume, the unlocked volume on either engine, its mount, its
// unmount and lock, and the power-off of its USB disk.

// unlockKey is what unlocks a volume: a passphrase or recovery key (open:
// secret, recoveryKey says which), this host's key file (the dock run:
// keyFile, KeyFile), or the disk's systemd-tpm2 token sealed to this
// host's TPM2 (the dock run: tpm2).
type unlockKey struct {
	secret      []byte
	recoveryKey bool
	keyFile     string
	tpm2        bool
}

// String names the key for messages (never its contents).
func (k unlockKey) String() string {
	switch {
	case k.tpm2:
		return "this host's TPM2 (the disk's systemd-tpm2 token)"
	case k.keyFile != "":
		return "the key file " + k.keyFile
	}
	return secretName(k.recoveryKey)
}

// engineFor resolves the engine for key k (chooseEngine). A key sealed to
// the TPM2 needs the kernel engine: cryptsetup's systemd-tpm2 token plugin
// unseals it and hands it to device-mapper; it never reaches luksdock, so
// the userspace engine cannot use it.
func engineFor(e pipeline.Engine, k unlockKey) (pipeline.Engine, error) {
	if !k.tpm2 {
		return chooseEngine(e)
	}
	var why string
	dm, dmWhy := luks.DeviceMapper()
	switch {
	case e == pipeline.EngineUserspace:
		why = "the userspace engine was asked for"
	case !dm:
		why = fmt.Sprintf("this machine has no device-mapper (%s), so the userspace engine would be needed", dmWhy)
	default:
		return chooseEngine(e)
	}
	return "", refused("the disk is sealed to this host's TPM2, which only the kernel engine can use (cryptsetup's systemd-tpm2 token opens a device-mapper mapping), but %s: refused", why)
}

// volume is an unlocked LUKS volume and, once mounted, its mountpoint.
type volume struct {
	engine pipeline.Engine
	// dev is the cleartext block device holding the filesystem: the
	// dm-crypt mapping, or a loop device on the volume holder's file.
	dev string
	// mapping is the kernel engine's dm-crypt mapping.
	mapping string
	// holder is the userspace engine's volume holder until it is
	// committed (luksdock open); holderPID is its pid.
	holder    *holder
	holderPID int
	// loop is the userspace engine's loop device until the mount holds it.
	loop    *disk.Loop
	mnt     string
	madeDir bool // luksdock made mnt: removed again on close
}

// unlockVolume unlocks the LUKS volume of d with k on engine (resolved:
// kernel or userspace). The kernel engine makes the dm-crypt mapping
// mapping (cryptsetup reads a key file itself, or its systemd-tpm2 token
// plugin unseals the key: neither passes through luksdock); the userspace
// engine starts a volume holder with the volume key unsealed by luksdock's
// own LUKS code and attaches a loop device on its file. A key that opens
// no keyslot fails with pipeline.KindWrongPassphrase and nothing done.
func unlockVolume(ctx context.Context, d *LUKSDisk, engine pipeline.Engine, k unlockKey, mapping string) (*volume, error) {
	if engine == pipeline.EngineKernel {
		dev, release, err := d.blockDevice()
		if err != nil {
			return nil, err
		}
		defer release() // the mapping holds the loop device of an image
		switch {
		case k.tpm2:
			err = luks.OpenTPM2(ctx, dev, mapping)
		case k.keyFile != "":
			var f *os.File
			if f, err = openKeyFile(k.keyFile); err == nil {
				f.Close()
				err = luks.OpenKeyFile(ctx, dev, mapping, k.keyFile)
			}
		default:
			err = luks.Open(ctx, dev, mapping, k.secret)
		}
		if err != nil {
			return nil, secretError(err, d, k.String())
		}
		return &volume{engine: engine, dev: "/dev/mapper/" + mapping, mapping: mapping}, nil
	}
	if k.tpm2 {
		return nil, refused("%s: a key sealed to the TPM2 opens a disk through the kernel engine only", d.What())
	}
	key := k.secret
	if k.keyFile != "" {
		hk, err := readKey(k.keyFile)
		if err != nil {
			return nil, &pipeline.Error{Kind: pipeline.KindStep, Err: err}
		}
		defer secret.Free(hk)
		key = hk
	}
	h, l, err := unlockUserspace(ctx, d, key, k.String())
	if err != nil {
		return nil, err
	}
	return &volume{engine: engine, dev: l.Path, holder: h, holderPID: h.pid, loop: l}, nil
}

// openKeyFile opens a host key file, refusing a link or one that others
// could read: it must be 0400 root (host enroll writes it so).
func openKeyFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm()&0o077 != 0 {
		err = fmt.Errorf("%s is readable by others (mode %04o): refused; it must be 0400 root", path, st.Mode().Perm())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readKey reads a host key file (openKeyFile) into secret memory; the
// caller frees it with secret.Free.
func readKey(path string) ([]byte, error) {
	f, err := openKeyFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() <= 0 || st.Size() > 8192 {
		return nil, fmt.Errorf("%s holds %d bytes: not a host key", path, st.Size())
	}
	key := secret.New(int(st.Size()))
	if _, err := io.ReadFull(f, key); err != nil {
		secret.Free(key)
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return key, nil
}

// mount mounts v's ext4 filesystem at mnt, with the options the desktop
// uses for removable disks (nosuid, nodev); made says that luksdock made
// the directory, which close removes again (and a failed mount at once).
func (v *volume) mount(mnt string, made, readOnly bool) error {
	if err := mountExt4(v.dev, mnt, readOnly); err != nil {
		if made {
			os.Remove(mnt)
		}
		return err
	}
	v.mnt, v.madeDir = mnt, made
	// The mount holds the loop device now; it detaches itself once
	// unmounted (autoclear).
	v.loop.Close()
	v.loop = nil
	return nil
}

// close unmounts v (unmount) and locks it (lock). lost says the disk may
// be gone (undocked mid-run): the mount is detached lazily and the mapping
// removed as soon as nothing holds it.
func (v *volume) close(ctx context.Context, lost bool) error {
	var errs []error
	if v.mnt != "" {
		if err := unmount(v.mnt, lost); err != nil {
			errs = append(errs, err)
		} else {
			if v.madeDir {
				os.Remove(v.mnt) // only ever an empty directory
			}
			v.mnt = ""
		}
	}
	if len(errs) == 0 || lost {
		errs = append(errs, v.lock(ctx, lost))
	}
	return errors.Join(errs...)
}

// unmount flushes the filesystem at mnt and unmounts it. A filesystem in
// use is left mounted: the *BusyError names the processes that hold it.
// lost (the disk is gone): it is detached at once, however busy (MNT_DETACH),
// and nothing is flushed.
func unmount(mnt string, lost bool) error {
	if lost {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("detaching %s: %w", mnt, err)
		}
		return nil
	}
	if f, err := os.Open(mnt); err == nil {
		_ = unix.Syncfs(int(f.Fd()))
		f.Close()
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		if users := Users(mnt); len(users) > 0 {
			return &BusyError{Mountpoint: mnt, Procs: users}
		}
		return fmt.Errorf("unmount %s: %w", mnt, err)
	}
	return nil
}

// lock locks the unmounted volume: the dm-crypt mapping is removed
// (deferred first when lost, and tried again for a few seconds while udev's
// probe or a lazy unmount still holds it), or the userspace engine's
// volume holder is stopped (it wipes the key and flushes the disk).
func (v *volume) lock(ctx context.Context, lost bool) error {
	v.loop.Close()
	v.loop = nil
	var errs []error
	if v.mapping != "" {
		if lost {
			_ = luks.CloseDeferred(ctx, v.mapping)
		}
		var err error
		for i := 0; i < 50; i++ {
			if _, serr := os.Stat("/dev/mapper/" + v.mapping); serr != nil {
				err = nil
				break
			}
			if err = luks.Close(ctx, v.mapping); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		} else {
			v.mapping = ""
		}
	}
	if v.holder != nil {
		v.holder.abandon() // it releases the volume by itself; stopHolder waits
		v.holder = nil
	}
	if v.holderPID != 0 {
		if err := stopHolder(v.holderPID, 5*time.Minute); err != nil {
			errs = append(errs, err)
		} else {
			v.holderPID = 0
		}
	}
	return errors.Join(errs...)
}

// powerOffUSB powers off the USB disk that holds the block device dev (the
// whole disk or a partition of it) with PowerOff. usb is false, and
// nothing is done, for a disk that is not on USB, or that is not found (err
// then says why).
func powerOffUSB(dev string) (did string, usb bool, err error) {
	sys := disk.Sys{Root: "/"}
	name, err := sys.NameOf(dev)
	if err != nil {
		return "", false, err
	}
	d, err := sys.Disk(name)
	var pe *disk.PartitionError
	if errors.As(err, &pe) {
		name = pe.Parent
		d, err = sys.Disk(name)
	}
	if err != nil {
		return "", false, err
	}
	if d.USB == nil {
		return "", false, nil
	}
	did, err = PowerOff(name)
	return did, true, err
}
