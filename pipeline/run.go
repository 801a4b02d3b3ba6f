package pipeline

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/fsformat"
	"luksdock/internal/secret"
	"luksdock/internal/version"
	"luksdock/luks"
	"luksdock/recovery"
)

// PartitionTimeout bounds the wait for the kernel to show the new partition.
var PartitionTimeout = 10 * time.Second

// runner is one execution of a plan.
type runner struct {
	p     *Plan
	ctx   context.Context // cancelled by SIGINT/SIGTERM: checked between steps
	work  context.Context // what steps run under: never cancelled mid-step
	emit  func(Event)
	pass  []byte
	key   []byte
	done  StepID
	start time.Time

	lock     *os.File // holds flock(LOCK_EX) on the target for the whole run
	excl     *os.File // the target opened O_EXCL (block devices) or read-write (images)
	expected disk.Identity
	fileID   fileID // images: the file confirmed, or the one preflight created

	part   luks.Device
	info   luks.Info
	mapper *luks.Mapping // kernel engine: the open dm-crypt mapping
	loop   *disk.Loop
	uvol   *luks.UserspaceVolume
	vol    string    // the opened volume: /dev/mapper/NAME or the FUSE file
	keys   *keyCheck // the keyslot checks, running from the open step on
	result *Result
	state  *Resume // the erase's saved position (erase.go)
	// slotKDF is the passphrase keyslot's key derivation cost, read from
	// the header after luksFormat (or resume): the recovery key's keyslot
	// gets exactly the same.
	slotKDF luks.PBKDF
	// removedSlots are the interrupted run's keyslots resume removed.
	removedSlots []int
}

// Run prepares the target. confirm must equal Target.ConfirmWord(): nothing
// is written otherwise. Each step is announced (its start event carries the
// command it really runs), timed and reported through emit; the plan itself
// is not changed. A cancelled ctx is a stop request: it takes effect at the
// next step boundary — the running step finishes, no later step starts, the
// volume is closed and the disk released, and Run returns an *Error of
// KindInterrupted with the disk's state. A run whose steps all finished
// returns its Result, even if the request came during the last one. The
// caller owns passphrase and clears it after Run returns.
func (p *Plan) Run(ctx context.Context, confirm string, passphrase []byte, emit func(Event)) (*Result, error) {
	if emit == nil {
		emit = func(Event) {}
	}
	r := &runner{p: p, ctx: ctx, work: context.WithoutCancel(ctx), emit: emit, pass: passphrase, start: time.Now(), fileID: p.Target.fileID}
	if confirm != p.Target.ConfirmWord() {
		return nil, r.fail(&Error{Kind: KindRefused, Step: StepPreflight, State: stateUnchanged,
			Err: fmt.Errorf("%w: you typed %q, but the target is %q; nothing was written", ErrConfirm, confirm, p.Target.ConfirmWord())})
	}
	if err := ValidatePassphrase(passphrase); err != nil {
		return nil, r.fail(&Error{Kind: KindRefused, Step: StepPreflight, State: stateUnchanged, Err: err})
	}
	r.send(Event{Kind: EventPlan, Steps: p.Steps, Engine: p.Engine, Message: p.EngineWhy, Version: version.String()})
	for _, n := range p.Target.Notes {
		r.send(Event{Kind: EventInfo, Message: n})
	}
	r.send(Event{Kind: EventInfo, Message: "sectors: " + p.Target.SectorsLine() + "; layout: " + p.LayoutLine()})
	r.send(Event{Kind: EventInfo, Message: p.SetOwnerLine()})
	for _, w := range p.Warnings {
		r.send(Event{Kind: EventWarning, Message: w})
	}
	if p.Engine == EngineUserspace {
		r.removeStaleMounts()
	}
	defer r.cleanup()
	r.beginResume()
	for _, s := range p.Steps {
		if err := r.step(s.ID); err != nil {
			return nil, err
		}
	}
	// Every step finished: a stop request during the last one stopped
	// nothing, and the disk is verified.
	r.send(Event{Kind: EventResult, Result: r.result, Elapsed: time.Since(r.start), State: stateReady})
	return r.result, nil
}

func (r *runner) send(e Event) {
	e.Time = time.Now()
	r.emit(e)
}

