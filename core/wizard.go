package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/recovery"
)

// What the wizard needs besides the commands' own functions: it checks a
// secret before it shows a new recovery key (so no one writes down a key
// that is then refused), and it shows the new recovery key on the screen
// and has it typed back, as prepare does, instead of writing it to a file.

// CheckSecret reports whether secret (a passphrase, or with recoveryKey a
// recovery key in its printed form) opens a keyslot of the selected disk:
// nil if it does, a pipeline.KindWrongPassphrase error naming what was
// tried if it opens none. Nothing is written.
func CheckSecret(sel Selector, secret []byte, recoveryKey bool) error {
	d, err := Find(sel)
	if err != nil {
		return err
	}
	if _, err := luks.Unseal(d.LUKS, secret); err != nil {
		return secretError(err, d, secretName(recoveryKey))
	}
	return nil
}

// ReplaceRecoveryKeyWith is ReplaceRecoveryKey with the new key given (in
// its printed form, recovery.Generate's) instead of written to o.File,
// which must be "": the wizard has shown the key and had it typed back
// before it calls this. The same order holds: the new key is added
// (authorised by o.Passphrase), proved to open its keyslot, and only then
// the old recovery key's keyslot is removed. Run again with the same key
// after an interruption, it finishes the change.
func ReplaceRecoveryKeyWith(ctx context.Context, o RecoveryKeyOptions, key []byte) (*KeyChange, error) {
	if o.File != "" {
		return nil, &UsageError{errors.New("ReplaceRecoveryKeyWith takes the key, not a file")}
	}
	if !recovery.Valid(key) {
		return nil, &UsageError{errors.New("the new recovery key is not in its printed form")}
	}
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
		return nil, secretError(err, d, secretName(false))
	}
	res := &KeyChange{Target: d.Path, LUKS: d.What(), LUKSUUID: d.Info.UUID, Label: d.Info.Label, OldSlot: -1}
	newSlot, resumed, err := existingSlot(ctx, dev, key)
	if err != nil {
		return nil, err
	}
	if resumed && newSlot == passSlot {
		return nil, refused("the new recovery key is the passphrase's keyslot %d", newSlot)
	}
	res.Resumed = resumed
	known := 1
	if rec != nil && rec.RecoveryKeySlot != nil {
		known = *rec.RecoveryKeySlot
	}
	oldSlot, err := otherSlot(dev, "recovery key", known, o.OldSlot, passSlot, newSlot)
	if errors.Is(err, errNoOtherSlot) {
		oldSlot, err = -1, nil // no recovery key yet: this adds the first
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
	res.Recorded = updateInventory(d.Info.UUID, func(r *inventory.Record) {
		r.RecoveryKey = true
		r.RecoveryKeyReplaced = res.Changed
		r.RecoveryKeySlot = &newSlot
	})
	return res, nil
}
