package main

// Shipping luksdock like a sysadmin tool: --version, shell completions that
// know the docked disks, examples in --help, and the hidden commands the
// package build uses to write man pages and completion scripts from this
// very command tree (so a new flag reaches them without anyone writing it
// twice). scripts/package runs `luksdock gen-man` and
// `luksdock gen-completions` on the binary it packages.

import (
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"luksdock/disk"
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
	walk(root, registerCompletions)
}

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walk(s, f)
	}
}

// registerCompletions gives the flags of c that name disks, files or fixed
// choices their completions: --device completes with the disks
// `luksdock list` shows (for prepare only those it may prepare), the file
// flags complete files, the rest their values.
func registerCompletions(c *cobra.Command) {
	f := c.Flags()
	if f.Lookup("device") != nil {
		eligibleOnly := c.Name() == "prepare"
		_ = c.RegisterFlagCompletionFunc("device", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			allowInternal, _ := cmd.Flags().GetBool("allow-internal")
			return deviceCompletions(disk.Host, eligibleOnly, allowInternal), cobra.ShellCompDirectiveNoFileComp
		})
	}
	for _, name := range []string{"image", "passphrase-file", "header-backup", "recovery-key"} {
		if f.Lookup(name) != nil {
			_ = c.MarkFlagFilename(name)
		}
	}
	// A string flag whose help ends its first clause in a list of lower-case
	// words ("how to open the volume: auto, kernel or userspace") completes
	// those words: the help text is the one place they are written.
	f.VisitAll(func(fl *pflag.Flag) {
		if fl.Value.Type() != "string" {
			return
		}
		if values := choices(fl.Usage); len(values) > 0 {
			_ = c.RegisterFlagCompletionFunc(fl.Name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
	})
}

var choiceList = regexp.MustCompile(`^[^:]*: ([a-z0-9][a-z0-9-]*(?:, [a-z0-9][a-z0-9-]*)*,? or [a-z0-9][a-z0-9-]*)(?:$| \(|;|\.)`)

// choices parses "...: a, b or c" at the start of a flag's help.
func choices(usage string) []string {
	m := choiceList.FindStringSubmatch(usage)
	if m == nil {
		return nil
	}
	return strings.FieldsFunc(strings.ReplaceAll(m[1], " or ", ","), func(r rune) bool { return r == ',' || r == ' ' })
}

// deviceCompletions lists the disks `luksdock list` reads (the same sysfs
// scan and safety policy), as "/dev/NAME<TAB>size, model, status". With
// eligibleOnly, disks the policy refuses are left out.
func deviceCompletions(sys disk.Sys, eligibleOnly, allowInternal bool) []string {
	disks, err := sys.Scan()
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range disks {
		v := disk.Assess(d)
		if eligibleOnly && !v.OK(allowInternal) {
			continue
		}
		desc := []string{disk.SizeString(d.Size), d.Transport}
		if m := d.VendorModel(); m != "" {
			desc = append(desc, m)
		}
		desc = append(desc, d.Summary(), v.Status(allowInternal))
		out = append(out, d.Path+"\t"+strings.Join(desc, ", "))
	}
	return out
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
