package core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
	"luksdock/recovery"
)

// Changing a secret never leaves the disk with fewer working ways in than
// before. Each change is three cryptsetup writes at most, each of which
// cryptsetup itself makes crash-safe (LUKS2 keeps two header copies with
// a sequence number; a keyslot's key material is written before the
// metadata that points to it):
//
//  1. luksAddKey: the new secret into a free keyslot, authorised by the
//     old one;
//  2. open --test-passphrase: the new secret opens exactly that keyslot;
//  3. luksKillSlot: the old secret's keyslot removed, authorised by the
//     new secret (so the authorising secret is one that is proven to stay).
//
// Killed before 1 completes: the old secret opens, the new does not.
// Between 1 and 3: both open. After 3: the new opens. Running the same
// command again after an interruption finishes the job: a new secret that
// already opens a keyslot is not added twice (passwd: give the same new
// passphrase; recovery-key: give the same key file, which was written
// before its keyslot was added).

// KeyChange is the result of passwd and recovery-key --replace.
type KeyChange struct {
	Target   string `json:"target"`
	LUKS     string `json:"luks"`
	LUKSUUID string `json:"luks_uuid"`
	Label    string `json:"label,omitempty"`
	// OldSlot is the keyslot removed (-1: none, nothing to replace);
	// NewSlot the keyslot of the new secret.
	OldSlot int `json:"old_keyslot"`
	NewSlot int `json:"new_keyslot"`
	// Resumed is set when the new secret already had its keyslot (an
	// interrupted run of the same command) and this run finished the
	// change.
	Resumed bool `json:"resumed,omitempty"`
	// AlreadyDone is set when an earlier run had completed the change: the
	// new secret had its keyslot and no old one was left to remove, so
	// nothing was written (only proved, and recorded if it was not).
	AlreadyDone bool `json:"already_done,omitempty"`
	// Proved says what cryptsetup confirmed at the end.
	Proved string `json:"proved"`
	// Strength is zxcvbn's verdict on a new passphrase.
	Strength *Strength `json:"strength,omitempty"`
	// RecoveryKeyFile is where recovery-key --replace wrote the new key.
	RecoveryKeyFile string `json:"recovery_key_file,omitempty"`
	// Recorded is set when the inventory's record was updated; Changed is
	// the date it now shows.
	Recorded bool      `json:"recorded"`
	Changed  time.Time `json:"changed"`
}

// Note is the line to print before the result when the run was not a
// plain change ("" when it was): what = "passphrase" or "recovery key".
func (k *KeyChange) Note(what string) string {
	switch {
	case k.AlreadyDone:
		return fmt.Sprintf("note: the new %s already opens keyslot %d and no old one is left: the change was already complete, nothing was written", what, k.NewSlot)
	case k.Resumed:
		return fmt.Sprintf("note: the new %s already had keyslot %d (an interrupted run): finished the change", what, k.NewSlot)
	}
	return ""
}

// PasswdOptions are what luksdock passwd takes.
type PasswdOptions struct {
	Selector
	// Old opens the disk now: the current passphrase, or (OldIsRecoveryKey)
	// the recovery key, when the passphrase is lost.
	Old              []byte
	OldIsRecoveryKey bool
	New              []byte
	// AcceptWeak lets a passphrase zxcvbn scores below WeakScore through.
	AcceptWeak bool
	// OldSlot names the keyslot of the passphrase to replace when it
	// cannot be told otherwise (recovery key given, several other
	// keyslots); nil: found.
	OldSlot *int
	PBKDF   luks.PBKDF
}

