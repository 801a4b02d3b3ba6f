package manpage

import (
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"luksdock/disk"
)

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, s := range c.Commands() {
		walk(s, f)
	}
}

// RegisterCompletions gives every command in the tree of root completions
// for its flags (devices lists the disks for --device).
func RegisterCompletions(root *cobra.Command, devices func(sys disk.Sys, eligibleOnly, allowInternal bool) []string) {
	walk(root, func(c *cobra.Command) { registerCompletions(c, devices) })
}

// registerCompletions gives the flags of c that name disks, files or fixed
// choices their completions: --device completes with the disks
// `luksdock list` shows (for prepare only those it may prepare), the file
// flags complete files, the rest their values.
func registerCompletions(c *cobra.Command, devices func(sys disk.Sys, eligibleOnly, allowInternal bool) []string) {
	f := c.Flags()
	if f.Lookup("device") != nil {
		eligibleOnly := c.Name() == "prepare"
		_ = c.RegisterFlagCompletionFunc("device", func(cmd *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
			allowInternal, _ := cmd.Flags().GetBool("allow-internal")
			return devices(disk.Host, eligibleOnly, allowInternal), cobra.ShellCompDirectiveNoFileComp
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
		if values := Choices(fl.Usage); len(values) > 0 {
			_ = c.RegisterFlagCompletionFunc(fl.Name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
	})
}

var choiceList = regexp.MustCompile(`^[^:]*: ([a-z0-9][a-z0-9-]*(?:, [a-z0-9][a-z0-9-]*)*,? or [a-z0-9][a-z0-9-]*)(?:$| \(|;|\.)`)

// Choices parses "...: a, b or c" at the start of a flag's help.
func Choices(usage string) []string {
	m := choiceList.FindStringSubmatch(usage)
	if m == nil {
		return nil
	}
	return strings.FieldsFunc(strings.ReplaceAll(m[1], " or ", ","), func(r rune) bool { return r == ',' || r == ' ' })
}
