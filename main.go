// Command luksdock turns a bare disk in a USB dock into a LUKS-encrypted,
// labelled offsite backup disk: safely, with the wrong disk out of reach and
// no way to walk away with a disk that does not unlock.
//
// Run without arguments on a terminal it starts a wizard. `luksdock prepare`
// runs the same pipeline non-interactively, `luksdock verify` checks a
// prepared disk, and `luksdock list` shows the disks it can see.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/internal/secret"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
	"luksdock/recovery"
)

const exitCodesHelp = `Exit codes:
  0    success (prepare: the disk is made and verified)
  2    usage error (bad flags or arguments)
  3    refused by safety: wrong --confirm, the disk is in use, internal, too
       small, read-only, a partition; bad label or passphrase; missing tools.
       Nothing was written.
  4    a step failed; the message names the step and the state of the disk
  5    verification failed: the disk is damaged or not a finished backup
       disk (no LUKS header, no clean ext4, a table Linux does not read, no
       kernel finds it with 512- or 4096-byte sectors), or the surface
       check found bad sectors
  6    verify: the passphrase (or the recovery key) unlocks no keyslot (a
       typo, or another disk)
  130  interrupted (SIGINT/SIGTERM): the step in progress finished (an
       erase or surface check stopped at its next request and kept its
       position), no later step started, the volume was closed and the disk
       released; the state is reported. A run whose last step finished
       exits 0.`

// Exit codes: the CLI's mapping of the pipeline's failure kinds.
const (
	exitUsage           = 2
	exitRefused         = 3
	exitStepFailed      = 4
	exitNotVerified     = 5
	exitWrongPassphrase = 6
	exitInterrupted     = 130
)

// exitCode maps an error to luksdock's exit code (exitCodesHelp).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	switch pipeline.KindOf(err) {
	case pipeline.KindRefused:
		return exitRefused
	case pipeline.KindNotVerified:
		return exitNotVerified
	case pipeline.KindWrongPassphrase:
		return exitWrongPassphrase
	case pipeline.KindInterrupted:
		return exitInterrupted
	}
	return exitStepFailed
}

// usageError marks errors in flags and arguments (exit 2).
type usageError struct{ error }

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q for %q (flags start with --)", args[0], cmd.CommandPath())}
	}
	return nil
}