// Passwd replaces the disk's passphrase with o.New (see the order above).
func Passwd(ctx context.Context, o PasswdOptions) (*KeyChange, error) {
	if err := pipeline.ValidatePassphrase(o.New); err != nil {
		return nil, refused("the new passphrase: %v", err)
	}
	d, err := Find(o.Selector)
	if err != nil {
		return nil, err
	}
	st := AssessPassphrase(o.New, StrengthInputs(d.Info.Label, d.Name))
	if st.Weak() && !o.AcceptWeak {
		return nil, refused("the new passphrase is %s; choose a stronger one (a few random words), or give --accept-weak", st.Summary())
	}
	rec := inventoryRecord(d.Info.UUID)
	dev, release, err := d.blockDevice()
	if err != nil {
		return nil, err
	}
	defer release()
	authSlot, err := luks.TestPassphraseSlot(ctx, dev, o.Old)
	if err != nil {
		if o.OldIsRecoveryKey {
			return nil, secretError(err, d, "the recovery key")
		}
		return nil, secretError(err, d, "the old passphrase")
	}
	res := &KeyChange{Target: d.Path, LUKS: d.What(), LUKSUUID: d.Info.UUID, Label: d.Info.Label, OldSlot: -1, Strength: &st}
	newSlot, resumed, err := existingSlot(ctx, dev, o.New)
	if err != nil {
		return nil, err
	}
	if resumed && newSlot == authSlot {
		return nil, refused("the new passphrase is the one the disk has now (keyslot %d): nothing to change", authSlot)
	}
	res.Resumed = resumed
	oldSlot := authSlot
	if o.OldIsRecoveryKey {
		known := 0
		if rec != nil && rec.PassphraseSlot != nil {
			known = *rec.PassphraseSlot
		}
		oldSlot, err = otherSlot(dev, "passphrase", known, o.OldSlot, authSlot, newSlot)
		if resumed && errors.Is(err, errNoOtherSlot) {
			// the new passphrase has its keyslot, the old one is gone
			oldSlot, err = -1, nil
			res.Resumed, res.AlreadyDone = false, true
		}
		if err != nil {
			return nil, err
		}
	}
	if newSlot, err = replaceKey(ctx, dev, o.Old, o.New, oldSlot, newSlot, o.PBKDF); err != nil {
		return nil, stepErr(err, d)
	}
	res.OldSlot, res.NewSlot = oldSlot, newSlot
	if res.Proved, err = provePasswd(ctx, dev, o, authSlot, oldSlot, newSlot); err != nil {
		return nil, stepErr(err, d)
	}
	res.Changed = time.Now().UTC().Truncate(time.Second)
	if res.AlreadyDone && rec != nil && rec.PassphraseSlot != nil && *rec.PassphraseSlot == newSlot && !rec.PassphraseChanged.IsZero() {
		res.Changed = rec.PassphraseChanged // recorded by the run that made the change
	}
	res.Recorded = updateInventory(d.Info.UUID, func(r *inventory.Record) {
		r.PassphraseChanged = res.Changed
		r.PassphraseSlot = &newSlot
	})
	// The disk says so too, for the machine at the other site.
	_ = NotePassphraseChanged(ctx, d.LUKS, res.Changed)
	return res, nil
}

// provePasswd proves a passphrase change with cryptsetup: the new
// passphrase opens its keyslot; the old one opens nothing (a recovery key
// given as the old secret still opens its own keyslot, which stays). It
// says what it proved.
func provePasswd(ctx context.Context, dev string, o PasswdOptions, authSlot, oldSlot, newSlot int) (string, error) {
	if s, err := luks.TestPassphraseSlot(ctx, dev, o.New); err != nil || s != newSlot {
		return "", fmt.Errorf("after the change the new passphrase does not open keyslot %d (%v)", newSlot, err)
	}
	s, err := luks.TestPassphraseSlot(ctx, dev, o.Old)
	switch {
	case o.OldIsRecoveryKey && (err != nil || s != authSlot):
		return "", fmt.Errorf("after the change the recovery key no longer opens keyslot %d (%v)", authSlot, err)
	case !o.OldIsRecoveryKey && !errors.Is(err, luks.ErrWrongPassphrase):
		return "", fmt.Errorf("after the change the old passphrase still opens keyslot %d (%v)", s, err)
	}
	proved := fmt.Sprintf("cryptsetup: the new passphrase opens keyslot %d", newSlot)
	if oldSlot >= 0 {
		proved += fmt.Sprintf("; keyslot %d (the old passphrase) is gone", oldSlot)
	}
	if o.OldIsRecoveryKey {
		return proved + fmt.Sprintf("; the recovery key still opens keyslot %d", authSlot), nil
	}
	return proved + "; the old passphrase opens nothing", nil
}

