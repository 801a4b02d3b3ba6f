package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/core"
	"luksdock/disk"
	term "luksdock/internal/tty"
	"luksdock/inventory"
	"luksdock/pipeline"
	"luksdock/ui"
)

// wizardOptions are the root command's flags, used when it starts the
// wizard: --image/--size and the options it shares with prepare, declared
// once (targetFlags, optionFlags).
type wizardOptions struct {
	target targetFlags
	opts   optionFlags
	json   bool
}

// flags registers the wizard's flags on the root command.
func (wo *wizardOptions) flags(cmd *cobra.Command) {
	wo.target.add(cmd, false, true)
	wo.opts.add(cmd, true)
	cmd.Flags().BoolVar(&wo.json, "json", false, "when the wizard ends, print each verified disk as one JSON line (the pipeline's result) instead of the summary")
}

// errNoTerminal is returned when the wizard is started without a terminal.
var errNoTerminal = errors.New("the wizard needs a terminal; for scripts and pipes use 'luksdock prepare' (see 'luksdock prepare --help')")

// openTerminal opens the controlling terminal for the wizard's input and
// drawing, so standard output stays free for the summary printed at the end.
func openTerminal() (*os.File, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("%w (opening /dev/tty: %v)", errNoTerminal, err)
	}
	if !term.Is(tty) {
		tty.Close()
		return nil, fmt.Errorf("%w (/dev/tty is not a terminal)", errNoTerminal)
	}
	return tty, nil
}

// runWizard starts the interactive wizard. It draws on the terminal
// (/dev/tty) and, after it ends, prints to standard output a summary a
// person can read of every disk it prepared and verified (and of a last run
// that did not finish), or with --json one JSON line (the pipeline's
// Result) per disk.
func (wo *wizardOptions) run(cmd *cobra.Command) error {
	wf := wo
	if wf.target.size != "" && wf.target.image == "" {
		return usageError{errors.New("--size goes with --image")}
	}
	cfg := ui.Config{
		AllowInternal: wf.opts.allowInternal,
		Engine:        wf.opts.engine,
		Rescan:        2 * time.Second,
		Scan:          core.System.Scan,
		KernelLog:     disk.ReadKernelLog,
		// Choosing a disk closes dm-crypt mappings a killed luksdock left
		// on it; the run shows the notes.
		DeviceTarget: func(name string) (*pipeline.Target, error) { return core.DeviceTarget("/dev/"+name, true) },
		PBKDF:        wf.opts.pbkdf,
		// A verified disk goes into the inventory, as with prepare.
		InventoryPath: inventory.Path(),
	}
	if err := cfg.PBKDF.Validate(false); err != nil {
		return usageError{err}
	}
	if wf.target.image != "" {
		size, err := wf.target.sizeBytes()
		if err != nil {
			return err
		}
		if _, err := core.ImageTarget(wf.target.image, size, false); err != nil {
			return err
		}
		cfg.Images = []ui.Image{{Path: wf.target.image, Size: size}}
	}
	tty, err := openTerminal()
	if err != nil {
		return usageError{err}
	}
	defer tty.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A hang-up (a dropped SSH connection, a closed terminal window) ends
	// the program like SIGTERM, not luksdock: the run in progress finishes
	// its step and stops below (m.Close), and core.JournalRun records how it
	// ended, since the terminal is gone.
	surviveBrokenOutput()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var hungUp atomic.Value // the SIGHUP that ended the wizard
	go func() {
		select {
		case s := <-hup:
			hungUp.Store(s)
			cancel()
		case <-ctx.Done():
		}
	}()
	if ch, err := disk.WatchHotplug(ctx); err == nil {
		cfg.Hotplug = ch
	} else {
		cfg.Rescan = time.Second // no uevents: poll sysfs instead
	}
	// bubbletea logs raw terminal input (the typed passphrase included) to
	// the file named by TEA_TRACE; never let it.
	os.Unsetenv("TEA_TRACE")
	m := ui.New(cfg)
	p := tea.NewProgram(m, tea.WithInput(tty), tea.WithOutput(tty), tea.WithContext(ctx))
	_, runErr := p.Run()
	// A run still in progress (the program was ended by a signal) finishes
	// its step, closes the volume and releases the disk before we return.
	if m.Running() {
		fmt.Fprintln(cmd.ErrOrStderr(), "luksdock: stopping safely: the step in progress finishes, then the volume is closed and the disk released…")
	}
	m.Close()
	sig, _ := hungUp.Load().(os.Signal)
	core.JournalWizard(m.Results(), m.LastError(), sig)
	out := cmd.OutOrStdout()
	if wf.json {
		for _, r := range m.Results() {
			b, err := json.Marshal(r)
			if err == nil {
				fmt.Fprintf(out, "%s\n", b)
			}
		}
	} else {
		fmt.Fprint(out, ui.Summary(m.Results(), m.LastError()))
	}
	if err := m.LastError(); err != nil {
		return ui.AfterWizard(err) // its advice in the wizard's terms
	}
	if runErr != nil && !errors.Is(runErr, tea.ErrProgramKilled) {
		return runErr
	}
	return nil
}

// rootExample is the wizard's EXAMPLES (in --help and the man page).
// Together the commands' examples walk the manual procedure luksdock
// replaces: find the docked disk (dmesg), look at the plan, prepare,
// verify, and use the disk by hand.
const rootExample = `  # Dock the disk, then start the wizard: it offers the disk, asks for a
  # label and a passphrase, shows the plan and wants the disk's name typed.
  luksdock

  # The same without the wizard, step by step:
  luksdock list --wait      # dock the disk now: prints it, as dmesg would
  luksdock prepare --device /dev/sdi --label backups01 --dry-run    # the plan
  luksdock prepare --device /dev/sdi --label backups01 --passphrase-file - --confirm sdi \
      --header-backup /root/backups01-header.img
  luksdock verify --device /dev/sdi --passphrase-file -

  # Use the disk by hand (the desktop does this when it is docked):
  cryptsetup open /dev/sdi1 backups01 && mount /dev/mapper/backups01 /mnt
  umount /mnt && cryptsetup close backups01`

// rootFiles are the FILES of the wizard's and prepare's man pages.
var rootFiles = [][2]string{
	{"/dev/sdX", "the disk it prepares: wiped, partitioned, LUKS-formatted, ext4 inside (prepare and the wizard; verify and list only read)."},
	{"IMAGE", "with --image, the image file; created sparse with --size when it does not exist (never over an existing file of another size)."},
	{"HEADER-BACKUP", "with --header-backup, a copy of the LUKS header (cryptsetup luksHeaderBackup), mode 0600; an existing file is never overwritten."},
	{"/dev/mapper/luksdock-*", "the kernel engine's dm-crypt mapping while a volume is open (luksdock-LABEL, luksdock-verify-PID); removed when the run ends, and a stale unused one is closed by the next run."},
	{"$TMPDIR/luksdock-fuse-*", "the userspace engine's private FUSE mount directory (mode 0700) while a volume is open; removed when the run ends, and a dead one is removed by the next run."},
	{"/sys, /proc, /dev/kmsg", "read to find disks, their users and the kernel's log of their arrival."},
}
