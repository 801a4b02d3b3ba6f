package luks

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/pbkdf2"

	"luksdock/internal/argon2"
)

// A LUKS header is input from whoever handed over the disk: it says how
// much memory and time unlocking costs and where the key material lies.
// InspectHeader reads what it says before any key derivation runs (luksdock's
// own or cryptsetup's), refuses a header no tool would write, and reports
// the harmless differences from what cryptsetup writes; Affordable estimates
// from a measurement of this machine how long each keyslot takes to try.
// See docs/hostile-disks.md.

// The most a keyslot or digest may cost. cryptsetup picks its costs by
// benchmarking (2 s per keyslot, about 1/8 s per digest, on the machine that
// formats) within libcryptsetup's limits (argon2 memory 32 KiB to 4 GiB);
// these bounds leave an order of magnitude of room above what that gives on
// a fast machine, and refuse the values a damaged or hostile header uses to
// make an unlock run for hours or years.
const (
	// MaxArgon2Time is the most argon2 passes (t) a keyslot may ask for.
	// cryptsetup's benchmark raises t when memory is small: with its least
	// memory (--pbkdf-memory 32) and the default 2 s it wrote 168,030 passes
	// on this project's 2-core machine, more on a faster one or a longer
	// --iter-time. Over little memory MaxArgon2Work bounds the time; this
	// bound refuses what no benchmark reaches even over the 8 KiB Argon2's
	// least (2^24 passes of 8 KiB is about 2 minutes here).
	MaxArgon2Time = 1 << 24
	// MaxArgon2Work bounds t × m (KiB): 256 GiB of passes over memory,
	// minutes on a 2020s machine; cryptsetup's default 2 s is t=4 at 1 GiB
	// (4 GiB of passes).
	MaxArgon2Work = 256 << 20
	// MaxPBKDF2Iterations is the most PBKDF2 iterations a keyslot may ask
	// for (cryptsetup's 2 s benchmark gives 1-4 million with SHA-256).
	MaxPBKDF2Iterations = 1 << 28
	// MaxDigestIterations is the most PBKDF2 iterations of a volume key
	// digest (cryptsetup benchmarks 1/8 s: 0.1-0.5 million).
	MaxDigestIterations = 1 << 24
	// CryptsetupStripes is the anti-forensic stripe count cryptsetup
	// writes, and the one it reads whatever a LUKS2 header says.
	CryptsetupStripes = 4000
)

// DefaultMaxUnlockTime is how long one keyslot's key derivation may be
// estimated to take on this machine before verify refuses to run it, and
// how long it may then run (verify --max-unlock-time overrides it). A
// keyslot cryptsetup made takes about 2 s on the machine that made it.
const DefaultMaxUnlockTime = 2 * time.Minute

// HeaderError is a LUKS header that no tool writes: a cost beyond any
// tool's, a keyslot area overlapping the metadata or the data. Verify
// reports it as a damaged or invalid disk (exit 5), never as a wrong
// passphrase.
type HeaderError struct{ Problems []string }

func (e *HeaderError) Error() string {
	return "not a disk luksdock or cryptsetup would make (a damaged or hostile LUKS header): " + strings.Join(e.Problems, "; ")
}

// KDFCost is the cost one keyslot or digest asks for.
type KDFCost struct {
	What       string // "keyslot 0", "digest 0"
	Type       string // argon2id, argon2i, pbkdf2
	Hash       string // pbkdf2's hash
	Time       int64  // argon2 passes
	MemoryKiB  int64  // argon2 memory
	Threads    int64  // argon2 lanes
	Iterations int64  // pbkdf2 iterations
	KeyBytes   int64  // bytes derived (pbkdf2 cost grows with it)
}

func (c KDFCost) String() string {
	if strings.HasPrefix(c.Type, "argon2") {
		return fmt.Sprintf("%s: %s t=%d m=%d KiB p=%d", c.What, c.Type, c.Time, c.MemoryKiB, c.Threads)
	}
	return fmt.Sprintf("%s: %s-%s %d iterations", c.What, c.Type, c.Hash, c.Iterations)
}

