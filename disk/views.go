package disk

import (
	"encoding/binary"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// SectorSizes are the logical sector sizes docks present a disk with: SATA
// and most docks 512, many USB-SATA bridges 4096 (cryptsetup FAQ 2.2).
var SectorSizes = []int{512, 4096}

// View is what a Linux kernel finds on a disk that a dock presents with
// Sector-byte logical sectors: the table it reads at boot or hotplug (a GPT
// only from its primary header and behind a protective MBR; a DOS table in
// Sector-byte units), where partition 1 lies, and whether a LUKS header is
// there. With no table and LUKS at byte 0 (--table none), the whole disk.
type View struct {
	Sector int    `json:"sector_size"`
	Table  string `json:"table"`           // "gpt", "dos", "none" (LUKS on the whole disk) or "" (nothing)
	Start  int64  `json:"start,omitempty"` // partition 1 (or the whole disk) in bytes
	Size   int64  `json:"size,omitempty"`
	LUKS   bool   `json:"luks"` // a LUKS header is at Start
}

// Readable reports whether the kernel would give the LUKS volume a node in
// this view: the backup disk unlocks through such a dock.
func (v View) Readable() bool { return v.LUKS && v.Size > 0 }

// KernelView reads the disk of size bytes as a kernel with sector-byte
// logical sectors does.
func KernelView(r io.ReaderAt, size int64, sector int) View {
	ss := int64(sector)
	v := View{Sector: sector}
	end := size / ss * ss
	p := &prober{r: r, size: end, ss: ss}
	content := p.content()
	m, isMBR := p.mbr(content)
	var part *Partition
	switch {
	case isMBR && m.protective:
		t, _, problem := p.gptAt(ss, ss)
		h := p.read(ss, gptHeaderSize)
		if problem != "" || h == nil || int64(binary.LittleEndian.Uint64(h[48:56])) > end/ss-1 {
			return v
		}
		v.Table = "gpt"
		for i := range t.parts {
			if t.parts[i].Number == 1 {
				part = &t.parts[i]
			}
		}
	case isMBR:
		v.Table = "dos"
		for i := range m.parts {
			if m.parts[i].Number == 1 {
				part = &m.parts[i]
			}
		}
	case content.Type == SigLUKS:
		v.Table, v.Start, v.Size, v.LUKS = "none", 0, end, true
		return v
	default:
		return v
	}
	if part == nil || part.Start >= end || part.Start+part.Size > end {
		return v
	}
	v.Start, v.Size = part.Start, part.Size
	sub := &prober{r: io.NewSectionReader(r, part.Start, part.Size), size: part.Size, ss: ss}
	v.LUKS = sub.content().Type == SigLUKS
	return v
}

// ReadViews opens path and reads its KernelViews. The page cache of a
// block device is dropped first: what was written through a partition node
// (or through a mapping) is not in the whole disk's cache, which may still
// hold what the disk said before.
func ReadViews(path string, size int64) ([]View, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeDevice != 0 {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	}
	return KernelViews(f, size), nil
}

// KernelViews is KernelView for every size in SectorSizes.
func KernelViews(r io.ReaderAt, size int64) []View {
	var vs []View
	for _, ss := range SectorSizes {
		vs = append(vs, KernelView(r, size, ss))
	}
	return vs
}

// ReadableIn lists the sector sizes of the views in which the LUKS volume is
// readable.
func ReadableIn(vs []View) []int {
	var out []int
	for _, v := range vs {
		if v.Readable() {
			out = append(out, v.Sector)
		}
	}
	return out
}
