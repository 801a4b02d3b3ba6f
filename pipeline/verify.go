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

// verifyDevice proves that a LUKS device is a finished backup disk:
// luks.go (independent of cryptsetup) unseals a keyslot with passphrase;
// cryptsetup unlocks it too (kernel engine: a read-only dm-crypt mapping;
// userspace engine: it recovers the volume key for the in-process data path);
// e2fsck -fn is clean on the decrypted volume and its label is the expected
// one (and the LUKS2 label's, when set).
func verifyDevice(ctx context.Context, part luks.Device, partName string, pass []byte, engine, wantLabel string) (*Result, error) {
	info, err := luks.Unseal(part, pass)
	if err != nil {
		if errors.Is(err, luks.ErrWrongPassphrase) {
			return nil, fmt.Errorf("%w (checked with luks.go)", err)
		}
		if errors.Is(err, luks.ErrNotLUKS) {
			return nil, fmt.Errorf("%s holds no LUKS header", partName)
		}
		return nil, err
	}
	var vol string
	var closeVol func() error
	if engine == "kernel" {
		dev := part.Path
		var loop *disk.Loop
		if part.Base != 0 {
			if loop, err = disk.AttachLoop(part.Path, part.Base, part.Size); err != nil {
				return nil, err
			}
			dev = loop.Path
		}
		name := fmt.Sprintf("luksdock-verify-%d", os.Getpid())
		if err := luks.OpenReadOnly(ctx, dev, name, pass); err != nil {
			loop.Close()
			return nil, fmt.Errorf("cryptsetup could not unlock it: %w", err)
		}
		m, err := luks.HoldMapping(ctx, name)
		vol = m.Path
		closeVol = func() error { err := m.Close(context.Background()); loop.Close(); return err }
		if err != nil {
			closeVol()
			return nil, err
		}
	} else {
		key, err := luks.DumpVolumeKeyDevice(ctx, part, pass)
		if err != nil {
			return nil, fmt.Errorf("cryptsetup could not unlock it: %w", err)
		}
		v, err := luks.MountUserspace(part.Path, part.Base, part.Size, info.Segment(), key)
		clear(key)
		if err != nil {
			return nil, err
		}
		vol, closeVol = v.Path(), v.Close
	}
	chk, ferr := fsformat.Fsck(ctx, vol)
	sb, lerr := fsformat.ReadSuper(ctx, vol)
	label := sb.Label
	cerr := closeVol()
	res := &Result{Partition: partName, Engine: engine, LUKS: info, FSLabel: label, FsckClean: chk.Clean, Fsck: chk.Output, Version: version.String()}
	switch {
	case ferr != nil:
		return nil, fmt.Errorf("e2fsck could not run: %w", ferr)
	case lerr != nil:
		return nil, fmt.Errorf("no ext4 filesystem inside the LUKS volume: %w", lerr)
	case !chk.Clean:
		return nil, fmt.Errorf("e2fsck -fn is not clean: %v", chk.Output)
	case label == "":
		return nil, errors.New("the ext4 filesystem has no label")
	case wantLabel != "" && label != wantLabel:
		return nil, fmt.Errorf("the ext4 label is %q, expected %q", label, wantLabel)
	case sb.BlockSize < info.SectorSize:
		return nil, fmt.Errorf("the ext4 block size %d is smaller than the LUKS sector size %d: a kernel would refuse to mount it", sb.BlockSize, info.SectorSize)
	case info.Label != "" && info.Label != label:
		return nil, fmt.Errorf("the LUKS2 label %q differs from the ext4 label %q", info.Label, label)
	case cerr != nil:
		return nil, fmt.Errorf("closing the verified volume: %w", cerr)
	}
	return res, nil
}

// Verify checks a prepared disk or image with passphrase, without writing:
// partition 1 must hold LUKS with a keyslot the passphrase opens and a clean
// ext4 filesystem. engine is "auto", "kernel" or "userspace". Events are
// emitted as for a run (one verify step).
func Verify(ctx context.Context, t *Target, pass []byte, engine string, emit func(Event)) (*Result, error) {
	if emit == nil {
		emit = func(Event) {}
	}
	fail := func(code int, err error) (*Result, error) {
		emit(Event{Time: time.Now(), Kind: EventFailed, Step: StepVerify, Message: err.Error()})
		return nil, &Error{Code: code, Step: StepVerify, Err: err}
	}
	if t.Create {
		return fail(ExitRefused, fmt.Errorf("%s does not exist", t.Path))
	}
	if err := ValidatePassphrase(pass); err != nil {
		return fail(ExitRefused, err)
	}
	if err := Tools(); err != nil {
		return fail(ExitRefused, err)
	}
	p := &Plan{Target: t, Opts: Options{Engine: engine}}
	if engine == "" {
		p.Opts.Engine = "auto"
	}
	if err := p.chooseEngine(); err != nil {
		return fail(ExitRefused, errors.Unwrap(err))
	}
	for _, n := range t.Notes {
		emit(Event{Time: time.Now(), Kind: EventInfo, Message: n})
	}
	emit(Event{Time: time.Now(), Kind: EventStart, Step: StepVerify, Engine: p.Engine, Message: "Verify it unlocks and fscks clean"})
	t0 := time.Now()
	f, err := os.Open(t.Path)
	if err != nil {
		return fail(ExitRefused, err)
	}
	content, parts, _ := disk.ProbeSectors(f, t.Size, t.logicalSector())
	f.Close()
	if (content.Table != "gpt" && content.Table != "dos") || len(parts) == 0 {
		// A protective MBR without a GPT (PMBR) lists at most the MBR
		// partitions of a hybrid, which the kernel ignores: no table.
		return fail(ExitVerifyFail, fmt.Errorf("%s has no partition table (%s)", t.Path, content))
	}
	if content.KernelIgnoresTable {
		// Readable from its backup, but Linux would create no partition
		// node when the disk is docked: it would not unlock there.
		return fail(ExitVerifyFail, fmt.Errorf("%s: the kernel will not read this partition table (%s), so the disk would not unlock when docked; prepare it again", t.Path, content))
	}
	p1 := parts[0]
	part := luks.Device{Path: t.Path, Base: p1.Start, Size: p1.Size}
	if !t.Image {
		node := "/dev/" + disk.PartitionName(t.Name, 1)
		if _, err := os.Stat(node); err != nil {
			f, err := os.Open(t.Path)
			if err != nil {
				return fail(ExitRefused, err)
			}
			node, _, err = disk.SyncPartition(f, t.Name, disk.Layout{Start: p1.Start, Size: p1.Size}, PartitionTimeout)
			f.Close()
			if err != nil {
				return fail(ExitVerifyFail, err)
			}
		}
		part = luks.Device{Path: node, Size: p1.Size}
	}
	name := part.Path
	if part.Base != 0 {
		name = fmt.Sprintf("%s partition 1 (offset %d)", t.Path, part.Base)
	}
	res, err := verifyDevice(ctx, part, name, pass, p.Engine, "")
	if err != nil {
		return fail(ExitVerifyFail, err)
	}
	res.Target, res.Table, res.Size = t.Path, content.Table, t.Size
	emit(Event{Time: time.Now(), Kind: EventDone, Step: StepVerify, Elapsed: time.Since(t0), Message: fmt.Sprintf("clean; label %q", res.FSLabel)})
	emit(Event{Time: time.Now(), Kind: EventResult, Result: res, State: stateReady})
	return res, nil
}
