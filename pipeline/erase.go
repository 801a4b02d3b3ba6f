package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/internal/secret"
	"luksdock/luks"
)

// The full-disk erase and the surface check (issue 13), and resuming them.
//
// With Options.Erase the run writes the whole LUKS data segment with zeros
// through the encryption after luksFormat and before mkfs, so the disk holds
// nothing but ciphertext (old plaintext is gone; used space cannot be told
// from free space). With Options.SurfaceCheck it then reads the whole
// segment back and checks that it decrypts to zeros: a fake-capacity disk
// returns wrong data past its real size, a failing one returns errors; such
// a disk is refused (ExitVerifyFail).
//
// Kernel engine: zeros are written to, and read back from, the open
// dm-crypt mapping with large O_DIRECT requests (dm-crypt encrypts on every
// core). Userspace engine: luksdock encrypts the zeros itself on every core
// (luks.SegmentCipher, the same AES-XTS as its FUSE volume) and writes the
// ciphertext straight to the data segment, and decrypts what it reads back,
// without the FUSE round trips; the volume server keeps no cache, so mkfs
// afterwards sees exactly what is on the disk.
//
// Both steps stop within one request (well under a second) of SIGINT or
// SIGTERM, flush, and record how far they got, with the disk's identity
// and LUKS UUID, in a small state file (StateDir). A later run with the same
// options on the same disk resumes from there: it keeps the partition and
// the LUKS header, recovers the volume key with the passphrase and goes on.
// The position is also recorded every few seconds while they run, so an
// undock or a kill loses at most those seconds.

// Steps of the erase and the resumption.
const (
	StepResume       StepID = "resume"
	StepErase        StepID = "erase"
	StepSurfaceCheck StepID = "surface-check"
)

// EventProgress reports how far a long step is (Progress), at most a few
// times a second, monotonic, the last one at 100% when the step completes.
const EventProgress EventKind = "progress"

// Advance is where a long step (erase, surface-check) stands: everything a
// progress bar needs (Fraction), its figures (bytes, rate, ETA) and, for the
// surface check, the bad sectors found so far.
type Advance struct {
	Done     int64   `json:"done"`     // bytes of the step done, a resumed run's earlier part included
	Total    int64   `json:"total"`    // bytes of the whole step (the LUKS data segment)
	Fraction float64 `json:"fraction"` // Done/Total, from 0 to 1
	Rate     float64 `json:"rate"`     // bytes per second over the last few seconds (0 until known)
	ETA      float64 `json:"eta_s"`    // seconds left at Rate (0 when done or not yet known)
	Resumed  int64   `json:"resumed_from,omitempty"`
	Bad      int64   `json:"bad_sectors,omitempty"` // surface check: sectors that did not read back as zeros or could not be read
}

// StateDir is where the position of an interrupted erase or surface check
// is kept (one small JSON file per LUKS volume; no secret): the directory in
// $LUKSDOCK_STATE_DIR, else /var/lib/luksdock for root, else
// $XDG_STATE_HOME/luksdock (~/.local/state/luksdock) for a user preparing
// an image.
func StateDir() string {
	if d := os.Getenv("LUKSDOCK_STATE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/luksdock"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "luksdock")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "luksdock")
	}
	return "/var/lib/luksdock"
}

// Resume is what an interrupted erase left: which disk, which volume, with
// which options, and how far it got. It holds no secret.
type Resume struct {
	Version  int    `json:"version"`
	Target   string `json:"target"`
	Image    bool   `json:"image"`
	FileDev  uint64 `json:"file_dev,omitempty"`
	FileIno  uint64 `json:"file_ino,omitempty"`
	Size     int64  `json:"size"`
	Model    string `json:"model,omitempty"`
	Serial   string `json:"serial,omitempty"`
	WWN      string `json:"wwn,omitempty"`
	DiskGUID string `json:"disk_guid"`
	LUKSUUID string `json:"luks_uuid"`
	// PartStart and PartSize are where the LUKS volume is (partition 1, or
	// the whole disk with --table none) as the interrupted run made it.
	PartStart int64 `json:"part_start"`
	PartSize  int64 `json:"part_size"`

	Label        string `json:"label"`
	Table        string `json:"table"`
	LUKS1        bool   `json:"luks1"`
	SurfaceCheck bool   `json:"surface_check"`

	// Phase is the step to continue: "erase", "surface-check", or "mkfs"
	// (both done). Pos is how far it got in bytes of the data segment
	// (flushed to the disk); Total the segment's size.
	Phase StepID `json:"phase"`
	Pos   int64  `json:"pos"`
	Total int64  `json:"total"`
	// What the surface check found before Pos.
	Bad        int64     `json:"bad_sectors,omitempty"`
	Unreadable int64     `json:"unreadable_sectors,omitempty"`
	FirstBad   int64     `json:"first_bad,omitempty"` // segment offset; valid when Bad > 0
	Updated    time.Time `json:"updated"`
}

