package manpage

// Shipping luksdock like a sysadmin tool: --version, shell completions that
// know the docked disks, examples in --help, and the hidden commands the
// package build uses to write man pages and completion scripts from this
// very command tree (so a new flag reaches them without anyone writing it
// twice). scripts/package runs `luksdock gen-man` and
// `luksdock gen-completions` on the binary it packages.

import (
	"github.com/spf13/cobra"

	"luksdock/disk"
	"luksdock/internal/version"
)

// Ship sets the version and the completions on the command tree of root
// (devices lists the disks for --device, as RegisterCompletions) and adds
// the hidden gen-man and gen-completions commands. Call it after every
// command was added.
func Ship(root *cobra.Command, devices func(sys disk.Sys, eligibleOnly, allowInternal bool) []string) {
	root.Version = version.String()
	root.SetVersionTemplate("luksdock {{.Version}}\n")
	// `luksdock completion bash|zsh|fish` still works (for `go install`
	// users); the package installs the scripts, so it gets no man page.
	root.CompletionOptions.HiddenDefaultCmd = true
	root.DisableAutoGenTag = true
	root.AddCommand(&cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write the man pages (section 8) of every command into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE:   func(cmd *cobra.Command, args []string) error { return GenTree(cmd.Root(), args[0]) },
	}, &cobra.Command{
		Use:    "gen-completions DIR",
		Short:  "Write bash, zsh and fish completion scripts into DIR/{bash,zsh,fish}",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE:   func(cmd *cobra.Command, args []string) error { return GenCompletions(cmd.Root(), args[0]) },
	})
	RegisterCompletions(root, devices)
}
