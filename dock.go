package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

func newDockCmd() *cobra.Command {
	var do dockOptions
	cmd := &cobra.Command{
		Use:     "dock (DEVICE | --image PATH)",
		Short:   "The backup run on a docked disk (started by the luksdock-dock@ service)",
		Long:    help.Text("dock") + help.ExitCodes("dock"),
		Example: dockExample,
		Args:    cobra.MaximumNArgs(1),
		RunE:    do.run,
	}
	cmd.Flags().StringVar(&do.image, "image", "", "an image file luksdock prepared")
	cmd.Flags().StringVar(&do.engine, "engine", "auto", "how to unlock: auto, kernel (device-mapper) or userspace (FUSE and a loop device)")
	cmd.Flags().BoolVar(&do.noPowerOff, "no-power-off", false, "leave the drive powered on after locking it")
	manpage.SetFiles(cmd, dockFiles)
	return cmd
}

// dockOptions are dock's flags.
type dockOptions struct {
	image, engine string
	noPowerOff    bool
}

func (do *dockOptions) run(cmd *cobra.Command, args []string) error {
	var d luks.Device
	switch {
	case len(args) == 1 && do.image != "":
		return usageError{errors.New("give DEVICE or --image, not both")}
	case len(args) == 1:
		d = luks.Device{Path: args[0]}
	case do.image != "":
		ld, err := core.FindLUKS(core.Selector{Image: do.image})
		if err != nil {
			return err
		}
		d = ld.LUKS
	default:
		return usageError{errors.New("give the docked LUKS device (/dev/sdb1) or --image PATH")}
	}
	// SIGTERM is how systemd stops the unit when the disk goes (BindsTo):
	// Dock records the run as interrupted. It also comes right after a
	// finished run's power-off, harmlessly.
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM, unix.SIGHUP)
	defer stop()
	res, err := core.Dock(ctx, core.DockOptions{Device: d, InvPath: inventory.Path(), Engine: do.engine,
		PowerOff: !do.noPowerOff && do.image == "", Log: cmd.OutOrStdout()})
	if errors.Is(err, core.ErrInterrupted) {
		return &pipeline.Error{Kind: pipeline.KindInterrupted, Err: err}
	}
	if err == nil && res != nil && !res.Enrolled {
		fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: %s: not enrolled on this host, nothing done\n", d.Path)
	}
	return err
}

// dockExample is dock's EXAMPLES.
const dockExample = `  # What the udev rule starts when an enrolled disk is docked as sdb:
  systemctl start luksdock-dock@sdb1.service
  journalctl -u luksdock-dock@sdb1.service

  # The same run by hand, on an image:
  luksdock dock --image /srv/images/backups01.img`

// dockFiles are the FILES of dock's man page.
var dockFiles = [][2]string{
	{"/etc/luksdock/keys/LUKS-UUID.key", "the host key that unlocks the disk (luksdock host enroll)."},
	{"/etc/luksdock/run/label-LABEL, /etc/luksdock/run/set-SET", "the executable run on the mounted disk, with LUKSDOCK_MOUNT, LUKSDOCK_LABEL, LUKSDOCK_SET and LUKSDOCK_UUID set."},
	{"/run/luksdock/dock/LABEL", "where the disk is mounted during the run."},
	{"DISK/.luksdock/history.jsonl", "the disk's own history of backup runs, merged into the inventory of every machine that opens it."},
	{"/usr/lib/udev/rules.d/80-luksdock.rules, /usr/lib/systemd/system/luksdock-dock@.service", "the udev rule and systemd unit that start dock."},
}
