package luks

import (
	"bytes"
	"testing"
)

// FuzzReadHeader: ReadHeader parses whatever is at the start of a disk
// (outside input: any disk can be docked). It must never panic, and a
// header it accepts must describe a usable layout: version 1 or 2, a data
// segment that does not start before the device or have a negative size,
// and a sector size the encryption can use.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("LUKS\xba\xbe\x00\x02"))
	f.Add([]byte("LUKS\xba\xbe\x00\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ReadHeader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if info.Version != 1 && info.Version != 2 {
			t.Fatalf("accepted version %d", info.Version)
		}
		if info.DataOffset < 0 || info.DataSize < 0 {
			t.Fatalf("accepted a data segment at %d of %d bytes", info.DataOffset, info.DataSize)
		}
		// The sector size checked by its definition in the LUKS2 on-disk
		// format (a power of two from 512 to 4096), not by
		// UsableSectorSize. The seeds luks2-sector-size-* and
		// luks2-size-not-whole-sectors were accepted before ReadHeader
		// checked them.
		if n := info.SectorSize; n < 512 || n > 4096 || n&(n-1) != 0 {
			t.Fatalf("accepted sector size %d", n)
		}
		if info.DataSize%int64(info.SectorSize) != 0 {
			t.Fatalf("accepted a data segment of %d bytes, not whole %d-byte sectors", info.DataSize, info.SectorSize)
		}
	})
}