const resumeVersion = 1

// String says, for people, where the interrupted run stopped.
func (s *Resume) String() string {
	if s.Phase == StepMkfs {
		return "the interrupted run erased" + map[bool]string{true: " and read back", false: ""}[s.SurfaceCheck] + " the whole disk"
	}
	what := "erase"
	if s.Phase == StepSurfaceCheck {
		what = "surface check"
	}
	return fmt.Sprintf("the %s stopped at %s of %s (%.1f%%)", what, disk.SizeString(s.Pos), disk.SizeString(s.Total), 100*float64(s.Pos)/float64(max(s.Total, 1)))
}

func statePath(uuid string) string {
	return filepath.Join(StateDir(), "erase-"+uuid+".json")
}

func loadResume(uuid string) (*Resume, error) {
	b, err := os.ReadFile(statePath(uuid))
	if err != nil {
		return nil, err
	}
	var s Resume
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(uuid), err)
	}
	if s.Version != resumeVersion || s.LUKSUUID != uuid {
		return nil, fmt.Errorf("%s is not a state file of this luksdock for volume %s", statePath(uuid), uuid)
	}
	return &s, nil
}

func (s *Resume) save() error {
	s.Updated = time.Now().UTC()
	if err := os.MkdirAll(StateDir(), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	p := statePath(s.LUKSUUID)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}

func (s *Resume) remove() { os.Remove(statePath(s.LUKSUUID)) }

// validateErase checks the erase options alone.
func validateErase(o *Options) error {
	if o.SurfaceCheck && !o.Erase {
		return refused("--surface-check reads back what --erase writes: give both")
	}
	return nil
}

// planErase decides, for an erase, whether the run continues an
// interrupted one (Plan.Resume: the resume step replaces wipe, partition and
// luks-format) or says why a saved position is not used.
func (p *Plan) planErase() {
	if !p.Opts.Erase {
		return
	}
	p.Resume = nil
	if s, why := p.findResume(); s != nil && !p.Opts.Restart {
		p.Resume = s
	} else if why != "" {
		p.Warnings = append(p.Warnings, why)
	}
}

// findResume looks for the position an interrupted run left for the LUKS
// volume where this plan puts it (partition 1, or the whole disk with
// --table none), and accepts it only for the same disk (identity, partition
// table GUID, partition, LUKS UUID) and the same options. why explains a
// position that is there but not used, or a volume whose saved position
// could not be looked for.
func (p *Plan) findResume() (s *Resume, why string) {
	t := p.Target
	if t.Create {
		return nil, ""
	}
	var vol disk.Signature
	var start, size int64
	switch {
	case p.Layout.Table == disk.TableNone:
		vol, start, size = t.Content, 0, t.Size
	case len(t.Parts) > 0 && t.Parts[0].Number == 1:
		vol, start, size = t.Parts[0].Content, t.Parts[0].Start, t.Parts[0].Size
	default:
		return nil, ""
	}
	if vol.Type != disk.SigLUKS || vol.UUID == "" {
		return nil, ""
	}
	s, err := loadResume(vol.UUID)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ""
		}
		return nil, "ignoring the saved position of an interrupted erase: " + err.Error()
	}
	mine := p.newResume(vol.UUID)
	var diffs []string
	cmp := func(what string, a, b any) {
		if a != b {
			diffs = append(diffs, fmt.Sprintf("%s %v, now %v", what, a, b))
		}
	}
	cmp("image", s.Image, mine.Image)
	cmp("file", [2]uint64{s.FileDev, s.FileIno}, [2]uint64{mine.FileDev, mine.FileIno})
	cmp("size", s.Size, mine.Size)
	cmp("model", s.Model, mine.Model)
	cmp("serial", s.Serial, mine.Serial)
	cmp("WWN", s.WWN, mine.WWN)
	cmp("partition table GUID", s.DiskGUID, mine.DiskGUID)
	cmp("LUKS volume at", [2]int64{s.PartStart, s.PartSize}, [2]int64{start, size})
	cmp("label", s.Label, mine.Label)
	cmp("LUKS label", s.Label, vol.Label)
	cmp("table", s.Table, mine.Table)
	cmp("LUKS1", s.LUKS1, mine.LUKS1)
	cmp("surface check", s.SurfaceCheck, mine.SurfaceCheck)
	if len(diffs) > 0 {
		return nil, fmt.Sprintf("an interrupted erase of LUKS volume %s was saved (%s), but not for this disk or these options (%s): starting over", s.LUKSUUID, s, strings.Join(diffs, "; "))
	}
	if p.Opts.Restart {
		return nil, fmt.Sprintf("starting over (--restart): %s", s)
	}
	return s, ""
}

