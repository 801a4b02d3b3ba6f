package main

// Helpers the lifecycle commands (open, close, passwd, recovery-key,
// retire) share: the disk selector flags, the secret flags and the JSON
// result line.

import (
	"errors"
	"io"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
	"luksdock/pipeline"
	"luksdock/recovery"
)

// addSelector declares --device, --image and (withLabel) --label.
func addSelector(cmd *cobra.Command, s *core.Selector, withLabel bool) {
	f := cmd.Flags()
	f.StringVar(&s.Device, "device", "", "the whole disk, e.g. /dev/sdi")
	f.StringVar(&s.Image, "image", "", "an image file luksdock prepared")
	if withLabel {
		f.StringVar(&s.Label, "label", "", "the attached disk whose LUKS volume has this label (e.g. backups01)")
	}
}

// secretFlags are --passphrase-file and --recovery-key-file: exactly one
// names the secret that unlocks the disk.
type secretFlags struct{ pass, rk string }

func (sf *secretFlags) add(cmd *cobra.Command, what string) {
	f := cmd.Flags()
	f.StringVar(&sf.pass, "passphrase-file", "", what+": file holding the passphrase on one line, or - for standard input")
	f.StringVar(&sf.rk, "recovery-key-file", "", what+", instead of the passphrase: file holding the recovery key (as prepare wrote it), or - for standard input")
	_ = cmd.MarkFlagFilename("recovery-key-file")
}

// read returns the secret; the caller clears it.
func (sf *secretFlags) read(stdin io.Reader) ([]byte, error) {
	switch {
	case sf.pass != "" && sf.rk != "":
		return nil, usageError{errors.New("give --passphrase-file or --recovery-key-file, not both")}
	case sf.rk != "":
		k, err := recovery.ReadFile(sf.rk, stdin)
		if err != nil {
			return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
		}
		return k, nil
	}
	return readPassphrase(sf.pass, stdin)
}

// printResult runs a command that has one result and prints it: with
// --json the result as one JSON line (a failure as a "failed" event, as
// prepare prints it), else, when it succeeded, text.
func printResult[T any](cmd *cobra.Command, asJSON bool, step pipeline.StepID, run func(*cobra.Command) (*T, error), text func(io.Writer, io.Writer, *T)) error {
	res, err := run(cmd)
	if asJSON {
		report.JSONResult(cmd.OutOrStdout(), step, res, err)
	} else if err == nil {
		text(cmd.OutOrStdout(), cmd.ErrOrStderr(), res)
	}
	return err
}