// RecoveryKeyOptions are what luksdock recovery-key --replace takes.
type RecoveryKeyOptions struct {
	Selector
	Passphrase []byte
	// File is the new 0600 file the new key is written to (never
	// overwritten; not on the disk itself). If it exists and holds a key
	// that already opens a keyslot of this disk (an interrupted run), the
	// replacement is finished with it.
	File string
	// OldSlot names the old recovery key's keyslot when it cannot be told
	// otherwise; nil: found.
	OldSlot *int
	PBKDF   luks.PBKDF
	// Stdin is read when File is "-"; unused otherwise.
	Stdin io.Reader
}

// ReplaceRecoveryKey generates a new recovery key, writes it once to a new
// file, adds it as a keyslot (authorised by the passphrase), proves it
// opens, and removes the old recovery key's keyslot.
func ReplaceRecoveryKey(ctx context.Context, o RecoveryKeyOptions) (*KeyChange, error) {
	var key []byte
	defer func() { clear(key) }()
	return replaceRecoveryKey(ctx, o, func(d *LUKSDisk, dev string, passSlot int, res *KeyChange) ([]byte, int, error) {
		newSlot := -1
		if _, err := os.Lstat(o.File); err == nil {
			// An interrupted run wrote it: finish with it, or refuse.
			if key, err = recovery.ReadFile(o.File, nil); err != nil {
				return nil, -1, refused("%s already exists and holds no recovery key; refusing to overwrite it", o.File)
			}
			s, ok, err := existingSlot(ctx, dev, key)
			if err != nil {
				return nil, -1, err
			}
			switch {
			case ok && s == passSlot:
				return nil, -1, refused("the key in %s is the passphrase's keyslot %d", o.File, s)
			case ok:
				newSlot = s
			case !writtenFor(o.File, d.Info.UUID):
				return nil, -1, refused("%s already exists (its key opens no keyslot of this disk); refusing to overwrite it", o.File)
			}
			// Written for this disk by a run killed before its keyslot was
			// added (newSlot -1: add it now), or after (finish from there).
			res.Resumed = true
			res.RecoveryKeyFile = o.File
			return key, newSlot, nil
		}
		abs, err := pipeline.CheckOutputPath(d.Path, "recovery key file", o.File)
		if err != nil {
			return nil, -1, refused("%v", err)
		}
		if key, err = recovery.Generate(); err != nil {
			return nil, -1, err
		}
		about := fmt.Sprintf("disk %s, LUKS UUID %s, made %s", d.Info.Label, d.Info.UUID, time.Now().UTC().Format("2006-01-02"))
		if err := recovery.WriteFile(abs, key, about); err != nil {
			return nil, -1, refused("%v", err)
		}
		res.RecoveryKeyFile = abs
		return key, newSlot, nil
	})
}

// newRecoveryKey gives replaceRecoveryKey the new key once the passphrase
// is known to open passSlot of d (dev is its block device): the key, and
// the keyslot it already opens (-1: none, it is added). It notes in res
// what it did (Resumed, RecoveryKeyFile). The caller owns the key.
type newRecoveryKey func(d *LUKSDisk, dev string, passSlot int, res *KeyChange) (key []byte, newSlot int, err error)

