package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	tea "charm.land/bubbletea/v2"
	"golang.org/x/sys/unix"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/stop"
	term "luksdock/internal/tty"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// RunOptions are the wizard's choices from luksdock's command line.
type RunOptions struct {
	AllowInternal bool
	Engine        string
	PBKDF         luks.PBKDF
	// Image, when not "", is an image file offered with the disks, created
	// with Size (--size: 64G) when it does not exist ("": it must exist).
	Image, Size string
	// JSON prints each verified disk as one JSON line (the pipeline's
	// Result) instead of the summary.
	JSON bool
	// Out gets the summary, Err the messages of a stop.
	Out, Err io.Writer
}

// ErrNoTerminal is returned when the wizard is started without a terminal
// (inside a *core.UsageError: exit 2).
var ErrNoTerminal = errors.New("the wizard needs a terminal; for scripts and pipes use 'luksdock prepare' (see 'luksdock prepare --help')")

// openTerminal opens the controlling terminal for the wizard's input and
// drawing, so standard output stays free for the summary printed at the end.
func openTerminal() (*os.File, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &core.UsageError{Err: fmt.Errorf("%w (opening /dev/tty: %v)", ErrNoTerminal, err)}
	}
	if !term.Is(tty) {
		tty.Close()
		return nil, &core.UsageError{Err: fmt.Errorf("%w (/dev/tty is not a terminal)", ErrNoTerminal)}
	}
	return tty, nil
}

// Run runs the interactive wizard on this machine's disks. It draws on the
// terminal (/dev/tty) and, after it ends, prints to o.Out a summary a
// person can read of every disk it prepared and verified (and of a last run
// that did not finish), or with o.JSON one JSON line per disk. A hang-up
// ends it as SIGTERM would: the run in progress finishes its step and
// stops, and core.JournalWizard records how it ended.
// The options are checked first: a size without an image
// (core.CheckSizeChoice, as for prepare), PBKDF costs or a size that make
// no sense are usage errors (core.ErrTargetChoice, *core.UsageError).
func Run(o RunOptions) error {
	if err := core.CheckSizeChoice(o.Image, o.Size != ""); err != nil {
		return err
	}
	if err := o.PBKDF.Validate(false); err != nil {
		return &core.UsageError{Err: err}
	}
	size, err := core.ParseImageSize(o.Size)
	if err != nil {
		return err
	}
	cfg := Config{
		AllowInternal: o.AllowInternal,
		Engine:        o.Engine,
		Rescan:        2 * time.Second,
		Scan:          core.System.Scan,
		KernelLog:     disk.ReadKernelLog,
		// Choosing a disk closes dm-crypt mappings a killed luksdock left
		// on it; the run shows the notes.
		DeviceTarget: func(name string) (*pipeline.Target, error) { return core.DeviceTarget("/dev/"+name, true) },
		PBKDF:        o.PBKDF,
		// A verified disk goes into the inventory, as with prepare.
		InventoryPath: inventory.Path(),
	}
	if o.Image != "" {
		if _, err := core.ImageTarget(o.Image, size, false); err != nil {
			return err
		}
		cfg.Images = []Image{{Path: o.Image, Size: size}}
	}
	tty, err := openTerminal()
	if err != nil {
		return err
	}
	defer tty.Close()

	// A hang-up (a dropped SSH connection, a closed terminal window) ends
	// the program like SIGTERM, not luksdock: the run in progress finishes
	// its step and stops below (m.Close), and core.JournalWizard records
	// how it ended, since the terminal is gone.
	ctx, cancel, hungUp := stop.Hangup(context.Background())
	defer cancel()
	if ch, err := disk.WatchHotplug(ctx); err == nil {
		cfg.Hotplug = ch
	} else {
		cfg.Rescan = time.Second // no uevents: poll sysfs instead
	}
	// bubbletea logs raw terminal input (the typed passphrase included) to
	// the file named by TEA_TRACE; never let it.
	os.Unsetenv("TEA_TRACE")
	m := New(cfg)
	// bubbletea reads the terminal through the input filter, which keeps
	// what is typed into a masked field out of bubbletea's strings (see
	// keyFilter); its secret memory is wiped when the wizard ends.
	in := newKeyFilter(tty)
	m.c.in = in
	p := tea.NewProgram(m, tea.WithInput(in), tea.WithOutput(tty), tea.WithContext(ctx))
	_, runErr := p.Run()
	in.wipe()
	// A run still in progress (the program was ended by a signal) finishes
	// its step, closes the volume and releases the disk before we return.
	if n := m.StopNote(); n != "" {
		fmt.Fprintln(o.Err, "luksdock: stopping safely: "+n)
	}
	m.Close()
	core.JournalWizard(m.Results(), m.LastError(), hungUp())
	if o.JSON {
		for _, r := range m.Results() {
			b, err := json.Marshal(r)
			if err == nil {
				fmt.Fprintf(o.Out, "%s\n", b)
			}
		}
	} else {
		fmt.Fprint(o.Out, Summary(m.Results(), m.LastError(), m.ActionsDone()...))
	}
	if err := m.LastError(); err != nil {
		return AfterWizard(err) // its advice in the wizard's terms
	}
	if runErr != nil && !errors.Is(runErr, tea.ErrProgramKilled) {
		return runErr
	}
	return nil
}
