package luks

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
)

// The cryptsetup calls of the lifecycle commands (open, close, passwd,
// recovery-key, retire). As everywhere in this package, secrets go over
// pipes: the unlocking secret on standard input (--key-file=-), a new one
// on file descriptor 3.

// cryptsetupWrongKey is cryptsetup's exit code for "No key available with
// this passphrase" (cryptsetup(8), RETURN CODES: 2 = permission denied).
const cryptsetupWrongKey = 2

// wrongKey turns cryptsetup's "no key available" into ErrWrongPassphrase.
func wrongKey(err error) error {
	var ce *Error
	if errors.As(err, &ce) && ce.Code == cryptsetupWrongKey {
		return fmt.Errorf("%w (%s)", ErrWrongPassphrase, ce.Error())
	}
	return err
}

// Open activates dev as /dev/mapper/name with passphrase, for as long as
// someone wants it (no guard, no deferred removal): what `cryptsetup open`
// does by hand and what the desktop does on unlock. A secret that opens no
// keyslot gives ErrWrongPassphrase.
func Open(ctx context.Context, dev, name string, passphrase []byte) error {
	if err := refuseHostile(dev); err != nil {
		return err
	}
	_, err := run(ctx, []string{"open", "--type", "luks", "--key-file=-", dev, name}, passphrase, nil)
	return wrongKey(err)
}

var slotUnlocked = regexp.MustCompile(`Key slot (\d+) unlocked`)

// TestPassphraseSlot asks cryptsetup which keyslot of dev the secret opens
// (open --test-passphrase --verbose: no mapping is made). A secret that
// opens none gives ErrWrongPassphrase.
func TestPassphraseSlot(ctx context.Context, dev string, secret []byte) (int, error) {
	if err := refuseHostile(dev); err != nil {
		return -1, err
	}
	out, err := run(ctx, []string{"open", "--test-passphrase", "--verbose", "--key-file=-", dev}, secret, nil)
	if err != nil {
		return -1, wrongKey(err)
	}
	m := slotUnlocked.FindSubmatch(out)
	if m == nil {
		return -1, fmt.Errorf("cryptsetup open --test-passphrase did not say which keyslot opened (%q)", out)
	}
	return strconv.Atoi(string(m[1]))
}

// AddKeySlot is AddKey into the keyslot slot (cryptsetup luksAddKey
// --new-key-slot), so that the caller knows where the new key is.
func AddKeySlot(ctx context.Context, dev string, passphrase, newKey []byte, slot int, pbkdf PBKDF) error {
	if len(newKey) == 0 {
		return errors.New("the new key is empty")
	}
	if err := refuseHostile(dev); err != nil {
		return err
	}
	a := []string{"luksAddKey", "--batch-mode", "--key-file=-", "--new-key-slot", strconv.Itoa(slot)}
	a = append(a, pbkdf.Args()...)
	_, err := run(ctx, append(a, dev, "/proc/self/fd/3"), passphrase, newKey)
	return wrongKey(err)
}

// KillSlot removes keyslot slot of dev (cryptsetup luksKillSlot),
// authorised by secret, which must open another keyslot: cryptsetup tries
// the secret on every keyslot but slot (verify_keyslot), so the disk
// always keeps a way in that was just proven.
func KillSlot(ctx context.Context, dev string, slot int, secret []byte) error {
	if err := refuseHostile(dev); err != nil {
		return err
	}
	_, err := run(ctx, []string{"luksKillSlot", "--batch-mode", "--key-file=-", dev, strconv.Itoa(slot)}, secret, nil)
	return wrongKey(err)
}

// Erase wipes every keyslot of dev (cryptsetup luksErase): the volume key
// is gone, so the data can never be decrypted again, with any passphrase,
// except through a header backup made before.
func Erase(ctx context.Context, dev string) error {
	_, err := run(ctx, []string{"luksErase", "--batch-mode", dev}, nil, nil)
	return err
}
