// Command luksdock turns a bare disk in a USB dock into a LUKS-encrypted,
// labelled offsite backup disk: safely, with the wrong disk out of reach and
// no way to walk away with a disk that does not unlock.
//
// Run without arguments on a terminal it starts a wizard. `luksdock prepare`
// runs the same pipeline non-interactively, `luksdock verify` checks a
// prepared disk, and `luksdock list` shows the disks it can see.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/pipeline"
)

// exitCodesHelp is the root command's (the wizard's) exit codes: every code
// luksdock exits with. Each command's help lists its own (help.ExitCodes).
var exitCodesHelp = help.ExitCodes("luksdock") + exitInterruptedHelp

// exitInterruptedHelp is the 130 line of a command that runs the pipeline.
var exitInterruptedHelp = help.ExitCodes("interrupted")

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
	if isUsage(err) {
		return exitUsage
	}
	var ce interface{ ExitCode() int } // a command's own status (inventory --check: 1)
	if errors.As(err, &ce) {
		return ce.ExitCode()
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

// isUsage says whether err is a usage error: the CLI's own (usageError) or
// core's (a selector or target given wrongly: core.UsageError,
// core.ErrTargetChoice).
func isUsage(err error) bool {
	var ue usageError
	var cu *core.UsageError
	var tc core.ErrTargetChoice
	return errors.As(err, &ue) || errors.As(err, &cu) || errors.As(err, &tc)
}

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
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	if isUsage(err) {
		// the help of the command that was given the wrong flags
		path := "luksdock"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		fmt.Fprintf(stderr, "luksdock: %v\nRun '%s --help' for usage.\n", err, path)
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
		Use:           "luksdock",
		Short:         "Turn a disk in a USB dock into a verified LUKS-encrypted backup disk",
		Long:          help.Text("luksdock") + exitCodesHelp,
		Example:       rootExample,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	manpage.SetFiles(root, rootFiles)
	var wo wizardOptions
	wo.flags(root)
	root.RunE = func(cmd *cobra.Command, _ []string) error { return wo.run(cmd) }
	root.AddCommand(newPrepareCmd())
	root.AddCommand(newVerifyCmd())
	root.AddCommand(newListCmd())
	root.AddCommand(newInventoryCmd())
	root.AddCommand(newOpenCmd())
	root.AddCommand(newCloseCmd())
	root.AddCommand(newPasswdCmd())
	root.AddCommand(newRecoveryKeyCmd())
	root.AddCommand(newRetireCmd())
	root.AddCommand(newHostCmd())
	root.AddCommand(newDockCmd())
	addShipping(root) // --version, completions, examples, gen-man, gen-completions (ship.go)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	return root
}
