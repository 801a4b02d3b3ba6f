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
	var asJSON, wait, allowInternal bool
	var sysRoot string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List disks, what is on them, and whether luksdock may prepare them",
		Long:    help.Text("list"),
		Example: listExample,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sys := disk.Sys{Root: sysRoot}
			out := cmd.OutOrStdout()
			var disks []disk.Disk
			if wait {
				known, err := sys.Scan()
				if err != nil {
					return err
				}
				if !asJSON {
					fmt.Fprintln(cmd.ErrOrStderr(), "Waiting for a disk to be docked… (Ctrl+C to stop)")
				}
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, unix.SIGTERM)
				defer stop()
				d, err := sys.WaitForNewDisk(ctx, known)
				if err != nil {
					if ctx.Err() != nil {
						return &pipeline.Error{Kind: pipeline.KindInterrupted, Err: fmt.Errorf("interrupted while waiting for a disk")}
					}
					return fmt.Errorf("waiting for a disk: %w", err)
				}
				disks = []disk.Disk{d}
			} else {
				var err error
				disks, err = sys.Scan()
				if err != nil {
					return err
				}
			}
			local := sysRoot == "" || sysRoot == "/"
			// --wait prints the new disk at once: reading SMART through a
			// dock can take seconds, so its health is left to `list`.
			entries, w := core.List(cmd.Context(), disks, core.ListOptions{AllowInternal: allowInternal, KernelLog: local, Health: local && !wait})
			if w != "" {
				report.Warnf(cmd.ErrOrStderr(), "%s", w)
			}
			switch {
			case asJSON && wait:
				return report.JSONIndented(out, entries[0])
			case asJSON:
				return report.JSONIndented(out, entries)
			}
			report.List(out, entries, wait)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table (an array; with --wait one object)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until a new disk is docked, then print it")
	cmd.Flags().BoolVar(&allowInternal, "allow-internal", false, "treat internal (non-USB) disks as eligible in the status column")
	cmd.Flags().StringVar(&sysRoot, "sysroot", "/", "read sysfs/proc below this directory (for tests)")
	_ = cmd.Flags().MarkHidden("sysroot")
	manpage.SetFiles(cmd, listFiles)
	return cmd
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