// HeaderReport is what InspectHeader read.
type HeaderReport struct {
	Version int
	// Keyslots are the keyslot KDFs; Digests the volume key digests. A
	// keyslot is tried with its KDF, then its digest.
	Keyslots, Digests []KDFCost
	// Differences are fields that differ from what cryptsetup writes but
	// that it accepts (it reads af.stripes as 4000 whatever the header
	// says): the disk may open with cryptsetup and not with luksdock's own
	// code. Verify reports them when the two disagree.
	Differences []string
}

// InspectHeaderDevice is InspectHeader on a Device.
func InspectHeaderDevice(d Device) (rep HeaderReport, err error) {
	err = d.withPath(func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		rep, err = InspectHeader(f)
		return err
	})
	return rep, err
}

// InspectHeader reads the costs and the layout a LUKS1 or LUKS2 header at
// offset 0 of r states, and refuses (*HeaderError) values no tool writes.
// It runs no key derivation.
func InspectHeader(r io.ReaderAt) (HeaderReport, error) {
	var h [4096]byte
	if _, err := r.ReadAt(h[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return HeaderReport{}, err
	}
	if !bytes.Equal(h[:6], []byte("LUKS\xba\xbe")) {
		return HeaderReport{}, ErrNotLUKS
	}
	switch binary.BigEndian.Uint16(h[6:8]) {
	case 1:
		return inspectLUKS1(h[:])
	case 2:
		return inspectLUKS2(r, h[:])
	}
	return HeaderReport{}, fmt.Errorf("unsupported LUKS version %d", binary.BigEndian.Uint16(h[6:8]))
}

func inspectLUKS1(h []byte) (HeaderReport, error) {
	rep := HeaderReport{Version: 1}
	var bad []string
	hashName := cstr(h[72:104])
	keyBytes := int64(binary.BigEndian.Uint32(h[108:112]))
	payload := int64(binary.BigEndian.Uint32(h[104:108])) * 512
	dg := KDFCost{What: "the volume key digest", Type: "pbkdf2", Hash: hashName, Iterations: int64(binary.BigEndian.Uint32(h[164:168])), KeyBytes: 20}
	rep.Digests = append(rep.Digests, dg)
	if dg.Iterations < 1 || dg.Iterations > MaxDigestIterations {
		bad = append(bad, fmt.Sprintf("%s asks for %d PBKDF2 iterations (tools write at most %d)", dg.What, dg.Iterations, MaxDigestIterations))
	}
	for i := 0; i < 8; i++ {
		ks := h[208+i*48:]
		if binary.BigEndian.Uint32(ks) != 0x00AC71F3 {
			continue
		}
		c := KDFCost{What: fmt.Sprintf("keyslot %d", i), Type: "pbkdf2", Hash: hashName, Iterations: int64(binary.BigEndian.Uint32(ks[4:])), KeyBytes: keyBytes}
		rep.Keyslots = append(rep.Keyslots, c)
		if c.Iterations < 1 || c.Iterations > MaxPBKDF2Iterations {
			bad = append(bad, fmt.Sprintf("%s asks for %d PBKDF2 iterations (tools write at most %d)", c.What, c.Iterations, MaxPBKDF2Iterations))
		}
		off := int64(binary.BigEndian.Uint32(ks[40:])) * 512
		stripes := int64(binary.BigEndian.Uint32(ks[44:]))
		if stripes != CryptsetupStripes {
			rep.Differences = append(rep.Differences, fmt.Sprintf("%s has %d anti-forensic stripes (cryptsetup writes %d)", c.What, stripes, CryptsetupStripes))
		}
		end := off + (keyBytes*stripes+511)/512*512
		if off < 4096 || (payload > 0 && end > payload) {
			bad = append(bad, fmt.Sprintf("%s's key material [%d, %d) overlaps the header or the data (at %d)", c.What, off, end, payload))
		}
	}
	if bad != nil {
		return rep, &HeaderError{Problems: bad}
	}
	return rep, nil
}

// luks2Meta is what the hostile checks read of LUKS2's JSON metadata.
type luks2Meta struct {
	Keyslots map[string]luks2Keyslot `json:"keyslots"`
	Digests  map[string]luks2Digest  `json:"digests"`
	Segments map[string]struct {
		Offset string `json:"offset"`
	} `json:"segments"`
}

// span is a byte range of the header a keyslot area takes.
type span struct {
	what       string
	start, end int64
}

func inspectLUKS2(r io.ReaderAt, h []byte) (HeaderReport, error) {
	rep := HeaderReport{Version: 2}
	hdrSize := be64(h[8:16])
	if hdrSize < 4096+512 || hdrSize > 4<<20 {
		return rep, &HeaderError{Problems: []string{fmt.Sprintf("the header size %d is out of range", hdrSize)}}
	}
	js := make([]byte, hdrSize-4096)
	if _, err := r.ReadAt(js, 4096); err != nil {
		return rep, fmt.Errorf("reading LUKS2 metadata: %w", err)
	}
	var meta luks2Meta
	// Numbers beyond their field's range (an iteration count of 2^40) are
	// a type error here: read them as numbers first to say which.
	if err := json.Unmarshal(bytes.TrimRight(js, "\x00"), &meta); err != nil {
		return rep, &HeaderError{Problems: []string{fmt.Sprintf("the JSON metadata does not parse as LUKS2 metadata: %v", err)}}
	}
	metaEnd := int64(2 * hdrSize) // both binary header + JSON copies
	dataOff, bad := dataStart(meta, metaEnd)
	var areas []span
	for _, n := range slices.Sorted(mapKeys(meta.Keyslots)) {
		ks := meta.Keyslots[n]
		what := "keyslot " + n
		c := KDFCost{What: what, Type: ks.KDF.Type, Hash: ks.KDF.Hash, Time: int64(ks.KDF.Time), MemoryKiB: int64(ks.KDF.Memory), Threads: int64(ks.KDF.CPUs), Iterations: int64(ks.KDF.Iterations), KeyBytes: int64(ks.Area.KeySize)}
		rep.Keyslots = append(rep.Keyslots, c)
		if p := c.costProblem(); p != "" {
			bad = append(bad, p)
		}
		if ks.AF.Stripes != CryptsetupStripes {
			rep.Differences = append(rep.Differences, fmt.Sprintf("%s says af.stripes %d; cryptsetup writes %d and reads %d whatever the header says", what, ks.AF.Stripes, CryptsetupStripes, CryptsetupStripes))
		}
		a, problems := keyslotArea(what, ks, metaEnd, dataOff, areas)
		bad = append(bad, problems...)
		if a != nil {
			areas = append(areas, *a)
		}
	}
	for _, n := range slices.Sorted(mapKeys(meta.Digests)) {
		d := meta.Digests[n]
		want := len(d.Digest) * 3 / 4 // base64
		c := KDFCost{What: "digest " + n, Type: d.Type, Hash: d.Hash, Iterations: int64(d.Iterations), KeyBytes: int64(want)}
		rep.Digests = append(rep.Digests, c)
		if d.Type == "pbkdf2" && (c.Iterations < 1 || c.Iterations > MaxDigestIterations) {
			bad = append(bad, fmt.Sprintf("%s asks for %d PBKDF2 iterations (tools write at most %d)", c.What, c.Iterations, MaxDigestIterations))
		}
	}
	if bad != nil {
		return rep, &HeaderError{Problems: bad}
	}
	return rep, nil
}

// dataStart is where the first data segment begins (-1: none), and the
// segments that overlap the metadata area.
func dataStart(meta luks2Meta, metaEnd int64) (int64, []string) {
	var bad []string
	dataOff := int64(-1)
	for n, s := range meta.Segments {
		o, err := strconv.ParseInt(s.Offset, 10, 64)
		if err != nil || o < metaEnd {
			bad = append(bad, fmt.Sprintf("segment %s at offset %q overlaps the metadata area [0, %d)", n, s.Offset, metaEnd))
			continue
		}
		if dataOff < 0 || o < dataOff {
			dataOff = o
		}
	}
	return dataOff, bad
}

// costProblem says why a keyslot's KDF cost is beyond what any tool writes
// ("": it is not).
func (c KDFCost) costProblem() string {
	switch c.Type {
	case "argon2i", "argon2id":
		switch {
		case c.Time < 1 || c.Time > MaxArgon2Time:
			return fmt.Sprintf("%s asks for %d argon2 passes (tools write 1 to %d)", c.What, c.Time, MaxArgon2Time)
		case c.MemoryKiB < 1 || c.MemoryKiB > MaxKDFMemoryKiB:
			return fmt.Sprintf("%s asks for %d KiB of argon2 memory (tools write at most %d KiB, 4 GiB)", c.What, c.MemoryKiB, MaxKDFMemoryKiB)
		case c.Time*c.MemoryKiB > MaxArgon2Work:
			return fmt.Sprintf("%s asks for %d argon2 passes over %d KiB: %d GiB of memory passes, more than the %d GiB any tool's benchmark writes", c.What, c.Time, c.MemoryKiB, c.Time*c.MemoryKiB>>20, MaxArgon2Work>>20)
		case c.Threads < 1 || c.Threads > 255:
			return fmt.Sprintf("%s asks for %d argon2 lanes (1 to 255)", c.What, c.Threads)
		}
	case "pbkdf2":
		if c.Iterations < 1 || c.Iterations > MaxPBKDF2Iterations {
			return fmt.Sprintf("%s asks for %d PBKDF2 iterations (tools write at most %d)", c.What, c.Iterations, MaxPBKDF2Iterations)
		}
	}
	return ""
}

// keyslotArea checks a keyslot's area against the metadata, the data
// segment at dataOff and the areas before it; nil when it is no byte range.
func keyslotArea(what string, ks luks2Keyslot, metaEnd, dataOff int64, areas []span) (*span, []string) {
	off, err1 := strconv.ParseInt(ks.Area.Offset, 10, 64)
	size, err2 := strconv.ParseInt(ks.Area.Size, 10, 64)
	if err1 != nil || err2 != nil || off < 0 || size <= 0 || off > 1<<50 || size > 1<<40 {
		return nil, []string{fmt.Sprintf("%s's area at %q of %q bytes is not a byte range", what, ks.Area.Offset, ks.Area.Size)}
	}
	var bad []string
	end := off + size
	switch {
	case off < metaEnd:
		bad = append(bad, fmt.Sprintf("%s's area [%d, %d) overlaps the JSON metadata area [0, %d)", what, off, end, metaEnd))
	case dataOff >= 0 && end > dataOff:
		bad = append(bad, fmt.Sprintf("%s's area [%d, %d) overlaps the data segment at %d", what, off, end, dataOff))
	}
	if need := int64(ks.KeySize) * CryptsetupStripes; ks.KeySize > 0 && size < need {
		bad = append(bad, fmt.Sprintf("%s's area of %d bytes cannot hold %d bytes of key material", what, size, need))
	}
	for _, a := range areas {
		if off < a.end && a.start < end {
			bad = append(bad, fmt.Sprintf("%s's area [%d, %d) overlaps %s's [%d, %d)", what, off, end, a.what, a.start, a.end))
		}
	}
	return &span{what, off, end}, bad
}

func mapKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// machineSpeed is this machine's measured key derivation speed.
type machineSpeed struct {
	argon2KiBPerSec float64            // one lane, one pass
	pbkdf2PerSec    map[string]float64 // iterations per second, one block
}

var (
	speedOnce sync.Once
	speed     machineSpeed
)

// measuredSpeed measures, once per process, argon2id over 16 MiB and
// 20,000 PBKDF2 iterations of each hash: about 50 ms in all.
func measuredSpeed() machineSpeed {
	speedOnce.Do(func() {
		pw, salt := []byte("luksdock speed"), make([]byte, 32)
		t0 := time.Now()
		if k, err := argon2.Key(pw, salt, argon2.Params{Type: argon2.Argon2id, Time: 1, MemoryKiB: 16 << 10, Threads: 1, KeyLen: 32}); err == nil {
			clear(k)
		}
		speed.argon2KiBPerSec = float64(16<<10) / max(time.Since(t0).Seconds(), 1e-6)
		speed.pbkdf2PerSec = map[string]float64{}
		for name, h := range map[string]func() hash.Hash{"sha1": sha1.New, "sha256": sha256.New, "sha512": sha512.New} {
			t0 := time.Now()
			pbkdf2.Key(pw, salt, 20000, 1, h)
			speed.pbkdf2PerSec[name] = 20000 / max(time.Since(t0).Seconds(), 1e-6)
		}
	})
	return speed
}

// Estimate is how long c takes on this machine, from a measurement of its
// speed (optimistic: all lanes in parallel on the CPUs there are).
func (c KDFCost) Estimate() time.Duration {
	s := measuredSpeed()
	var sec float64
	switch c.Type {
	case "argon2i", "argon2id":
		lanes := float64(max(1, min(c.Threads, int64(runtime.NumCPU()))))
		sec = float64(c.Time) * float64(c.MemoryKiB) / s.argon2KiBPerSec / lanes
	case "pbkdf2":
		rate, ok := s.pbkdf2PerSec[c.Hash]
		if !ok {
			rate = s.pbkdf2PerSec["sha512"]
		}
		hs := map[string]int64{"sha1": 20, "sha256": 32, "sha512": 64}[c.Hash]
		if hs == 0 {
			hs = 32
		}
		blocks := max(1, (c.KeyBytes+hs-1)/hs)
		sec = float64(c.Iterations) * float64(blocks) / rate
	}
	return time.Duration(sec * float64(time.Second))
}

// SlotEstimate is how long trying keyslot i takes here: its KDF and the
// digest check (the slowest digest, bounded above).
func (r HeaderReport) SlotEstimate(i int) time.Duration {
	d := r.Keyslots[i].Estimate()
	var dg time.Duration
	for _, c := range r.Digests {
		dg = max(dg, c.Estimate())
	}
	return d + dg
}

// Affordable says whether every keyslot can be tried on this machine: its
// argon2 memory fits in half of this machine's memory, and its key
// derivation is estimated (from a measurement of this machine) to end
// within limit. It returns the total estimate: how long trying every
// keyslot takes, a wrong passphrase's cost.
func (r HeaderReport) Affordable(limit time.Duration) (time.Duration, error) {
	memLimit := machineKDFMemoryKiB()
	var total time.Duration
	for i, c := range r.Keyslots {
		if c.MemoryKiB > memLimit {
			return 0, fmt.Errorf("%s asks for %d KiB of memory for its key derivation, more than half of this machine's memory (%d KiB): it cannot be unlocked here", c.What, c.MemoryKiB, memLimit)
		}
		est := r.SlotEstimate(i)
		if est > limit {
			return 0, fmt.Errorf("%s would take about %s to try on this machine (%s), more than --max-unlock-time %s allows: not unlocked (raise --max-unlock-time to try it)", c.What, est.Round(time.Second/10), c, limit)
		}
		total += est
	}
	return total, nil
}

// refuseHostile reads the LUKS header at the start of dev (a device or file
// cryptsetup is about to unlock) and returns the *HeaderError of one no
// tool writes, so that no command starts cryptsetup's key derivation on a
// cost of years (passwd, recovery-key, open, host enroll and dock read
// disks someone handed over, as verify does). Any other problem (not LUKS,
// unreadable) is left for cryptsetup to report in its own words.
func refuseHostile(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return nil
	}
	defer f.Close()
	_, err = InspectHeader(f)
	var he *HeaderError
	if errors.As(err, &he) {
		return err
	}
	return nil
}
