package core

import (
	"errors"
	"fmt"
	"io"
	"os"

	"luksdock/pipeline"
	"luksdock/recovery"
)

// ReadPassphrase reads the passphrase from the file at path, "-" for
// stdin: its first line (pipeline.ReadPassphrase). Passphrases are never
// taken as arguments: no path is a usage error, a file that cannot be read
// a refusal. The caller clears it.
func ReadPassphrase(path string, stdin io.Reader) ([]byte, error) {
	if path == "" {
		return nil, &UsageError{errors.New("--passphrase-file FILE (or - for standard input) is required; passphrases are never taken as arguments")}
	}
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf("passphrase file: %w", err)}
		}
		defer f.Close()
		r = f
	}
	p, err := pipeline.ReadPassphrase(r)
	if err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
	}
	return p, nil
}

// readRecoveryKey reads a recovery key file ("-": stdin) as prepare wrote
// it; one that cannot be read is a refusal (of step, "" for none).
func readRecoveryKey(path string, stdin io.Reader, step pipeline.StepID) ([]byte, error) {
	k, err := recovery.ReadFile(path, stdin)
	if err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindRefused, Step: step, Err: err}
	}
	return k, nil
}

// SecretFiles name the secret that unlocks a disk (open, passwd): a
// passphrase file or a recovery key file, exactly one ("-": stdin).
type SecretFiles struct{ Passphrase, RecoveryKey string }

// Read returns the secret and whether it is the recovery key; the caller
// clears it.
func (s SecretFiles) Read(stdin io.Reader) (secret []byte, isRecoveryKey bool, err error) {
	switch {
	case s.Passphrase != "" && s.RecoveryKey != "":
		return nil, false, &UsageError{errors.New("give --passphrase-file or --recovery-key-file, not both")}
	case s.RecoveryKey != "":
		k, err := readRecoveryKey(s.RecoveryKey, stdin, "")
		return k, true, err
	}
	p, err := ReadPassphrase(s.Passphrase, stdin)
	return p, false, err
}

// ReadPasswdSecrets reads passwd's secrets into o: the current one (old:
// o.Old, o.OldIsRecoveryKey) and the new passphrase (the file newFile:
// o.New), at most one of them from stdin. The caller clears both.
func ReadPasswdSecrets(o *PasswdOptions, old SecretFiles, newFile string, stdin io.Reader) (err error) {
	if newFile == "" {
		return &UsageError{errors.New("--new-passphrase-file FILE (or -) is required")}
	}
	if newFile == "-" && (old.Passphrase == "-" || old.RecoveryKey == "-") {
		return &UsageError{errors.New("the old and the new secret cannot both be standard input")}
	}
	if o.Old, o.OldIsRecoveryKey, err = old.Read(stdin); err != nil {
		return err
	}
	if o.New, err = ReadPassphrase(newFile, stdin); err != nil {
		clear(o.Old)
	}
	return err
}

// ReadVerifySecrets reads what verify proves: the passphrase and, when
// rkFile is given, the recovery key, at most one of them from stdin. The
// caller frees both.
func ReadVerifySecrets(passFile, rkFile string, stdin io.Reader) (pass, rk []byte, err error) {
	if rkFile == "-" && passFile == "-" {
		return nil, nil, &UsageError{errors.New("--passphrase-file and --recovery-key-file cannot both be standard input")}
	}
	if pass, err = ReadPassphrase(passFile, stdin); err != nil || rkFile == "" {
		return pass, nil, err
	}
	if rk, err = readRecoveryKey(rkFile, stdin, pipeline.StepVerify); err != nil {
		clear(pass)
		return nil, nil, err
	}
	return pass, rk, nil
}