// fail reports e in a failed event and returns it.
func (r *runner) fail(e *Error) error {
	r.send(Event{Kind: EventFailed, Step: e.Step, Message: e.Err.Error(), State: e.State, Failure: e.Kind})
	return e
}

func (r *runner) stepDef(id StepID) Step {
	for _, s := range r.p.Steps {
		if s.ID == id {
			return s
		}
	}
	return Step{ID: id}
}

// facts are what the run knows now that the plan did not: the partition
// node of a disk, the opened volume, the sector size luksFormat chose.
func (r *runner) facts() cmdFacts {
	f := r.p.planFacts()
	if !r.p.Target.Image && r.part.Path != "" {
		f.part = r.part.Path
	}
	if r.vol != "" {
		f.vol = r.vol
	}
	f.sector = r.info.SectorSize
	f.run, f.kdf = true, r.slotKDF
	return f
}

// command is what step id really runs, for its start event: the plan's
// command with the run's facts; none for the userspace engine's open and
// close, which run no tool (luksdock serves the volume through FUSE).
func (r *runner) command(id StepID) string {
	if r.p.Engine == EngineUserspace && (id == StepOpen || id == StepClose) {
		return ""
	}
	return r.p.command(id, r.facts())
}

// stopped is the step boundary's check for a stop request: the volume is
// closed, the disk released, and the step that would have run next is
// reported as not started.
func (r *runner) stopped(id StepID) error {
	if r.ctx.Err() == nil {
		return nil
	}
	r.release()
	return r.fail(&Error{Kind: KindInterrupted, Step: id, Title: r.stepDef(id).Title, State: StateAfter(r.done), Err: errors.New("interrupted before this step; the volume is closed and the disk released")})
}

func (r *runner) step(id StepID) error {
	d, ok := lookupStep(id)
	if !ok {
		return r.fail(&Error{Kind: KindStep, Step: id, State: StateAfter(r.done), Err: fmt.Errorf("step %q is not in the step table", id)})
	}
	if err := r.stopped(id); err != nil {
		return err
	}
	// Once its start event is out, a step runs to its end: a stop asked
	// for from now on (the user saw the step start) takes effect at the
	// next boundary, as the wizard and the CLI tell the user.
	r.send(Event{Kind: EventStart, Step: id, Command: r.command(id), Message: r.stepDef(id).Title})
	t0 := time.Now()
	msg, err := d.run(r)
	if err != nil {
		r.release()
		kind, state := KindStep, StateFailedIn(id, r.done)
		if errors.Is(err, disk.ErrDiskChanged) {
			// every step re-checks the identity before it writes
			state = StateAfter(r.done)
		}
		var pe *Error
		if errors.As(err, &pe) {
			kind = KindOf(pe)
			if pe.State != "" {
				state = pe.State
			}
			err = pe.Err
		} else if d.failKind != "" {
			kind, state = d.failKind, d.failed
		}
		if r.readOnlyNow() {
			// The tools' own messages ("Device wipe error", "could not
			// erase sector") do not say why.
			err = fmt.Errorf("%w (%s is read-only now: write-protected, or switched read-only by the kernel after I/O errors)", err, r.p.Target.Path)
		} else if gone := r.goneNow(); gone != "" && !errors.Is(err, disk.ErrDiskChanged) {
			// An undocked disk makes the tools fail with bare exit codes.
			err = fmt.Errorf("%w (%s)", err, gone)
		}
		r.send(Event{Kind: EventFailed, Step: id, Message: err.Error(), State: state, Elapsed: time.Since(t0), Failure: kind, Reasons: Refusals(err)})
		return &Error{Kind: kind, Step: id, Title: r.stepDef(id).Title, State: state, Err: err}
	}
	r.done = id
	r.send(Event{Kind: EventDone, Step: id, Message: msg, Elapsed: time.Since(t0)})
	return nil
}