// replaceRecoveryKey is what ReplaceRecoveryKey and ReplaceRecoveryKeyWith
// share: the passphrase is proved to open a keyslot, newKey gives the new
// key, and then, in this order, the new key is added (authorised by the
// passphrase), proved to open its keyslot (as the passphrase still does),
// and only then the old recovery key's keyslot is removed and the
// inventory updated.
func replaceRecoveryKey(ctx context.Context, o RecoveryKeyOptions, newKey newRecoveryKey) (*KeyChange, error) {
	d, err := Find(o.Selector)
	if err != nil {
		return nil, err
	}
	rec := inventoryRecord(d.Info.UUID)
	dev, release, err := d.blockDevice()
	if err != nil {
		return nil, err
	}
	defer release()
	passSlot, err := luks.TestPassphraseSlot(ctx, dev, o.Passphrase)
	if err != nil {
		return nil, secretError(err, d, "the passphrase")
	}
	res := &KeyChange{Target: d.Path, LUKS: d.What(), LUKSUUID: d.Info.UUID, Label: d.Info.Label, OldSlot: -1}
	key, newSlot, err := newKey(d, dev, passSlot, res)
	if err != nil {
		return nil, err
	}
	known := 1
	if rec != nil && rec.RecoveryKeySlot != nil {
		known = *rec.RecoveryKeySlot
	}
	oldSlot, err := otherSlot(dev, "recovery key", known, o.OldSlot, passSlot, newSlot)
	if errors.Is(err, errNoOtherSlot) {
		oldSlot, err = -1, nil // no recovery key yet: this adds the first
		if newSlot >= 0 {
			// the new key has its keyslot and no old one is left: an
			// earlier run completed the change
			res.Resumed, res.AlreadyDone = false, true
		}
	}
	if err != nil {
		return nil, err
	}
	if newSlot, err = replaceKey(ctx, dev, o.Passphrase, key, oldSlot, newSlot, o.PBKDF); err != nil {
		return nil, stepErr(err, d)
	}
	res.OldSlot, res.NewSlot = oldSlot, newSlot
	if s, err := luks.TestPassphraseSlot(ctx, dev, key); err != nil || s != newSlot {
		return nil, stepErr(fmt.Errorf("after the change the new recovery key does not open keyslot %d (%v)", newSlot, err), d)
	}
	if s, err := luks.TestPassphraseSlot(ctx, dev, o.Passphrase); err != nil || s != passSlot {
		return nil, stepErr(fmt.Errorf("after the change the passphrase does not open keyslot %d (%v)", passSlot, err), d)
	}
	res.Proved = fmt.Sprintf("cryptsetup: the new recovery key opens keyslot %d, the passphrase keyslot %d", newSlot, passSlot)
	if oldSlot >= 0 {
		if slots, err := activeSlots(dev); err == nil && slices.Contains(slots, oldSlot) {
			return nil, stepErr(fmt.Errorf("keyslot %d (the old recovery key) is still there", oldSlot), d)
		}
		res.Proved += fmt.Sprintf("; keyslot %d (the old recovery key) is gone", oldSlot)
	}
	res.Changed = time.Now().UTC().Truncate(time.Second)
	if res.AlreadyDone && rec != nil && rec.RecoveryKeySlot != nil && *rec.RecoveryKeySlot == newSlot && !rec.RecoveryKeyReplaced.IsZero() {
		res.Changed = rec.RecoveryKeyReplaced // recorded by the run that made the change
	}
	res.Recorded = updateInventory(d.Info.UUID, func(r *inventory.Record) {
		r.RecoveryKey = true
		r.RecoveryKeyReplaced = res.Changed
		r.RecoveryKeySlot = &newSlot
	})
	return res, nil
}

// writtenFor reports whether the recovery key file at path is one
// ReplaceRecoveryKey wrote for the disk with this LUKS UUID (its comment
// line names it).
func writtenFor(path, uuid string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	defer clear(b)
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("#")) && bytes.Contains(line, []byte("LUKS UUID "+uuid+",")) {
			return true
		}
	}
	return false
}