// newResume describes this plan's disk and options for the state file.
func (p *Plan) newResume(uuid string) *Resume {
	t, o := p.Target, p.Opts
	s := &Resume{Version: resumeVersion, Target: t.Path, Image: t.Image, Size: t.Size, DiskGUID: t.Content.DiskGUID, LUKSUUID: uuid,
		Label: o.Label, Table: string(o.Table), LUKS1: o.LUKS1, SurfaceCheck: o.SurfaceCheck}
	if t.Image {
		s.FileDev, s.FileIno = t.fileID.dev, t.fileID.ino
	} else {
		s.Model, s.Serial, s.WWN = t.Identity.Model, t.Identity.Serial, t.Identity.WWN
	}
	return s
}

// beginResume takes over the position of the interrupted erase the plan
// continues, and says so.
func (r *runner) beginResume() {
	if r.p.Resume == nil {
		return
	}
	st := *r.p.Resume // the run moves its own copy on
	r.state = &st
	r.send(Event{Kind: EventInfo, Message: fmt.Sprintf("continuing the interrupted erase of %s: %s (saved in %s; --restart starts over)", r.p.Target.Path, &st, statePath(st.LUKSUUID))})
}

// resume takes over the partition and LUKS header of the interrupted run
// instead of wipe, partition and luks-format: the volume key is recovered
// with the passphrase (cryptsetup, on a pipe), the header must be the one
// the position was saved for.
func (r *runner) resume() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	t, l, s := r.p.Target, r.p.Layout, r.state
	if l.Start != s.PartStart || l.Size != s.PartSize {
		return "", refused("the interrupted run's partition [%d, +%d) is not where this plan puts it [%d, +%d); pass --restart to start over", s.PartStart, s.PartSize, l.Start, l.Size)
	}
	switch {
	case l.Table == disk.TableNone:
		r.part = luks.Device{Path: t.Path, Size: t.Size}
	case t.Image:
		r.part = luks.Device{Path: t.Path, Base: l.Start, Size: l.Size}
	default:
		node, _, err := disk.SyncPartition(r.excl, t.Name, l, PartitionTimeout)
		if err != nil {
			return "", err
		}
		r.part = luks.Device{Path: node, Size: l.Size}
	}
	var key []byte
	err := r.withoutExcl(func() error {
		var err error
		key, err = luks.DumpVolumeKeyDevice(r.work, r.part, r.pass)
		return err
	})
	if err != nil {
		return "", &Error{Kind: KindRefused, State: StateAfter(StepResume),
			Err: fmt.Errorf("the passphrase does not open the LUKS header of the interrupted run (UUID %s): give the passphrase it was started with, or pass --restart to start over (%v)", s.LUKSUUID, err)}
	}
	info, err := luks.ReadHeaderDevice(r.part)
	if err != nil {
		secret.Free(key)
		return "", fmt.Errorf("reading the LUKS header: %w", err)
	}
	if info.UUID != s.LUKSUUID {
		secret.Free(key)
		return "", refused("%s holds LUKS volume %s, not %s: pass --restart to start over", r.part.Path, info.UUID, s.LUKSUUID)
	}
	r.key, r.info = key, info
	r.expected.DiskGUID = s.DiskGUID
	// The interrupted run may have added a recovery key whose paper the
	// user was told to throw away (the disk "will need preparing again"):
	// only the passphrase's keyslot is kept, and this run adds its own
	// recovery key if it was asked for one. The disk ends with exactly
	// the keyslots this run names.
	var kept int
	var removed []int
	err = r.withoutExcl(func() error {
		var err error
		kept, removed, err = luks.KeepOnlyPassphraseDevice(r.work, r.part, r.pass)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("removing the interrupted run's other keyslots: %w", err)
	}
	if r.info, err = luks.ReadHeaderDevice(r.part); err != nil {
		return "", fmt.Errorf("reading the LUKS header: %w", err)
	}
	if len(r.info.Keyslots) != 1 || r.info.Keyslots[0] != kept {
		return "", fmt.Errorf("the header has keyslots %v after keeping only keyslot %d", r.info.Keyslots, kept)
	}
	if err := r.readSlotKDF(); err != nil {
		return "", err
	}
	slots := fmt.Sprintf("keyslot %d (the passphrase) kept", kept)
	r.removedSlots = removed
	if len(removed) > 0 {
		slots += fmt.Sprintf("; removed keyslot(s) %v of the interrupted run: its recovery key no longer opens the disk", removed)
	}
	if r.p.Opts.RecoveryKey != nil {
		slots += "; the recovery key of this run is added next and is the only one that opens it"
	}
	return fmt.Sprintf("LUKS%d UUID %s, %d-byte sectors; %s; %s", info.Version, info.UUID, info.SectorSize, s, slots), nil
}

