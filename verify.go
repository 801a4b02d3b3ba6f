package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
	"luksdock/internal/secret"
	"luksdock/luks"
	"luksdock/pipeline"
	"luksdock/recovery"
)

func newVerifyCmd() *cobra.Command {
	var vo verifyOptions
	cmd := &cobra.Command{
		Use:     "verify (--device DEV | --image PATH) --passphrase-file FILE|- [--recovery-key-file FILE|-]",
		Short:   "Check that a prepared disk unlocks with the passphrase and fscks clean",
		Long:    help.Text("verify") + help.ExitCodes("verify"),
		Example: verifyExample,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return vo.run(cmd) },
	}
	manpage.SetFiles(cmd, verifyFiles)
	vo.target.add(cmd, true, false)
	addPassphraseFlag(cmd, &vo.passFile)
	addEngineFlag(cmd, &vo.engine)
	cmd.Flags().StringVar(&vo.rkFile, "recovery-key-file", "", "also prove that the recovery key in this file (or - for standard input) opens the disk")
	cmd.Flags().BoolVar(&vo.asJSON, "json", false, "print JSON events, the last one the result")
	cmd.Flags().DurationVar(&vo.maxUnlock, "max-unlock-time", luks.DefaultMaxUnlockTime, "the longest one keyslot's key derivation may take: refused before it runs when this machine is estimated slower, stopped when it runs longer (the header is untrusted input)")
	return cmd
}

// verifyOptions are verify's flags.
type verifyOptions struct {
	target                   targetFlags
	passFile, engine, rkFile string
	asJSON                   bool
	maxUnlock                time.Duration
}

// run is verify: the passphrase (and recovery key) against the disk,
// through pipeline.VerifyWithRecoveryKey.
func (vo *verifyOptions) run(cmd *cobra.Command) (err error) {
	ran := false
	out := cmd.OutOrStdout()
	defer func() {
		if vo.asJSON && !ran {
			report.JSONRefusal(out, err, pipeline.StepVerify)
		}
	}()
	t, err := vo.target.target(true)
	if err != nil {
		return err
	}
	if vo.rkFile == "-" && vo.passFile == "-" {
		return usageError{errors.New("--passphrase-file and --recovery-key-file cannot both be standard input")}
	}
	pass, err := readPassphrase(vo.passFile, cmd.InOrStdin())
	if err != nil {
		return err
	}
	defer secret.Free(pass)
	var rk []byte
	if vo.rkFile != "" {
		if rk, err = recovery.ReadFile(vo.rkFile, cmd.InOrStdin()); err != nil {
			return &pipeline.Error{Kind: pipeline.KindRefused, Step: pipeline.StepVerify, Err: err}
		}
		defer secret.Free(rk)
	}
	emit := report.Events(out, vo.asJSON, 1)
	ran = true
	ctx := pipeline.WithMaxUnlockTime(context.Background(), vo.maxUnlock)
	_, err = pipeline.VerifyWithRecoveryKey(ctx, t, pass, rk, pipeline.Engine(vo.engine), emit)
	return err
}

// verifyExample is verify's EXAMPLES (in --help and the man page).
const verifyExample = `  # Check an offsite disk when it comes back (nothing is written to it):
  luksdock verify --device /dev/sdi --passphrase-file -

  # Prove the recovery key too (typed on standard input after the
  # passphrase file is read from pass.txt):
  luksdock verify --device /dev/sdi --passphrase-file pass.txt --recovery-key-file -

  # The same for an image, with the result as JSON:
  luksdock verify --image demo.img --passphrase-file pass.txt --json`

// verifyFiles are the FILES of verify's man page.
var verifyFiles = [][2]string{
	{"/dev/sdX, IMAGE", "read only: verify writes nothing to the disk or image."},
	{"/dev/mapper/luksdock-verify-*", "the kernel engine's read-only dm-crypt mapping while checking; removed when it ends."},
	{"$TMPDIR/luksdock-fuse-*", "the userspace engine's private FUSE mount directory while checking; removed when it ends."},
}
