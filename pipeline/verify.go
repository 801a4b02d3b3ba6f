package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"luksdock/disk"
	"luksdock/fsformat"
	"luksdock/internal/secret"
	"luksdock/internal/version"
	"luksdock/luks"
)

// verifyDevice proves that a LUKS device is a finished backup disk: the key
// check kc passed (every secret opens a keyslot with luksdock's own LUKS
// code, independent of cryptsetup, and with cryptsetup, to one volume key,
// and the header area reads as it did before those checks);
// with the key cryptsetup recovered, cryptsetup maps the volume read-only
// (kernel engine; it checks the key against the header's digest) or luksdock
// serves it (userspace engine); e2fsck -fn is clean on the decrypted volume
// and its label is the expected one (and the LUKS2 label's, when set). It
// also returns the key check's summary. wantOwner, when set, is the owner
// the top directory must have.
func verifyDevice(ctx context.Context, part luks.Device, partName string, kc *keyCheck, engine Engine, wantLabel string, wantOwner *fsformat.Owner) (*Result, string, error) {
	info, key, summary, err := kc.wait(part)
	defer secret.Free(key)
	if err != nil {
		return nil, "", err
	}
	var vol string
	var closeVol func() error
	if engine == EngineKernel {
		dev := part.Path
		var loop *disk.Loop
		if !part.Direct() {
			if loop, err = disk.AttachLoop(part.Path, part.Base, part.Size); err != nil {
				return nil, "", err
			}
			dev = loop.Path
		}
		name := fmt.Sprintf("luksdock-verify-%d", os.Getpid())
		if err := luks.OpenReadOnlyWithKey(ctx, dev, name, key); err != nil {
			loop.Close()
			return nil, "", fmt.Errorf("cryptsetup could not map it with the key it recovered: %w", err)
		}
		m, err := luks.HoldMapping(ctx, name)
		vol = m.Path
		closeVol = func() error { err := m.Close(context.Background()); loop.Close(); return err }
		if err != nil {
			closeVol()
			return nil, "", err
		}
	} else {
		v, err := luks.MountUserspace(part.Path, part.Base, part.Size, info.Segment(), key)
		if err != nil {
			return nil, "", err
		}
		vol, closeVol = v.Path(), v.Close
	}
	secret.Free(key)
	chk, ferr := fsformat.Fsck(ctx, vol)
	sb, lerr := fsformat.ReadSuper(ctx, vol)
	top, oerr := fsformat.ReadTopDir(ctx, vol)
	label := sb.Label
	cerr := closeVol()
	res := &Result{Partition: partName, Engine: engine, LUKS: info, FSLabel: label, FSBlockSize: sb.BlockSize, FsckClean: chk.Clean, Fsck: chk.Output,
		Owner: top.Owner.String(), TopDirMode: top.Mode, Version: version.String()}
	switch {
	case ferr != nil:
		return nil, "", fmt.Errorf("e2fsck could not run: %w", ferr)
	case lerr != nil:
		return nil, "", fmt.Errorf("no ext4 filesystem inside the LUKS volume: %w", lerr)
	case !chk.Clean:
		return nil, "", fmt.Errorf("e2fsck -fn is not clean: %v", chk.Output)
	case label == "":
		return nil, "", errors.New("the ext4 filesystem has no label")
	case wantLabel != "" && label != wantLabel:
		return nil, "", fmt.Errorf("the ext4 label is %q, expected %q", label, wantLabel)
	case sb.BlockSize < info.SectorSize:
		return nil, "", fmt.Errorf("the ext4 block size %d is smaller than the LUKS sector size %d: a kernel would refuse to mount it", sb.BlockSize, info.SectorSize)
	case info.Label != "" && info.Label != label:
		return nil, "", fmt.Errorf("the LUKS2 label %q differs from the ext4 label %q", info.Label, label)
	case oerr != nil:
		return nil, "", fmt.Errorf("reading the owner of the top directory: %w", oerr)
	case wantOwner != nil && top.Owner != *wantOwner:
		return nil, "", fmt.Errorf("the top directory is owned by %s, expected %s", top.Owner, *wantOwner)
	case cerr != nil:
		return nil, "", fmt.Errorf("closing the verified volume: %w", cerr)
	}
	return res, summary, nil
}

// verifyRecoveryKey proves that a recovery key opens the LUKS device res
// describes, with both implementations: luks.go unseals a keyslot with it
// and cryptsetup accepts it (open --test-passphrase, the key on standard
// input exactly as typed at its prompt). It sets res.RecoveryKey.

