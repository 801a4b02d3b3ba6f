package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/manpage"
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
	var o core.OpenOptions
	var sf secretFlags
	var engine string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "open (--device DEV | --image PATH | --label LABEL) --passphrase-file FILE|- [--mountpoint DIR]",
		Short: "Unlock a backup disk and mount it, as the desktop does",
		Long: `open unlocks the LUKS volume of a disk luksdock prepared (partition 1, or
the whole disk) with the passphrase or the recovery key and mounts its
filesystem (nosuid, nodev) at /media/USER/LABEL, USER being the person
behind sudo or pkexec, as the desktop mounts a docked disk; --mountpoint
names another (empty) directory. It prints where. A disk that is already
open is reported and left as it is. Undo it with 'luksdock close'.

--label finds the attached disk whose LUKS2 label (or, for LUKS1, whose
inventory record) has that label.

Engines: 'kernel' unlocks with cryptsetup open as the mapping
/dev/mapper/luks-UUID (udisks' and systemd-cryptsetup's name: the desktop
shows the disk as unlocked and can lock it). 'userspace', for machines
without device-mapper, decrypts in luksdock: a volume holder process
(luksdock-volume-holder, in a session of its own) keeps the decrypted
volume served through FUSE after open returns, a loop device on it is
mounted, and 'luksdock close' stops the holder, which wipes the key. 'auto'
picks kernel where device-mapper works.

The passphrase is the line in --passphrase-file ('-': standard input);
--recovery-key-file reads the recovery key instead. Neither is ever taken
as an argument or from the environment.

` + openExitCodes,
		Example: openExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			out := cmd.OutOrStdout()
			var res *core.Opened
			defer func() {
				if asJSON {
					jsonResult(out, "open", res, err)
				}
			}()
			if err := o.Selector.Check(); err != nil {
				return lifecycleErr(err)
			}
			secret, err := sf.read(cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer clear(secret)
			if o.User, err = core.MountUser(os.Getenv); err != nil {
				return &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
			}
			o.Secret, o.SecretIsRecoveryKey, o.Engine = secret, sf.rk != "", pipeline.Engine(engine)
			res, err = core.Open(context.Background(), o)
			if err != nil {
				return lifecycleErr(err)
			}
			if !asJSON {
				if res.Already {
					fmt.Fprintf(out, "%s is already open: %s\n", res.Target, res.Mountpoint)
				} else {
					fmt.Fprintf(out, "%s (%s) unlocked (%s engine) and mounted at %s\n", res.Target, res.Label, res.Engine, res.Mountpoint)
				}
				fmt.Fprintf(out, "%s\n", res.Mountpoint)
			}
			return nil
		},
	}
	manpage.SetFiles(cmd, openFiles)
	addSelector(cmd, &o.Selector, true)
	sf.add(cmd, "unlock with")
	f := cmd.Flags()
	f.StringVar(&o.Mountpoint, "mountpoint", "", "mount here (an empty directory; made if missing) instead of /media/USER/LABEL")
	_ = cmd.MarkFlagDirname("mountpoint")
	f.BoolVar(&o.ReadOnly, "read-only", false, "mount the filesystem read-only")
	addEngineFlag(cmd, &engine)
	f.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	return cmd
}

// openExitCodes are open's own exit codes (exitCode maps the errors).
const openExitCodes = `Exit codes:
  0    unlocked and mounted (or already open: reported, left as it is)
  2    usage error (bad flags or arguments)
  3    refused: not run as root, the secret file cannot be read, no
       attached disk has that label, the disk or mountpoint is in use;
       nothing was unlocked
  4    a step failed (unlock, loop device, mount); the message names it
  5    not a disk luksdock prepared: no LUKS volume on partition 1 or the
       whole disk, or no ext4 filesystem inside (it was locked again)
  6    the passphrase (or the recovery key) opens no keyslot; nothing done
  130  killed by Ctrl+C (SIGINT) before it finished`