func main() {
	// luksdock holds the passphrase and the volume key in its memory: never
	// write them into a core file (GOTRACEBACK=crash, SIGABRT, a crash in a
	// child tool). Children inherit the limit.
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0})
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "luksdock: %v\nRun 'luksdock --help' for usage.\n", err)
		return exitUsage
	}
	var pe *pipeline.Error
	errors.As(err, &pe)
	fmt.Fprintf(stderr, "luksdock: %v\n", err)
	if pe != nil && pe.State != "" {
		fmt.Fprintf(stderr, "luksdock: disk state: %s\n", pe.State)
	}
	return exitCode(err)
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "luksdock",
		Short: "Turn a disk in a USB dock into a verified LUKS-encrypted backup disk",
		Long: `luksdock turns a bare disk in a USB dock into a LUKS-encrypted, labelled
offsite backup disk: it finds the disk you just docked, wipes it, makes one
partition, formats it with LUKS2 (cryptsetup), makes an ext4 filesystem with
your label inside, and proves the result unlocks and fscks clean.

Run without a command on a terminal, it starts a wizard. The wizard draws on
the terminal; when it ends it prints to standard output a summary of each
disk it prepared and verified, and of a last run that did not finish (with
--json: one JSON line per disk, the "result" object of 'prepare --json').
The same pipeline runs non-interactively as 'luksdock prepare'.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	addWizardFlags(root)
	root.RunE = func(cmd *cobra.Command, _ []string) error { return runWizard(cmd) }
	root.AddCommand(newPrepareCmd(), newVerifyCmd(), newListCmd(), newInventoryCmd())
	addShipping(root) // --version, completions, examples, gen-man, gen-completions (ship.go)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	return root
}

// targetFlags are --device / --image / --size: prepare and verify take a
// target; the wizard takes --image and --size (it offers the image in its
// disk list).
type targetFlags struct {
	device, image, size string
}

func (tf *targetFlags) add(cmd *cobra.Command, withDevice, withSize bool) {
	if withDevice {
		cmd.Flags().StringVar(&tf.device, "device", "", "the whole disk to use, e.g. /dev/sdi")
	}
	cmd.Flags().StringVar(&tf.image, "image", "", "an image file to use instead of a disk (the wizard lists it with the disks)")
	if withSize {
		cmd.Flags().StringVar(&tf.size, "size", "", "create the image with this size when it does not exist (512M, 64G, 1T)")
	}
}

// size parses --size (0 when not given).
func (tf *targetFlags) sizeBytes() (int64, error) {
	if tf.size == "" {
		return 0, nil
	}
	n, err := pipeline.ParseSize(tf.size)
	if err != nil {
		return 0, usageError{fmt.Errorf("--size: %w", err)}
	}
	return n, nil
}

// addEngineFlag declares --engine (the wizard, prepare and verify take it).
func addEngineFlag(cmd *cobra.Command, engine *string) {
	cmd.Flags().StringVar(engine, "engine", string(pipeline.EngineAuto), "how to open the volume: auto, kernel or userspace")
}

// optionFlags are the choices the wizard and prepare share, declared once:
// --allow-internal, --engine and the PBKDF cost. The wizard hides the
// advanced ones from its --help.
type optionFlags struct {
	allowInternal bool
	engine        string
	pbkdf         luks.PBKDF
}

func (of *optionFlags) add(cmd *cobra.Command, wizard bool) {
	f := cmd.Flags()
	f.BoolVar(&of.allowInternal, "allow-internal", false, "allow a disk that is not on USB (confirm with internal:NAME)")
	addEngineFlag(cmd, &of.engine)
	f.StringVar(&of.pbkdf.Type, "pbkdf", "", "keyslot PBKDF: argon2id, argon2i or pbkdf2 (default: cryptsetup's)")
	f.IntVar(&of.pbkdf.MemoryKiB, "pbkdf-memory", 0, "PBKDF memory cost in KiB (argon2)")
	f.IntVar(&of.pbkdf.Parallel, "pbkdf-parallel", 0, "PBKDF parallel threads (argon2)")
	f.IntVar(&of.pbkdf.ForceIterations, "pbkdf-force-iterations", 0, "PBKDF iterations, skipping cryptsetup's benchmark")
	f.IntVar(&of.pbkdf.IterTimeMS, "iter-time", 0, "PBKDF unlock time in milliseconds for cryptsetup's benchmark")
	if wizard {
		for _, n := range []string{"engine", "pbkdf-parallel", "iter-time"} {
			_ = f.MarkHidden(n)
		}
	}
}

// target looks the target up. With tidy, dm-crypt mappings a killed
// luksdock left on it are closed first and the target's Notes say so
// (pipeline.Tidied).
func (tf *targetFlags) target(tidy bool) (*pipeline.Target, error) {
	if !tidy || (tf.device == "") == (tf.image == "") {
		return tf.lookup()
	}
	return pipeline.Tidied(tf.device+tf.image, tf.image != "", tf.lookup)
}

func (tf *targetFlags) lookup() (*pipeline.Target, error) {
	switch {
	case tf.device != "" && tf.image != "":
		return nil, usageError{errors.New("give either --device or --image, not both")}
	case tf.device == "" && tf.image == "":
		return nil, usageError{errors.New("give --device /dev/sdX or --image PATH")}
	case tf.device != "" && tf.size != "":
		return nil, usageError{errors.New("--size goes with --image only")}
	case tf.device != "":
		return pipeline.DeviceTarget(disk.Sys{Root: "/"}, tf.device)
	}
	size, err := tf.sizeBytes()
	if err != nil {
		return nil, err
	}
	return pipeline.ImageTarget(tf.image, size)
}

// addPassphraseFlag declares --passphrase-file (prepare and verify).
func addPassphraseFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "passphrase-file", "", "file holding the passphrase on one line, or - for standard input")
}

// readPassphrase reads the passphrase from a file or "-" (standard input).
func readPassphrase(path string, stdin io.Reader) ([]byte, error) {
	if path == "" {
		return nil, usageError{errors.New("--passphrase-file FILE (or - for standard input) is required; passphrases are never taken as arguments")}
	}
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf("passphrase file: %w", err)}
		}
		defer f.Close()
		r = f
	}
	p, err := pipeline.ReadPassphrase(r)
	if err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
	}
	return p, nil
}

// signalContext is cancelled by SIGINT or SIGTERM. The pipeline finishes the
// step in progress, closes the volume and releases the disk. finished is
// called when the run has returned: it reports whether a signal was taken
// before that (and so announced "stopping safely"); a signal after it is
// only acknowledged.
func signalContext(stderr io.Writer) (ctx context.Context, stop func(), finished func() (signalled bool)) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	var mu sync.Mutex
	var done, got bool
	go func() {
		for s := range ch {
			mu.Lock()
			if done {
				fmt.Fprintf(stderr, "luksdock: %v: the run has already finished\n", s)
			} else {
				got = true
				fmt.Fprintf(stderr, "luksdock: %v: stopping safely after the current step (an erase or surface check stops at its next request)...\n", s)
				cancel()
			}
			mu.Unlock()
		}
	}()
	finished = func() bool {
		mu.Lock()
		defer mu.Unlock()
		done = true
		return got
	}
	return ctx, func() { signal.Stop(ch); cancel() }, finished
}

func newPrepareCmd() *cobra.Command {
	var tf targetFlags
	var of optionFlags
	var o pipeline.Options
	var table, passFile, confirm string
	var asJSON, dryRun bool
	cmd := &cobra.Command{
		Use:   "prepare (--device /dev/sdX | --image PATH [--size SIZE]) --label LABEL --passphrase-file FILE|- --confirm NAME",
		Short: "Prepare a backup disk non-interactively (the wizard's pipeline)",
		Long: `prepare wipes the target, makes one partition from 1 MiB to the end (none
with --table none: LUKS on the whole disk), formats it with LUKS2
(aes-xts-plain64, 512-bit key; LUKS1 with --luks1) whose label is LABEL,
opens it, makes an ext4 filesystem labelled LABEL inside (4096-byte blocks,
which mount behind any dock), closes it, and verifies that the passphrase
unlocks it (with luksdock's own LUKS code and with cryptsetup, to the volume
key it generated; started during open and mkfs), that e2fsck -fn is clean,
who owns the top directory, and with which sector sizes a kernel finds the
volume.

