package core

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// RetireOptions are what luksdock retire takes.
type RetireOptions struct {
	Selector // Device or Image (a disk to be destroyed is named, not found by label)
	// Confirm must name the disk: its kernel name (sdi), internal:NAME for
	// a disk not on USB, or the image's file name.
	Confirm string
	// Erase overwrites the whole disk with zeros after the crypto-erase.
	Erase bool
	// Progress, if set, is called during the overwrite with bytes done
	// and the total.
	Progress func(done, total int64)
}

// Retired is what luksdock retire did and proved.
type Retired struct {
	Target   string `json:"target"`
	LUKSUUID string `json:"luks_uuid"`
	Label    string `json:"label,omitempty"`
	// KeyslotsBefore were active before the erase; after it none is.
	KeyslotsBefore []int `json:"keyslots_before"`
	// Proved lists what was checked afterwards, each with the tool.
	Proved []string `json:"proved"`
	Erased bool     `json:"overwritten"`
	// HeaderBackup is the inventory's header backup of the disk (it opens
	// the data with the old passphrase as long as the data is there);
	// HeaderBackupRemoved says whether retire removed it, HeaderBackupNote
	// why not.
	HeaderBackup        string `json:"header_backup,omitempty"`
	HeaderBackupRemoved bool   `json:"header_backup_removed,omitempty"`
	HeaderBackupNote    string `json:"header_backup_note,omitempty"`
	// HostKeyRemoved is this host's key file for the disk (core.KeyFile),
	// removed: it opens nothing any more, and is a secret kept for nothing.
	HostKeyRemoved string `json:"host_key_removed,omitempty"`
	// Recorded is set when the inventory now shows the disk retired.
	Recorded bool      `json:"recorded"`
	Time     time.Time `json:"retired"`
}

// Retire crypto-erases the selected disk: cryptsetup luksErase (every
// keyslot wiped, so no passphrase, recovery key or host key opens it any
// more), then both LUKS2 header copies and the whole metadata area zeroed,
// then the partition table (the first and the last MiB of the disk); with
// Erase it then overwrites the whole disk with zeros. It proves the result
// with cryptsetup (no keyslot before the header wipe, no LUKS device
// after) and blkid (no LUKS signature on the disk or where the volume
// was), removes the inventory's header backup of the disk when it can
// reach it (else the result says so), and marks the disk retired in the
// inventory, which frees its label. Nothing is written before Confirm
// matches, and a disk's identity is checked again before each write.
func Retire(ctx context.Context, o RetireOptions) (*Retired, error) {
	if o.Label != "" {
		return nil, &UsageError{errors.New("retire takes --device or --image: name the disk to destroy, not its label")}
	}
	if err := needRoot("luksdock retire"); err != nil {
		return nil, err
	}
	d, checkID, err := retireTarget(o)
	if err != nil {
		return nil, err
	}
	res := &Retired{Target: d.Path, LUKSUUID: d.Info.UUID, Label: d.Info.Label, KeyslotsBefore: d.Info.Keyslots}
	if res.KeyslotsBefore == nil {
		res.KeyslotsBefore = []int{}
	}
	rec := inventoryRecord(d.Info.UUID)
	if rec != nil && res.Label == "" {
		res.Label = rec.Label
	}

	// 1. luksErase, through the block device cryptsetup works on.
	if err := cryptoErase(ctx, d, checkID); err != nil {
		return nil, err
	}
	res.Proved = append(res.Proved, "cryptsetup luksErase: no keyslot is left, so no passphrase, recovery key or host key opens the volume")

	// 2. The LUKS metadata (both header copies, keyslot areas) and the
	// partition table.
	if err := checkID(); err != nil {
		return nil, err
	}
	if err := wipeHeaders(d); err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindStep, State: "crypto-erased (no keyslot left); the header wipe failed: run retire again", Err: err}
	}
	// 3. Optionally, everything.
	if o.Erase {
		if err := checkID(); err != nil {
			return nil, err
		}
		if err := overwrite(ctx, d.Path, d.Size, o.Progress); err != nil {
			kind := pipeline.KindStep
			if ctx.Err() != nil {
				kind = pipeline.KindInterrupted // a stop, not a failure: exit 130
			}
			return nil, &pipeline.Error{Kind: kind, State: "crypto-erased and the headers wiped; the overwrite did not finish", Err: err}
		}
		res.Erased = true
	}
	if !d.Image {
		if f, err := os.Open(d.Path); err == nil {
			_, _ = disk.DropPartitions(f, d.Name)
			f.Close()
		}
	}
	// 4. Proof with tools no one here wrote.
	proof, err := proveGone(ctx, d)
	if err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindNotVerified, Err: err}
	}
	res.Proved = append(res.Proved, proof...)

	// 5. The header backup, which would bring the keyslots back.
	if rec != nil && rec.HeaderBackup != "" {
		res.HeaderBackup = rec.HeaderBackup
		res.HeaderBackupRemoved, res.HeaderBackupNote = removeHeaderBackup(rec.HeaderBackup, rec.HeaderBackupSHA256, res.Erased)
	}
	// 6. This host's key file for it (host enroll), which opens nothing now.
	res.HostKeyRemoved = dropHostKey(d.Info.UUID)
	res.Time = time.Now().UTC().Truncate(time.Second)
	res.Recorded = updateInventory(d.Info.UUID, func(r *inventory.Record) {
		r.Retired = res.Time
		if res.HeaderBackupRemoved {
			r.HeaderBackup, r.HeaderBackupSHA256 = "", ""
		}
	})
	return res, nil
}

