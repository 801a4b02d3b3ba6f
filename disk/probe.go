package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// Signature is what a disk or partition holds, in the terms blkid -p uses.
type Signature struct {
	// Table is the partition table: "gpt", "dos", "PMBR" (a GPT protective
	// MBR without a valid GPT header, as blkid -p calls it) or "".
	Table string `json:"table,omitempty"`
	// TableNote qualifies a table that is not whole, in words: which GPT
	// header is missing or fails its checksum, whether the table is
	// recoverable from the backup header. Empty for an intact table.
	TableNote string `json:"table_note,omitempty"`
	// HybridMBR is set when sector 0 holds MBR partitions besides the GPT
	// protective entry (0xEE).
	HybridMBR bool `json:"hybrid_mbr,omitempty"`
	// KernelIgnoresTable is set for a GPT that Linux does not read at boot
	// or hotplug although its backup header is valid: the primary header is
	// missing or damaged, or there is no protective MBR (the kernel reads
	// such a table only with the "gpt" boot option). Its partitions get no
	// device nodes, so the disk would not unlock or mount when docked.
	KernelIgnoresTable bool   `json:"kernel_ignores_table,omitempty"`
	DiskGUID           string `json:"disk_guid,omitempty"` // GPT disk GUID, or the MBR disk id "1a2b3c4d" (blkid PTUUID)
	// Type is what the probe found, in blkid's TYPE words ("" for none).
	Type    SigType `json:"type,omitempty"`
	Version string  `json:"version,omitempty"` // LUKS "1"/"2", LVM "LVM2 001", swap "1", vfat "FAT32"
	Label   string  `json:"label,omitempty"`
	UUID    string  `json:"uuid,omitempty"`
	// Subsystem is the LUKS2 subsystem field (blkid SUBSYSTEM); luksdock
	// keeps the name of the rotation set there (prepare --set).
	Subsystem string `json:"subsystem,omitempty"`
}

// SigType is a content signature the probe recognises, named as blkid
// names it (TYPE=). To teach luksdock a new one, add a constant here and a
// method to the list in prober.content (and a seed to
// testdata/fuzz/FuzzProbe).
type SigType string

// The signatures the probe recognises.
const (
	SigLUKS      SigType = "crypto_LUKS"
	SigLVM       SigType = "LVM2_member"
	SigExt2      SigType = "ext2"
	SigExt3      SigType = "ext3"
	SigExt4      SigType = "ext4"
	SigJBD       SigType = "jbd" // an external ext3/4 journal
	SigXFS       SigType = "xfs"
	SigBtrfs     SigType = "btrfs"
	SigNTFS      SigType = "ntfs"
	SigVFAT      SigType = "vfat"
	SigSwap      SigType = "swap"
	SigSwsuspend SigType = "swsuspend"
)

// LUKSOn finds the LUKS volume on a disk whose whole-disk content is whole
// and whose partitions are parts, where luksdock puts one (directly on the
// disk, or the first LUKS partition): its UUID and its LUKS2 subsystem (the
// rotation set), "" for none.
func LUKSOn(whole Signature, parts []Partition) (uuid, set string) {
	if whole.Type == SigLUKS {
		return whole.UUID, whole.Subsystem
	}
	for _, p := range parts {
		if p.Content.Type == SigLUKS {
			return p.Content.UUID, p.Content.Subsystem
		}
	}
	return "", ""
}

// TableType is the partition table in luksdock's vocabulary: TableGPT,
// TableMBR (blkid's "dos"), or "" for none or a damaged one ("PMBR").
func (s Signature) TableType() TableType {
	switch s.Table {
	case "gpt":
		return TableGPT
	case "dos":
		return TableMBR
	}
	return ""
}