// checkIdentity re-reads the target's identity and refuses to go on if it is
// not the disk (or file) that was confirmed.
func (r *runner) checkIdentity() error {
	t := r.p.Target
	if t.Image {
		st, err := os.Stat(t.Path)
		if err != nil {
			return fmt.Errorf("%w: %v", disk.ErrDiskChanged, err)
		}
		s := st.Sys().(*syscall.Stat_t)
		if (fileID{uint64(s.Dev), s.Ino}) != r.fileID {
			return fmt.Errorf("%w: %s is now a different file", disk.ErrDiskChanged, t.Path)
		}
		if st.Size() != t.Size {
			return fmt.Errorf("%w: %s changed size from %d to %d bytes", disk.ErrDiskChanged, t.Path, t.Size, st.Size())
		}
		return nil
	}
	cur, err := t.sys.Identity(t.Name)
	if err != nil {
		return fmt.Errorf("%w: %v", disk.ErrDiskChanged, err)
	}
	return r.expected.Check(cur)
}

func (r *runner) preflight() (string, error) {
	t := r.p.Target
	if t.Image {
		return r.preflightImage()
	}
	d, err := t.sys.Disk(t.Name)
	if err != nil {
		return "", refused("%s: %v", t.Path, err)
	}
	// The disk as it is now, judged by the same check as the plan.
	if err := disk.Assess(d).Check(t.Path, r.p.Opts.AllowInternal); err != nil {
		return "", refused("%w", err)
	}
	r.expected = t.Identity
	if err := r.checkIdentity(); err != nil {
		return "", &Error{Kind: KindRefused, State: stateUnchanged, Err: err}
	}
	lock, err := os.Open(t.Path)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return "", refused("%s: %v: preparing a disk needs root (run luksdock with sudo)", t.Path, err)
		}
		return "", refused("%s: %v", t.Path, err)
	}
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lock.Close()
		return "", refused("%s is locked by another program (another luksdock, or a partitioning tool): %v", t.Path, err)
	}
	r.lock = lock
	if err := r.acquire(); err != nil {
		return "", refused("%v", err)
	}
	return fmt.Sprintf("%s %s, %s; not mounted, no holders; opened exclusively", t.Name, d.VendorModel(), disk.SizeString(d.Size)), nil
}

func (r *runner) preflightImage() (string, error) {
	t := r.p.Target
	var f *os.File
	var err error
	if t.Create {
		f, err = os.OpenFile(t.Path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return "", refused("creating %s: %v", t.Path, err)
		}
		if err := f.Truncate(t.Size); err != nil {
			f.Close()
			os.Remove(t.Path)
			return "", refused("creating %s of %s: %v", t.Path, disk.SizeString(t.Size), err)
		}
		st, _ := f.Stat()
		s := st.Sys().(*syscall.Stat_t)
		r.fileID = fileID{uint64(s.Dev), s.Ino}
	} else {
		f, err = os.OpenFile(t.Path, os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, syscall.EROFS) {
				return "", refused("%s is on a read-only filesystem", t.Path)
			}
			return "", refused("%s: %v", t.Path, err)
		}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return "", refused("%s is being prepared by another luksdock (it is locked)", t.Path)
	}
	r.lock, r.excl = f, f
	if err := r.checkIdentity(); err != nil {
		return "", &Error{Kind: KindRefused, State: stateUnchanged, Err: err}
	}
	if l := loopUsing(r.fileID); l != "" {
		return "", refusedInUse(t.Path, l)
	}
	return fmt.Sprintf("%s, %s; locked", t.Path, disk.SizeString(t.Size)), nil
}

// acquire opens a block device target O_EXCL, so no mount, mapping or other
// exclusive user can claim it or its partitions while luksdock writes.
func (r *runner) acquire() error {
	if r.p.Target.Image || r.excl != nil {
		return nil
	}
	f, err := disk.OpenExclusive(r.p.Target.Path)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err == nil {
		if mm := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))); r.expected.MajMin != "" && mm != r.expected.MajMin {
			f.Close()
			return fmt.Errorf("%w: %s is now %s, not %s", disk.ErrDiskChanged, r.p.Target.Path, mm, r.expected.MajMin)
		}
	}
	r.excl = f
	return nil
}

// withoutExcl runs fn with the O_EXCL claim dropped, for cryptsetup and
// device-mapper, which claim the partition exclusively themselves and could
// not while luksdock holds the whole disk. The flock stays held throughout.
func (r *runner) withoutExcl(fn func() error) error {
	if r.p.Target.Image {
		return fn()
	}
	if r.excl != nil {
		r.excl.Close()
		r.excl = nil
	}
	err := fn()
	if aerr := r.acquire(); aerr != nil && err == nil && r.mapper == nil {
		err = aerr
	}
	return err
}

