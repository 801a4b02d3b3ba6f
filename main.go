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
	"luksdock/internal/report"
	"luksdock/pipeline"
)

// Exit codes: the CLI's mapping of the pipeline's failure kinds.
const (
	exitUsage           = 2
	exitRefused         = 3
	exitStepFailed      = 4
	exitNotVerified     = 5
	exitWrongPassphrase = 6
	exitInterrupted     = 130
)

// exitCode maps an error to luksdock's exit code (internal/help/exit-*.txt).
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
	if code, ok := kindExit[pipeline.KindOf(err)]; ok {
		return code
	}
	return exitStepFailed
}

// kindExit are the exit codes of the pipeline's failure kinds; any other
// failure is a step that failed (exitStepFailed).
var kindExit = map[pipeline.Kind]int{pipeline.KindRefused: exitRefused, pipeline.KindNotVerified: exitNotVerified,
	pipeline.KindWrongPassphrase: exitWrongPassphrase, pipeline.KindInterrupted: exitInterrupted}

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

// command is command name as internal/help describes it (use, help texts,
// example, man-page FILES, its flags' help), with the flags of vars, taking
// no arguments and running run.
func command(name string, run func(*cobra.Command) error, vars ...help.Vars) *cobra.Command {
	cmd := help.Command(name)
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error { return run(cmd) }
	help.Bind(cmd, vars...)
	return cmd
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
	report.Failure(stderr, err)
	return exitCode(err)
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var wo wizardOptions
	root := command("luksdock", wo.run, wo.vars()...) // the wizard (wizard.go)
	root.SilenceUsage, root.SilenceErrors = true, true
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
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
	manpage.Ship(root, core.DeviceCompletions) // --version, completions, gen-man, gen-completions
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	return root
}
