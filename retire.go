package main

import (
	"errors"
	"io"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
)

// retireExample is retire's EXAMPLES (in --help and the man page).
const retireExample = `  # The disk sdi leaves the rotation for good: crypto-erase it (instant),
  # prove it, and free its label in the inventory:
  sudo luksdock retire --device /dev/sdi --confirm sdi

  # Overwrite it all with zeros too (takes as long as a full write):
  sudo luksdock retire --device /dev/sdi --confirm sdi --erase

  # Check by hand afterwards: no LUKS signature, no partition table.
  blkid -p /dev/sdi; sfdisk -d /dev/sdi`

// retireFiles are the FILES of retire's man page.
var retireFiles = [][2]string{
	{"/dev/sdX, IMAGE", "every keyslot wiped (cryptsetup luksErase), the LUKS metadata and the first and last MiB zeroed; with --erase every byte."},
	{"HEADER-BACKUP", "the inventory's header backup of the disk, overwritten and removed when it is reachable and unchanged."},
	{"INVENTORY", "the disk's record is kept, marked retired with the date; its label is free again."},
}

func newRetireCmd() *cobra.Command {
	var ro retireOptions
	cmd := &cobra.Command{
		Use:     "retire (--device DEV | --image PATH) --confirm NAME [--erase]",
		Short:   "Crypto-erase a backup disk that leaves the rotation, and prove it",
		Long:    help.Text("retire") + help.ExitCodes("retire"),
		Example: retireExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// the warning of a header backup left behind goes to stderr with --json too
			return printResult(cmd, ro.asJSON, "retire", ro.run, func(w, stderr io.Writer, r *core.Retired) { report.Retired(w, stderr, r, true) })
		},
	}
	manpage.SetFiles(cmd, retireFiles)
	o := &ro.RetireOptions
	addSelector(cmd, &o.Selector, false)
	f := cmd.Flags()
	f.StringVar(&o.Confirm, "confirm", "", "the disk's name, to confirm it may be destroyed (sdi, internal:sda, disk.img)")
	f.BoolVar(&o.Erase, "erase", false, "after the crypto-erase, overwrite the whole disk with zeros")
	f.BoolVar(&ro.asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// retireOptions are retire's flags.
type retireOptions struct {
	core.RetireOptions
	asJSON bool
}

func (ro *retireOptions) run(cmd *cobra.Command) (*core.Retired, error) {
	o := ro.RetireOptions
	if (o.Device == "") == (o.Image == "") {
		return nil, usageError{errors.New("give --device /dev/sdX or --image PATH")}
	}
	if o.Confirm == "" {
		return nil, usageError{errors.New("--confirm NAME is required: the kernel name of the disk (sdi) or the image's file name")}
	}
	ctx, stop, _ := signalContext(cmd.ErrOrStderr())
	defer stop()
	if o.Erase && !ro.asJSON {
		last := time.Time{}
		o.Progress = func(done, total int64) {
			if time.Since(last) > 2*time.Second || done == total {
				last = time.Now()
				report.EraseProgress(cmd.OutOrStdout(), done, total)
			}
		}
	}
	res, err := core.Retire(ctx, o)
	if err == nil && ro.asJSON {
		report.Retired(nil, cmd.ErrOrStderr(), res, false)
	}
	return res, err
}