// ioChunk is the largest erase or check request: large enough that the
// disk, not the request rate, is the limit (measured on this project's
// machine: 16 MiB with 3 in flight read at 1.0-1.1x dd's 4 MiB, 8 MiB at
// 0.9-1.0x). Slower disks get smaller requests (pacer), so that a stop,
// which waits for the requests in flight, takes about stopWithin.
const ioChunk = 16 << 20

// stateEvery is how often the position is flushed and saved while running.
var stateEvery = 5 * time.Second

// progressEvery is the least time between two progress events.
var progressEvery = 250 * time.Millisecond

// surface is the data segment opened for the erase or the check.
type surface struct {
	f      *os.File
	base   int64               // byte offset of the segment in f
	size   int64               // the segment's size
	c      *luks.SegmentCipher // userspace: ciphertext on f; nil: f is the plaintext (dm-crypt)
	disk   int64               // byte offset of the segment on the whole disk (for messages)
	sector int64               // the encryption sector size
	what   string              // f's name, for messages
}

func (r *runner) openSurface() (*surface, error) {
	s := &surface{size: r.info.DataSize, sector: int64(r.info.SectorSize), disk: r.p.Layout.Start + r.info.DataOffset}
	path := r.vol
	if r.p.Engine == "userspace" {
		c, err := luks.NewSegmentCipher(r.key, r.info.Segment())
		if err != nil {
			return nil, err
		}
		s.c, path, s.base = c, r.part.Path, r.part.Base+r.info.DataOffset
	}
	s.what = path
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT|syscall.O_CLOEXEC, 0)
	if errors.Is(err, syscall.EINVAL) {
		// a filesystem without O_DIRECT (tmpfs): through the page cache
		f, err = os.OpenFile(path, os.O_RDWR|syscall.O_CLOEXEC, 0)
	}
	if err != nil {
		if s.c != nil {
			s.c.Wipe()
		}
		return nil, err
	}
	s.f = f
	return s, nil
}

func (s *surface) close() {
	if s.c != nil {
		s.c.Wipe()
	}
	s.f.Close()
}