func (r *runner) wipe() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	t := r.p.Target
	_, parts, _ := disk.ProbeSectors(r.excl, t.Size, t.logicalSector())
	var old []disk.Extent
	for _, p := range append(parts, t.Parts...) {
		if p.Size > 0 {
			old = append(old, disk.Extent{Start: p.Start, Size: p.Size})
		}
	}
	ex := disk.WipeExtents(t.Size, old)
	n, err := disk.Zero(r.excl, ex)
	if err != nil {
		return "", err
	}
	// The old partition table is gone, and with it the disk GUID the
	// identity was captured with: from here on the disk has none until the
	// partition step writes ours.
	r.expected.DiskGUID = ""
	// A saved position of an interrupted erase of the volume just wiped
	// (this run starts over, or prepares without an erase) continues
	// nothing any more: it goes with the volume.
	for _, v := range append([]disk.Partition{{Content: t.Content}}, t.Parts...) {
		if v.Content.Type == disk.SigLUKS && v.Content.UUID != "" {
			os.Remove(statePath(v.Content.UUID))
		}
	}
	return fmt.Sprintf("zeroed %s in %d places (old partition tables, superblocks, LUKS/LVM headers, GPT backup)", disk.SizeString(n), len(ex)), nil
}

func (r *runner) partition() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	t, l := r.p.Target, r.p.Layout
	logical, physical := 512, 4096
	if t.Disk != nil {
		logical, physical = t.Disk.LogicalSector, t.Disk.PhysicalSector
	}
	if l.Table == disk.TableNone {
		r.part = luks.Device{Path: t.Path, Size: t.Size}
		if t.Image {
			return "no partition table: LUKS goes on the whole image", nil
		}
		how, err := disk.DropPartitions(r.excl, t.Name)
		if err != nil {
			return "", err
		}
		return "no partition table: LUKS goes on the whole disk; kernel: " + how, nil
	}
	guid, err := disk.WritePartitionTable(r.excl, t.Size, logical, physical, l)
	if err != nil {
		return "", err
	}
	r.expected.DiskGUID = guid
	if t.Image {
		r.part = luks.Device{Path: t.Path, Base: l.Start, Size: l.Size}
		return fmt.Sprintf("%s table, partition 1 at %d, %s", l.Table, l.Start, disk.SizeString(l.Size)), nil
	}
	node, how, err := disk.SyncPartition(r.excl, t.Name, l, PartitionTimeout)
	if err != nil {
		return "", err
	}
	r.part = luks.Device{Path: node, Size: l.Size}
	return fmt.Sprintf("%s table, %s from %d, %s; kernel: %s", l.Table, node, l.Start, disk.SizeString(l.Size), how), nil
}

func (r *runner) format() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	r.key = secret.New(luks.KeyBytes)
	if _, err := rand.Read(r.key); err != nil {
		return "", err
	}
	o := r.p.Opts
	err := r.withoutExcl(func() error {
		return luks.FormatDevice(r.work, r.part, r.pass, r.key, luks.FormatOptions{LUKS1: o.LUKS1, Label: o.Label, Subsystem: o.Set, PBKDF: o.PBKDF})
	})
	if err != nil {
		return "", err
	}
	info, err := luks.ReadHeaderDevice(r.part)
	if err != nil {
		return "", fmt.Errorf("reading the new header: %w", err)
	}
	r.info = info
	if err := r.readSlotKDF(); err != nil {
		return "", err
	}
	if !o.LUKS1 {
		// The disk's own description, readable while locked by any
		// machine (luks.Metadata): written now so that the verify step
		// and the header backup cover the header as it stays.
		if err := r.withoutExcl(func() error { return luks.WriteMetadataDevice(r.work, r.part, r.metadata()) }); err != nil {
			return "", fmt.Errorf("writing the luksdock token: %w", err)
		}
	}
	// cryptsetup chose the sector size: the mkfs step's start event
	// reports the block size it gives mkfs.ext4 (r.facts).
	return fmt.Sprintf("LUKS%d %s, UUID %s, %d-byte sectors, data at %s", info.Version, info.Cipher, info.UUID, info.SectorSize, disk.SizeString(info.DataOffset)), nil
}

