package main

import (
	"context"
	"errors"
	"io"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
)

// recoveryKeyExample is recovery-key's EXAMPLES (in --help and the man page).
const recoveryKeyExample = `  # Replace the recovery key of the docked disk backups01: the new key is
  # written to a new file (mode 0600), the old key's keyslot removed:
  sudo luksdock recovery-key --replace --label backups01 --passphrase-file - \
      --recovery-key /root/backups01-recovery-2027.txt

  # Interrupted? The same command with the same file finishes the change.`

// recoveryKeyFiles are the FILES of recovery-key's man page.
var recoveryKeyFiles = [][2]string{
	{"NEWFILE", "the new recovery key, written once to a new file of mode 0600 (never overwritten; refused on the disk itself)."},
	{"/dev/sdX, IMAGE", "only the LUKS header's keyslot area is written, by cryptsetup (luksAddKey, luksKillSlot)."},
	{"INVENTORY", "the disk's record gets recovery_key_replaced (see luksdock inventory)."},
}

func newRecoveryKeyCmd() *cobra.Command {
	var ro recoveryKeyOptions
	cmd := &cobra.Command{
		Use:     "recovery-key --replace (--device DEV | --image PATH | --label LABEL) --passphrase-file FILE|- --recovery-key NEWFILE",
		Short:   "Replace a backup disk's recovery key, never leaving it without a way in",
		Long:    help.Text("recovery-key") + help.ExitCodes("recovery-key"),
		Example: recoveryKeyExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printResult(cmd, ro.asJSON, "recovery-key", ro.run, func(w, stderr io.Writer, r *core.KeyChange) { report.KeyChange(w, stderr, r, "recovery key") })
		},
	}
	manpage.SetFiles(cmd, recoveryKeyFiles)
	o := &ro.RecoveryKeyOptions
	addSelector(cmd, &o.Selector, true)
	f := cmd.Flags()
	f.BoolVar(&ro.replace, "replace", false, "replace the recovery key (add the new one, prove it, remove the old one)")
	addPassphraseFlag(cmd, &ro.passFile)
	f.StringVar(&o.File, "recovery-key", "", "the new file to write the new recovery key to (mode 0600; never overwritten)")
	f.IntVar(&ro.oldSlot, "old-slot", 0, "the keyslot of the old recovery key, when luksdock cannot tell")
	addKeyslotPBKDF(cmd, &o.PBKDF)
	f.BoolVar(&ro.asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// recoveryKeyOptions are recovery-key's flags.
type recoveryKeyOptions struct {
	core.RecoveryKeyOptions
	passFile        string
	replace, asJSON bool
	oldSlot         int
}

func (ro *recoveryKeyOptions) run(cmd *cobra.Command) (*core.KeyChange, error) {
	o := ro.RecoveryKeyOptions
	if !ro.replace {
		return nil, usageError{errors.New("--replace is required (recovery-key --replace is the only action)")}
	}
	if err := o.Selector.Check(); err != nil {
		return nil, err
	}
	if o.File == "" {
		return nil, usageError{errors.New("--recovery-key NEWFILE is required: where to write the new key")}
	}
	if cmd.Flags().Changed("old-slot") {
		o.OldSlot = &ro.oldSlot
	}
	pass, err := readPassphrase(ro.passFile, cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	o.Passphrase = pass
	return core.ReplaceRecoveryKey(context.Background(), o)
}
