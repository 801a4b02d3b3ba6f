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
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/pipeline"
)

const exitCodesHelp = `Exit codes:
  0    success (prepare: the disk is made and verified)
  2    usage error (bad flags or arguments)
  3    refused by safety: wrong --confirm, the disk is in use, internal, too
       small, read-only, a partition; bad label or passphrase; missing tools.
       Nothing was written.
  4    a step failed; the message names the step and the state of the disk
  5    verification failed: the disk does not unlock or fsck clean, or the
       surface check found bad sectors
  130  interrupted (SIGINT/SIGTERM): the step in progress finished (an
       erase or surface check stopped at its next request and kept its
       position), the volume was closed and the disk released; the state
       is reported`

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
		return pipeline.ExitUsage
	}
	var pe *pipeline.Error
	errors.As(err, &pe)
	fmt.Fprintf(stderr, "luksdock: %v\n", err)
	if pe != nil && pe.State != "" {
		fmt.Fprintf(stderr, "luksdock: disk state: %s\n", pe.State)
	}
	return pipeline.ExitCode(err)
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "luksdock",
		Short: "Turn a disk in a USB dock into a verified LUKS-encrypted backup disk",
		Long: `luksdock turns a bare disk in a USB dock into a LUKS-encrypted, labelled
offsite backup disk: it finds the disk you just docked, wipes it, makes one
partition, formats it with LUKS2 (cryptsetup), makes an ext4 filesystem with
your label inside, and proves the result unlocks and fscks clean.

Run without a command on a terminal, it starts a wizard. The same pipeline
runs non-interactively as 'luksdock prepare'.

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
	root.AddCommand(newPrepareCmd(), newVerifyCmd(), newListCmd())
	addShipping(root) // --version, completions, examples, gen-man, gen-completions (ship.go)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	return root
}

// targetFlags are --device / --image / --size, shared by prepare and verify.
type targetFlags struct {
	device, image, size string
}

func (tf *targetFlags) add(cmd *cobra.Command, withSize bool) {
	cmd.Flags().StringVar(&tf.device, "device", "", "the whole disk to use, e.g. /dev/sdi")
	cmd.Flags().StringVar(&tf.image, "image", "", "an image file to use instead of a disk")
	if withSize {
		cmd.Flags().StringVar(&tf.size, "size", "", "create the image with this size when it does not exist (512M, 64G, 1T)")
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
	var size int64
	if tf.size != "" {
		n, err := pipeline.ParseSize(tf.size)
		if err != nil {
			return nil, usageError{fmt.Errorf("--size: %w", err)}
		}
		size = n
	}
	return pipeline.ImageTarget(tf.image, size)
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
			return nil, &pipeline.Error{Code: pipeline.ExitRefused, Err: fmt.Errorf("passphrase file: %w", err)}
		}
		defer f.Close()
		r = f
	}
	p, err := pipeline.ReadPassphrase(r)
	if err != nil {
		return nil, &pipeline.Error{Code: pipeline.ExitRefused, Err: err}
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
	var o pipeline.Options
	var passFile, confirm string
	var asJSON, dryRun bool
	cmd := &cobra.Command{
		Use:   "prepare (--device /dev/sdX | --image PATH [--size SIZE]) --label LABEL --passphrase-file FILE|- --confirm NAME",
		Short: "Prepare a backup disk non-interactively (the wizard's pipeline)",
		Long: `prepare wipes the target, makes one partition from 1 MiB to the end (GPT, or
MBR with --table mbr), formats it with LUKS2 (aes-xts-plain64, 512-bit key;
LUKS1 with --luks1) whose label is LABEL, opens it, makes an ext4 filesystem
labelled LABEL inside, closes it, and verifies that the passphrase unlocks it
(with luks.go and with cryptsetup) and that e2fsck -fn is clean.

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
			if o.SurfaceCheck && !o.Erase {
				return usageError{errors.New("--surface-check reads back what --erase writes: give both")}
			}
			if o.Restart && !o.Erase {
				return usageError{errors.New("--restart goes with --erase")}
			}
			if confirm == "" && !dryRun {
				return usageError{errors.New("--confirm NAME is required: the kernel name of the disk (sdi) or the image's file name")}
			}
			t, err := tf.target(!dryRun)
			if err != nil {
				return err
			}
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
			defer clear(pass)
			ctx, stop, finished := signalContext(cmd.ErrOrStderr())
			defer stop()
			emit := textEvents(out, len(p.Steps))
			if asJSON {
				emit = jsonEvents(out)
			}
			ran = true
			_, err = p.Run(ctx, confirm, pass, emit)
			if finished() && err == nil {
				// The signal came after the pipeline's last check: nothing
				// was stopped, and the disk is verified.
				fmt.Fprintln(cmd.ErrOrStderr(), "luksdock: the signal came as the run was completing: all steps finished and the disk is verified")
			}
			return err
		},
	}
	tf.add(cmd, true)
	f := cmd.Flags()
	f.StringVar(&o.Label, "label", "", "filesystem and LUKS2 label, at most 16 bytes (e.g. backups01)")
	f.StringVar(&passFile, "passphrase-file", "", "file holding the passphrase on one line, or - for standard input")
	f.StringVar(&confirm, "confirm", "", "the target's name, to confirm it may be destroyed (sdi, internal:sda, disk.img)")
	f.StringVar(&o.Table, "table", "gpt", "partition table: gpt or mbr")
	f.BoolVar(&o.LUKS1, "luks1", false, "LUKS1 instead of LUKS2, for old systems")
	f.StringVar(&o.Engine, "engine", "auto", "how to open the volume: auto, kernel or userspace")
	f.StringVar(&o.PBKDF.Type, "pbkdf", "", "keyslot PBKDF: argon2id, argon2i or pbkdf2 (default: cryptsetup's)")
	f.IntVar(&o.PBKDF.MemoryKiB, "pbkdf-memory", 0, "PBKDF memory cost in KiB (argon2)")
	f.IntVar(&o.PBKDF.Parallel, "pbkdf-parallel", 0, "PBKDF parallel threads (argon2)")
	f.IntVar(&o.PBKDF.ForceIterations, "pbkdf-force-iterations", 0, "PBKDF iterations, skipping cryptsetup's benchmark")
	f.IntVar(&o.PBKDF.IterTimeMS, "iter-time", 0, "PBKDF unlock time in milliseconds for cryptsetup's benchmark")
	f.StringVar(&o.HeaderBackup, "header-backup", "", "write a LUKS header backup here (mode 0600; never overwrites)")
	f.BoolVar(&o.AllowInternal, "allow-internal", false, "allow a disk that is not on USB (confirm with internal:NAME)")
	f.BoolVar(&o.Erase, "erase", false, "overwrite the whole disk through the encryption (zeros, encrypted) before mkfs; resumable")
	f.BoolVar(&o.SurfaceCheck, "surface-check", false, "after --erase, read the whole disk back and refuse it (exit 5) if any sector is wrong or unreadable")
	f.BoolVar(&o.Restart, "restart", false, "with --erase: start over, even if an interrupted erase of this disk could be continued")
	f.BoolVar(&asJSON, "json", false, "print one JSON event per line")
	f.BoolVar(&dryRun, "dry-run", false, "print the plan as the equivalent shell commands and touch nothing")
	return cmd
}