// wipeHeaders zeroes the LUKS device's metadata area (both LUKS2 header
// copies and every keyslot area, up to the data segment) and the first
// and last MiB of the disk (the GPT, its backup, an MBR), then syncs.
func wipeHeaders(d *LUKSDisk) error {
	f, err := os.OpenFile(d.Path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	meta := d.Info.DataOffset
	if meta <= 0 || meta > 64<<20 {
		meta = 16 << 20
	}
	const mib = 1 << 20
	ranges := [][2]int64{{d.LUKS.Base, meta}, {0, mib}, {max(d.Size-mib, 0), min(mib, d.Size)}}
	for _, r := range ranges {
		if err := zeroRange(f, r[0], min(r[1], d.Size-r[0])); err != nil {
			return fmt.Errorf("wiping %s at %d: %w", d.Path, r[0], err)
		}
	}
	return f.Sync()
}

func zeroRange(f *os.File, off, n int64) error {
	buf := make([]byte, 1<<20)
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:c], off); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}

// overwrite writes zeros over the whole disk or image.
func overwrite(ctx context.Context, path string, size int64, progress func(done, total int64)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped at byte %d of %d: %w", off, size, ctx.Err())
		}
		c := min(size-off, int64(len(buf)))
		if _, err := f.WriteAt(buf[:c], off); err != nil {
			return fmt.Errorf("overwrite at byte %d: %w", off, err)
		}
		off += c
		if progress != nil {
			progress(off, size)
		}
	}
	return f.Sync()
}

// proveGone checks with blkid (low-level probe) that neither the disk nor
// the range where the LUKS volume was carries a LUKS signature, and with
// cryptsetup isLuks that no LUKS device is there.
func proveGone(ctx context.Context, d *LUKSDisk) ([]string, error) {
	var proved []string
	if _, err := exec.LookPath("blkid"); err == nil {
		for _, off := range uniq(0, d.LUKS.Base) {
			args := []string{"-p", "-o", "export"}
			if off > 0 {
				args = append(args, "-O", fmt.Sprint(off))
			}
			out, _ := exec.CommandContext(ctx, "blkid", append(args, d.Path)...).Output()
			if strings.Contains(string(out), "TYPE=crypto_LUKS") {
				return nil, fmt.Errorf("blkid -p still finds a LUKS signature on %s at byte %d", d.Path, off)
			}
			proved = append(proved, fmt.Sprintf("blkid -p finds no LUKS signature on %s at byte %d", d.Path, off))
		}
	}
	dev := d.Path
	release := func() {}
	if d.LUKS.Base != 0 {
		l, err := disk.AttachLoop(d.Path, d.LUKS.Base, d.Size-d.LUKS.Base)
		if err != nil {
			return proved, nil
		}
		dev, release = l.Path, func() { l.Close() }
	}
	defer release()
	if err := exec.CommandContext(ctx, "cryptsetup", "isLuks", dev).Run(); err == nil {
		return nil, fmt.Errorf("cryptsetup isLuks still finds a LUKS device at byte %d of %s", d.LUKS.Base, d.Path)
	}
	proved = append(proved, fmt.Sprintf("cryptsetup isLuks: no LUKS device at byte %d", d.LUKS.Base))
	return proved, nil
}

func uniq(a, b int64) []int64 {
	if a == b {
		return []int64{a}
	}
	return []int64{a, b}
}