// metadata is the disk's luksdock token as prepare writes it.
func (r *runner) metadata() luks.Metadata {
	o, t := r.p.Opts, r.p.Target
	m := luks.Metadata{Label: o.Label, Set: o.Set, Prepared: time.Now().UTC().Truncate(time.Second), RecoveryKey: o.RecoveryKey != nil}
	m.PreparedOn, _ = os.Hostname()
	if t.Disk != nil {
		m.DriveModel, m.DriveSerial = t.Disk.Model, t.Disk.Serial
		if t.Health != nil && t.Health.Model != "" {
			m.DriveModel, m.DriveSerial = t.Health.Model, t.Health.Serial
		}
	}
	return m
}

// addRecoveryKey writes the recovery key to its file (when one is asked
// for) and then adds a keyslot for it, unlocking with the passphrase.
func (r *runner) addRecoveryKey() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	o := r.p.Opts
	msg := "a second keyslot opens the disk with the recovery key"
	if o.RecoveryKeyFile != "" {
		about := fmt.Sprintf("for the disk labelled %s, LUKS UUID %s", o.Label, r.info.UUID)
		if err := recovery.WriteFile(o.RecoveryKeyFile, o.RecoveryKey, about); err != nil {
			return "", err
		}
		msg += "; written to " + o.RecoveryKeyFile + " (mode 0600): print it, keep it away from this disk, then delete the file"
	}
	if r.slotKDF.Type == "" {
		return "", errors.New("the passphrase keyslot's key derivation cost is not known")
	}
	err := r.withoutExcl(func() error {
		return luks.AddKeyDevice(r.work, r.part, r.pass, o.RecoveryKey, r.slotKDF)
	})
	if err != nil {
		return "", err
	}
	info, err := luks.ReadHeaderDevice(r.part)
	if err != nil {
		return "", fmt.Errorf("reading the header: %w", err)
	}
	if len(info.Keyslots) != len(r.info.Keyslots)+1 {
		return "", fmt.Errorf("the header has keyslots %v after adding the recovery key, before %v", info.Keyslots, r.info.Keyslots)
	}
	r.info.Keyslots = info.Keyslots
	return msg + fmt.Sprintf("; its keyslot has the passphrase keyslot's key derivation cost (%s)", kdfText(r.slotKDF)), nil
}

// readSlotKDF reads the passphrase keyslot's key derivation cost (the only
// keyslot after luksFormat, the one kept by resume) from the header.
func (r *runner) readSlotKDF() error {
	if len(r.info.Keyslots) == 0 {
		return errors.New("the LUKS header has no keyslot")
	}
	k, err := luks.KeyslotPBKDFDevice(r.part, r.info.Keyslots[0])
	if err != nil {
		return fmt.Errorf("reading keyslot %d's key derivation cost: %w", r.info.Keyslots[0], err)
	}
	r.slotKDF = k
	return nil
}

// kdfText is a key derivation cost for people.
func kdfText(k luks.PBKDF) string {
	if k.MemoryKiB > 0 {
		return fmt.Sprintf("%s, %d iterations, %d KiB, %d threads", k.Type, k.ForceIterations, k.MemoryKiB, k.Parallel)
	}
	return fmt.Sprintf("%s, %d iterations", k.Type, k.ForceIterations)
}

func (r *runner) open() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	r.startKeyCheck()
	if r.p.Engine == EngineUserspace {
		v, err := luks.MountUserspace(r.part.Path, r.part.Base, r.part.Size, r.info.Segment(), r.key)
		if err != nil {
			return "", err
		}
		r.uvol, r.vol = v, v.Path()
		return "serving the decrypted volume at " + r.vol, nil
	}
	err := r.withoutExcl(func() error {
		dev := r.part.Path
		if !r.part.Direct() {
			l, err := disk.AttachLoop(r.part.Path, r.part.Base, r.part.Size)
			if err != nil {
				return err
			}
			r.loop, dev = l, l.Path
		}
		name := r.p.mapperName()
		if err := luks.OpenWithKey(r.work, dev, name, r.key); err != nil {
			return err
		}
		// Held and marked for deferred removal: gone by itself once
		// luksdock and mkfs let go, even if luksdock is killed.
		m, err := luks.HoldMapping(r.work, name)
		r.mapper, r.vol = m, m.Path
		return err
	})
	if err != nil {
		return "", err
	}
	return "opened " + r.vol, nil
}

