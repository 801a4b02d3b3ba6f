package main

// Shipping luksdock like a sysadmin tool: --version, shell completions that
// know the docked disks, examples in --help, and the hidden commands the
// package build uses to write man pages and completion scripts from this
// very command tree (so a new flag reaches them without anyone writing it
// twice). scripts/package runs `luksdock gen-man` and
// `luksdock gen-completions` on the binary it packages.

import (
	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/manpage"
	"luksdock/internal/version"
)

// addShipping sets the version, completions and examples on the command tree
// and registers the hidden gen-man and gen-completions commands.
func addShipping(root *cobra.Command) {
	root.Version = version.String()
	root.SetVersionTemplate("luksdock {{.Version}}\n")
	// `luksdock completion bash|zsh|fish` still works (for `go install`
	// users); the package installs the scripts, so it gets no man page.
	root.CompletionOptions.HiddenDefaultCmd = true
	root.DisableAutoGenTag = true
	root.AddCommand(newGenManCmd(), newGenCompletionsCmd())
	manpage.RegisterCompletions(root, core.DeviceCompletions)
}

func newGenManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages (section 8) of every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return manpage.GenTree(cmd.Root(), args[0])
		},
	}
}

func newGenCompletionsCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-completions DIR",
		Short:  "Write bash, zsh and fish completion scripts into DIR/{bash,zsh,fish}",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return manpage.GenCompletions(cmd.Root(), args[0])
		},
	}
}