// removeHeaderBackup overwrites and removes a header backup file when it
// is there and is the one the inventory recorded (same SHA-256); it says
// why not otherwise. A backup that survives opens the data with the old
// passphrase as long as the data is on the disk (not after an overwrite).
func removeHeaderBackup(path, sum string, erased bool) (bool, string) {
	danger := "it still opens this disk's data with the old passphrase or recovery key (cryptsetup luksHeaderRestore): destroy it wherever it is"
	if erased {
		danger = "the disk was overwritten, so it opens nothing any more; delete it anyway"
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Sprintf("the header backup %s could not be reached (%v): %s", path, err, danger)
	}
	defer f.Close()
	h := sha256.New()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return false, fmt.Sprintf("the header backup %s is not a regular file: %s", path, danger)
	}
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Sprintf("the header backup %s could not be read (%v): %s", path, err, danger)
	}
	if sum != "" && !strings.EqualFold(hex.EncodeToString(h.Sum(nil)), sum) {
		return false, fmt.Sprintf("%s is not the header backup the inventory recorded (its SHA-256 differs); it was left alone. If it is a newer backup of this disk, %s", path, danger)
	}
	if err := zeroRange(f, 0, st.Size()); err == nil {
		_ = f.Sync()
	}
	if err := os.Remove(path); err != nil {
		return false, fmt.Sprintf("the header backup %s was overwritten but not removed (%v)", path, err)
	}
	return true, fmt.Sprintf("the header backup %s was overwritten and removed", path)
}

// retireTarget finds the disk retire destroys and refuses it unless it is
// unused, closed and confirmed (o.Confirm its name); checkID says whether
// it is still the disk confirmed, before each write.
func retireTarget(o RetireOptions) (d *LUKSDisk, checkID func() error, err error) {
	d, err = Find(o.Selector)
	if err != nil {
		return nil, nil, err
	}
	word := d.Name
	var id disk.Identity
	sys := disk.Sys{Root: "/"}
	if !d.Image {
		if disk.Assess(*d.Disk).Internal {
			word = "internal:" + d.Name
		}
		id = d.Disk.Identity()
		if len(d.Disk.InUse) > 0 {
			var why []string
			for _, r := range d.Disk.InUse {
				why = append(why, r.String())
			}
			return nil, nil, refused("%s is in use (%s): close it first (luksdock close --device %s)", d.Path, strings.Join(why, "; "), d.Path)
		}
	}
	if r := openNow(d); r != nil {
		return nil, nil, refused("%s is open at %s: close it first (luksdock close)", d.Path, r.Mountpoint)
	}
	if o.Confirm != word {
		return nil, nil, &pipeline.Error{Kind: pipeline.KindRefused, State: "unchanged: nothing was written", Err: fmt.Errorf("%w: --confirm %q, the disk is %s (type %s)", pipeline.ErrConfirm, o.Confirm, d.Path, word)}
	}
	var imgID os.FileInfo
	if d.Image {
		imgID, _ = os.Stat(d.Path)
	}
	checkID = func() error {
		if d.Image {
			st, err := os.Stat(d.Path)
			if err != nil || !os.SameFile(st, imgID) {
				return refused("%s is not the file it was when confirmed; nothing more is written", d.Path)
			}
			return nil
		}
		now, err := sys.Identity(d.Name)
		if err == nil {
			err = id.CheckDevice(now)
		}
		if err != nil {
			return refused("%s: %v; nothing more is written", d.Path, err)
		}
		return nil
	}
	return d, checkID, nil
}

// cryptoErase wipes every keyslot (cryptsetup luksErase) and proves none
// is left.
func cryptoErase(ctx context.Context, d *LUKSDisk, checkID func() error) error {
	dev, release, err := d.blockDevice()
	if err != nil {
		return err
	}
	if err := checkID(); err != nil {
		release()
		return err
	}
	if err := luks.Erase(ctx, dev); err != nil {
		release()
		return &pipeline.Error{Kind: pipeline.KindStep, State: "unchanged or partly erased: run retire again", Err: fmt.Errorf("cryptsetup luksErase: %w", err)}
	}
	slots, err := activeSlots(dev)
	release()
	if err != nil || len(slots) > 0 {
		return &pipeline.Error{Kind: pipeline.KindNotVerified, Err: fmt.Errorf("after luksErase the header still lists keyslots %v (%v)", slots, err)}
	}
	return nil
}
