package disk

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"unicode/utf16"
)

// The portable GPT: one table that Linux, sfdisk, gdisk and parted read
// whether a dock presents the disk with 512-byte or with 4096-byte logical
// sectors. Each view has its own protective-MBR-compatible primary header at
// its LBA 1 (byte 512 and byte 4096), its own entry array, and its own backup
// header at its last LBA; the one partition has the same bytes in both. Where
// everything lies (bytes; E is the disk size rounded down to 4096, the end
// of the 4096-byte view):
//
//	0               protective MBR (its 0xEE entry says 0xFFFFFFFF sectors,
//	                which the UEFI spec, Linux and libfdisk accept for any size)
//	512             512-byte view: primary header (LBA 1)
//	4096            4096-byte view: primary header (LBA 1)
//	8192..24576     4096-byte view: primary entries (LBA 2..5)
//	24576..40960    512-byte view: primary entries (LBA 48..79)
//	1 MiB..         the partition, to the last whole MiB before E-36864
//	E-36864..E-20480  512-byte view: backup entries
//	E-20480..E-4096   4096-byte view: backup entries
//	E-4096          4096-byte view: backup header (its last LBA)
//	S-512           512-byte view: backup header (its last LBA; S is the
//	                size rounded down to 512)
//
// A header's checksum covers its first 92 bytes and an entry array's covers
// its 16 KiB; none of these ranges overlaps another, so writing one view
// never invalidates the other. The rest of a 4096-byte header sector is not
// checksummed (the 512-byte view's backup header lives in it).
//
// go-diskfs (used for MBR) writes a GPT for one sector size with its entries
// at LBA 2, which for 512-byte sectors covers byte 4096 where the 4096-byte
// view's header must be; it has no way to place the entries elsewhere, so
// luksdock writes this table itself, following the UEFI specification
// (chapter 5) with its CRC32 (IEEE).
const (
	gptEntryCount = 128
	gptEntrySize  = 128
	gptArrayBytes = gptEntryCount * gptEntrySize // 16 KiB, the UEFI minimum
	gptHeaderSize = 92

	gptEntries4K  = 8192  // primary entry array of the 4096-byte view
	gptEntries512 = 24576 // primary entry array of the 512-byte view
	gptHeadEnd    = gptEntries512 + gptArrayBytes
	gptTailBytes  = 4096 + 2*gptArrayBytes // metadata below E
)

// LinuxFilesystemGUID is the GPT partition type the manual procedure uses
// (sfdisk "L", gdisk 8300).
const LinuxFilesystemGUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

// portableEnd is the first byte after the partition area of a portable GPT on
// a disk of size bytes: below the metadata at the end of both views.
func portableEnd(size int64) int64 { return size/4096*4096 - gptTailBytes }

// gptView is one sector-size view of the portable table.
type gptView struct {
	ss                  int64
	primary, backup     int64 // header LBAs
	primaryEnt, backEnt int64 // entry array LBAs
	first, last         int64 // usable LBAs
}

func portableViews(size int64) []gptView {
	e := size / 4096 * 4096
	var v []gptView
	for _, ss := range []int64{512, 4096} {
		g := gptView{ss: ss, primary: 1, backup: size/ss - 1,
			first: gptHeadEnd / ss, last: (e-gptTailBytes)/ss - 1}
		if ss == 512 {
			g.primaryEnt, g.backEnt = gptEntries512/ss, (e-gptTailBytes)/ss
		} else {
			g.primaryEnt, g.backEnt = gptEntries4K/ss, (e-4096-gptArrayBytes)/ss
		}
		v = append(v, g)
	}
	return v
}

// guidBytes encodes a GUID string in the GPT's mixed-endian layout.
func guidBytes(s string) ([16]byte, error) {
	var g [16]byte
	var raw [16]byte
	var n int
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' {
			continue
		}
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return g, fmt.Errorf("bad GUID %q", s)
		}
		if n >= 32 {
			return g, fmt.Errorf("bad GUID %q", s)
		}
		raw[n/2] |= v << (4 * (1 - n%2))
		n++
	}
	if n != 32 {
		return g, fmt.Errorf("bad GUID %q", s)
	}
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

// randomGUID is a version 4 GUID in the GPT's byte layout.
func randomGUID() ([16]byte, error) {
	var g [16]byte
	if _, err := rand.Read(g[:]); err != nil {
		return g, err
	}
	g[7] = g[7]&0x0f | 0x40 // version 4 (time_hi_and_version is little-endian)
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g, nil
}

