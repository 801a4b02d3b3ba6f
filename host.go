package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

func newHostCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "host",
		Short: "Let this machine unlock a backup disk on its own when it is docked (enroll, forget, status)",
		Long: `host enroll adds a keyslot to a docked disk that only this machine can use:
a key of 32 random bytes kept in /etc/luksdock/keys/LUKS-UUID.key (mode
0400, root, in a 0700 directory), and names this host (its name and
/etc/machine-id, the keyslot's number; never the key) in the disk's
luksdock token. When that disk is docked again, the luksdock-dock@ service
unlocks it with the key, runs the backup configured for it and locks it
(see 'luksdock dock').

host forget removes this host's key file at once; the keyslot is wiped when
the disk is next docked here (or at once, with the disk given).

host status lists the disks this host holds keys for.

The disk's passphrase (for enroll) is read as prepare reads it; the host
key never appears in argv, the environment, logs, the inventory or the
token. See docs/rotation.md.`,
		Args: noArgs,
	}
	cmd.AddCommand(newHostEnrollCmd(), newHostForgetCmd(), newHostStatusCmd())
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
	cmd := &cobra.Command{
		Use:   "enroll (--device /dev/sdX | --image PATH) --passphrase-file FILE|-",
		Short: "Add a keyslot only this machine can use, and name it in the disk's token",
		Args:  noArgs,
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
			h, err := core.Enroll(ctx, d, pass)
			if errors.Is(err, luks.ErrWrongPassphrase) || isWrongPassphrase(err) {
				return &pipeline.Error{Kind: pipeline.KindWrongPassphrase, Err: err}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Enrolled %s on disk %s: keyslot %d, key in %s (0400 root).\n", h.Name, uuid, h.Keyslot, core.KeyFile(uuid))
			return nil
		},
	}
	tf.add(cmd, true, false)
	addPassphraseFlag(cmd, &passFile)
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
		Args:  noArgs,
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
	return cmd
}

func newHostStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the disks this machine holds keys for",
		Args:  noArgs,
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
				if k.Mode != "" {
					key += " (" + k.Mode + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(k.Label), dash(k.Set), strings.ToLower(k.LUKSUUID), key, state)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