func (r *runner) mkfs() (string, error) {
	if err := r.checkIdentity(); err != nil {
		return "", err
	}
	if err := fsformat.Mkfs(r.work, r.vol, r.p.Opts.Label, r.info.SectorSize, r.p.Owner); err != nil {
		return "", err
	}
	return fmt.Sprintf("ext4 labelled %q; top directory owned by %s, %s", r.p.Opts.Label, r.p.Owner, r.p.OwnerWhy), nil
}

func (r *runner) closeVolume() (string, error) {
	err := r.closeAll(r.work)
	secret.Free(r.key)
	if err != nil {
		return "", err
	}
	if err := r.acquire(); err != nil {
		return "", err
	}
	return "closed; the volume key is cleared from memory", nil
}

// closeAll closes whatever is open: the FUSE volume, the mapping, the loop.
func (r *runner) closeAll(ctx context.Context) error {
	var errs []error
	if r.uvol != nil {
		errs = append(errs, r.uvol.Close())
		r.uvol = nil
	}
	if r.mapper != nil {
		if err := r.mapper.Close(ctx); err != nil {
			errs = append(errs, err)
		} else {
			r.mapper = nil
		}
	}
	if r.loop != nil {
		errs = append(errs, r.loop.Close())
		r.loop = nil
	}
	r.vol = ""
	return errors.Join(errs...)
}

// startKeyCheck starts the keyslot checks of the verify step (keyCheck) in
// the background: the header is final once luksFormat has written it, and
// the two key derivations then overlap the open and mkfs steps instead of
// following them. The verify step waits for the result.
func (r *runner) startKeyCheck() {
	if r.keys != nil {
		return
	}
	r.keys = startKeyCheck(r.work, r.part, r.secrets(), r.key)
	r.send(Event{Kind: EventInfo, Step: StepOpen, Message: "verify step started early, in the background while the volume is opened and mkfs runs: " +
		"the passphrase must open the new keyslot with luksdock's own LUKS code and with cryptsetup, to the volume key " + r.keyOrigin() + "; the disk is not called verified until the verify step has also checked the filesystem"})
}

// keyOrigin says where the volume key verify checks against came from: a
// resumed run recovered the interrupted run's key with the passphrase.
func (r *runner) keyOrigin() string {
	if r.p.Resume != nil {
		return "the interrupted run generated (this run continued its erase)"
	}
	return "this run generated"
}

// secrets are the passphrases (and keys) whose keyslots verify checks.
func (r *runner) secrets() [][]byte {
	if rk := r.p.Opts.RecoveryKey; rk != nil {
		return [][]byte{r.pass, rk}
	}
	return [][]byte{r.pass}
}

func (r *runner) verify() (string, error) {
	var res *Result
	var summary string
	r.startKeyCheck() // no-op: open started it
	err := r.withoutExcl(func() error {
		var err error
		res, summary, err = verifyDevice(r.work, r.part, r.partName(), r.keys, r.p.Engine, r.p.Opts.Label, &r.p.Owner)
		return err
	})
	if err != nil {
		return "", err
	}
	t := r.p.Target
	res.Target, res.Table, res.Size = t.Path, r.p.Layout.Table, t.Size
	views, err := disk.ReadViews(t.Path, t.Size)
	if err != nil {
		return "", err
	}
	fillSectors(t, res, views)
	found := false
	for _, v := range views {
		if v.Readable() && v.Sector == t.logicalSector() && v.Start == r.p.Layout.Start && v.Size == r.p.Layout.Size {
			found = true
		}
	}
	switch {
	case !found:
		return "", fmt.Errorf("a kernel reading %s with %d-byte sectors would not find the volume (%s)", t.Path, t.logicalSector(), viewsText(views))
	case r.p.Layout.Table != disk.TableMBR && len(res.SectorViews) != len(disk.SectorSizes):
		return "", fmt.Errorf("the layout is not portable: %s", viewsText(views))
	case blockWarning(res.FSBlockSize) != "":
		return "", errors.New(blockWarning(res.FSBlockSize))
	}
	if w := viewsWarning(res.SectorViews); w != "" {
		r.send(Event{Kind: EventWarning, Step: StepVerify, Message: w})
	}
	msg := fmt.Sprintf("luksdock's own LUKS code and cryptsetup unlocked the keyslot to the volume key %s (%s, during open and mkfs); e2fsck -fn clean; label %q; top directory owned by %s; found with %s",
		r.keyOrigin(), summary, res.FSLabel, res.Owner, SectorViewsText(res.SectorViews))
	if r.p.Opts.RecoveryKey != nil {
		// secrets() gave the key check the recovery key too
		res.RecoveryKey, res.RecoveryKeyFile = true, r.p.Opts.RecoveryKeyFile
		msg += "; the recovery key opens it too (both checks)"
	}
	res.RemovedKeyslots = r.removedSlots
	r.result = res
	if r.state != nil {
		r.state.remove() // the erase is done with: forget its position
	}
	return msg, nil
}