// meter turns positions into throttled, monotonic progress events.
type meter struct {
	r       *runner
	step    StepID
	total   int64
	resumed int64
	last    time.Time
	samples []struct {
		t time.Time
		n int64
	}
}

func (m *meter) progress(done, bad int64, final bool) {
	now := time.Now()
	if !final && now.Sub(m.last) < progressEvery {
		return
	}
	m.last = now
	m.samples = append(m.samples, struct {
		t time.Time
		n int64
	}{now, done})
	for len(m.samples) > 2 && now.Sub(m.samples[0].t) > 5*time.Second {
		m.samples = m.samples[1:]
	}
	p := &Advance{Done: done, Total: m.total, Fraction: float64(done) / float64(max(m.total, 1)), Resumed: m.resumed, Bad: bad}
	if o := m.samples[0]; now.Sub(o.t) > 0 && done > o.n {
		p.Rate = float64(done-o.n) / now.Sub(o.t).Seconds()
		p.ETA = float64(m.total-done) / p.Rate
	}
	m.r.send(Event{Kind: EventProgress, Step: m.step, Progress: p})
}

func pct(n, total int64) string {
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(max(total, 1)))
}

// ensureState makes sure r.state exists (a fresh run's erase creates it).
func (r *runner) ensureState() *Resume {
	if r.state == nil {
		s := r.p.newResume(r.info.UUID)
		s.DiskGUID = r.expected.DiskGUID
		if r.p.Target.Image {
			// the file preflight created, when the run made the image
			s.FileDev, s.FileIno = r.fileID.dev, r.fileID.ino
		}
		s.PartStart, s.PartSize = r.p.Layout.Start, r.p.Layout.Size
		s.Phase, s.Total = StepErase, r.info.DataSize
		r.state = s
	}
	return r.state
}

// ioDepth is how many requests the erase and the check keep in flight:
// the disk always has the next one queued while luksdock encrypts or
// checks another (one synchronous request at a time, as dd does, leaves
// the disk idle between them).
const ioDepth = 3

// chunk is one request of ordered I/O.
type chunk struct {
	off  int64
	b    []byte
	err  error
	bad  []int64 // check: offsets (in b) of sectors that could not be read
	done chan struct{}
}

// stopWithin is how much of the disk's time the requests in flight may
// take: a stop waits for them. Requests are sized to it from the measured
// rate (pacer), between 1 MiB and ioChunk.
const stopWithin = 500 * time.Millisecond

// pacer measures the rate of completed requests and sizes the next one.
type pacer struct {
	t0   time.Time
	n    int64
	rate float64 // bytes per second; 0 until measured
}

func (p *pacer) done(n int64) {
	now := time.Now()
	if p.t0.IsZero() {
		p.t0 = now
		return
	}
	p.n += n
	if d := now.Sub(p.t0); d >= 200*time.Millisecond {
		p.rate = float64(p.n) / d.Seconds()
		if d >= 2*time.Second { // a new window, so the size follows the disk
			p.t0, p.n = now, 0
		}
	}
}

func (p *pacer) size(limit int64) int64 {
	const unit = 1 << 20
	n := int64(p.rate*stopWithin.Seconds()) / ioDepth / unit * unit
	return min(max(n, unit), limit)
}

// orderedIO runs do on consecutive chunks of [start, size) with up to
// len(bufs) of them in flight, each sized by a pacer. pre prepares a chunk
// before its request (in the calling goroutine: the erase encrypts there,
// on every core); post sees each chunk after its request, in order, and
// returns false to stop. Nothing is submitted once stop returns true. It
// returns when every request it started has finished.
func orderedIO(start, size int64, bufs [][]byte, stop func() bool, pre func(*chunk), do func(*chunk), post func(*chunk) bool) {
	ring := make([]*chunk, len(bufs))
	for i := range ring {
		ring[i] = &chunk{b: bufs[i]}
	}
	var pace pacer
	busy := 0 // requests in flight, the oldest at ring[head]
	head := 0
	ok := true
	finish := func() {
		c := ring[head]
		<-c.done
		head = (head + 1) % len(ring)
		busy--
		pace.done(int64(len(c.b)))
		if ok && !post(c) {
			ok = false
		}
	}
	next := 0
	for off := start; off < size; {
		if busy == len(ring) {
			finish()
		}
		if !ok || stop() {
			break
		}
		c := ring[next]
		next = (next + 1) % len(ring)
		c.off, c.b, c.err, c.bad = off, c.b[:min(pace.size(int64(cap(c.b))), size-off)], nil, nil
		c.done = make(chan struct{})
		pre(c)
		busy++
		go func() { do(c); close(c.done) }()
		off += int64(len(c.b))
	}
	for busy > 0 {
		finish()
	}
}