// String describes the signature for people: `GPT partition table`,
// `LVM2 PV`, `ext4 "photos"`, `LUKS2 "backups01" 1f3c5a2b…`, or "empty".
func (s Signature) String() string {
	var parts []string
	if t := s.TableString(); t != "" {
		parts = append(parts, t)
	}
	if s.Type != "" {
		var b strings.Builder
		switch s.Type {
		case SigLUKS:
			b.WriteString("LUKS" + s.Version)
		case SigLVM:
			b.WriteString("LVM2 PV")
		case SigVFAT:
			b.WriteString("vfat")
			if s.Version != "" {
				b.WriteString(" (" + s.Version + ")")
			}
		default:
			b.WriteString(string(s.Type))
		}
		if s.Label != "" {
			fmt.Fprintf(&b, " %q", s.Label)
		}
		if s.Type == SigLUKS && s.UUID != "" {
			u := s.UUID
			if len(u) > 8 {
				u = u[:8] + "…"
			}
			b.WriteString(" " + u)
		}
		parts = append(parts, b.String())
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

// Empty reports whether no signature was found. A damaged or half-written
// partition table (Table "PMBR") is not empty.
func (s Signature) Empty() bool { return s.Table == "" && s.Type == "" }

// TableString describes the partition table alone: "GPT partition table",
// "MBR partition table", "GPT partition table (hybrid MBR)", "GPT partition
// table (primary header is missing; recoverable from the backup header at
// the end of the disk)", "GPT protective MBR, but no valid GPT header
// (damaged or half-written partition table)"; "" when there is none.
func (s Signature) TableString() string { return s.tableString(false) }

// tableString is TableString, with the short names "GPT" and "MBR" for
// intact tables when short is set (the list table's summary).
func (s Signature) tableString(short bool) string {
	var name string
	var notes []string
	switch s.Table {
	case "":
		return ""
	case "gpt":
		name = "GPT partition table"
		if short {
			name = "GPT"
		}
		if s.HybridMBR {
			notes = append(notes, "hybrid MBR")
		}
	case "dos":
		name = "MBR partition table"
		if short {
			name = "MBR"
		}
	case "PMBR":
		name = "GPT protective MBR, but no valid GPT header"
		if s.HybridMBR {
			name = "hybrid MBR (a GPT protective entry and MBR partitions), but no valid GPT header"
		}
	default:
		name = s.Table + " partition table"
	}
	if s.TableNote != "" {
		notes = append(notes, s.TableNote)
	}
	if len(notes) == 0 {
		return name
	}
	return name + " (" + strings.Join(notes, "; ") + ")"
}

// pmbrNote is the TableNote of a protective MBR with no GPT behind it: as
// far as the bytes tell, the table was being written, or was damaged since.
const pmbrNote = "damaged or half-written partition table"

// Probe reads r (a whole disk or a partition of size bytes) without writing
// and reports its partition table or the filesystem/LUKS/LVM/swap on it. For
// a partition table it also returns the partitions (Start/Size in bytes,
// Name/Path left empty) with their own Content probed. The error is only for
// read failures; unknown content is an empty Signature.
//
// MBR partition entries count in logical sectors, which the bytes alone do
// not tell: Probe assumes 512; ProbeSectors takes the device's logical
// sector size. GPT is found at either size.
func Probe(r io.ReaderAt, size int64) (Signature, []Partition, error) {
	return ProbeSectors(r, size, 512)
}

// ProbeSectors is Probe for a device with the given logical sector size
// (512 or 4096; 0 means 512).
func ProbeSectors(r io.ReaderAt, size int64, sectorSize int) (Signature, []Partition, error) {
	ss := int64(sectorSize)
	if ss != 512 && ss != 1024 && ss != 2048 && ss != 4096 {
		ss = 512
	}
	pr := &prober{r: r, size: size, ss: ss}
	sig := pr.content()
	var parts []Partition
	mbr, isMBR := pr.mbr(sig)
	gpt, isGPT := pr.gpt()
	if isGPT {
		sig.Table, sig.DiskGUID, parts = "gpt", gpt.guid, gpt.parts
		var notes []string
		if prot, _ := pr.mbr(Signature{}); !prot.protective {
			// blkid -p, sfdisk and the kernel ignore a GPT without one.
			notes = append(notes, "no protective MBR")
			sig.KernelIgnoresTable = true
		} else {
			sig.HybridMBR = prot.hybrid()
		}
		sig.KernelIgnoresTable = sig.KernelIgnoresTable || gpt.fromBackup
		if gpt.note != "" {
			notes = append(notes, gpt.note)
		}
		sig.TableNote = strings.Join(notes, "; ")
	} else if isMBR && mbr.protective {
		// A protective MBR with no valid GPT header behind it: a table
		// being written (luksdock and go-diskfs write sector 0 first) or a
		// damaged one. Not empty: say so, and what a hybrid MBR still
		// lists. blkid -p calls this PTTYPE="PMBR" and reports no PTUUID.
		sig.Table, parts = "PMBR", mbr.parts
		sig.HybridMBR = mbr.hybrid()
		sig.TableNote = pmbrNote
		if gpt.note != "" {
			sig.TableNote = gpt.note + ": " + pmbrNote
		}
	} else if isMBR {
		sig.Table, sig.DiskGUID, parts = "dos", mbr.guid, mbr.parts
	}
	if sig.Table == "dos" || sig.Table == "PMBR" {
		if sig.Type == SigVFAT || sig.Type == SigNTFS {
			// A valid table and a boot sector cannot both own sector 0; the
			// table check already excluded FAT/NTFS boot sectors.
			sig.Type, sig.Version, sig.Label, sig.UUID = "", "", "", ""
		}
	}
	if pr.err != nil {
		return Signature{}, nil, pr.err
	}
	for i := range parts {
		p := &parts[i]
		if p.Start >= size || p.Size <= 0 {
			continue
		}
		n := p.Size
		if p.Start+n > size {
			n = size - p.Start
		}
		sub := &prober{r: io.NewSectionReader(r, p.Start, n), size: n, ss: ss}
		p.Content = sub.content()
		if sub.err != nil {
			return Signature{}, nil, sub.err
		}
	}
	return sig, parts, nil
}

type prober struct {
	r    io.ReaderAt
	size int64
	ss   int64 // logical sector size for MBR entries
	err  error // first real read error (short reads at the end are not errors)
}

// read returns n bytes at off, or nil when they are beyond the device.
func (p *prober) read(off int64, n int) []byte {
	if off < 0 || n <= 0 || off+int64(n) > p.size {
		return nil
	}
	b := make([]byte, n)
	m, err := p.r.ReadAt(b, off)
	if m == n {
		return b
	}
	if err != nil && !errors.Is(err, io.EOF) && p.err == nil {
		p.err = fmt.Errorf("read at %d: %w", off, err)
	}
	return nil
}

// content probes the filesystem-like signatures, first match wins in an
// order where no signature can be mistaken for another.
func (p *prober) content() Signature {
	for _, f := range []func() (Signature, bool){p.luks, p.lvm, p.xfs, p.ext, p.btrfs, p.ntfs, p.vfat, p.swap} {
		if s, ok := f(); ok {
			return s
		}
	}
	return Signature{}
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// uuidString formats 16 raw bytes as 8-4-4-4-12 lowercase hex.
func uuidString(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// guidString formats a GPT GUID (first three fields little-endian).
func guidString(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x",
		binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]),
		binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (p *prober) luks() (Signature, bool) {
	// Primary header at 0; a LUKS2 secondary header ("SKUL") sits at one of
	// the fixed offsets cryptsetup uses when the primary is damaged.
	for _, off := range []int64{0, 0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000} {
		h := p.read(off, 512)
		if h == nil {
			return Signature{}, false
		}
		primary := bytes.Equal(h[:6], []byte("LUKS\xba\xbe"))
		secondary := off != 0 && bytes.Equal(h[:6], []byte("SKUL\xba\xbe"))
		if !primary && !secondary {
			if off == 0 {
				continue
			}
			continue
		}
		if primary && off != 0 {
			continue
		}
		ver := binary.BigEndian.Uint16(h[6:8])
		s := Signature{Type: SigLUKS, Version: fmt.Sprint(ver)}
		switch ver {
		case 1:
			if secondary {
				continue
			}
			s.UUID = cstr(h[168:208])
		case 2:
			// LUKS2 binary header: label at 24 (48 bytes), uuid at 168
			// (40), subsystem at 208 (48).
			hdrSize := binary.BigEndian.Uint64(h[8:16])
			if secondary && hdrSize != uint64(off) {
				continue
			}
			s.Label = cstr(h[24:72])
			s.UUID = cstr(h[168:208])
			s.Subsystem = cstr(h[208:256])
		default:
			continue
		}
		return s, true
	}
	return Signature{}, false
}

func (p *prober) lvm() (Signature, bool) {
	// The LVM2 label sits in one of the first four 512-byte sectors.
	for sec := int64(0); sec < 4; sec++ {
		h := p.read(sec*512, 512)
		if h == nil {
			return Signature{}, false
		}
		if string(h[0:8]) != "LABELONE" || string(h[24:32]) != "LVM2 001" {
			continue
		}
		if binary.LittleEndian.Uint64(h[8:16]) != uint64(sec) {
			continue
		}
		off := int(binary.LittleEndian.Uint32(h[20:24]))
		if off < 32 || off+32 > len(h) {
			continue
		}
		id := h[off : off+32]
		u := string(id)
		// blkid prints the 32-character PV id as 6-4-4-4-4-4-6.
		uuid := u[0:6] + "-" + u[6:10] + "-" + u[10:14] + "-" + u[14:18] + "-" + u[18:22] + "-" + u[22:26] + "-" + u[26:32]
		return Signature{Type: SigLVM, Version: "LVM2 001", UUID: uuid}, true
	}
	return Signature{}, false
}

func (p *prober) xfs() (Signature, bool) {
	h := p.read(0, 512)
	if h == nil || string(h[0:4]) != "XFSB" {
		return Signature{}, false
	}
	bs := binary.BigEndian.Uint32(h[4:8])
	if bs < 512 || bs > 65536 || bs&(bs-1) != 0 {
		return Signature{}, false
	}
	return Signature{Type: SigXFS, Label: cstr(h[108:120]), UUID: uuidString(h[32:48])}, true
}

func (p *prober) ext() (Signature, bool) {
	sb := p.read(1024, 1024)
	if sb == nil || binary.LittleEndian.Uint16(sb[56:58]) != 0xEF53 {
		return Signature{}, false
	}
	compat := binary.LittleEndian.Uint32(sb[92:96])
	incompat := binary.LittleEndian.Uint32(sb[96:100])
	roCompat := binary.LittleEndian.Uint32(sb[100:104])
	if incompat&0x8 != 0 { // JOURNAL_DEV: an external journal, not a filesystem
		return Signature{Type: SigJBD, UUID: uuidString(sb[104:120]), Label: cstr(sb[120:136])}, true
	}
	typ := SigExt2
	const ext3Incompat = 0x2 | 0x4 | 0x10 // FILETYPE | RECOVER | META_BG
	const ext3RoCompat = 0x1 | 0x2 | 0x4  // SPARSE_SUPER | LARGE_FILE | BTREE_DIR
	switch {
	case incompat&^ext3Incompat != 0 || roCompat&^ext3RoCompat != 0:
		typ = SigExt4
	case compat&0x4 != 0: // HAS_JOURNAL
		typ = SigExt3
	}
	return Signature{Type: typ, Version: "1.0", UUID: uuidString(sb[104:120]), Label: cstr(sb[120:136])}, true
}

func (p *prober) btrfs() (Signature, bool) {
	sb := p.read(65536, 4096)
	if sb == nil || string(sb[64:72]) != "_BHRfS_M" {
		return Signature{}, false
	}
	return Signature{Type: SigBtrfs, UUID: uuidString(sb[32:48]), Label: cstr(sb[299:555])}, true
}

func (p *prober) ntfs() (Signature, bool) {
	bs := p.read(0, 512)
	if bs == nil || string(bs[3:11]) != "NTFS    " || bs[510] != 0x55 || bs[511] != 0xAA {
		return Signature{}, false
	}
	sectorSize := int64(binary.LittleEndian.Uint16(bs[11:13]))
	if sectorSize < 256 || sectorSize > 4096 || sectorSize&(sectorSize-1) != 0 {
		return Signature{}, false
	}
	spc := int64(bs[13])
	if spc > 0x80 { // 2^(256-n) sectors per cluster
		shift := 256 - spc
		if shift > 20 {
			return Signature{}, false
		}
		spc = 1 << shift
	}
	if spc == 0 {
		return Signature{}, false
	}
	cluster := sectorSize * spc
	serial := binary.LittleEndian.Uint64(bs[0x48:0x50])
	s := Signature{Type: SigNTFS, UUID: fmt.Sprintf("%016X", serial)}

	// Label: the $VOLUME_NAME attribute of MFT record 3 ($Volume).
	mftLCN := int64(binary.LittleEndian.Uint64(bs[0x30:0x38]))
	rec := int64(int8(bs[0x40]))
	var recSize int64
	if rec < 0 {
		if -rec > 20 {
			return s, true
		}
		recSize = 1 << uint(-rec)
	} else {
		recSize = rec * cluster
	}
	if recSize < 256 || recSize > 65536 || mftLCN <= 0 || mftLCN > p.size/cluster {
		return s, true
	}
	r := p.read(mftLCN*cluster+3*recSize, int(recSize))
	if r == nil || string(r[0:4]) != "FILE" {
		return s, true
	}
	// Undo the update sequence (fixups) at the end of each sector.
	usaOff := int(binary.LittleEndian.Uint16(r[4:6]))
	usaCnt := int(binary.LittleEndian.Uint16(r[6:8]))
	if usaOff+2*usaCnt > len(r) || usaCnt < 1 {
		return s, true
	}
	for i := 1; i < usaCnt; i++ {
		end := i*int(sectorSize) - 2
		if end+2 > len(r) {
			break
		}
		copy(r[end:end+2], r[usaOff+2*i:usaOff+2*i+2])
	}
	s.Label = ntfsVolumeName(r)
	return s, true
}

// ntfsVolumeName is the resident $VOLUME_NAME attribute of an MFT record
// (fixups undone), "" when it has none.
func ntfsVolumeName(r []byte) string {
	off := int(binary.LittleEndian.Uint16(r[0x14:0x16]))
	for off+16 <= len(r) {
		typ := binary.LittleEndian.Uint32(r[off:])
		if typ == 0xFFFFFFFF {
			break
		}
		alen := int(binary.LittleEndian.Uint32(r[off+4:]))
		if alen < 16 || off+alen > len(r) {
			break
		}
		if typ == 0x60 && r[off+8] == 0 { // resident $VOLUME_NAME
			vlen := int(binary.LittleEndian.Uint32(r[off+16:]))
			voff := int(binary.LittleEndian.Uint16(r[off+20:]))
			if voff+vlen <= alen && vlen%2 == 0 {
				return utf16le(r[off+voff : off+voff+vlen])
			}
			return ""
		}
		off += alen
	}
	return ""
}

func utf16le(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	for len(u) > 0 && u[len(u)-1] == 0 {
		u = u[:len(u)-1]
	}
	return string(utf16.Decode(u))
}

// fatBootSector reports whether b (sector 0) carries a plausible FAT BIOS
// parameter block, and returns its FAT version string.
func fatBootSector(b []byte) (string, bool) {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA {
		return "", false
	}
	if b[0] != 0xEB && b[0] != 0xE9 {
		return "", false
	}
	bps := binary.LittleEndian.Uint16(b[11:13])
	spc := b[13]
	reserved := binary.LittleEndian.Uint16(b[14:16])
	fats := b[16]
	media := b[21]
	if bps < 512 || bps > 4096 || bps&(bps-1) != 0 || spc == 0 || spc&(spc-1) != 0 ||
		reserved == 0 || fats == 0 || fats > 4 || (media != 0xF0 && media < 0xF8) {
		return "", false
	}
	switch {
	case string(b[82:87]) == "FAT32":
		return "FAT32", true
	case string(b[54:59]) == "FAT16":
		return "FAT16", true
	case string(b[54:59]) == "FAT12":
		return "FAT12", true
	case binary.LittleEndian.Uint16(b[22:24]) == 0: // sectors per FAT 0 => FAT32 layout
		return "FAT32", true
	}
	return "FAT16", true
}

func (p *prober) vfat() (Signature, bool) {
	b := p.read(0, 512)
	if b == nil {
		return Signature{}, false
	}
	ver, ok := fatBootSector(b)
	if !ok {
		return Signature{}, false
	}
	s := Signature{Type: SigVFAT, Version: ver}
	var serial, label []byte
	if ver == "FAT32" {
		serial, label = b[67:71], b[71:82]
	} else {
		serial, label = b[39:43], b[43:54]
	}
	s.UUID = fmt.Sprintf("%02X%02X-%02X%02X", serial[3], serial[2], serial[1], serial[0])
	if l := strings.TrimRight(string(label), " \x00"); l != "NO NAME" {
		s.Label = l
	}
	return s, true
}

func (p *prober) swap() (Signature, bool) {
	for _, pg := range []int64{4096, 8192, 16384, 65536} {
		m := p.read(pg-10, 10)
		if m == nil {
			break
		}
		switch string(m) {
		case "SWAPSPACE2":
			h := p.read(1024, 44)
			if h == nil {
				return Signature{}, false
			}
			s := Signature{Type: SigSwap, Version: fmt.Sprint(binary.LittleEndian.Uint32(h[0:4])), Label: cstr(h[28:44])}
			if !allZero(h[12:28]) {
				s.UUID = uuidString(h[12:28])
			}
			return s, true
		case "SWAP-SPACE":
			return Signature{Type: SigSwap, Version: "0"}, true
		case "S1SUSPEND\x00", "S2SUSPEND\x00", "ULSUSPEND\x00", "LINHIB0001":
			return Signature{Type: SigSwsuspend}, true
		}
	}
	return Signature{}, false
}

type tableInfo struct {
	guid  string
	parts []Partition
	// note says what is wrong with a GPT that was read anyway (from its
	// backup header), or, when no GPT could be read, what was found of one.
	note string
	// fromBackup: the table was read from the backup header.
	fromBackup bool
}

// GPT header problems, as gptAt reports them.
const (
	gptMissing     = "is missing"
	gptBadCRC      = "fails its checksum"
	gptBadEntries  = "partition entries fail their checksum"
	gptInvalid     = "is invalid"
	gptBeyondEnd   = "lies beyond the end of the disk"
	primaryHeader  = "primary header"
	backupHeader   = "backup header"
	recoverableMsg = "recoverable from the backup header at the end of the disk"
)

func gptProblem(which, problem string) string {
	if problem == gptBadEntries {
		return strings.TrimSuffix(which, " header") + " " + problem
	}
	return which + " " + problem
}

// gpt reads the GUID partition table at LBA 1 for 512- and 4096-byte
// sectors, falling back to the backup header at the last LBA when the
// primary header is missing or fails its checks; note then says so. With
// no valid header at all, note says what was found of one ("" when
// nothing was).
func (p *prober) gpt() (tableInfo, bool) {
	sizes := []int64{512, 4096}
	if p.ss == 4096 {
		sizes = []int64{4096, 512}
	}
	var found string
	for _, ss := range sizes {
		t, alt, prim := p.gptAt(ss, ss)
		if prim == "" {
			switch {
			case alt <= 1 || alt > (1<<62)/ss:
				t.note = gptProblem(backupHeader, gptInvalid)
			case (alt+1)*ss > p.size:
				t.note = gptProblem(backupHeader, gptBeyondEnd) + ": a table made for a larger disk"
			default:
				if _, _, b := p.gptAt(ss, alt*ss); b != "" {
					t.note = gptProblem(backupHeader, b)
				}
			}
			return t, true
		}
		back := gptMissing
		if p.size/ss > 2 {
			var bt tableInfo
			bt, _, back = p.gptAt(ss, (p.size/ss-1)*ss)
			if back == "" {
				bt.note = gptProblem(primaryHeader, prim) + "; " + recoverableMsg
				bt.fromBackup = true
				return bt, true
			}
		}
		if found == "" && (prim != gptMissing || back != gptMissing) {
			found = gptProblem(primaryHeader, prim) + ", " + gptProblem(backupHeader, back)
		}
	}
	return tableInfo{note: found}, false
}

// gptAt reads a GPT header at byte off for sector size ss. It returns the
// table and the header's AlternateLBA, or what is wrong with the header
// (one of the gpt* problems).
func (p *prober) gptAt(ss, off int64) (tableInfo, int64, string) {
	h := p.read(off, 92)
	if h == nil || string(h[0:8]) != "EFI PART" {
		return tableInfo{}, 0, gptMissing
	}
	hsize := binary.LittleEndian.Uint32(h[12:16])
	if hsize < 92 || int64(hsize) > ss {
		return tableInfo{}, 0, gptInvalid
	}
	hb := p.read(off, int(hsize))
	if hb == nil {
		return tableInfo{}, 0, gptInvalid
	}
	want := binary.LittleEndian.Uint32(hb[16:20])
	binary.LittleEndian.PutUint32(hb[16:20], 0)
	if crc32.ChecksumIEEE(hb) != want {
		return tableInfo{}, 0, gptBadCRC
	}
	if int64(binary.LittleEndian.Uint64(h[24:32]))*ss != off { // MyLBA
		return tableInfo{}, 0, gptInvalid
	}
	alt := int64(binary.LittleEndian.Uint64(h[32:40]))
	entLBA := int64(binary.LittleEndian.Uint64(h[72:80]))
	n := binary.LittleEndian.Uint32(h[80:84])
	esz := binary.LittleEndian.Uint32(h[84:88])
	if esz < 128 || esz > 4096 || esz%8 != 0 || n == 0 || n > 1024 || entLBA <= 0 || entLBA > p.size/ss {
		return tableInfo{}, 0, gptInvalid
	}
	ents := p.read(entLBA*ss, int(n*esz))
	if ents == nil {
		return tableInfo{}, 0, gptInvalid
	}
	if crc32.ChecksumIEEE(ents) != binary.LittleEndian.Uint32(h[88:92]) {
		return tableInfo{}, 0, gptBadEntries
	}
	t := tableInfo{guid: guidString(h[56:72])}
	for i := 0; i < int(n); i++ {
		e := ents[i*int(esz) : (i+1)*int(esz)]
		if allZero(e[0:16]) {
			continue
		}
		first := int64(binary.LittleEndian.Uint64(e[32:40]))
		last := int64(binary.LittleEndian.Uint64(e[40:48]))
		if first < 0 || last < first || last > (1<<62)/ss {
			continue
		}
		t.parts = append(t.parts, Partition{
			Number:    i + 1,
			Start:     first * ss,
			Size:      (last - first + 1) * ss,
			PartType:  guidString(e[0:16]),
			PartUUID:  guidString(e[16:32]),
			PartLabel: utf16le(e[56:128]),
		})
	}
	return t, alt, ""
}

// mbrInfo is what sector 0 holds as an MBR.
type mbrInfo struct {
	tableInfo
	// protective is set when an entry has type 0xEE (GPT protective); parts
	// then holds only the other entries (a hybrid MBR).
	protective bool
}

func (m mbrInfo) hybrid() bool { return m.protective && len(m.parts) > 0 }

// mbr reads an MBR partition table (with logical partitions in an extended
// partition). A FAT or NTFS boot sector is not taken for a table, nor is
// sector 0 of a disk whose content (LUKS, LVM, ext...) starts there. A
// protective or hybrid MBR (an entry of type 0xEE) is reported with
// protective set; whether a GPT stands behind it is for gpt to say.
func (p *prober) mbr(content Signature) (mbrInfo, bool) {
	b := p.read(0, 512)
	if b == nil || b[510] != 0x55 || b[511] != 0xAA {
		return mbrInfo{}, false
	}
	if string(b[3:11]) == "NTFS    " {
		return mbrInfo{}, false
	}
	if _, fat := fatBootSector(b); fat {
		return mbrInfo{}, false
	}
	if content.Type != "" && content.Type != SigVFAT && content.Type != SigNTFS {
		// LUKS, LVM, ext, swap... directly on the disk: the 55AA at 510
		// is not a table (blkid makes the same call for most of these).
		if content.Type != SigSwap {
			return mbrInfo{}, false
		}
	}
	var m mbrInfo
	any := false
	for i := 0; i < 4; i++ {
		e := b[446+16*i : 446+16*(i+1)]
		if e[0] != 0 && e[0] != 0x80 {
			return mbrInfo{}, false
		}
		typ := e[4]
		if typ == 0 {
			continue
		}
		any = true
		if typ == 0xEE {
			m.protective = true
			continue
		}
		start := int64(binary.LittleEndian.Uint32(e[8:12]))
		n := int64(binary.LittleEndian.Uint32(e[12:16]))
		if n == 0 {
			continue
		}
		m.parts = append(m.parts, Partition{Number: i + 1, Start: start * p.ss, Size: n * p.ss, PartType: fmt.Sprintf("0x%x", typ)})
		if typ == 0x05 || typ == 0x0f || typ == 0x85 {
			m.parts = append(m.parts, p.logical(start)...)
		}
	}
	id := binary.LittleEndian.Uint32(b[440:444])
	if !any && id == 0 {
		return mbrInfo{}, false
	}
	m.guid = fmt.Sprintf("%08x", id)
	for i := range m.parts {
		m.parts[i].PartUUID = fmt.Sprintf("%s-%02d", m.guid, m.parts[i].Number)
	}
	return m, true
}

// logical follows the chain of extended boot records starting at LBA ext.
func (p *prober) logical(ext int64) []Partition {
	var out []Partition
	cur := ext
	seen := map[int64]bool{}
	for num := 5; num < 5+128; num++ {
		if seen[cur] {
			break
		}
		seen[cur] = true
		b := p.read(cur*p.ss, 512)
		if b == nil || b[510] != 0x55 || b[511] != 0xAA {
			break
		}
		e1, e2 := b[446:462], b[462:478]
		if e1[4] != 0 {
			start := int64(binary.LittleEndian.Uint32(e1[8:12]))
			n := int64(binary.LittleEndian.Uint32(e1[12:16]))
			if n > 0 {
				out = append(out, Partition{Number: num, Start: (cur + start) * p.ss, Size: n * p.ss, PartType: fmt.Sprintf("0x%x", e1[4])})
			}
		}
		if e2[4] != 0x05 && e2[4] != 0x0f && e2[4] != 0x85 {
			break
		}
		cur = ext + int64(binary.LittleEndian.Uint32(e2[8:12]))
	}
	return out
}
