package core

import (
	"context"
	"errors"

	"luksdock/internal/secret"
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
	return replaceRecoveryKey(ctx, o, func(_ *LUKSDisk, dev string, passSlot int, res *KeyChange) ([]byte, int, error) {
		newSlot, resumed, err := existingSlot(ctx, dev, key)
		if err != nil {
			return nil, -1, err
		}
		if resumed && newSlot == passSlot {
			return nil, -1, refused("the new recovery key is the passphrase's keyslot %d", newSlot)
		}
		res.Resumed = resumed
		return key, newSlot, nil
	})
}

// UnlockSecret is what a typed secret unlocks with, when one entry takes
// either the passphrase or the recovery key (the wizard's Open, Change
// passphrase, New recovery key and Enroll this host): the recovery key in
// its exact printed form when typed is one (in any form recovery.Parse
// takes: upper case, spaces or no dashes; isRecoveryKey), else the
// passphrase exactly as typed. The result is a copy in secret memory that
// the caller frees (secret.Free); typed is left as it is.
func UnlockSecret(typed []byte) (b []byte, isRecoveryKey bool) {
	if k, err := recovery.Parse(typed); err == nil {
		return k, true
	}
	return secret.Clone(typed), false
}
