package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

func newHostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "host",
		Short:   "Let this machine unlock a backup disk on its own when it is docked (enroll, forget, status)",
		Long:    help.Text("host") + help.ExitCodes("host"),
		Example: hostExample,
		// "host" alone or "host bogus" is a usage error (exit 2), not the
		// help with exit 0.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return usageError{fmt.Errorf("%s needs a command: enroll, forget or status", cmd.CommandPath())}
		},
	}
	cmd.AddCommand(newHostEnrollCmd(), newHostForgetCmd(), newHostStatusCmd())
	manpage.SetFiles(cmd, hostFiles)
	return cmd
}

func newHostEnrollCmd() *cobra.Command {
	var sel core.Selector
	var passFile string
	var keyFile, tpm2 bool
	cmd := &cobra.Command{
		Use:     "enroll (--device /dev/sdX | --image PATH | --label LABEL) --passphrase-file FILE|- [--key-file | --tpm2]",
		Short:   "Add a keyslot only this machine can use, and name it in the disk's token",
		Long:    help.Text("host-enroll") + help.ExitCodes("host"),
		Example: hostExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := core.FindLUKS(sel)
			if err != nil {
				return err
			}
			uuid := d.Info.UUID
			pass, err := readPassphrase(passFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer clear(pass)
			ctx, stop, _ := signalContext(cmd.ErrOrStderr())
			defer stop()
			method := "auto"
			switch {
			case keyFile && tpm2:
				return usageError{errors.New("give --key-file or --tpm2, not both")}
			case keyFile:
				method = core.MethodKeyFile
			case tpm2:
				method = core.MethodTPM2
			}
			h, err := core.EnrollMethod(ctx, d.LUKS, pass, method)
			if errors.Is(err, core.ErrNoTPM2) {
				return &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
			}
			if errors.Is(err, luks.ErrWrongPassphrase) || isWrongPassphrase(err) {
				return &pipeline.Error{Kind: pipeline.KindWrongPassphrase, Err: err}
			}
			if err != nil {
				return err
			}
			report.Enrolled(cmd.OutOrStdout(), h, uuid)
			return nil
		},
	}
	addSelector(cmd, &sel, true)
	addPassphraseFlag(cmd, &passFile)
	cmd.Flags().BoolVar(&keyFile, "key-file", false, "keep the host key in a root-only key file even when this machine has a TPM2")
	cmd.Flags().BoolVar(&tpm2, "tpm2", false, "seal the keyslot to this machine's TPM2, or refuse when it has none")
	manpage.SetFiles(cmd, hostFiles)
	return cmd
}

// isWrongPassphrase says whether cryptsetup refused the passphrase (its
// exit status 2: no key available with this passphrase).
func isWrongPassphrase(err error) bool {
	var ce *luks.Error
	return errors.As(err, &ce) && ce.Code == 2
}

func newHostForgetCmd() *cobra.Command {
	var sel core.Selector
	var uuid string
	cmd := &cobra.Command{
		Use:     "forget (--uuid LUKS-UUID | --device /dev/sdX | --image PATH | --label LABEL)",
		Short:   "Remove this machine's key for a disk (its keyslot goes when the disk is next docked)",
		Long:    help.Text("host-forget") + help.ExitCodes("host"),
		Example: hostExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop, _ := signalContext(cmd.ErrOrStderr())
			defer stop()
			var dev *luks.Device
			if sel != (core.Selector{}) {
				if uuid != "" {
					return usageError{errors.New("give --uuid, or the disk with --device/--image/--label, not both")}
				}
				d, err := core.FindLUKS(sel)
				if err != nil {
					return err
				}
				dev, uuid = &d.LUKS, d.Info.UUID
			} else if uuid == "" {
				return usageError{errors.New("give --uuid LUKS-UUID (see `luksdock host status`), or the docked disk with --device/--image/--label")}
			}
			msg, err := core.Forget(ctx, uuid, dev)
			if err != nil {
				return err
			}
			report.Forgot(cmd.OutOrStdout(), uuid, msg)
			return nil
		},
	}
	addSelector(cmd, &sel, true)
	cmd.Flags().StringVar(&uuid, "uuid", "", "the disk's LUKS UUID (it need not be docked)")
	manpage.SetFiles(cmd, hostFiles)
	return cmd
}

func newHostStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "status",
		Short:   "List the disks this machine holds keys for",
		Long:    help.Text("host-status") + help.ExitCodes("host"),
		Example: hostExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := core.HostStatus(inventory.Path())
			if err != nil {
				return err
			}
			return report.HostKeys(cmd.OutOrStdout(), keys, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	manpage.SetFiles(cmd, hostFiles)
	return cmd
}

// hostExample is the EXAMPLES of host and its commands.
const hostExample = `  # Let this machine unlock the docked disk sdi by itself, and run the
  # backup configured for its set whenever it is docked here:
  luksdock host enroll --device /dev/sdi --passphrase-file -
  printf '#!/bin/sh\nexec rsync -a /srv/backup/ "$LUKSDOCK_MOUNT"/\n' > /etc/luksdock/run/set-offsite
  chmod 0755 /etc/luksdock/run/set-offsite

  # Which disks does this machine hold keys for?
  luksdock host status

  # This machine no longer backs up to that disk:
  luksdock host forget --device /dev/sdi`

// hostFiles are the FILES of host's man pages.
var hostFiles = [][2]string{
	{"/etc/luksdock/keys/LUKS-UUID.key", "this host's key for the disk with that LUKS UUID: 32 random bytes, mode 0400, root, in a 0700 directory."},
	{"/etc/luksdock/tpm2/LUKS-UUID", "says this host's keyslot on that disk is sealed to its TPM2 (no secret: the key is in the TPM2-sealed token on the disk)."},
	{"/etc/luksdock/run/set-SET, /etc/luksdock/run/label-LABEL", "the backup command the luksdock-dock@ service runs for a docked disk (see luksdock-dock(8))."},
	{"/var/lib/luksdock/inventory.json", "the inventory: which disks this host holds keys for, keyslots to forget."},
}