Docks disagree about sector size: many USB bridges present a disk with
4096-byte logical sectors, SATA and other docks with 512. The default table
(--table gpt) is one GPT valid with both, so the disk unlocks in any dock.
--table none puts LUKS directly on the whole disk (no partition; also found
with both). --table mbr counts the sectors of the dock it is made in and is
found only through docks of that sector size.

The filesystem's top directory belongs to the person who ran luksdock: the
user behind sudo (SUDO_UID, SUDO_GID) or pkexec (PKEXEC_UID and that user's
primary group), root when there is none; --owner USER or UID:GID overrides
(mke2fs -E root_owner).

With --recovery-key FILE it also generates a recovery key (256 bits from
the system's random generator, 8 groups of 8 letters, as
systemd-cryptenroll --recovery-key makes them), writes it to FILE (a new
file, mode 0600, which must not be on the target disk) and adds it as a
second LUKS keyslot; verify then proves that it opens the disk too. Type it
exactly as written, dashes included, at the disk's passphrase prompt when
the passphrase is lost. Print it, keep the paper away from the disk and
delete the file.

Before anything is written the drive's SMART health is read with smartctl
(read-only commands; through a USB dock with SAT or the bridge's documented
pass-through). A failing or degrading disk (FAILED self-assessment, an
attribute at its threshold, reallocated, pending or offline-uncorrectable
sectors) is refused unless --accept-unhealthy is given too. A dock that
passes no SMART commands, or a missing smartctl, is said and does not stop
the run.

