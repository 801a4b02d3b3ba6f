package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"luksdock/internal/manpage"
	"luksdock/internal/secret"
	"luksdock/luks"
	"luksdock/pipeline"
	"luksdock/recovery"
)

func newVerifyCmd() *cobra.Command {
	var vo verifyOptions
	cmd := &cobra.Command{
		Use:   "verify (--device DEV | --image PATH) --passphrase-file FILE|- [--recovery-key-file FILE|-]",
		Short: "Check that a prepared disk unlocks with the passphrase and fscks clean",
		Long: `verify reads partition 1 of the disk or image (or, with no partition table,
LUKS on the whole disk), unseals a LUKS keyslot with the passphrase with
luksdock's own LUKS code (independent of cryptsetup; luks.go for LUKS1),
unlocks it with cryptsetup too (both must give one volume key), runs e2fsck
-fn and dumpe2fs on the decrypted ext4 and reports the owner of its top
directory (debugfs). It reports with which logical sector sizes (512, 4096)
a Linux kernel finds the volume, warns when only one, and fails (exit 5)
when neither: the partition table must be one Linux reads when the disk
is docked (not a GPT readable only from its backup header, nor one without
a protective MBR). It writes nothing to the disk; an unused luksdock-* dm-crypt mapping a killed
luksdock left on it is closed first, and reported.

With --recovery-key-file it also proves that the recovery key in FILE ('-':
standard input) opens the disk, with luks.go and with cryptsetup. The file
may be the one prepare --recovery-key wrote, or the key typed in (case,
spaces and dashes do not matter here; at cryptsetup's prompt they do).

The LUKS header is untrusted input: before any key derivation runs, a
header with a cost or layout no tool writes is refused (exit 5), as is a
keyslot this machine is estimated to need longer than --max-unlock-time
for (docs/hostile-disks.md).

` + verifyExitCodes,
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

// verifyExitCodes are verify's exit codes.
const verifyExitCodes = `Exit codes:
  0    the disk unlocks with the passphrase (and the recovery key), its
       ext4 fscks clean and a kernel finds it
  2    usage error (bad flags or arguments)
  3    refused: the target does not exist or is not a disk or image, the
       passphrase or recovery-key file cannot be read, missing tools.
       verify never writes to the disk.
  4    a check could not run (a tool failed); the message names it
  5    verification failed: the disk is damaged or not a finished backup
       disk (no LUKS header, no clean ext4, a table Linux does not read, no
       kernel finds it with 512- or 4096-byte sectors)
  6    the passphrase (or the recovery key) unlocks no keyslot (a typo, or
       another disk)
  130  interrupted (SIGINT/SIGTERM)`

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
			jsonRefusal(out, err, pipeline.StepVerify)
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
	emit := textEvents(out, 1)
	if vo.asJSON {
		emit = jsonEvents(out)
	}
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
