package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"luksdock/disk"
	"luksdock/fsformat"
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
// also returns the key check's summary.
func verifyDevice(ctx context.Context, part luks.Device, partName string, kc *keyCheck, engine Engine, wantLabel string) (*Result, string, error) {
	info, key, summary, err := kc.wait(part)
	defer clear(key)
	if err != nil {
		return nil, "", err
	}
	var vol string
	var closeVol func() error
	if engine == EngineKernel {
		dev := part.Path
		var loop *disk.Loop
		if part.Base != 0 {
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
	clear(key)
	chk, ferr := fsformat.Fsck(ctx, vol)
	sb, lerr := fsformat.ReadSuper(ctx, vol)
	label := sb.Label
	cerr := closeVol()
	res := &Result{Partition: partName, Engine: engine, LUKS: info, FSLabel: label, FsckClean: chk.Clean, Fsck: chk.Output, Version: version.String()}
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
	f, err := os.Open(t.Path)
	if err != nil {
		return fail(KindRefused, err)
	}
	content, parts, _ := disk.ProbeSectors(f, t.Size, t.logicalSector())
	f.Close()
	if content.TableType() == "" || len(parts) == 0 {
		// A protective MBR without a GPT (PMBR) lists at most the MBR
		// partitions of a hybrid, which the kernel ignores: no table.
		return fail(KindNotVerified, fmt.Errorf("%s has no partition table (%s)", t.Path, content))
	}
	if content.KernelIgnoresTable {
		// Readable from its backup, but Linux would create no partition
		// node when the disk is docked: it would not unlock there.
		return fail(KindNotVerified, fmt.Errorf("%s: the kernel will not read this partition table (%s), so the disk would not unlock when docked; prepare it again", t.Path, content))
	}
	p1 := parts[0]
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
	secrets := [][]byte{pass}
	if recoveryKey != nil {
		secrets = append(secrets, recoveryKey)
	}
	kc := startKeyCheck(ctx, part, secrets, nil)
	defer kc.stop()
	res, _, err := verifyDevice(ctx, part, name, kc, p.Engine, "")
	if errors.Is(err, luks.ErrWrongPassphrase) {
		return fail(KindWrongPassphrase, err)
	}
	if err != nil {
		return fail(KindNotVerified, err)
	}
	res.Target, res.Table, res.Size = t.Path, content.TableType(), t.Size
	msg := fmt.Sprintf("clean; label %q", res.FSLabel)
	if recoveryKey != nil {
		// the key check proved it beside the passphrase
		res.RecoveryKey = true
		msg += "; the recovery key opens it too (luksdock's own LUKS code and cryptsetup)"
	}
	emit(Event{Time: time.Now(), Kind: EventDone, Step: StepVerify, Elapsed: time.Since(t0), Message: msg})
	emit(Event{Time: time.Now(), Kind: EventResult, Result: res, State: stateReady})
	return res, nil
}