--set NAME names the rotation set the disk belongs to ("offsite"); it is
kept in the LUKS2 subsystem field (cryptsetup luksDump shows it), so any
machine can tell. Every verified disk is recorded in the inventory (see
'luksdock inventory'); a label that another disk of the same set has there
is refused, with the next free one suggested (without --set: a warning).

--confirm must name the target: the kernel name of a disk (sdi for /dev/sdi),
internal:NAME for a disk not on USB (which also needs --allow-internal), or
the file name of an image (disk.img). Otherwise nothing is written.

The passphrase is the line in --passphrase-file without its line ending,
exactly what you will type at the unlock prompt; '-' reads standard input. A
file of more than one line is refused rather than cut short. The passphrase
is never accepted as an argument or from the environment.

Engines: 'kernel' opens the volume with cryptsetup (device-mapper);
'userspace' encrypts in luksdock and serves the volume to mkfs.ext4 through
FUSE, for machines without device-mapper and for image files. 'auto' picks
kernel for block devices when device-mapper works, userspace otherwise.

What a killed luksdock left on the target is cleaned up first and reported:
an unused luksdock-* dm-crypt mapping on its partitions, a dead luksdock FUSE
mount (not with --dry-run, which touches nothing).

The PBKDF flags are passed to cryptsetup as they are; without them
cryptsetup's own benchmarked defaults apply.

--erase writes the whole LUKS data segment with zeros through the encryption
after luksFormat and before mkfs, so the disk holds only ciphertext (old data
is gone; used space cannot be told from free space). --surface-check then
reads it all back and checks that every sector decrypts to zeros: a disk
that returns wrong data (fake capacity) or read errors is refused with exit
5, naming the first bad byte and the count. Both run at the disk's speed and
print their progress (a line updated in place on a terminal; 'progress'
events with --json). Ctrl+C or SIGTERM stops them within a second; the
position is saved with the disk's identity and LUKS UUID (in
$LUKSDOCK_STATE_DIR, default /var/lib/luksdock, or
~/.local/state/luksdock for a user other than root), also every few seconds
while they run, so after an interruption, a kill or an undock the same
command on the same disk continues from there (it says so; --restart
starts over instead).