func newVerifyCmd() *cobra.Command {
	var tf targetFlags
	var passFile, engine string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify (--device DEV | --image PATH) --passphrase-file FILE|-",
		Short: "Check that a prepared disk unlocks with the passphrase and fscks clean",
		Long: `verify reads partition 1 of the disk or image, unseals a LUKS keyslot with the
passphrase using luks.go (independent of cryptsetup), unlocks it with
cryptsetup too, and runs e2fsck -fn and dumpe2fs on the decrypted ext4. The
partition table must be one Linux reads when the disk is docked (not a GPT
readable only from its backup header, nor one without a protective MBR). It
writes nothing to the disk; an unused luksdock-* dm-crypt mapping a killed
luksdock left on it is closed first, and reported.

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
			pass, err := readPassphrase(passFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			defer clear(pass)
			out := cmd.OutOrStdout()
			emit := textEvents(out, 1)
			if asJSON {
				emit = jsonEvents(out)
			}
			ran = true
			_, err = pipeline.Verify(context.Background(), t, pass, engine, emit)
			return err
		},
	}
	tf.add(cmd, false)
	cmd.Flags().StringVar(&passFile, "passphrase-file", "", "file holding the passphrase on one line, or - for standard input")
	cmd.Flags().StringVar(&engine, "engine", "auto", "how to open the volume: auto, kernel or userspace")
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
		e.Message = pe.Err.Error()
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

// textEvents prints each step with the command it corresponds to, and the
// progress of long steps: on a terminal one line updated in place, else a
// line every 10%.
func textEvents(w io.Writer, total int) func(pipeline.Event) {
	n := 0
	tty := isTerminal(w)
	inLine := false // a progress line without its newline is on the terminal
	lastTenth := -1
	return func(e pipeline.Event) {
		if inLine && e.Kind != pipeline.EventProgress {
			fmt.Fprintln(w)
			inLine = false
		}
		switch e.Kind {
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
			n++
			fmt.Fprintf(w, "[%d/%d] %s\n", n, total, e.Message)
			if e.Command != "" {
				fmt.Fprintf(w, "      $ %s\n", e.Command)
			}
		case pipeline.EventPlan:
			fmt.Fprintf(w, "engine: %s (%s)\n", e.Engine, e.Message)
		case pipeline.EventWarning:
			fmt.Fprintf(w, "warning: %s\n", e.Message)
		case pipeline.EventInfo:
			fmt.Fprintf(w, "note: %s\n", e.Message)
		case pipeline.EventDone:
			fmt.Fprintf(w, "      done in %s: %s\n", e.Elapsed.Round(time.Millisecond), e.Message)
		case pipeline.EventFailed:
			fmt.Fprintf(w, "      FAILED: %s\n", e.Message)
		case pipeline.EventResult:
			r := e.Result
			fmt.Fprintf(w, "\nDone: %s is a verified backup disk.\n", r.Target)
			fmt.Fprintf(w, "  partition:    %s\n", r.Partition)
			fmt.Fprintf(w, "  LUKS%d UUID:   %s\n", r.LUKS.Version, r.LUKS.UUID)
			fmt.Fprintf(w, "  cipher:       %s, %d-byte sectors, data at %d, %s\n", r.LUKS.Cipher, r.LUKS.SectorSize, r.LUKS.DataOffset, pipeline.HumanSize(r.LUKS.DataSize))
			fmt.Fprintf(w, "  label:        %s (ext4, e2fsck -fn clean)\n", r.FSLabel)
			if r.HeaderBackup != "" {
				fmt.Fprintf(w, "  header backup: %s\n", r.HeaderBackup)
			}
		}
	}
}

// progressLine is one progress event for people: percent, bytes, rate, ETA.
func progressLine(p *pipeline.Progress) string {
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
