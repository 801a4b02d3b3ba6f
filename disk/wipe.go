package disk

import (
	"fmt"
	"os"
	"sort"
)

// Extent is a byte range of a disk.
type Extent struct{ Start, Size int64 }

// headWipe covers every signature kept near the start of a disk or
// partition: MBR/GPT, LUKS1, LUKS2 with its secondary header (at most 4 MiB
// in), LVM2 labels, and the superblocks of ext2/3/4, xfs, btrfs (64 KiB),
// vfat, ntfs and swap.
const headWipe = 8 << 20

// tailWipe covers signatures kept at the end: the GPT backup, md 0.90/1.0
// superblocks and ZFS labels.
const tailWipe = 1 << 20

// WipeExtents lists what must be zeroed so no old layout survives a new
// partition table on a disk of size bytes whose old partitions are old: the
// head and tail of the disk and of every old partition, merged.
func WipeExtents(size int64, old []Extent) []Extent {
	var ex []Extent
	add := func(start, n int64) {
		if start < 0 {
			n += start
			start = 0
		}
		if start+n > size {
			n = size - start
		}
		if n > 0 {
			ex = append(ex, Extent{start, n})
		}
	}
	span := func(start, n int64) {
		add(start, min(n, headWipe))
		if n > headWipe {
			add(start+n-min(n-headWipe, tailWipe), min(n-headWipe, tailWipe))
		}
	}
	span(0, size)
	for _, p := range old {
		span(p.Start, p.Size)
	}
	sort.Slice(ex, func(i, j int) bool { return ex[i].Start < ex[j].Start })
	var out []Extent
	for _, e := range ex {
		if n := len(out); n > 0 && e.Start <= out[n-1].Start+out[n-1].Size {
			if end := e.Start + e.Size; end > out[n-1].Start+out[n-1].Size {
				out[n-1].Size = end - out[n-1].Start
			}
			continue
		}
		out = append(out, e)
	}
	return out
}

// Zero writes zeros over the extents through f and syncs. It returns the
// bytes written.
func Zero(f *os.File, ex []Extent) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for _, e := range ex {
		for off := e.Start; off < e.Start+e.Size; {
			n := min(int64(len(buf)), e.Start+e.Size-off)
			w, err := f.WriteAt(buf[:n], off)
			total += int64(w)
			if err != nil {
				return total, fmt.Errorf("zeroing at byte %d: %w", off, err)
			}
			off += n
		}
	}
	return total, f.Sync()
}