// replaceKey adds newKey (authorised by auth) unless it already has a
// keyslot (have >= 0), proves it opens that keyslot, and removes oldSlot
// (if >= 0) authorised by newKey. It returns the new keyslot.
func replaceKey(ctx context.Context, dev string, auth, newKey []byte, oldSlot, have int, pbkdf luks.PBKDF) (int, error) {
	slot := have
	if slot < 0 {
		var err error
		if slot, err = freeSlot(dev); err != nil {
			return -1, err
		}
		if err := luks.AddKeySlot(ctx, dev, auth, newKey, slot, pbkdf); err != nil {
			return -1, fmt.Errorf("adding the new key: %w", err)
		}
	}
	if s, err := luks.TestPassphraseSlot(ctx, dev, newKey); err != nil || s != slot {
		return -1, fmt.Errorf("the new key does not open keyslot %d after it was added (%v); the old one still opens the disk", slot, err)
	}
	if oldSlot >= 0 && oldSlot != slot {
		if err := luks.KillSlot(ctx, dev, oldSlot, newKey); err != nil {
			return -1, fmt.Errorf("removing keyslot %d: %w; both the old and the new secret open the disk", oldSlot, err)
		}
	}
	return slot, nil
}

// existingSlot reports the keyslot secret opens, if any.
func existingSlot(ctx context.Context, dev string, secret []byte) (int, bool, error) {
	s, err := luks.TestPassphraseSlot(ctx, dev, secret)
	if errors.Is(err, luks.ErrWrongPassphrase) {
		return -1, false, nil
	}
	if err != nil {
		return -1, false, err
	}
	return s, true, nil
}

var errNoOtherSlot = errors.New("no other keyslot")

// otherSlot finds the keyslot of a secret not given (what): given (a
// flag), else known (the inventory's, or where prepare puts it) if it is
// active and not one of exclude, else the one active keyslot left once
// exclude is taken away. More than one left: refused, naming them.
func otherSlot(dev, what string, known int, given *int, exclude ...int) (int, error) {
	slots, err := activeSlots(dev)
	if err != nil {
		return -1, err
	}
	var left []int
	for _, s := range slots {
		if !slices.Contains(exclude, s) {
			left = append(left, s)
		}
	}
	if given != nil {
		if !slices.Contains(left, *given) {
			return -1, refused("--old-slot %d: not an active keyslot other than those in use here (candidates: %v)", *given, left)
		}
		return *given, nil
	}
	if slices.Contains(left, known) {
		return known, nil
	}
	switch len(left) {
	case 0:
		return -1, errNoOtherSlot
	case 1:
		return left[0], nil
	}
	return -1, refused("cannot tell which keyslot holds the %s: keyslots %v; name it with --old-slot N (cryptsetup luksDump shows them)", what, left)
}

// activeSlots lists the active keyslots of the LUKS device dev.
func activeSlots(dev string) ([]int, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := luks.ReadHeader(f)
	if err != nil {
		return nil, err
	}
	return info.Keyslots, nil
}

// freeSlot is the lowest keyslot number not in use.
func freeSlot(dev string) (int, error) {
	f, err := os.Open(dev)
	if err != nil {
		return -1, err
	}
	defer f.Close()
	info, err := luks.ReadHeader(f)
	if err != nil {
		return -1, err
	}
	n := 32
	if info.Version == 1 {
		n = 8
	}
	for s := 0; s < n; s++ {
		if !slices.Contains(info.Keyslots, s) {
			return s, nil
		}
	}
	return -1, fmt.Errorf("all %d keyslots are in use", n)
}

func stepErr(err error, d *LUKSDisk) error {
	return &pipeline.Error{Kind: pipeline.KindStep, Err: fmt.Errorf("%s: %w", d.What(), err)}
}

// inventoryRecord is the inventory's record of the disk (nil if none).
func inventoryRecord(uuid string) *inventory.Record {
	f, err := inventory.Load(inventory.Path())
	if err != nil {
		return nil
	}
	return f.Find(uuid)
}

// updateInventory applies fn to the disk's record; it reports whether
// there was one to update.
func updateInventory(uuid string, fn func(*inventory.Record)) bool {
	if inventoryRecord(uuid) == nil {
		return false // no inventory, or not in it: nothing is created
	}
	found := false
	err := inventory.Update(inventory.Path(), func(f *inventory.File) error {
		if r := f.Find(uuid); r != nil {
			fn(r)
			found = true
		}
		return nil
	})
	return err == nil && found
}