` + exitCodesHelp,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ran := false
			defer func() {
				if asJSON && !ran {
					jsonRefusal(cmd.OutOrStdout(), err, pipeline.StepPreflight)
				}
			}()
			if o.Label == "" {
				return usageError{errors.New("--label is required")}
			}
			o.Table = disk.TableType(table) // checked with the other options (exit 3)
			if o.SurfaceCheck && !o.Erase {
				return usageError{errors.New("--surface-check reads back what --erase writes: give both")}
			}
			if o.Restart && !o.Erase {
				return usageError{errors.New("--restart goes with --erase")}
			}
			if confirm == "" && !dryRun {
				return usageError{errors.New("--confirm NAME is required: the kernel name of the disk (sdi) or the image's file name")}
			}
			if o.RecoveryKeyFile != "" {
				k, err := recovery.Generate()
				if err != nil {
					return err
				}
				defer secret.Free(k)
				o.RecoveryKey = k
			}
			t, err := tf.target(!dryRun)
			if err != nil {
				return err
			}
			o.Table, o.Engine, o.PBKDF, o.AllowInternal = disk.TableType(table), pipeline.Engine(of.engine), of.pbkdf, of.allowInternal
			p, err := pipeline.NewPlan(t, o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if dryRun {
				fmt.Fprint(out, p.Script())
				return nil
			}
			pass, err := readPassphrase(passFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer secret.Free(pass)
			ctx, stop, finished := signalContext(cmd.ErrOrStderr())
			defer stop()
			emit := textEvents(out, 0)
			if asJSON {
				emit = jsonEvents(out)
			}
			invPath := inventory.Path()
			var attached []disk.Disk
			if !t.Image {
				attached, _ = disk.Sys{Root: "/"}.Scan()
			}
			if w, err := checkLabelInSet(invPath, t, p.Opts, attachedLabels(attached)); err != nil {
				return err
			} else if w != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: warning: %s\n", w)
			}
			oldUUID := targetLUKSUUID(t)
			drive := driveOf(t)
			ran = true
			var res *pipeline.Result
			res, err = p.Run(ctx, confirm, pass, emit)
			if err == nil {
				if ierr := recordPrepared(invPath, t, p.Opts, oldUUID, res, drive); ierr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: warning: the disk is ready, but it was not recorded in the inventory: %v\n", ierr)
				} else if !asJSON {
					fmt.Fprintf(out, "  inventory:    recorded in %s\n", invPath)
				}
			}
			if finished() && err == nil {
				// The signal came during the last step or after it: every
				// step finished, nothing was stopped, the disk is verified.
				fmt.Fprintln(cmd.ErrOrStderr(), "luksdock: the signal came as the run was completing: all steps finished and the disk is verified")
			}
			return err
		},
	}
	tf.add(cmd, true, true)
	of.add(cmd, false)
	f := cmd.Flags()
	f.StringVar(&o.Label, "label", "", "filesystem and LUKS2 label, at most 16 bytes (e.g. backups01)")
	addPassphraseFlag(cmd, &passFile)
	f.StringVar(&confirm, "confirm", "", "the target's name, to confirm it may be destroyed (sdi, internal:sda, disk.img)")
	f.StringVar(&table, "table", string(disk.TableGPT), "partition table: gpt, none or mbr (gpt: one GPT for 512- and 4096-byte docks; none: LUKS on the whole disk; mbr: only the dock's own sector size)")
	f.BoolVar(&o.LUKS1, "luks1", false, "LUKS1 instead of LUKS2, for old systems")
	f.StringVar(&o.HeaderBackup, "header-backup", "", "write a LUKS header backup here (mode 0600; never overwrites; refused on the target itself)")
	f.StringVar(&o.Set, "set", "", "the rotation set this disk belongs to (e.g. offsite): kept in the LUKS2 subsystem field and the inventory")
	f.StringVar(&o.RecoveryKeyFile, "recovery-key", "", "generate a recovery key, add it as a second keyslot and write it to this new file (mode 0600; never overwrites; not on the target disk)")
	f.BoolVar(&o.AcceptUnhealthy, "accept-unhealthy", false, "use a disk even though its SMART health is failing or degrading")
	f.StringVar(&o.Owner, "owner", "", "owner of the filesystem's top directory: USER or UID:GID (default: the user behind sudo or pkexec, else root)")
	f.BoolVar(&o.Erase, "erase", false, "overwrite the whole disk through the encryption (zeros, encrypted) before mkfs; resumable")
	f.BoolVar(&o.SurfaceCheck, "surface-check", false, "after --erase, read the whole disk back and refuse it (exit 5) if any sector is wrong or unreadable")
	f.BoolVar(&o.Restart, "restart", false, "with --erase: start over, even if an interrupted erase of this disk could be continued")
	f.BoolVar(&asJSON, "json", false, "print one JSON event per line")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan as a shell script that does the same by hand (on a kernel with device-mapper) and touch nothing")
	return cmd
}

func newVerifyCmd() *cobra.Command {
	var tf targetFlags
	var passFile, engine, rkFile string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify (--device DEV | --image PATH) --passphrase-file FILE|- [--recovery-key-file FILE|-]",
		Short: "Check that a prepared disk unlocks with the passphrase and fscks clean",
		Long: `verify reads partition 1 of the disk or image (or, with no partition table,
LUKS on the whole disk), unseals a LUKS keyslot with the passphrase with
luksdock's own LUKS code (independent of cryptsetup; luks.go for LUKS1),
unlocks it with cryptsetup too (both must give one volume key), runs e2fsck
-fn and dumpe2fs on the decrypted ext4 and reports the owner of its top
directory (debugfs). It reports with which logical sector sizes (512, 4096)
a Linux kernel finds the volume, warns when only one, and fails (exit 5)
when neither: the partition table must be one Linux reads when the disk
is docked (not a GPT readable only from its backup header, nor one without
a protective MBR). It writes nothing to the disk; an unused luksdock-* dm-crypt mapping a killed
luksdock left on it is closed first, and reported.

