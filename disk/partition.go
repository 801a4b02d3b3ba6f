package disk

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Align is where the single partition starts and to what its end is rounded:
// 1 MiB, as fdisk and parted do, so every sector size and RAID stripe lines up.
const Align = 1 << 20

// TableType is a partition table luksdock writes (and reports in a Result):
// one value for the same table everywhere, whatever a tool calls it (blkid
// and sfdisk say "dos" for MBR).
type TableType string

// The partition tables luksdock knows.
const (
	TableGPT  TableType = "gpt"
	TableMBR  TableType = "mbr"
	TableNone TableType = "none" // LUKS directly on the whole disk
)

// SfdiskLabel is the table's name in sfdisk's script format ("dos" for MBR).
func (t TableType) SfdiskLabel() string {
	if t == TableMBR {
		return "dos"
	}
	return string(t)
}

// Layout is the one partition luksdock makes: Start and Size in bytes.
type Layout struct {
	Table TableType
	Start int64
	Size  int64
}

// PlanLayout computes the partition for a disk of size bytes with the given
// logical sector size: from 1 MiB to the last whole MiB before the end (GPT
// keeps its backup table in the final sectors).
func PlanLayout(table TableType, size int64, sector int) (Layout, error) {
	if sector != 512 && sector != 4096 {
		return Layout{}, fmt.Errorf("unsupported logical sector size %d", sector)
	}
	end := size // exclusive
	switch table {
	case TableGPT:
		// backup header + 128 entries of 128 bytes at the end
		end = size - int64(sector) - 128*128
	case TableMBR:
		if size/int64(sector) > 1<<32 {
			return Layout{}, fmt.Errorf("an MBR partition table cannot address %d bytes with %d-byte sectors; use --table gpt", size, sector)
		}
	default:
		return Layout{}, fmt.Errorf("unknown partition table %q (want gpt or mbr)", table)
	}
	end = end / Align * Align
	if end-Align < Align {
		return Layout{}, fmt.Errorf("disk of %d bytes is too small for a partition", size)
	}
	return Layout{Table: table, Start: Align, Size: end - Align}, nil
}

// WritePartitionTable writes a fresh table holding only l's partition through
// f, a whole disk or image of size bytes with the given sector sizes. GPT uses
// the Linux filesystem type, MBR type 0x83, as the manual procedure does. It
// returns the GPT disk GUID (or MBR disk identifier).
func WritePartitionTable(f *os.File, size int64, logical, physical int, l Layout) (string, error) {
	ss := int64(logical)
	switch l.Table {
	case TableGPT:
		t := &gpt.Table{
			LogicalSectorSize:  logical,
			PhysicalSectorSize: physical,
			ProtectiveMBR:      true,
			Partitions: []*gpt.Partition{{
				Index: 1,
				Start: uint64(l.Start / ss),
				End:   uint64((l.Start+l.Size)/ss - 1),
				Size:  uint64(l.Size),
				Type:  gpt.LinuxFilesystem,
				Name:  "luksdock",
			}},
		}
		if err := t.Write(f, size); err != nil {
			return "", fmt.Errorf("writing GPT: %w", err)
		}
		return t.GUID, f.Sync()
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
