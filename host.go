package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/manpage"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

func newHostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Let this machine unlock a backup disk on its own when it is docked (enroll, forget, status)",
		Long: `host enroll adds a keyslot to a docked disk that only this machine can use:
sealed to its TPM2 with systemd-cryptenroll when it has one (/dev/tpmrm0),
else a key of 32 random bytes kept in /etc/luksdock/keys/LUKS-UUID.key
(mode 0400, root, in a 0700 directory), and names this host (its name and
/etc/machine-id, the keyslot's number; never the key) in the disk's
luksdock token. When that disk is docked again, the luksdock-dock@ service
unlocks it with the TPM2 or the key, runs the backup configured for it and locks it
(see 'luksdock dock').

host forget removes this host's key file (or TPM2 marker) at once; the keyslot is wiped when
the disk is next docked here (or at once, with the disk given).

host status lists the disks this host holds keys for, and how (keyfile, tpm2).

The disk's passphrase (for enroll) is read as prepare reads it; the host
key never appears in argv, the environment, logs, the inventory or the
token. See docs/rotation.md.

` + hostExitCodes,
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

// luksTarget looks up --device/--image and returns its LUKS device.
func luksTarget(tf *targetFlags) (luks.Device, string, error) {
	t, err := tf.target(false)
	if err != nil {
		return luks.Device{}, "", err
	}
	d, ok := core.LUKSDevice(t.Path, t.Content, t.Parts)
	if !ok {
		return luks.Device{}, "", &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf("%s holds no LUKS volume (it holds %s)", t.Path, t.Content)}
	}
	info, err := luks.ReadHeaderDevice(d)
	if err != nil {
		return d, "", err
	}
	return d, info.UUID, nil
}

func newHostEnrollCmd() *cobra.Command {
	var tf targetFlags
	var passFile string
	var keyFile, tpm2 bool
	cmd := &cobra.Command{
		Use:   "enroll (--device /dev/sdX | --image PATH) --passphrase-file FILE|- [--key-file | --tpm2]",
		Short: "Add a keyslot only this machine can use, and name it in the disk's token",
		Long: `enroll adds a keyslot to the docked disk (or image) that only this machine
can use, and names this host in the disk's luksdock token (method "tpm2"
or "keyfile"). The passphrase authorises the new keyslot.

TPM2 (the default when this machine has /dev/tpmrm0 and
systemd-cryptenroll): systemd-cryptenroll --tpm2-device=auto --tpm2-pcrs=
seals the new keyslot to this machine's TPM2 and writes a systemd-tpm2
token; cryptsetup then proves the token opens the disk. No key file is
written; /etc/luksdock/tpm2/LUKS-UUID (no secret) records the enrollment.
No PCR is bound: the seal already ties the key to this TPM2, and PCR 7 or
0-2 change with firmware, dbx and boot-loader updates, which would stop
the backups without warning. The passphrase reaches systemd-cryptenroll
through a kernel keyring private to it, invalidated when it ends; never
argv, the environment or a file. Unlocking such a disk on docking needs
the kernel engine (device-mapper).

Key file (--key-file, or no TPM2): 32 random bytes in
/etc/luksdock/keys/LUKS-UUID.key (mode 0400, root, in a 0700 directory),
given to cryptsetup on a pipe; luksdock's own LUKS code proves the key
opens that keyslot.

` + hostExitCodes,
		Example: hostExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, uuid, err := luksTarget(&tf)
			if err != nil {
				return err
			}
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
			h, err := core.EnrollMethod(ctx, d, pass, method)
			if errors.Is(err, core.ErrNoTPM2) {
				return &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
			}
			if errors.Is(err, luks.ErrWrongPassphrase) || isWrongPassphrase(err) {
				return &pipeline.Error{Kind: pipeline.KindWrongPassphrase, Err: err}
			}
			if err != nil {
				return err
			}
			if h.Method == core.MethodTPM2 {
				fmt.Fprintf(cmd.OutOrStdout(), "Enrolled %s on disk %s: keyslot %d, sealed to this machine's TPM2 (no PCR); no key file.\n", h.Name, uuid, h.Keyslot)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Enrolled %s on disk %s: keyslot %d, key in %s (0400 root).\n", h.Name, uuid, h.Keyslot, core.KeyFile(uuid))
			return nil
		},
	}
	tf.add(cmd, true, false)
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
	var tf targetFlags
	var uuid string
	cmd := &cobra.Command{
		Use:   "forget (--uuid LUKS-UUID | --device /dev/sdX | --image PATH)",
		Short: "Remove this machine's key for a disk (its keyslot goes when the disk is next docked)",
		Long: `forget deletes this machine's key file (or TPM2 marker) for the disk at once. Its keyslot
is wiped when the disk is next docked here, or at once when the disk is
given (--device or --image); only a keyslot that is this host's and not
the disk's last is ever wiped. A TPM2 keyslot is wiped with
systemd-cryptenroll --wipe-slot, which removes its systemd-tpm2 token too.

` + hostExitCodes,
		Example: hostExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop, _ := signalContext(cmd.ErrOrStderr())
			defer stop()
			var dev *luks.Device
			if tf.device != "" || tf.image != "" {
				if uuid != "" {
					return usageError{errors.New("give --uuid, or the disk with --device/--image, not both")}
				}
				d, u, err := luksTarget(&tf)
				if err != nil {
					return err
				}
				dev, uuid = &d, u
			} else if uuid == "" {
				return usageError{errors.New("give --uuid LUKS-UUID (see `luksdock host status`), or the docked disk with --device/--image")}
			}
			msg, err := core.Forget(ctx, uuid, dev)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Disk %s: %s.\n", uuid, msg)
			return nil
		},
	}
	tf.add(cmd, true, false)
	cmd.Flags().StringVar(&uuid, "uuid", "", "the disk's LUKS UUID (it need not be docked)")
	manpage.SetFiles(cmd, hostFiles)
	return cmd
}

func newHostStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the disks this machine holds keys for",
		Long: `status lists the disks this machine holds keys for (their LUKS UUID and
label from the inventory, and the method: keyfile or tpm2), and the
keyslots it was told to forget.

` + hostExitCodes,
		Example: hostExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := core.HostStatus(inventory.Path())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if keys == nil {
					keys = []core.HostKey{}
				}
				return enc.Encode(keys)
			}
			if len(keys) == 0 {
				fmt.Fprintf(out, "This host holds no disk keys (%s/keys).\n", core.ConfigDir())
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "LABEL\tSET\tLUKS UUID\tKEY\tSTATE")
			for _, k := range keys {
				state := "enrolled (" + k.Method + ")"
				if k.Forget {
					state = "forgotten: keyslot wiped at next docking"
				}
				key := dash(k.KeyFile)
				if k.Method == core.MethodTPM2 {
					key = "TPM2 (no key file)"
				}
				if k.Mode != "" {
					key += " (" + k.Mode + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(k.Label), dash(k.Set), strings.ToLower(k.LUKSUUID), key, state)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	manpage.SetFiles(cmd, hostFiles)
	return cmd
}

// hostExitCodes are the exit codes of host and its commands.
const hostExitCodes = `Exit codes:
  0    success
  2    usage error (bad flags or arguments)
  3    refused: not root, the target is not a LUKS disk, the passphrase
       file cannot be read, missing tools
  4    a step failed (cryptsetup, writing the key file or the token); the
       message names it
  6    enroll: the passphrase opens no keyslot
  130  interrupted (SIGINT/SIGTERM)`

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
