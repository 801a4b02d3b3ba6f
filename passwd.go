package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/manpage"
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
	var o core.PasswdOptions
	var sf secretFlags
	var newFile string
	var oldSlot int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "passwd (--device DEV | --image PATH | --label LABEL) --passphrase-file OLD|- --new-passphrase-file NEW|-",
		Short: "Change a backup disk's passphrase, never leaving it without a way in",
		Long: `passwd replaces the disk's passphrase. The old secret is the passphrase
(--passphrase-file) or, when that is lost, the recovery key
(--recovery-key-file); the new passphrase is the line in
--new-passphrase-file. It is checked with zxcvbn as the wizard checks it: a
weak one (score below 3 of 4) is refused unless --accept-weak is given.

At no moment has the disk fewer ways in than before: cryptsetup adds the
new passphrase to a free keyslot (luksAddKey, authorised by the old
secret), luksdock proves with cryptsetup that it opens that keyslot, and
only then removes the old passphrase's keyslot (luksKillSlot, authorised by
the new passphrase). Interrupted or killed at any point, the disk opens
with the old or the new passphrase (both, between the two writes); the
same command run again finishes the change. A recovery key stays as it is.

The disk's inventory record gets the date (passphrase_changed), so a set
changed disk by disk shows which disks still have the old passphrase.

With the recovery key as the old secret, the keyslot of the lost
passphrase is the inventory's (where prepare or the last passwd put it),
else the only other keyslot; with more, name it with --old-slot.

` + passwdExitCodes,
		Example: passwdExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			out := cmd.OutOrStdout()
			var res *core.KeyChange
			defer func() {
				if asJSON {
					jsonResult(out, "passwd", res, err)
				}
			}()
			if err := o.Selector.Check(); err != nil {
				return lifecycleErr(err)
			}
			if newFile == "" {
				return usageError{errors.New("--new-passphrase-file FILE (or -) is required")}
			}
			if newFile == "-" && (sf.pass == "-" || sf.rk == "-") {
				return usageError{errors.New("the old and the new secret cannot both be standard input")}
			}
			if cmd.Flags().Changed("old-slot") {
				o.OldSlot = &oldSlot
			}
			old, err := sf.read(cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer clear(old)
			nw, err := readPassphrase(newFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer clear(nw)
			o.Old, o.New, o.OldIsRecoveryKey = old, nw, sf.rk != ""
			res, err = core.Passwd(context.Background(), o)
			if err != nil {
				return lifecycleErr(err)
			}
			if !asJSON {
				printKeyChange(cmd, res, "passphrase")
			}
			return nil
		},
	}
	manpage.SetFiles(cmd, passwdFiles)
	addSelector(cmd, &o.Selector, true)
	sf.add(cmd, "the current secret")
	f := cmd.Flags()
	f.StringVar(&newFile, "new-passphrase-file", "", "file holding the new passphrase on one line, or - for standard input")
	_ = cmd.MarkFlagFilename("new-passphrase-file")
	f.BoolVar(&o.AcceptWeak, "accept-weak", false, "accept a new passphrase zxcvbn rates weak")
	f.IntVar(&oldSlot, "old-slot", 0, "with --recovery-key-file: the keyslot of the lost passphrase, when luksdock cannot tell")
	addKeyslotPBKDF(cmd, &o.PBKDF)
	f.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// addKeyslotPBKDF declares the PBKDF cost flags of a new keyslot.
func addKeyslotPBKDF(cmd *cobra.Command, p *luks.PBKDF) {
	f := cmd.Flags()
	f.StringVar(&p.Type, "pbkdf", "", "new keyslot's PBKDF: argon2id, argon2i or pbkdf2 (default: cryptsetup's)")
	f.IntVar(&p.MemoryKiB, "pbkdf-memory", 0, "PBKDF memory cost in KiB (argon2)")
	f.IntVar(&p.ForceIterations, "pbkdf-force-iterations", 0, "PBKDF iterations, skipping cryptsetup's benchmark")
	f.IntVar(&p.IterTimeMS, "iter-time", 0, "PBKDF unlock time in milliseconds for cryptsetup's benchmark")
}

// printKeyChange prints a passwd or recovery-key result for people.
func printKeyChange(cmd *cobra.Command, r *core.KeyChange, what string) {
	out := cmd.OutOrStdout()
	if n := r.Note(what); n != "" {
		fmt.Fprintln(out, n)
	}
	fmt.Fprintf(out, "%s: the %s is replaced (keyslot %d", r.Target, what, r.NewSlot)
	if r.OldSlot >= 0 {
		fmt.Fprintf(out, "; keyslot %d removed", r.OldSlot)
	}
	fmt.Fprintf(out, ")\n  proved:       %s\n", r.Proved)
	if r.Strength != nil {
		fmt.Fprintf(out, "  strength:     %s\n", r.Strength.Summary())
	}
	if r.RecoveryKeyFile != "" {
		fmt.Fprintf(out, "  recovery key: written to %s: print it, keep the paper away from this disk, then delete the file\n", r.RecoveryKeyFile)
	}
	if r.Recorded {
		fmt.Fprintf(out, "  inventory:    changed %s\n", r.Changed.Format("2006-01-02"))
	} else {
		warnf(cmd, "%s is not in the inventory, so the date of this change is not recorded", r.Target)
	}
}

// passwdExitCodes are passwd's own exit codes (exitCode maps the errors).
const passwdExitCodes = `Exit codes:
  0    the new passphrase opens the disk and the old one no longer does
  2    usage error (bad flags or arguments)
  3    refused: not run as root, a secret file cannot be read, the new
       passphrase is weak (see --accept-weak) or too long, the disk is in
       use; nothing was written
  4    a step failed; the message names it; the disk opens with the old
       or the new passphrase (run the same command again)
  5    not a disk luksdock prepared (no LUKS volume found)
  6    the old passphrase (or the recovery key) opens no keyslot
  130  killed by Ctrl+C (SIGINT): the disk opens with the old or the new
       passphrase; the same command run again finishes the change`
