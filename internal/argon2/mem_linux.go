package argon2

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

type mapping struct {
	raw    []byte
	blocks []block
}

// mapBlocks maps n zeroed blocks outside the Go heap and asks for
// transparent huge pages (one fault per 2 MiB instead of per 4 KiB).
func mapBlocks(n int) (*mapping, error) {
	raw, err := unix.Mmap(-1, 0, n*1024, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	_ = unix.Madvise(raw, unix.MADV_HUGEPAGE) // advice only: fine where THP is off
	_ = unix.Madvise(raw, unix.MADV_DONTDUMP) // no derived secrets in core dumps
	return &mapping{raw: raw, blocks: unsafe.Slice((*block)(unsafe.Pointer(&raw[0])), n)}, nil
}

// free wipes nothing by hand: munmap returns the pages to the kernel, which
// zeroes them before any other use.
func (m *mapping) free() {
	m.blocks = nil
	_ = unix.Munmap(m.raw)
}
