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
	"luksdock/luks"
)

// passwdExample is passwd's EXAMPLES (in --help and the man page).
const passwdExample = `  # Change the passphrase of the docked disk backups01 (old and new each in
  # a file of one line; shred them afterwards):
  sudo luksdock passwd --label backups01 --passphrase-file old.txt --new-passphrase-file new.txt

  # The passphrase is lost: the recovery key authorises the new one, and
  # the old passphrase's keyslot is removed:
  sudo luksdock passwd --device /dev/sdi --recovery-key-file key.txt --new-passphrase-file new.txt

  # Which disks of the set still have the old passphrase?
  luksdock inventory --json | jq -r '.disks[] | [.label, .passphrase_changed // "never"] | @tsv'`

// passwdFiles are the FILES of passwd's man page.
var passwdFiles = [][2]string{
	{"/dev/sdX, IMAGE", "only the LUKS header's keyslot area is written, by cryptsetup (luksAddKey, luksKillSlot); an image's LUKS range is given to cryptsetup as a loop device."},
	{"INVENTORY", "the disk's record gets passphrase_changed (see luksdock inventory)."},
}

func newPasswdCmd() *cobra.Command {
	var po passwdOptions
	cmd := &cobra.Command{
		Use:     "passwd (--device DEV | --image PATH | --label LABEL) --passphrase-file OLD|- --new-passphrase-file NEW|-",
		Short:   "Change a backup disk's passphrase, never leaving it without a way in",
		Long:    help.Text("passwd") + help.ExitCodes("passwd"),
		Example: passwdExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printResult(cmd, po.asJSON, "passwd", po.run, func(w, stderr io.Writer, r *core.KeyChange) { report.KeyChange(w, stderr, r, "passphrase") })
		},
	}
	manpage.SetFiles(cmd, passwdFiles)
	o := &po.PasswdOptions
	addSelector(cmd, &o.Selector, true)
	po.secret.add(cmd, "the current secret")
	f := cmd.Flags()
	f.StringVar(&po.newFile, "new-passphrase-file", "", "file holding the new passphrase on one line, or - for standard input")
	_ = cmd.MarkFlagFilename("new-passphrase-file")
	f.BoolVar(&o.AcceptWeak, "accept-weak", false, "accept a new passphrase zxcvbn rates weak")
	f.IntVar(&po.oldSlot, "old-slot", 0, "with --recovery-key-file: the keyslot of the lost passphrase, when luksdock cannot tell")
	addKeyslotPBKDF(cmd, &o.PBKDF)
	f.BoolVar(&po.asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// passwdOptions are passwd's flags.
type passwdOptions struct {
	core.PasswdOptions
	secret  secretFlags
	newFile string
	oldSlot int
	asJSON  bool
}

func (po *passwdOptions) run(cmd *cobra.Command) (*core.KeyChange, error) {
	o, sf := po.PasswdOptions, po.secret
	if err := o.Selector.Check(); err != nil {
		return nil, err
	}
	if po.newFile == "" {
		return nil, usageError{errors.New("--new-passphrase-file FILE (or -) is required")}
	}
	if po.newFile == "-" && (sf.pass == "-" || sf.rk == "-") {
		return nil, usageError{errors.New("the old and the new secret cannot both be standard input")}
	}
	if cmd.Flags().Changed("old-slot") {
		o.OldSlot = &po.oldSlot
	}
	old, err := sf.read(cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	defer clear(old)
	nw, err := readPassphrase(po.newFile, cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	defer clear(nw)
	o.Old, o.New, o.OldIsRecoveryKey = old, nw, sf.rk != ""
	return core.Passwd(context.Background(), o)
}

// addKeyslotPBKDF declares the PBKDF cost flags of a new keyslot.
func addKeyslotPBKDF(cmd *cobra.Command, p *luks.PBKDF) {
	f := cmd.Flags()
	f.StringVar(&p.Type, "pbkdf", "", "new keyslot's PBKDF: argon2id, argon2i or pbkdf2 (default: cryptsetup's)")
	f.IntVar(&p.MemoryKiB, "pbkdf-memory", 0, "PBKDF memory cost in KiB (argon2)")
	f.IntVar(&p.ForceIterations, "pbkdf-force-iterations", 0, "PBKDF iterations, skipping cryptsetup's benchmark")
	f.IntVar(&p.IterTimeMS, "iter-time", 0, "PBKDF unlock time in milliseconds for cryptsetup's benchmark")
}
