package core

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"luksdock/disk"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// OpenOptions are what luksdock open takes.
type OpenOptions struct {
	Selector
	// Secret unlocks the disk: the passphrase, or the recovery key in its
	// printed form (recovery.ReadFile); SecretIsRecoveryKey says which, so
	// that a refusal names what was tried.
	Secret              []byte
	SecretIsRecoveryKey bool
	// Mountpoint is where to mount; "" mounts at /media/USER/LABEL for
	// User, as the desktop does.
	Mountpoint string
	User       Person
	// Engine: EngineAuto (kernel where device-mapper works, else
	// userspace), EngineKernel or EngineUserspace.
	Engine   pipeline.Engine
	ReadOnly bool
}

// Opened is an open, mounted disk: what luksdock open prints (--json: this
// object) and what luksdock close undoes.
type Opened struct {
	Target   string          `json:"target"`    // /dev/sdi, or the image
	LUKS     string          `json:"luks"`      // the LUKS device: /dev/sdi1, or "disk.img (LUKS at byte N)"
	LUKSUUID string          `json:"luks_uuid"` // names the volume
	Label    string          `json:"label"`     // the filesystem's label
	Engine   pipeline.Engine `json:"engine"`
	// Cleartext is the decrypted block device that is mounted: the
	// dm-crypt mapping (/dev/mapper/luks-UUID) or, with the userspace
	// engine, the loop device on the volume holder's FUSE file.
	Cleartext  string `json:"cleartext"`
	Mountpoint string `json:"mountpoint"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	// Holder is the pid of the process that keeps a userspace volume
	// served until luksdock close.
	Holder int `json:"holder_pid,omitempty"`
	// Already is set when the disk was open and mounted before: nothing
	// was done.
	Already bool `json:"already_open,omitempty"`
}

// MappingName is the dm-crypt mapping luksdock open makes: luks-UUID, the
// name udisks and systemd-cryptsetup give an unlocked LUKS volume, so the
// desktop shows it as an unlocked disk it can lock.
func MappingName(uuid string) string { return "luks-" + strings.ToLower(uuid) }

// Open unlocks the selected disk with o.Secret and mounts its filesystem.
// A secret that opens no keyslot fails with pipeline.KindWrongPassphrase
// and nothing done; a disk already open and mounted is reported (Already)
// and left as it is.
func Open(ctx context.Context, o OpenOptions) (*Opened, error) {
	if err := needRoot("luksdock open"); err != nil {
		return nil, err
	}
	if len(o.Secret) == 0 {
		return nil, &UsageError{errors.New("a passphrase or recovery key is required")}
	}
	d, err := Find(o.Selector)
	if err != nil {
		return nil, err
	}
	if r := openNow(d); r != nil {
		if _, err := luks.Unseal(d.LUKS, o.Secret); err != nil {
			return nil, secretError(err, d, secretName(o.SecretIsRecoveryKey))
		}
		r.Already = true
		return r, nil
	}
	engine, err := chooseEngine(o.Engine)
	if err != nil {
		return nil, err
	}
	key := unlockKey{secret: o.Secret, recoveryKey: o.SecretIsRecoveryKey}
	res := &Opened{Target: d.Path, LUKS: d.What(), LUKSUUID: d.Info.UUID, Engine: engine, ReadOnly: o.ReadOnly}
	rec := &openRecord{Time: time.Now().UTC().Truncate(time.Second)}
	if !d.Image {
		rec.Disk = d.Path
	}
	existing, mounted, err := mappingOver(d)
	if err != nil {
		return nil, err
	}
	if existing != "" {
		// Someone else unlocked it: the secret must still open it.
		if _, err := luks.Unseal(d.LUKS, o.Secret); err != nil {
			return nil, secretError(err, d, key.String())
		}
	}
	var v *volume
	switch {
	case existing != "" && mounted != "":
		// Unlocked and mounted by someone else (the desktop, by hand):
		// say where; close finds it the same way.
		res.Engine, res.Cleartext, res.Mountpoint, res.Already = pipeline.EngineKernel, "/dev/mapper/"+existing, mounted, true
		res.Label, _ = ext4Label(res.Cleartext)
		return res, nil
	case existing != "":
		// Unlocked but not mounted: mount what is there (and leave it
		// unlocked should that fail: luksdock did not unlock it).
		res.Engine = pipeline.EngineKernel
		v = &volume{engine: res.Engine, dev: "/dev/mapper/" + existing}
	default:
		if v, err = unlockVolume(ctx, d, engine, key, MappingName(d.Info.UUID)); err != nil {
			return nil, err
		}
	}
	rec.Mapping, res.Cleartext, res.Holder = v.mapping, v.dev, v.holderPID
	if existing != "" {
		rec.Mapping = existing
	}
	// fail locks again what this open unlocked (and unmounts what it mounted).
	fail := func(err error) (*Opened, error) {
		_ = v.close(context.WithoutCancel(ctx), false)
		return nil, err
	}
	label, ok := ext4Label(res.Cleartext)
	if !ok {
		return fail(&pipeline.Error{Kind: pipeline.KindNotVerified, Err: fmt.Errorf("%s unlocked, but it holds no ext4 filesystem; it was locked again", d.What())})
	}
	res.Label = label
	if res.Label == "" {
		res.Label = d.Info.Label
	}
	mnt, made, err := chooseMountpoint(o.Mountpoint, o.User, res.Label)
	if err != nil {
		return fail(err)
	}
	if err := v.mount(mnt, made, o.ReadOnly); err != nil {
		return fail(&pipeline.Error{Kind: pipeline.KindStep, Err: err})
	}
	res.Mountpoint, rec.MadeDir = mnt, made
	rec.Opened = *res
	if err := saveRecord(rec); err != nil {
		// luksdock close could never find it: unlock nothing.
		return fail(&pipeline.Error{Kind: pipeline.KindStep, Err: fmt.Errorf("the record for luksdock close could not be written, so the disk was unmounted and locked again: %w", err)})
	}
	if v.holder != nil {
		// Recorded: the holder serves until luksdock close stops it.
		if err := v.holder.commit(); err != nil {
			return res, fmt.Errorf("mounted at %s, but the volume holder did not take the commit: %w", mnt, err)
		}
	}
	// The disk's own history (backup runs at any site) joins the
	// inventory; a disk prepared elsewhere is recorded from its token.
	_ = NoteOpened(inventory.Path(), d.LUKS, res.LUKSUUID, d.Path, mnt)
	return res, nil
}

// secretError classifies an unlock failure: a wrong secret (exit 6), else
// a failed step.
func secretError(err error, d *LUKSDisk, tried string) error {
	var he *luks.HeaderError
	if errors.As(err, &he) {
		// a header no tool writes: refused before any key derivation
		return &pipeline.Error{Kind: pipeline.KindNotVerified, Err: fmt.Errorf("%s: %w", d.What(), err)}
	}
	if errors.Is(err, luks.ErrWrongPassphrase) {
		return &pipeline.Error{Kind: pipeline.KindWrongPassphrase, Err: fmt.Errorf("%s: %s opens no keyslot", d.What(), tried)}
	}
	return &pipeline.Error{Kind: pipeline.KindStep, Err: fmt.Errorf("%s: %w", d.What(), err)}
}

// secretName names the secret that was tried, for a refusal: only what
// was given, never the other.
func secretName(recoveryKey bool) string {
	if recoveryKey {
		return "the recovery key"
	}
	return "the passphrase"
}

// chooseEngine resolves EngineAuto: kernel when device-mapper works, else
// userspace when FUSE does.
func chooseEngine(e pipeline.Engine) (pipeline.Engine, error) {
	dm, why := luks.DeviceMapper()
	fuse, fwhy := luks.FUSE()
	switch e {
	case "", pipeline.EngineAuto:
		if dm {
			return pipeline.EngineKernel, nil
		}
		if fuse {
			return pipeline.EngineUserspace, nil
		}
		return "", refused("neither engine works here: %s; %s", why, fwhy)
	case pipeline.EngineKernel:
		if !dm {
			return "", refused("--engine kernel: %s", why)
		}
		return e, nil
	case pipeline.EngineUserspace:
		if !fuse {
			return "", refused("--engine userspace: %s", fwhy)
		}
		return e, nil
	}
	return "", &UsageError{fmt.Errorf("--engine %q: want auto, kernel or userspace", e)}
}

// openNow returns the disk's open record when it is open and mounted now.
func openNow(d *LUKSDisk) *Opened {
	for _, r := range records() {
		if !strings.EqualFold(r.LUKSUUID, d.Info.UUID) {
			continue
		}
		if isMountpoint(r.Mountpoint) && (r.Holder == 0 || isHolder(r.Holder)) {
			o := r.Opened
			return &o
		}
		// A stale record (a reboot without /run on tmpfs, or a killed
		// holder): forget it.
		removeRecord(r.LUKSUUID)
	}
	return nil
}

// Opens lists the disks luksdock open has open now.
func Opens() []Opened {
	var out []Opened
	for _, r := range records() {
		if isMountpoint(r.Mountpoint) {
			out = append(out, r.Opened)
		}
	}
	return out
}

// unlockUserspace starts the volume holder that serves the decrypted
// volume (the userspace engine) with the volume key secret unseals (tried
// names it) and attaches a loop device on it. On a
// failure after the start, the holder is stopped again.
func unlockUserspace(ctx context.Context, d *LUKSDisk, secret []byte, tried string) (*holder, *disk.Loop, error) {
	info, key, err := luks.UnsealKey(d.LUKS, secret)
	if err == nil && key == nil {
		// A header luksdock's own code does not read (luks.go
		// keeps the key): cryptsetup recovers it.
		key, err = luks.DumpVolumeKeyDevice(ctx, d.LUKS, secret)
	}
	if err != nil {
		clear(key)
		return nil, nil, secretError(err, d, tried)
	}
	h, err := startHolder(d.Path, d.LUKS, info.Segment(), key)
	clear(key)
	if err != nil {
		return nil, nil, &pipeline.Error{Kind: pipeline.KindStep, Err: err}
	}
	l, err := disk.AttachLoop(h.file, 0, info.DataSize)
	if err != nil {
		h.abandon()
		_ = stopHolder(h.pid, time.Minute)
		return nil, nil, &pipeline.Error{Kind: pipeline.KindStep, Err: fmt.Errorf("a loop device on the decrypted volume: %w", err)}
	}
	return h, l, nil
}