// Verify checks a prepared disk or image with passphrase, without writing:
// partition 1 must hold LUKS with a keyslot the passphrase opens and a clean
// ext4 filesystem. engine is EngineAuto, EngineKernel or EngineUserspace.
// Events are emitted as for a run (one verify step). A passphrase that opens
// no keyslot fails with KindWrongPassphrase, distinct from KindNotVerified (a
// disk that is damaged or not a finished backup disk).
func Verify(ctx context.Context, t *Target, pass []byte, engine Engine, emit func(Event)) (*Result, error) {
	return VerifyWithRecoveryKey(ctx, t, pass, nil, engine, emit)
}

// VerifyWithRecoveryKey is Verify that, when recoveryKey is not nil (a key
// in its printed form, see recovery.Parse), also proves that the recovery
// key opens the disk, with luks.go and with cryptsetup.
func VerifyWithRecoveryKey(ctx context.Context, t *Target, pass, recoveryKey []byte, engine Engine, emit func(Event)) (*Result, error) {
	if emit == nil {
		emit = func(Event) {}
	}
	fail := func(kind Kind, err error) (*Result, error) {
		if r := SavedErase(t); kind == KindNotVerified && r != nil {
			// not a damaged disk: one whose preparation did not finish
			err = fmt.Errorf("%w; its preparation was interrupted (%s): prepare it again with the same label and options (luksdock prepare, or Continue preparing in the wizard) to continue", err, r)
		}
		emit(Event{Time: time.Now(), Kind: EventFailed, Step: StepVerify, Message: err.Error(), Failure: kind})
		return nil, &Error{Kind: kind, Step: StepVerify, Err: err}
	}
	if t.Create {
		return fail(KindRefused, fmt.Errorf("%s does not exist", t.Path))
	}
	if err := ValidatePassphrase(pass); err != nil {
		return fail(KindRefused, err)
	}
	if err := Tools(); err != nil {
		return fail(KindRefused, err)
	}
	p := &Plan{Target: t, Opts: Options{Engine: engine}}
	if engine == "" {
		p.Opts.Engine = EngineAuto
	}
	if err := p.chooseEngine(); err != nil {
		return fail(KindRefused, errors.Unwrap(err))
	}
	for _, n := range t.Notes {
		emit(Event{Time: time.Now(), Kind: EventInfo, Message: n})
	}
	emit(Event{Time: time.Now(), Kind: EventStart, Step: StepVerify, Engine: p.Engine, Message: "Verify it unlocks and fscks clean"})
	t0 := time.Now()
	views, err := disk.ReadViews(t.Path, t.Size) // drops a stale page cache first
	if err != nil {
		return fail(KindRefused, err)
	}
	f, err := os.Open(t.Path)
	if err != nil {
		return fail(KindRefused, err)
	}
	content, parts, _ := disk.ProbeSectors(f, t.Size, t.logicalSector())
	f.Close()
	readable := disk.ReadableIn(views)
	if content.TableType() == "" && content.Type == disk.SigLUKS {
		// --table none: LUKS on the whole disk.
		return verifyPart(ctx, t, luks.Device{Path: t.Path, Size: t.Size}, t.Path, disk.TableNone, p.Engine, pass, recoveryKey, views, t0, emit, fail)
	}
	if content.TableType() == "" || len(parts) == 0 {
		// A protective MBR without a GPT (PMBR) lists at most the MBR
		// partitions of a hybrid, which the kernel ignores: no table.
		return fail(KindNotVerified, fmt.Errorf("%s has no partition table (%s)", t.Path, content))
	}
	if content.KernelIgnoresTable {
		// Readable from its backup, but Linux would create no partition
		// node when the disk is docked: it would not unlock there.
		return fail(KindNotVerified, fmt.Errorf("%s: the kernel will not read this partition table (%s), so the disk would not unlock when docked; prepare it again (what kernels find: %s)", t.Path, content, viewsText(views)))
	}
	if len(readable) == 0 {
		return fail(KindNotVerified, fmt.Errorf("%s: no dock would show the encrypted volume: a kernel reading the partition table with 512- or with 4096-byte sectors finds no LUKS header where it points (%s)", t.Path, viewsText(views)))
	}
	p1 := parts[0]
	for _, v := range views {
		// The partition this dock's kernel finds, when it finds one.
		if v.Sector == t.logicalSector() && v.Readable() {
			p1 = disk.Partition{Number: 1, Start: v.Start, Size: v.Size}
		}
	}
	part := luks.Device{Path: t.Path, Base: p1.Start, Size: p1.Size}
	if !t.Image {
		node := "/dev/" + disk.PartitionName(t.Name, 1)
		if _, err := os.Stat(node); err != nil {
			f, err := os.Open(t.Path)
			if err != nil {
				return fail(KindRefused, err)
			}
			node, _, err = disk.SyncPartition(f, t.Name, disk.Layout{Start: p1.Start, Size: p1.Size}, PartitionTimeout)
			f.Close()
			if err != nil {
				return fail(KindNotVerified, err)
			}
		}
		part = luks.Device{Path: node, Size: p1.Size}
	}
	name := part.Path
	if part.Base != 0 {
		name = fmt.Sprintf("%s partition 1 (offset %d)", t.Path, part.Base)
	}
	return verifyPart(ctx, t, part, name, content.TableType(), p.Engine, pass, recoveryKey, views, t0, emit, fail)
}

