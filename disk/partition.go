package disk

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/partition/mbr"
)

// TableType is the partition table luksdock writes.
type TableType string

const (
	// TableGPT is the portable GPT: valid whether a dock presents the disk
	// with 512-byte or 4096-byte logical sectors (see gpt.go).
	TableGPT TableType = "gpt"
	// TableMBR is a DOS partition table. Its entries count in the logical
	// sectors of the dock it was made through, so it cannot be portable.
	TableMBR TableType = "mbr"
	// TableNone is no table: LUKS directly on the whole disk, as the
	// cryptsetup FAQ advises for external disks; readable through any dock.
	TableNone TableType = "none"
)

// ParseTableType accepts "gpt", "mbr" or "none".
func ParseTableType(s string) (TableType, error) {
	switch t := TableType(s); t {
	case TableGPT, TableMBR, TableNone:
		return t, nil
	}
	return "", fmt.Errorf("unknown partition table %q (want gpt, mbr or none)", s)
}

// SfdiskLabel is the table's name in sfdisk's script format ("dos" for MBR).
func (t TableType) SfdiskLabel() string {
	if t == TableMBR {
		return "dos"
	}
	return string(t)
}

// Align is where the single partition starts and to what its end is rounded:
// 1 MiB, as fdisk and parted do, so every sector size and RAID stripe lines up.
const Align = 1 << 20

// Layout is where LUKS goes: the one partition luksdock makes (Start and
// Size in bytes), or with TableNone the whole disk (Start 0).
type Layout struct {
	Table TableType
	Start int64
	Size  int64
}

// PlanLayout computes the layout for a disk of size bytes with the given
// logical sector size. GPT: from 1 MiB to the last whole MiB before the
// metadata of both sector views at the end. MBR: from 1 MiB to the last whole
// MiB. None: the whole disk.
func PlanLayout(table TableType, size int64, sector int) (Layout, error) {
	if sector != 512 && sector != 4096 {
		return Layout{}, fmt.Errorf("unsupported logical sector size %d", sector)
	}
	end := size // exclusive
	switch table {
	case TableGPT:
		end = portableEnd(size)
	case TableMBR:
		if size/int64(sector) > 1<<32 {
			return Layout{}, fmt.Errorf("an MBR partition table cannot address %d bytes with %d-byte sectors; use --table gpt", size, sector)
		}
	case TableNone:
		if size < 2*Align {
			return Layout{}, fmt.Errorf("disk of %d bytes is too small", size)
		}
		return Layout{Table: table, Start: 0, Size: size}, nil
	default:
		return Layout{}, fmt.Errorf("unknown partition table %q (want gpt, mbr or none)", table)
	}
	end = end / Align * Align
	if end-Align < Align {
		return Layout{}, fmt.Errorf("disk of %d bytes is too small for a partition", size)
	}
	return Layout{Table: table, Start: Align, Size: end - Align}, nil
}

// WritePartitionTable writes a fresh table holding only l's partition through
// f, a whole disk or image of size bytes with the given sector sizes. GPT is
// the portable dual-view table (gpt.go) with the Linux filesystem type; MBR
// (written with go-diskfs for the logical sector size) has type 0x83, as the
// manual procedure does. It returns the GPT disk GUID (or MBR disk
// identifier). TableNone writes nothing and returns "".
func WritePartitionTable(f *os.File, size int64, logical, physical int, l Layout) (string, error) {
	ss := int64(logical)
	switch l.Table {
	case TableNone:
		return "", nil
	case TableGPT:
		return writePortableGPT(f, size, l)
	case TableMBR:
		t := &mbr.Table{
			LogicalSectorSize:  logical,
			PhysicalSectorSize: physical,
			Partitions: []*mbr.Partition{{
				Index: 1,
				Type:  mbr.Linux,
				Start: uint32(l.Start / ss),
				Size:  uint32(l.Size / ss),
			}},
		}
		if err := t.Write(f, size); err != nil {
			return "", fmt.Errorf("writing MBR: %w", err)
		}
		// go-diskfs leaves the 32-bit disk identifier alone; give the disk
		// one, as fdisk does, so it has a PTUUID.
		var id [4]byte
		if _, err := rand.Read(id[:]); err != nil {
			return "", err
		}
		if _, err := f.WriteAt(id[:], 440); err != nil {
			return "", fmt.Errorf("writing MBR disk identifier: %w", err)
		}
		return fmt.Sprintf("%02x%02x%02x%02x", id[3], id[2], id[1], id[0]), f.Sync()
	}
	return "", errors.New("unknown partition table " + string(l.Table))
}