// writePortableGPT writes the dual-view GPT holding l's partition through f
// (a disk or image of size bytes) and returns the disk GUID. The write order
// is go-diskfs's: protective MBR, backups, primaries, so that a table cut
// short is recoverable or plainly unfinished, never half of one view.
func writePortableGPT(f *os.File, size int64, l Layout) (string, error) {
	if l.Start < gptHeadEnd || l.Start%4096 != 0 || l.Size%4096 != 0 || l.Start+l.Size > portableEnd(size) {
		return "", fmt.Errorf("partition %d+%d does not fit a portable GPT on %d bytes", l.Start, l.Size, size)
	}
	diskGUID, err := randomGUID()
	if err != nil {
		return "", err
	}
	partGUID, err := randomGUID()
	if err != nil {
		return "", err
	}
	typeGUID, _ := guidBytes(LinuxFilesystemGUID)
	name := utf16.Encode([]rune("luksdock"))

	head := make([]byte, gptHeadEnd)
	tailStart := size/4096*4096 - gptTailBytes
	tail := make([]byte, size-tailStart)
	put := func(off int64, b []byte) {
		if off >= tailStart {
			copy(tail[off-tailStart:], b)
		} else {
			copy(head[off:], b)
		}
	}

	// Protective MBR: one 0xEE entry from LBA 1 over "the whole disk".
	pm := head[:512]
	e := pm[446:462]
	e[1], e[2], e[3] = 0x00, 0x02, 0x00 // CHS of LBA 1
	e[4] = 0xEE
	e[5], e[6], e[7] = 0xFF, 0xFF, 0xFF
	binary.LittleEndian.PutUint32(e[8:12], 1)
	binary.LittleEndian.PutUint32(e[12:16], 0xFFFFFFFF)
	pm[510], pm[511] = 0x55, 0xAA

	for _, v := range portableViews(size) {
		ents := make([]byte, gptArrayBytes)
		copy(ents[0:16], typeGUID[:])
		copy(ents[16:32], partGUID[:])
		binary.LittleEndian.PutUint64(ents[32:40], uint64(l.Start/v.ss))
		binary.LittleEndian.PutUint64(ents[40:48], uint64((l.Start+l.Size)/v.ss-1))
		for i, c := range name {
			binary.LittleEndian.PutUint16(ents[56+2*i:], c)
		}
		entCRC := crc32.ChecksumIEEE(ents)
		header := func(my, alt, entLBA int64) []byte {
			h := make([]byte, gptHeaderSize)
			copy(h[0:8], "EFI PART")
			binary.LittleEndian.PutUint32(h[8:12], 0x00010000)
			binary.LittleEndian.PutUint32(h[12:16], gptHeaderSize)
			binary.LittleEndian.PutUint64(h[24:32], uint64(my))
			binary.LittleEndian.PutUint64(h[32:40], uint64(alt))
			binary.LittleEndian.PutUint64(h[40:48], uint64(v.first))
			binary.LittleEndian.PutUint64(h[48:56], uint64(v.last))
			copy(h[56:72], diskGUID[:])
			binary.LittleEndian.PutUint64(h[72:80], uint64(entLBA))
			binary.LittleEndian.PutUint32(h[80:84], gptEntryCount)
			binary.LittleEndian.PutUint32(h[84:88], gptEntrySize)
			binary.LittleEndian.PutUint32(h[88:92], entCRC)
			binary.LittleEndian.PutUint32(h[16:20], crc32.ChecksumIEEE(h))
			return h
		}
		put(v.primaryEnt*v.ss, ents)
		put(v.backEnt*v.ss, ents)
		put(v.primary*v.ss, header(v.primary, v.backup, v.primaryEnt))
		put(v.backup*v.ss, header(v.backup, v.primary, v.backEnt))
	}
	if _, err := f.WriteAt(head[:512], 0); err != nil {
		return "", fmt.Errorf("writing the protective MBR: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if _, err := f.WriteAt(tail, tailStart); err != nil {
		return "", fmt.Errorf("writing the backup GPT: %w", err)
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if _, err := f.WriteAt(head[512:], 512); err != nil {
		return "", fmt.Errorf("writing the primary GPT: %w", err)
	}
	return guidString(diskGUID[:]), f.Sync()
}