// verifyPart is the part of Verify after the layout was read: the LUKS
// volume at part (a partition, or the whole disk with --table none) must
// open with pass (and recoveryKey, when not nil) and hold a clean ext4.
func verifyPart(ctx context.Context, t *Target, part luks.Device, name string, table disk.TableType, engine Engine, pass, recoveryKey []byte, views []disk.View, t0 time.Time, emit func(Event), fail func(Kind, error) (*Result, error)) (*Result, error) {
	secrets := [][]byte{pass}
	if recoveryKey != nil {
		secrets = append(secrets, recoveryKey)
	}
	kc := startKeyCheck(ctx, part, secrets, nil)
	defer kc.stop()
	res, _, err := verifyDevice(ctx, part, name, kc, engine, "", nil)
	if errors.Is(err, luks.ErrWrongPassphrase) {
		return fail(KindWrongPassphrase, err)
	}
	if err != nil {
		return fail(KindNotVerified, err)
	}
	res.Target, res.Table, res.Size = t.Path, table, t.Size
	fillSectors(t, res, views)
	for _, w := range []string{viewsWarning(res.SectorViews), blockWarning(res.FSBlockSize)} {
		if w != "" {
			emit(Event{Time: time.Now(), Kind: EventWarning, Step: StepVerify, Message: w})
		}
	}
	msg := fmt.Sprintf("clean; label %q; top directory owned by %s; found with %s", res.FSLabel, res.Owner, SectorViewsText(res.SectorViews))
	if recoveryKey != nil {
		// the key check proved it beside the passphrase
		res.RecoveryKey = true
		msg += "; the recovery key opens it too (luksdock's own LUKS code and cryptsetup)"
	}
	emit(Event{Time: time.Now(), Kind: EventDone, Step: StepVerify, Elapsed: time.Since(t0), Message: msg})
	emit(Event{Time: time.Now(), Kind: EventResult, Result: res, State: stateReady})
	return res, nil
}

func fillSectors(t *Target, res *Result, views []disk.View) {
	res.SectorViews = disk.ReadableIn(views)
	if res.SectorViews == nil {
		res.SectorViews = []int{}
	}
	res.LogicalSector = t.logicalSector()
	if t.Disk != nil {
		res.PhysicalSector = t.Disk.PhysicalSector
	}
}

// SectorViewsText says in words in which sector views the volume is found:
// "512- and 4096-byte sectors", "512-byte sectors only", "no sector size".
func SectorViewsText(v []int) string {
	switch len(v) {
	case 0:
		return "no sector size"
	case 1:
		return fmt.Sprintf("%d-byte sectors only", v[0])
	}
	return fmt.Sprintf("%d- and %d-byte sectors", v[0], v[1])
}

// blockWarning is the warning for an ext4 block size that a dock of
// 4096-byte sectors cannot mount.
func blockWarning(block int) string {
	if block == 0 || block >= fsformat.PortableBlockSize {
		return ""
	}
	return fmt.Sprintf("the ext4 block size is %d bytes: a dock or computer that reports 4096-byte sectors will unlock the disk but the kernel will refuse to mount the filesystem (bad block size)", block)
}

// viewsWarning is the warning for a disk found in one sector view only.
func viewsWarning(v []int) string {
	if len(v) != 1 {
		return ""
	}
	other := 4096
	if v[0] == 4096 {
		other = 512
	}
	return fmt.Sprintf("the partition is found only through docks that report %d-byte sectors; a dock or computer that reports %d-byte sectors will not show it (prepare the disk again with the default --table gpt or --table none to make it portable)", v[0], other)
}

func viewsText(vs []disk.View) string {
	var s []string
	for _, v := range vs {
		what := "nothing"
		switch {
		case v.Table == "":
		case v.Size == 0:
			what = v.Table + ", no partition 1 within the disk"
		case !v.LUKS:
			what = fmt.Sprintf("%s, partition 1 at %d holds no LUKS header", v.Table, v.Start)
		default:
			what = fmt.Sprintf("%s, LUKS at %d", v.Table, v.Start)
		}
		s = append(s, fmt.Sprintf("%d-byte sectors: %s", v.Sector, what))
	}
	return strings.Join(s, "; ")
}