func (r *runner) partName() string {
	if r.part.Base != 0 {
		return fmt.Sprintf("%s partition 1 (offset %d)", r.part.Path, r.part.Base)
	}
	return r.part.Path
}

func (r *runner) headerBackup() (string, error) {
	path := r.p.Opts.HeaderBackup
	if err := r.withoutExcl(func() error { return luks.HeaderBackupDevice(r.work, r.part, path) }); err != nil {
		// The disk itself is verified and ready.
		return "", &Error{Kind: KindStep, State: StateFailedIn(StepHeaderBackup, ""), Err: err}
	}
	r.result.HeaderBackup = path
	return "saved to " + path + " (mode 0600); keep it with your passphrase records, not on this disk", nil
}

// release closes the volume and lets go of the disk; used on failure.
func (r *runner) release() {
	r.keys.stop()
	_ = r.closeAll(context.Background())
	secret.Free(r.key)
	if r.excl != nil && r.excl != r.lock {
		r.excl.Close()
	}
	r.excl = nil
}

func (r *runner) cleanup() {
	r.release()
	if r.lock != nil {
		if r.p.Target.Image {
			r.lock.Sync()
		}
		r.lock.Close()
		r.lock = nil
	}
}

// removeStaleMounts removes dead FUSE mounts that an earlier luksdock left
// when it was killed together with its volume server (the server removes
// its mount itself when only luksdock dies). They hold no key and serve
// nothing, but they stay in the mount table until someone unmounts them. A
// mount whose server is stuck (not dead) would block the check forever, so
// it is bounded by StaleMountTimeout; the blocked goroutine does not keep
// luksdock from exiting.
func (r *runner) removeStaleMounts() {
	type res struct {
		removed []string
		err     error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := luks.CleanupStaleUserspaceMounts()
		ch <- res{m, err}
	}()
	select {
	case x := <-ch:
		for _, m := range x.removed {
			r.send(Event{Kind: EventInfo, Message: "removed a dead FUSE mount left by a killed luksdock: " + m})
		}
		if x.err != nil {
			r.send(Event{Kind: EventWarning, Message: "could not remove a dead FUSE mount left by a killed luksdock: " + x.err.Error()})
		}
	case <-time.After(StaleMountTimeout):
		r.send(Event{Kind: EventWarning, Message: "a luksdock FUSE mount (fuse.luksdock in /proc/self/mountinfo) does not answer: its volume server (luksdock-volume) is stuck; " +
			"end it with `echo 1 > /sys/fs/fuse/connections/N/abort` (N: the mount's minor device number) and `umount -l` the mountpoint"})
	}
}

// StaleMountTimeout bounds the search for dead FUSE mounts of earlier runs.
var StaleMountTimeout = 3 * time.Second

// readOnlyNow reports whether a block device target has become read-only.
// goneNow says, for a block device, that it disappeared or changed (the
// disk was undocked) while a step ran; "" if it is still there.
func (r *runner) goneNow() string {
	t := r.p.Target
	if t.Image || t.Name == "" {
		return ""
	}
	if !t.sys.Present(t.Name) {
		return fmt.Sprintf("%s is gone: the disk was undocked or lost its connection", t.Path)
	}
	if err := r.checkIdentity(); err != nil {
		return err.Error()
	}
	return ""
}

func (r *runner) readOnlyNow() bool {
	t := r.p.Target
	if t.Image || t.Name == "" {
		return false
	}
	return t.sys.ReadOnlyNow(t.Name)
}
