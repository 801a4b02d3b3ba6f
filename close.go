package main

import (
	"context"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
)

// closeExample is close's EXAMPLES (in --help and the man page).
const closeExample = `  # Unmount, lock and power off the disk labelled backups01, then pull it:
  sudo luksdock close --label backups01

  # By the mountpoint open printed, leaving the disk powered:
  sudo luksdock close --mountpoint /media/alice/backups01 --no-power-off

  # Who keeps it busy? close names them and changes nothing:
  sudo luksdock close --device /dev/sdi --json | jq .message`

// closeFiles are the FILES of close's man page.
var closeFiles = [][2]string{
	{"/proc/*/fd, cwd, root, maps", "read to name the processes that still use the filesystem."},
	{"/sys/block/sdX/device/delete", "written (1) to remove the SCSI disk before power-off."},
	{"/sys/bus/usb/devices/*/remove", "written (1) to disable the USB port of the dock, as udisksctl power-off does."},
	{"$LUKSDOCK_RUN_DIR", "default /run/luksdock/open: the records luksdock open wrote; removed here."},
}

func newCloseCmd() *cobra.Command {
	var co closeOptions
	cmd := &cobra.Command{
		Use:     "close (--device DEV | --image PATH | --label LABEL | --mountpoint DIR) [--no-power-off]",
		Short:   "Flush, unmount, lock and power off a backup disk so it can be pulled",
		Long:    help.Text("close") + help.ExitCodes("close"),
		Example: closeExample,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return co.run(cmd) },
	}
	manpage.SetFiles(cmd, closeFiles)
	o := &co.CloseOptions
	addSelector(cmd, &o.Selector, true)
	f := cmd.Flags()
	f.StringVar(&o.Mountpoint, "mountpoint", "", "the mountpoint luksdock open printed")
	f.BoolVar(&o.NoPowerOff, "no-power-off", false, "leave a USB disk powered")
	f.BoolVar(&co.asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// closeOptions are close's flags.
type closeOptions struct {
	core.CloseOptions
	asJSON bool
}

// run is close: what was done is printed even when a later step failed
// (unmounted and locked, but not powered off).
func (co *closeOptions) run(cmd *cobra.Command) error {
	out := cmd.OutOrStdout()
	res, err := core.Close(context.Background(), co.CloseOptions)
	switch {
	case co.asJSON:
		report.JSONResult(out, "close", res, err)
	case res != nil:
		report.Closed(out, res)
	}
	return err
}
