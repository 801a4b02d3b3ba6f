package main

import (
	"context"
	"io"
	"os"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
	"luksdock/pipeline"
)

// openExample is open's EXAMPLES (in --help and the man page).
const openExample = `  # Unlock and mount the docked disk labelled backups01 at
  # /media/$SUDO_USER/backups01, typing the passphrase:
  sudo luksdock open --label backups01 --passphrase-file -

  # With the recovery key instead, at a mountpoint of your choice:
  sudo luksdock open --device /dev/sdi --recovery-key-file key.txt --mountpoint /mnt/backup

  # An image file, read-only, for a script:
  sudo luksdock open --image demo.img --passphrase-file pass.txt --read-only --json | jq -r .mountpoint`

// openFiles are the FILES of open's man page.
var openFiles = [][2]string{
	{"/media/USER/LABEL", "where the filesystem is mounted (nosuid, nodev) for USER, the user behind sudo or pkexec (root without them), as the desktop mounts it; /media/USER is made mode 0750 with an ACL for USER."},
	{"/dev/mapper/luks-UUID", "the kernel engine's dm-crypt mapping, named as udisks and systemd-cryptsetup name it."},
	{"$LUKSDOCK_RUN_DIR", "default /run/luksdock/open: one record per open disk (no secret), for luksdock close."},
	{"$TMPDIR/luksdock-fuse-*", "the userspace engine's private FUSE mount directory, served by the volume holder process until luksdock close."},
}

func newOpenCmd() *cobra.Command {
	var oo openOptions
	cmd := &cobra.Command{
		Use:     "open (--device DEV | --image PATH | --label LABEL) --passphrase-file FILE|- [--mountpoint DIR]",
		Short:   "Unlock a backup disk and mount it, as the desktop does",
		Long:    help.Text("open") + help.ExitCodes("open"),
		Example: openExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printResult(cmd, oo.asJSON, "open", oo.run, func(w, _ io.Writer, r *core.Opened) { report.Opened(w, r) })
		},
	}
	manpage.SetFiles(cmd, openFiles)
	o := &oo.OpenOptions
	addSelector(cmd, &o.Selector, true)
	oo.secret.add(cmd, "unlock with")
	f := cmd.Flags()
	f.StringVar(&o.Mountpoint, "mountpoint", "", "mount here (an empty directory; made if missing) instead of /media/USER/LABEL")
	_ = cmd.MarkFlagDirname("mountpoint")
	f.BoolVar(&o.ReadOnly, "read-only", false, "mount the filesystem read-only")
	addEngineFlag(cmd, &oo.engine)
	f.BoolVar(&oo.asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// openOptions are open's flags.
type openOptions struct {
	core.OpenOptions
	secret secretFlags
	engine string
	asJSON bool
}

func (oo *openOptions) run(cmd *cobra.Command) (*core.Opened, error) {
	o := oo.OpenOptions
	if err := o.Selector.Check(); err != nil {
		return nil, err
	}
	secret, err := oo.secret.read(cmd.InOrStdin())
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	if o.User, err = core.MountUser(os.Getenv); err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
	}
	o.Secret, o.SecretIsRecoveryKey, o.Engine = secret, oo.secret.rk != "", pipeline.Engine(oo.engine)
	return core.Open(context.Background(), o)
}
