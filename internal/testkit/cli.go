package testkit

import (
	"io"
	"os"
	"os/exec"
)

// The test binary of package main as the luksdock CLI: a separate process,
// for what one process cannot show (real signals to a process or its group,
// concurrent luksdocks), without building the binary. Package main's
// TestMain calls ServeCLI first; a test starts the CLI with CLICommand.

// asCLIEnv marks a test binary started by CLICommand.
const asCLIEnv = "LUKSDOCK_TEST_AS_CLI"

// ServeCLI runs main, the CLI's entry point (package main's run), with the
// process's arguments, standard streams and exit code when this test
// binary was started by CLICommand; otherwise it returns at once.
func ServeCLI(main func(args []string, stdin io.Reader, stdout, stderr io.Writer) int) {
	if os.Getenv(asCLIEnv) != "1" {
		return
	}
	os.Unsetenv(asCLIEnv) // not for the programs luksdock runs
	os.Exit(main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// CLICommand is a command that runs this test binary as the luksdock CLI
// with args (argv as a real luksdock has it) and this process's
// environment; the caller sets its standard streams and may add to Env.
func CLICommand(args ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), asCLIEnv+"=1")
	return cmd
}
