package main

import (
	"fmt"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/report"
	"luksdock/pipeline"
)

func newListCmd() *cobra.Command {
	var lo listOptions
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List disks, what is on them, and whether luksdock may prepare them",
		Long:    help.Text("list"),
		Example: listExample,
		Args:    noArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return lo.run(cmd) },
	}
	cmd.Flags().BoolVar(&lo.asJSON, "json", false, "print JSON instead of a table (an array; with --wait one object)")
	cmd.Flags().BoolVar(&lo.wait, "wait", false, "wait until a new disk is docked, then print it")
	cmd.Flags().BoolVar(&lo.allowInternal, "allow-internal", false, "treat internal (non-USB) disks as eligible in the status column")
	cmd.Flags().StringVar(&lo.sysRoot, "sysroot", "/", "read sysfs/proc below this directory (for tests)")
	_ = cmd.Flags().MarkHidden("sysroot")
	manpage.SetFiles(cmd, listFiles)
	return cmd
}

// listOptions are list's flags.
type listOptions struct {
	asJSON, wait, allowInternal bool
	sysRoot                     string
}

func (lo *listOptions) run(cmd *cobra.Command) error {
	disks, err := lo.disks(cmd)
	if err != nil {
		return err
	}
	local := lo.sysRoot == "" || lo.sysRoot == "/"
	// --wait prints the new disk at once: reading SMART through a dock can
	// take seconds, so its health is left to `list`.
	entries, w := core.List(cmd.Context(), disks, core.ListOptions{AllowInternal: lo.allowInternal, KernelLog: local, Health: local && !lo.wait})
	if w != "" {
		report.Warnf(cmd.ErrOrStderr(), "%s", w)
	}
	out := cmd.OutOrStdout()
	switch {
	case lo.asJSON && lo.wait:
		return report.JSONIndented(out, entries[0])
	case lo.asJSON:
		return report.JSONIndented(out, entries)
	}
	report.List(out, entries, lo.wait)
	return nil
}

// disks are the disks to list: all of them, or with --wait the next one
// docked.
func (lo *listOptions) disks(cmd *cobra.Command) ([]disk.Disk, error) {
	sys := disk.Sys{Root: lo.sysRoot}
	if !lo.wait {
		return sys.Scan()
	}
	known, err := sys.Scan()
	if err != nil {
		return nil, err
	}
	if !lo.asJSON {
		fmt.Fprintln(cmd.ErrOrStderr(), "Waiting for a disk to be docked… (Ctrl+C to stop)")
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
	defer stop()
	d, err := sys.WaitForNewDisk(ctx, known)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &pipeline.Error{Kind: pipeline.KindInterrupted, Err: fmt.Errorf("interrupted while waiting for a disk")}
		}
		return nil, fmt.Errorf("waiting for a disk: %w", err)
	}
	return []disk.Disk{d}, nil
}

// listExample is list's EXAMPLES (in --help and the man page).
const listExample = `  # Every disk, what is on it and whether luksdock may prepare it:
  luksdock list

  # Wait for the disk you are about to dock and show only it, with the
  # kernel's log of its arrival (what you would look for in dmesg):
  luksdock list --wait

  # The same for scripts:
  luksdock list --json | jq -r '.[] | select(.ok) | .path'`

// listFiles are the FILES of list's man page.
var listFiles = [][2]string{
	{"/sys, /proc, /dev/kmsg", "read to find disks, their users and the kernel's log of their arrival; list writes nothing."},
}
