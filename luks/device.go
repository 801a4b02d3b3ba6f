package luks

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Device is where a LUKS device lives: a block device such as a partition
// node or, with no partition table, a whole disk (Base 0), or a byte range of
// an image file (Base is the partition's start; 0 for LUKS on the whole
// image). Size is the LUKS device's size in bytes.
type Device struct {
	Path string
	Base int64
	Size int64
}

// Direct reports whether cryptsetup is given the device itself: a block
// device. A region of an image file, even one at offset 0 (LUKS on a whole
// image), goes through a stage or a loop device instead: cryptsetup would
// lock the image file itself, which luksdock holds locked for the whole run.
func (d Device) Direct() bool {
	if d.Base != 0 {
		return false
	}
	st, err := os.Stat(d.Path)
	return err == nil && st.Mode()&os.ModeDevice != 0
}

// maxHeaderArea bounds how much of a region is staged to read a header:
// LUKS2's default metadata and keyslot area is 16 MiB, LUKS1's 2 MiB.
const maxHeaderArea = 32 << 20

// stage is an anonymous in-memory file (memfd) standing in for a LUKS device
// inside an image file, so that cryptsetup and luks.go, which expect the
// header at offset 0 of a file, can work on a partition that has no device
// node. It never touches a disk; it is sparse and sized like the region.
type stage struct{ f *os.File }

func newStage(size int64) (*stage, error) {
	fd, err := unix.MemfdCreate("luksdock-luks-header", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:luksdock-luks-header")
	if err := f.Truncate(size); err != nil {
		f.Close()
		return nil, err
	}
	return &stage{f: f}, nil
}

// path names the memfd for a child process (same user) or for os.Open.
func (s *stage) path() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), s.f.Fd()) }

func (s *stage) close() { s.f.Close() }

// withPath runs fn with a path at which the LUKS device's header reads as
// from offset 0: the device itself when it is a block device, else a stage
// holding a copy of the region's header area.
func (d Device) withPath(fn func(path string) error) error {
	if d.Direct() {
		return fn(d.Path)
	}
	return d.staged(os.O_RDONLY, func(src *os.File, s *stage, size int64) error {
		n := min(size, int64(maxHeaderArea))
		if _, err := io.Copy(io.NewOffsetWriter(s.f, 0), io.NewSectionReader(src, d.Base, n)); err != nil {
			return fmt.Errorf("reading LUKS header from %s: %w", d.Path, err)
		}
		return fn(s.path())
	})
}

// staged opens the image file holding d's region (flag: os.O_RDONLY or
// os.O_RDWR) and runs fn with it, an empty stage of the region's size and
// that size; both are closed when fn returns.
func (d Device) staged(flag int, fn func(src *os.File, s *stage, size int64) error) error {
	src, err := os.OpenFile(d.Path, flag, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	size, err := d.regionSize(src)
	if err != nil {
		return err
	}
	s, err := newStage(size)
	if err != nil {
		return err
	}
	defer s.close()
	return fn(src, s, size)
}

// regionSize is the size of d's region of the open file src: d.Size, or
// when that is not set, the rest of the file from d.Base.
func (d Device) regionSize(src *os.File) (int64, error) {
	if d.Size > 0 {
		return d.Size, nil
	}
	st, err := src.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size() - d.Base, nil
}

// FormatDevice is Format on a Device: directly on a block device, or, for a
// region of an image file, on an in-memory stage whose header area is then
// written into the image at Base. Nothing but the header area is written.
func FormatDevice(ctx context.Context, d Device, passphrase, volumeKey []byte, o FormatOptions) error {
	if d.Direct() {
		return Format(ctx, d.Path, passphrase, volumeKey, o)
	}
	s, err := newStage(d.Size)
	if err != nil {
		return err
	}
	defer s.close()
	if err := Format(ctx, s.path(), passphrase, volumeKey, o); err != nil {
		return err
	}
	area, err := headerArea(s.f)
	if err != nil {
		return err
	}
	dst, err := os.OpenFile(d.Path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer dst.Close()
	if _, err := io.Copy(io.NewOffsetWriter(dst, d.Base), io.NewSectionReader(s.f, 0, area)); err != nil {
		return fmt.Errorf("writing LUKS header into %s: %w", d.Path, err)
	}
	return dst.Sync()
}

// AddKeyDevice is AddKey on a Device: directly on a block device, or, for a
// region of an image file, on an in-memory stage holding a copy of the
// header area, which is then written back into the image at Base. Only the
// header area is written.
func AddKeyDevice(ctx context.Context, d Device, passphrase, newKey []byte, pbkdf PBKDF) error {
	return d.modifyHeader(func(path string) error { return AddKey(ctx, path, passphrase, newKey, pbkdf) })
}

// headerArea returns the size of the LUKS metadata in front of the data
// segment, read from the binary header.
func headerArea(r io.ReaderAt) (int64, error) {
	info, err := ReadHeader(r)
	if err != nil {
		return 0, err
	}
	if info.DataOffset <= 0 || info.DataOffset > maxHeaderArea {
		return 0, fmt.Errorf("unexpected LUKS data offset %d", info.DataOffset)
	}
	return info.DataOffset, nil
}

// TestPassphraseDevice is TestPassphrase on a Device.
func TestPassphraseDevice(ctx context.Context, d Device, passphrase []byte) error {
	return d.withPath(func(p string) error { return TestPassphrase(ctx, p, passphrase) })
}

// DumpVolumeKeyDevice is DumpVolumeKey on a Device.
func DumpVolumeKeyDevice(ctx context.Context, d Device, passphrase []byte) (key []byte, err error) {
	err = d.withPath(func(p string) error {
		key, err = DumpVolumeKey(ctx, p, passphrase)
		return err
	})
	return key, err
}

// HeaderBackupDevice is HeaderBackup on a Device.
func HeaderBackupDevice(ctx context.Context, d Device, path string) error {
	return d.withPath(func(p string) error { return HeaderBackup(ctx, p, path) })
}

// ErrNotLUKS means the device holds no LUKS header.
var ErrNotLUKS = errors.New("no LUKS header")

func be64(b []byte) int64 { return int64(binary.BigEndian.Uint64(b)) }

// ReadHeaderDevice is ReadHeader on a Device. A data segment that runs to the
// end of the device gets its size from the device's size.
func ReadHeaderDevice(d Device) (info Info, err error) {
	err = d.withPath(func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err = ReadHeader(f)
		return err
	})
	if err == nil && info.DataSize == 0 && d.Size > info.DataOffset {
		info.DataSize = d.Size - info.DataOffset
	}
	return info, err
}