With --recovery-key-file it also proves that the recovery key in FILE ('-':
standard input) opens the disk, with luks.go and with cryptsetup. The file
may be the one prepare --recovery-key wrote, or the key typed in (case,
spaces and dashes do not matter here; at cryptsetup's prompt they do).

` + exitCodesHelp,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ran := false
			defer func() {
				if asJSON && !ran {
					jsonRefusal(cmd.OutOrStdout(), err, pipeline.StepVerify)
				}
			}()
			t, err := tf.target(true)
			if err != nil {
				return err
			}
			if rkFile == "-" && passFile == "-" {
				return usageError{errors.New("--passphrase-file and --recovery-key-file cannot both be standard input")}
			}
			pass, err := readPassphrase(passFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer secret.Free(pass)
			var rk []byte
			if rkFile != "" {
				if rk, err = recovery.ReadFile(rkFile, cmd.InOrStdin()); err != nil {
					return &pipeline.Error{Kind: pipeline.KindRefused, Step: pipeline.StepVerify, Err: err}
				}
				defer secret.Free(rk)
			}
			out := cmd.OutOrStdout()
			emit := textEvents(out, 1)
			if asJSON {
				emit = jsonEvents(out)
			}
			ran = true
			_, err = pipeline.VerifyWithRecoveryKey(context.Background(), t, pass, rk, pipeline.Engine(engine), emit)
			return err
		},
	}
	tf.add(cmd, true, false)
	addPassphraseFlag(cmd, &passFile)
	addEngineFlag(cmd, &engine)
	cmd.Flags().StringVar(&rkFile, "recovery-key-file", "", "also prove that the recovery key in this file (or - for standard input) opens the disk")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON events, the last one the result")
	return cmd
}

// jsonRefusal prints, for --json, the failed event of an error that came
// before the pipeline ran (a bad target, plan or passphrase), so that
// automation reading standard output learns why nothing happened.
func jsonRefusal(w io.Writer, err error, step pipeline.StepID) {
	if err == nil {
		return
	}
	e := pipeline.Event{Time: time.Now(), Kind: pipeline.EventFailed, Step: step, Message: err.Error(), State: pipeline.StateAfter("")}
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		if pe.Step != "" {
			e.Step = pe.Step
		}
		e.Message, e.Failure = pe.Err.Error(), pipeline.KindOf(pe)
		if pe.State != "" {
			e.State = pe.State
		}
	}
	jsonEvents(w)(e)
}

// jsonEvents prints one JSON event per line.
func jsonEvents(w io.Writer) func(pipeline.Event) {
	enc := json.NewEncoder(w)
	return func(e pipeline.Event) { _ = enc.Encode(e) }
}

// textEvents prints what the events say, folded into a pipeline.Progress:
// each step with the command it really runs (from its start event) and how
// it ended, and the progress of long steps: on a terminal one line updated
// in place, else a line every 10%. total is the number of steps when no
// plan event will say it (verify).
func textEvents(w io.Writer, total int) func(pipeline.Event) {
	var p pipeline.Progress
	tty := isTerminal(w)
	inLine := false // a progress line without its newline is on the terminal
	lastTenth := -1
	return func(e pipeline.Event) {
		if inLine && e.Kind != pipeline.EventProgress {
			fmt.Fprintln(w)
			inLine = false
		}
		s := p.Apply(e)
		switch e.Kind {
		case pipeline.EventPlan:
			total = len(e.Steps)
			fmt.Fprintf(w, "engine: %s (%s)\n", e.Engine, e.Message)
		case pipeline.EventWarning:
			fmt.Fprintf(w, "warning: %s\n", e.Message)
		case pipeline.EventInfo:
			fmt.Fprintf(w, "note: %s\n", e.Message)
		case pipeline.EventProgress:
			line := progressLine(e.Progress)
			if tty {
				fmt.Fprintf(w, "\r      %-72s", line)
				inLine = true
			} else if tenth := int(10 * e.Progress.Fraction); tenth != lastTenth {
				lastTenth = tenth
				fmt.Fprintf(w, "      %s\n", line)
			}
		case pipeline.EventStart:
			lastTenth = -1
			fmt.Fprintf(w, "[%d/%d] %s\n", p.Index(e.Step)+1, max(total, len(p.Steps)), s.Title)
			if s.Ran != "" {
				fmt.Fprintf(w, "      $ %s\n", strings.ReplaceAll(s.Ran, "\n", "\n        "))
			}
		case pipeline.EventDone:
			fmt.Fprintf(w, "      done in %s: %s\n", e.Elapsed.Round(time.Millisecond), e.Message)
		case pipeline.EventFailed:
			if s != nil && s.State == pipeline.StepStopped {
				fmt.Fprintf(w, "      STOPPED: %s\n", e.Message)
			} else {
				fmt.Fprintf(w, "      FAILED: %s\n", e.Message)
			}
		case pipeline.EventResult:
			r := e.Result
			fmt.Fprintf(w, "\nDone: %s is a verified backup disk.\n", r.Target)
			fmt.Fprintf(w, "  partition:    %s\n", r.Partition)
			fmt.Fprintf(w, "  LUKS%d UUID:   %s\n", r.LUKS.Version, r.LUKS.UUID)
			fmt.Fprintf(w, "  cipher:       %s, %d-byte sectors, data at %d, %s\n", r.LUKS.Cipher, r.LUKS.SectorSize, r.LUKS.DataOffset, pipeline.HumanSize(r.LUKS.DataSize))
			fmt.Fprintf(w, "  label:        %s (ext4, e2fsck -fn clean)\n", r.FSLabel)
			fmt.Fprintf(w, "  owner:        %s (of the top directory, mode %s)\n", r.Owner, r.TopDirMode)
			dock := fmt.Sprintf("the dock reports %d-byte logical, %d-byte physical sectors", r.LogicalSector, r.PhysicalSector)
			if r.PhysicalSector == 0 {
				dock = "an image file, read here as 512-byte sectors"
			}
			fmt.Fprintf(w, "  found with:   %s (%s)\n", pipeline.SectorViewsText(r.SectorViews), dock)
			if r.LUKS.Subsystem != "" {
				fmt.Fprintf(w, "  set:          %s (in the LUKS2 subsystem field)\n", r.LUKS.Subsystem)
			}
			if r.RecoveryKey {
				fmt.Fprintf(w, "  recovery key: opens it too (verified)")
				if r.RecoveryKeyFile != "" {
					fmt.Fprintf(w, "; written to %s: print it, keep the paper away from this disk, then delete the file", r.RecoveryKeyFile)
				}
				fmt.Fprintln(w)
			}
			if r.HeaderBackup != "" {
				fmt.Fprintf(w, "  header backup: %s\n", r.HeaderBackup)
				fmt.Fprintf(w, "                 with it, any passphrase the disk has now opens the disk forever, even after you change or remove that passphrase: keep it as safe as the passphrase\n")
			}
		}
	}
}

// progressLine is one progress event for people: percent, bytes, rate, ETA.
func progressLine(p *pipeline.Advance) string {
	s := fmt.Sprintf("%5.1f%%  %s of %s", 100*p.Fraction, pipeline.HumanSize(p.Done), pipeline.HumanSize(p.Total))
	if p.Rate > 0 {
		s += fmt.Sprintf(", %.0f MB/s", p.Rate/1e6)
		if p.Done < p.Total {
			s += ", " + time.Duration(p.ETA*float64(time.Second)).Round(time.Second).String() + " left"
		}
	}
	if p.Bad > 0 {
		s += fmt.Sprintf(", %d BAD sectors", p.Bad)
	}
	return s
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