// ioBuffers allocates ioDepth page-aligned request buffers (what O_DIRECT
// needs); free unmaps them.
func ioBuffers() (bufs [][]byte, free func(), err error) {
	free = func() {
		for _, b := range bufs {
			unix.Munmap(b[:cap(b)])
		}
	}
	for i := 0; i < ioDepth; i++ {
		b, err := unix.Mmap(-1, 0, ioChunk, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			free()
			return nil, nil, err
		}
		bufs = append(bufs, b)
	}
	return bufs, free, nil
}

// beginSurface is how the erase and the check begin, once the saved state
// says there is work left: the volume opened for direct I/O over its data
// segment and the request buffers mapped; release frees both.
func (r *runner) beginSurface() (s *surface, bufs [][]byte, release func(), err error) {
	if s, err = r.openSurface(); err != nil {
		return nil, nil, nil, err
	}
	bufs, free, err := ioBuffers()
	if err != nil {
		s.close()
		return nil, nil, nil, err
	}
	return s, bufs, func() { free(); s.close() }, nil
}

// erase writes zeros through the encryption over the whole data segment,
// from where an interrupted run stopped.
func (r *runner) erase() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	st := r.ensureState()
	if st.Phase != StepErase {
		return "already erased by the interrupted run", nil
	}
	if st.Total != r.info.DataSize {
		return "", fmt.Errorf("the saved position is for a data segment of %d bytes, this one has %d", st.Total, r.info.DataSize)
	}
	s, bufs, release, err := r.beginSurface()
	if err != nil {
		return "", err
	}
	defer release()
	start := st.Pos
	if err := st.save(); err != nil {
		return "", fmt.Errorf("saving the position in %s: %w", StateDir(), err)
	}
	m := &meter{r: r, step: StepErase, total: s.size, resumed: start}
	m.progress(start, 0, true)

	written := start // end of the writes completed in order
	// checkpoint flushes what was written and saves the position.
	checkpoint := func() error {
		if err := s.f.Sync(); err != nil {
			return fmt.Errorf("flushing %s: %w", s.what, err)
		}
		st.Pos = written
		return st.save()
	}
	lastSave := time.Now()
	var werr, cerr error
	orderedIO(start, s.size, bufs,
		func() bool { return r.ctx.Err() != nil },
		func(c *chunk) {
			if s.c != nil {
				clear(c.b)
				s.c.Encrypt(c.b, c.b, c.off)
			} // else: the buffers stay zero, dm-crypt encrypts
		},
		func(c *chunk) {
			if _, err := s.f.WriteAt(c.b, s.base+c.off); err != nil {
				c.err = fmt.Errorf("writing %s at byte %d of the disk: %w", disk.SizeString(int64(len(c.b))), s.disk+c.off, err)
			}
		},
		func(c *chunk) bool {
			if c.err != nil {
				werr = c.err
				return false
			}
			written = c.off + int64(len(c.b))
			m.progress(written, 0, false)
			if time.Since(lastSave) >= stateEvery {
				if cerr = checkpoint(); cerr != nil {
					return false
				}
				lastSave = time.Now()
			}
			return true
		})
	if werr != nil {
		// An undock or a failing disk: what was flushed before is kept,
		// so the same command continues from the last saved position.
		return "", &Error{Kind: KindStep, State: fmt.Sprintf("%s (erased %s of %s, %s; the position saved to continue from is %s)", StateFailedIn(StepErase, ""), disk.SizeString(written), disk.SizeString(s.size), pct(written, s.size), disk.SizeString(st.Pos)),
			Err: fmt.Errorf("%w; the erase reached %s of %s (%s)", werr, disk.SizeString(written), disk.SizeString(s.size), pct(written, s.size))}
	}
	if cerr != nil {
		return "", cerr
	}
	if err := checkpoint(); err != nil {
		return "", err
	}
	m.progress(written, 0, true)
	if written < s.size {
		return "", r.stoppedAt(StepErase, written, s.size)
	}
	st.Phase, st.Pos = StepSurfaceCheck, 0
	if !r.p.Opts.SurfaceCheck {
		st.Phase = StepMkfs
	}
	if err := st.save(); err != nil {
		return "", err
	}
	return fmt.Sprintf("wrote %s of encrypted zeros (%s this run)", disk.SizeString(s.size), disk.SizeString(s.size-start)), nil
}

