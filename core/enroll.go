package core

import (
	"context"
	"errors"

	"luksdock/luks"
	"luksdock/pipeline"
)

// EnrollHost is `luksdock host enroll`: EnrollMethod with the method its
// flags chose (keyFile, tpm2: at most one; neither: "auto"), its failures
// in the pipeline's kinds: a TPM2 asked for where there is none is a
// refusal (exit 3), a passphrase that opens no keyslot a wrong passphrase
// (exit 6).
func EnrollHost(ctx context.Context, d luks.Device, passphrase []byte, keyFile, tpm2 bool) (luks.HostSlot, error) {
	method := "auto"
	switch {
	case keyFile && tpm2:
		return luks.HostSlot{}, &UsageError{errors.New("give --key-file or --tpm2, not both")}
	case keyFile:
		method = MethodKeyFile
	case tpm2:
		method = MethodTPM2
	}
	h, err := EnrollMethod(ctx, d, passphrase, method)
	switch {
	case errors.Is(err, ErrNoTPM2):
		return h, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
	case IsWrongPassphrase(err):
		return h, &pipeline.Error{Kind: pipeline.KindWrongPassphrase, Err: err}
	}
	return h, err
}

// IsWrongPassphrase says whether err is a passphrase that opens no
// keyslot: luksdock's own LUKS code's, or cryptsetup's exit status 2 (no
// key available with this passphrase).
func IsWrongPassphrase(err error) bool {
	var ce *luks.Error
	return errors.Is(err, luks.ErrWrongPassphrase) || errors.As(err, &ce) && ce.Code == 2
}

// ForgetDisk is `luksdock host forget`: Forget for the disk named by its
// LUKS uuid (it need not be docked) or found by sel (docked: its keyslot
// goes now), exactly one. It returns the disk's UUID and what was done.
func ForgetDisk(ctx context.Context, sel Selector, uuid string) (string, string, error) {
	var dev *luks.Device
	if sel != (Selector{}) {
		if uuid != "" {
			return "", "", &UsageError{errors.New("give --uuid, or the disk with --device/--image/--label, not both")}
		}
		d, err := FindLUKS(sel)
		if err != nil {
			return "", "", err
		}
		dev, uuid = &d.LUKS, d.Info.UUID
	} else if uuid == "" {
		return "", "", &UsageError{errors.New("give --uuid LUKS-UUID (see `luksdock host status`), or the docked disk with --device/--image/--label")}
	}
	done, err := Forget(ctx, uuid, dev)
	return uuid, done, err
}
