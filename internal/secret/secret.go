// Package secret is where luksdock keeps its secrets (the passphrase, the
// recovery key, the volume key, the host key): memory of their own, outside
// the Go heap, that is locked in RAM (mlock: never written to swap),
// excluded from core dumps (MADV_DONTDUMP), zeroed in a child after fork
// (MADV_WIPEONFORK), never moved or copied by the garbage collector, and
// wiped when freed.
//
// A secret is a []byte view of such memory. The code that carries secrets
// (pipeline.Plan.Run, the luks functions, cryptsetup's pipes) already takes
// []byte, so only the places that allocate a secret change: they call New
// (or Clone) instead of make, and Free instead of clear. The rules for the
// view are those of any secret []byte: never convert it to a string (that
// copies it into the heap, where it cannot be wiped), never append to it
// (append beyond its capacity copies it into the heap; New gives a slice
// whose capacity is its length, so such an append never writes past it),
// and never copy it into a heap buffer.
//
// Why not a library such as memguard: memguard keeps each secret in
// guard-paged, canaried, optionally encrypted enclaves behind its own
// LockedBuffer API. luksdock's secrets are short-lived and pass through
// APIs that want []byte (os.File.Write to a pipe, crypto/hmac, the AES-XTS
// code); memguard's extra layers would add a dependency and an API at every
// call site for protections (against buffer overflows inside this process,
// against an attacker reading memory while the secret is in use) that do
// not change what this package must guarantee: no copy outside locked
// memory, no copy after the secret's use, nothing in a core file or swap.
// This file is the whole of it.
//
// Freed memory is wiped and stays mapped (its pages are given back to the
// kernel with MADV_DONTNEED, so it reads as zeros and costs nothing): a
// slice that outlives Free reads zeros instead of faulting, and freeing
// twice is harmless, exactly as with clear().
//
// mlock needs RLIMIT_MEMLOCK room (root has CAP_IPC_LOCK; most systems give
// others 8 MiB, some only 64 KiB). Each secret takes one page. When mlock
// fails, the memory is still outside the heap, out of core dumps and wiped
// on Free; Warn is called once so the user learns that swap could see it.
package secret

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Warn is called once, the first time memory cannot be locked. By default
// it writes a warning to standard error.
var Warn = func(err error) {
	fmt.Fprintf(os.Stderr, "luksdock: warning: secrets cannot be locked in memory (%v); if this machine swaps, a passphrase or key could be written to the swap device\n", err)
}

var (
	mu      sync.Mutex
	regions []region // every mapping New made, live or freed
	warned  sync.Once
	locked  atomic.Int64 // bytes currently locked
	failed  atomic.Bool  // an mlock failed
)

type region struct {
	mem  []byte
	live bool
	lock bool
}

var pageSize = os.Getpagesize()

// New returns n zeroed bytes of secret memory (see the package comment).
// The caller frees them with Free. It panics only if the kernel refuses
// to map a page, as the Go runtime does when it runs out of memory.
func New(n int) []byte {
	if n <= 0 {
		return nil
	}
	size := (n + pageSize - 1) / pageSize * pageSize
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		panic(fmt.Sprintf("secret: mapping %d bytes: %v", size, err))
	}
	_ = unix.Madvise(mem, unix.MADV_DONTDUMP)
	_ = unix.Madvise(mem, unix.MADV_WIPEONFORK)
	r := region{mem: mem, live: true}
	if err := unix.Mlock(mem); err != nil {
		failed.Store(true)
		var lim unix.Rlimit
		_ = unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim)
		warned.Do(func() { Warn(fmt.Errorf("mlock: %w; RLIMIT_MEMLOCK is %d bytes", err, lim.Cur)) })
	} else {
		r.lock = true
		locked.Add(int64(size))
	}
	mu.Lock()
	regions = append(regions, r)
	mu.Unlock()
	return mem[:n:n]
}

// Clone returns a copy of b in secret memory (nil for an empty b).
func Clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	s := New(len(b))
	copy(s, b)
	return s
}

// Free wipes the secret memory b lies in (the whole of what New returned,
// wherever b starts inside it) and gives its pages back. A b that is not
// secret memory (a heap slice) is cleared. Free of nil, and a second Free,
// do nothing harmful.
func Free(b []byte) {
	if cap(b) == 0 {
		return
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b[:1])))
	mu.Lock()
	defer mu.Unlock()
	for i := range regions {
		r := &regions[i]
		base := uintptr(unsafe.Pointer(unsafe.SliceData(r.mem)))
		if p < base || p >= base+uintptr(len(r.mem)) {
			continue
		}
		if !r.live {
			return
		}
		clear(r.mem)
		if r.lock {
			_ = unix.Munlock(r.mem)
			locked.Add(-int64(len(r.mem)))
		}
		_ = unix.Madvise(r.mem, unix.MADV_DONTNEED)
		r.live, r.lock = false, false
		return
	}
	clear(b)
}

// Locked reports whether every secret allocated so far was locked in
// memory, and how many bytes are locked now.
func Locked() (all bool, bytes int64) { return !failed.Load(), locked.Load() }