// stoppedAt is the error of an erase or check stopped by a signal at pos.
func (r *runner) stoppedAt(step StepID, pos, total int64) error {
	what := "erase"
	if step == StepSurfaceCheck {
		what = "surface check"
	}
	return &Error{Kind: KindInterrupted, State: fmt.Sprintf("%s (%s stopped at %s of %s, %s)", StateFailedIn(step, ""), what, disk.SizeString(pos), disk.SizeString(total), pct(pos, total)),
		Err: fmt.Errorf("interrupted: the %s stopped at %s of %s (%s); the volume is closed and the disk released; run the same command again to continue from there (the position is saved in %s)",
			what, disk.SizeString(pos), disk.SizeString(total), pct(pos, total), statePath(r.state.LUKSUUID))}
}

// maxUnreadable bounds the sectors the check reads one by one after read
// errors before it gives up on a failing disk.
const maxUnreadable = 4096

// surfaceCheck reads the whole data segment back and checks that it
// decrypts to zeros.
func (r *runner) surfaceCheck() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	st := r.ensureState()
	if st.Phase == StepMkfs {
		return "already read back by the interrupted run", nil
	}
	if st.Phase != StepSurfaceCheck {
		return "", fmt.Errorf("the erase is not complete (%s)", st)
	}
	s, bufs, release, err := r.beginSurface()
	if err != nil {
		return "", err
	}
	defer release()
	start := st.Pos
	m := &meter{r: r, step: StepSurfaceCheck, total: s.size, resumed: start}
	m.progress(start, st.Bad+st.Unreadable, true)

	zero := make([]byte, ioChunk)
	pos := start
	lastSave := time.Now()
	var ferr error
	var unreadable atomic.Int64
	note := func(segOff int64) {
		if st.Bad+st.Unreadable == 0 {
			st.FirstBad = segOff
		}
	}
	orderedIO(start, s.size, bufs,
		func() bool { return r.ctx.Err() != nil },
		func(*chunk) {},
		func(c *chunk) {
			_, err := s.f.ReadAt(c.b, s.base+c.off)
			if err == nil {
				return
			}
			if errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENXIO) || r.goneNow() != "" {
				c.err = fmt.Errorf("reading %s at byte %d of the disk: %w", s.what, s.disk+c.off, err)
				return
			}
			// a bad area: read it sector by sector
			for i := int64(0); i < int64(len(c.b)); i += s.sector {
				if _, err := s.f.ReadAt(c.b[i:i+s.sector], s.base+c.off+i); err != nil {
					c.bad = append(c.bad, i)
					if unreadable.Add(1) > maxUnreadable {
						c.err = fmt.Errorf("more than %d sectors could not be read (the last at byte %d of the disk: %v): the disk is failing", maxUnreadable, s.disk+c.off+i, err)
						return
					}
				}
			}
		},
		func(c *chunk) bool {
			if c.err != nil {
				ferr = c.err
				return false
			}
			if s.c != nil {
				s.c.Decrypt(c.b, c.b, c.off)
			}
			if !bytes.Equal(c.b, zero[:len(c.b)]) || len(c.bad) > 0 {
				bad := map[int64]bool{}
				for _, u := range c.bad {
					bad[u] = true
				}
				for i := int64(0); i < int64(len(c.b)); i += s.sector {
					switch {
					case bad[i]:
						note(c.off + i)
						st.Unreadable++
					case !bytes.Equal(c.b[i:i+s.sector], zero[:s.sector]):
						note(c.off + i)
						st.Bad++
					}
				}
			}
			pos = c.off + int64(len(c.b))
			m.progress(pos, st.Bad+st.Unreadable, false)
			if time.Since(lastSave) >= stateEvery {
				st.Pos = pos
				if ferr = st.save(); ferr != nil {
					return false
				}
				lastSave = time.Now()
			}
			return true
		})
	m.progress(pos, st.Bad+st.Unreadable, true)
	if ferr != nil {
		st.Pos = pos
		st.save()
		return "", &Error{Kind: KindStep, State: fmt.Sprintf("%s (read back %s of %s, %s)", StateFailedIn(StepSurfaceCheck, ""), disk.SizeString(pos), disk.SizeString(s.size), pct(pos, s.size)),
			Err: fmt.Errorf("%w; the surface check reached %s of %s (%s)%s", ferr, disk.SizeString(pos), disk.SizeString(s.size), pct(pos, s.size), r.badSoFar(s))}
	}
	if pos < s.size {
		st.Pos = pos
		if err := st.save(); err != nil {
			return "", err
		}
		return "", r.stoppedAt(StepSurfaceCheck, pos, s.size)
	}
	if n := st.Bad + st.Unreadable; n > 0 {
		st.remove()
		msg := fmt.Sprintf("%d of %d sectors did not read back as the zeros written (%d wrong data, %d unreadable); the first at byte %d of the disk (%s into the encrypted volume): the disk is failing, or smaller than it claims",
			n, s.size/s.sector, st.Bad, st.Unreadable, s.disk+st.FirstBad, disk.SizeString(st.FirstBad))
		return "", &Error{Kind: KindNotVerified, State: "surface check FAILED: do not use this disk for backups", Err: errors.New(msg)}
	}
	st.Phase, st.Pos = StepMkfs, 0
	if err := st.save(); err != nil {
		return "", err
	}
	return fmt.Sprintf("read back %s: every sector decrypts to the zeros written", disk.SizeString(s.size)), nil
}

