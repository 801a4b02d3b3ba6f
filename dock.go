package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/core"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

func newDockCmd() *cobra.Command {
	var tf targetFlags
	var engine string
	var noPowerOff bool
	cmd := &cobra.Command{
		Use:   "dock (DEVICE | --image PATH)",
		Short: "The backup run on a docked disk (started by the luksdock-dock@ service)",
		Long: `dock is what the luksdock-dock@DEVICE.service unit runs when udev sees a
LUKS volume this host holds a key for (luksdock host enroll). DEVICE is the
LUKS block device (/dev/sdb1, or /dev/sdb for LUKS on the whole disk).

A disk this host holds no key for is left alone (exit 0). Otherwise: a
keyslot this host was told to forget is wiped; the disk is unlocked with the
host key (/etc/luksdock/keys/LUKS-UUID.key), checked with e2fsck -p,
mounted at /run/luksdock/dock/LABEL; its own history file is merged into the
inventory; the executable /etc/luksdock/run/label-LABEL, else
/etc/luksdock/run/set-SET, runs there with LUKSDOCK_MOUNT, LUKSDOCK_LABEL,
LUKSDOCK_SET and LUKSDOCK_UUID in its environment (its output goes to the
journal); the outcome, duration, bytes written and free space are recorded
in the disk's history file (.luksdock/history.jsonl) and the inventory; the
disk is unmounted, locked and its USB drive powered off; the journal and
the logged-in desktop's notifications say how it went.

Undocked (or the service stopped) mid-run: the command is stopped, the run
recorded as interrupted in the inventory, the mount detached and the
mapping removed; nothing else is touched, and the next docking checks the
filesystem first.

Exit status: 0 success or not enrolled, 4 the backup failed, 130
interrupted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d luks.Device
			switch {
			case len(args) == 1 && tf.image != "":
				return usageError{errors.New("give DEVICE or --image, not both")}
			case len(args) == 1:
				d = luks.Device{Path: args[0]}
			case tf.image != "":
				var err error
				if d, _, err = luksTarget(&tf); err != nil {
					return err
				}
			default:
				return usageError{errors.New("give the docked LUKS device (/dev/sdb1) or --image PATH")}
			}
			// SIGTERM is how systemd stops the unit when the disk goes
			// (BindsTo): Dock records the run as interrupted. It also comes
			// right after a finished run's power-off, harmlessly.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM, unix.SIGHUP)
			defer stop()
			res, err := core.Dock(ctx, core.DockOptions{Device: d, InvPath: inventory.Path(), Engine: engine,
				PowerOff: !noPowerOff && tf.image == "", Log: cmd.OutOrStdout()})
			if errors.Is(err, core.ErrInterrupted) {
				return &pipeline.Error{Kind: pipeline.KindInterrupted, Err: err}
			}
			if err == nil && res != nil && !res.Enrolled {
				fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: %s: not enrolled on this host, nothing done\n", d.Path)
			}
			return err
		},
	}
	tf.add(cmd, false, false)
	cmd.Flags().StringVar(&engine, "engine", "auto", "how to unlock: auto, kernel (device-mapper) or userspace (FUSE and a loop device)")
	cmd.Flags().BoolVar(&noPowerOff, "no-power-off", false, "leave the drive powered on after locking it")
	return cmd
}
