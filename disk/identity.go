package disk

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Identity is what makes a docked disk this disk and not another: captured
// when the user confirms it and re-checked before every destructive step.
type Identity struct {
	Name     string `json:"name"`
	MajMin   string `json:"majmin"`
	DiskSeq  uint64 `json:"diskseq,omitempty"` // kernel's per-attach sequence number; changes on every re-dock/re-attach
	Size     int64  `json:"size"`
	Model    string `json:"model,omitempty"`
	Serial   string `json:"serial,omitempty"`
	WWN      string `json:"wwn,omitempty"`
	DiskGUID string `json:"disk_guid,omitempty"` // partition table's disk GUID / MBR id, if any
}

// ErrDiskChanged is wrapped by Identity.Check when the disk is not the one
// the user confirmed.
var ErrDiskChanged = errors.New("the disk changed since you confirmed it")

// Identity captures the identity of disk name from sysfs plus a read-only
// probe of its partition table (for DiskGUID).
func (s Sys) Identity(name string) (Identity, error) {
	d, err := s.Disk(name)
	if err != nil {
		return Identity{}, err
	}
	return d.Identity(), nil
}

// Identity returns the identity fields of an already discovered disk.
func (d Disk) Identity() Identity {
	return Identity{
		Name: d.Name, MajMin: d.MajMin, DiskSeq: d.DiskSeq, Size: d.Size,
		Model: d.Model, Serial: d.Serial, WWN: d.WWN, DiskGUID: d.Content.DiskGUID,
	}
}

// Check compares the confirmed identity a with the current one b. It returns
// nil when they are the same, else an error wrapping ErrDiskChanged that
// lists what changed. DiskGUID changes when luksdock itself writes a new
// partition table: after its own partition step a caller re-captures the
// identity, or uses CheckDevice, which ignores the table.
func (a Identity) Check(b Identity) error {
	return a.check(b, true)
}

// CheckDevice is Check without the partition table's disk GUID: the same
// physical disk in the same attachment, whatever its contents now.
func (a Identity) CheckDevice(b Identity) error {
	return a.check(b, false)
}

func (a Identity) check(b Identity, table bool) error {
	var diffs []string
	cmp := func(what, x, y string) {
		if x != y {
			diffs = append(diffs, fmt.Sprintf("%s %q -> %q", what, x, y))
		}
	}
	cmp("name", a.Name, b.Name)
	cmp("major:minor", a.MajMin, b.MajMin)
	if a.DiskSeq != b.DiskSeq {
		diffs = append(diffs, fmt.Sprintf("disk sequence %d -> %d (re-attached)", a.DiskSeq, b.DiskSeq))
	}
	if a.Size != b.Size {
		diffs = append(diffs, fmt.Sprintf("size %d -> %d bytes", a.Size, b.Size))
	}
	cmp("model", a.Model, b.Model)
	cmp("serial", a.Serial, b.Serial)
	cmp("WWN", a.WWN, b.WWN)
	if table {
		cmp("partition table GUID", a.DiskGUID, b.DiskGUID)
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrDiskChanged, strings.Join(diffs, ", "))
}

// OpenExclusive opens the whole-disk device path for reading and writing
// with O_EXCL, which for a block device makes the kernel refuse the open
// while the device (or any of its partitions) is mounted, held by dm/md, or
// opened exclusively by another process — and refuse mounts and other
// exclusive opens while the returned file stays open. Hold it for the whole
// destructive phase. It refuses anything that is not a block device.
func OpenExclusive(path string) (*os.File, error) {
	return openExclusive(path, os.O_RDWR)
}

// ClaimExclusive is OpenExclusive for reading only: it claims the whole
// disk as OpenExclusive does (refused while anything holds it) for a
// caller that only flushes it. Closing it does not wake udev's watch of
// the disk, which a descriptor opened for writing does (IN_CLOSE_WRITE: a
// synthesized change event and a re-read of the partition table, whose
// new "add" events would start rules such as luksdock's own docking rule
// again).
func ClaimExclusive(path string) (*os.File, error) {
	return openExclusive(path, os.O_RDONLY)
}

func openExclusive(path string, mode int) (*os.File, error) {
	f, err := os.OpenFile(path, mode|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("%s is busy (mounted, held by another device, or opened exclusively by another program): %w", path, err)
		}
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		f.Close()
		return nil, fmt.Errorf("%s is not a block device", path)
	}
	return f, nil
}