func (r *runner) badSoFar(s *surface) string {
	st := r.state
	if st.Bad+st.Unreadable == 0 {
		return ""
	}
	return fmt.Sprintf("; %d bad sectors so far (%d wrong data, %d unreadable), the first at byte %d of the disk", st.Bad+st.Unreadable, st.Bad, st.Unreadable, s.disk+st.FirstBad)
}

// SavedErase is the interrupted erase of t that a run would continue, with
// the options it was started with (Label, Table, LUKS1, SurfaceCheck), or
// nil. The wizard proposes these options for a disk with a saved position,
// so that its plan continues the erase rather than starting over: a
// suggestion of the next label in the series would not match, and hours of
// erasing would be lost. It is the same check as a plan's (findResume): the
// same disk, partition, LUKS volume and label.
func SavedErase(t *Target) *Resume {
	if t == nil {
		return nil
	}
	var vols []disk.Signature
	if t.Content.Type == disk.SigLUKS {
		vols = append(vols, t.Content) // LUKS on the whole disk (--table none)
	}
	if len(t.Parts) > 0 && t.Parts[0].Number == 1 && t.Parts[0].Content.Type == disk.SigLUKS {
		vols = append(vols, t.Parts[0].Content)
	}
	for _, v := range vols {
		if v.UUID == "" {
			continue
		}
		s, err := loadResume(v.UUID)
		if err != nil {
			continue
		}
		table, err := disk.ParseTableType(s.Table)
		if err != nil {
			continue
		}
		p := &Plan{Target: t, Opts: Options{Label: s.Label, Table: table, LUKS1: s.LUKS1, Erase: true, SurfaceCheck: s.SurfaceCheck}}
		p.Layout.Table = table
		if r, _ := p.findResume(); r != nil {
			return r
		}
	}
	return nil
}
