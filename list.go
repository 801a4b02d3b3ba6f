package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/health"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/inventory"
	"luksdock/pipeline"
)

// listReason is a refusal in `list --json`: the reason and its fix.
type listReason struct {
	Text string `json:"text"`
	Fix  string `json:"fix,omitempty"`
}

// listEntry is one disk in `luksdock list --json`.
type listEntry struct {
	disk.Disk
	Summary string       `json:"summary"`
	Verdict disk.Verdict `json:"verdict"`
	OK      bool         `json:"ok"`     // may be prepared under the given --allow-internal
	Status  string       `json:"status"` // the table's status column
	// Arrival is the kernel log's account of this disk's most recent
	// attach, when the log has one.
	Arrival *disk.Arrival `json:"arrival,omitempty"`
	// Known is set for a LUKS disk: whether the inventory knows it (by its
	// LUKS UUID) and what it is.
	Known *core.KnownDisk `json:"known,omitempty"`
	// Reasons are why it may not be prepared under the given
	// --allow-internal, each with what to do about it.
	Reasons []listReason `json:"reasons,omitempty"`
	// Health is the drive's SMART health (not for loop devices).
	Health *health.Report `json:"health,omitempty"`
}

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
			var arrivals []disk.Arrival
			if sysRoot == "" || sysRoot == "/" {
				if lines, err := disk.ReadKernelLog(); err == nil {
					arrivals = disk.ParseKernelLog(lines)
				}
			}
			entries := make([]listEntry, len(disks))
			for i, d := range disks {
				v := disk.Assess(d)
				entries[i] = listEntry{Disk: d, Summary: d.Summary(), Verdict: v, OK: v.OK(allowInternal), Status: v.Status(allowInternal)}
				for _, r := range v.Reasons(allowInternal) {
					entries[i].Reasons = append(entries[i].Reasons, listReason{r.Text, r.Fix})
				}
				for j := len(arrivals) - 1; j >= 0; j-- {
					if arrivals[j].Disk == d.Name && !arrivals[j].Gone {
						a := arrivals[j]
						entries[i].Arrival = &a
						break
					}
				}
			}
			// --wait prints the new disk at once: reading SMART through a
			// dock can take seconds, so its health is left to `list`.
			if (sysRoot == "" || sysRoot == "/") && !wait {
				var wg sync.WaitGroup
				for i := range entries {
					wg.Add(1)
					go func() {
						defer wg.Done()
						entries[i].Health = health.ForDisk(cmd.Context(), entries[i].Disk)
					}()
				}
				wg.Wait()
			}
			known, w := core.Recognise(inventory.Path(), disks, time.Now())
			if w != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "luksdock: warning: %s\n", w)
			}
			for i := range entries {
				entries[i].Known = known[i]
			}
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if wait {
					return enc.Encode(entries[0])
				}
				return enc.Encode(entries)
			}
			writeListTable(out, entries)
			if wait {
				e := entries[0]
				if e.Arrival != nil {
					fmt.Fprintln(out, "\nKernel log of its arrival:")
					for _, l := range e.Arrival.Lines {
						fmt.Fprintln(out, "  "+l.String())
					}
				}
			}
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

func writeListTable(w io.Writer, entries []listEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tTRANSPORT\tSECTORS\tMODEL\tSERIAL\tCONTENTS\tSTATUS")
	for _, e := range entries {
		model := e.VendorModel()
		if e.USB != nil && e.USB.Product != "" && model == "" {
			model = e.USB.Product
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", e.Name, disk.SizeString(e.Size), e.Transport,
			e.LogicalSector, e.PhysicalSector, dash(model), dash(e.Serial), e.Summary, e.Status)
	}
	tw.Flush()
	for _, e := range entries {
		for _, x := range e.Verdict.Warnings {
			if x == disk.USB4KWarning {
				fmt.Fprintf(w, "warning: %s: %s\n", e.Name, x)
			}
		}
		// Why it may not be prepared, each with its fix (as in --json's
		// reasons[].fix and the wizard's Details).
		for _, r := range e.Reasons {
			fmt.Fprintf(w, "%s: %s\n", e.Name, r.Text)
			if r.Fix != "" {
				fmt.Fprintf(w, "  fix: %s\n", r.Fix)
			}
		}
		if e.Known != nil {
			fmt.Fprintf(w, "%s: %s\n", e.Name, e.Known.Description)
		}
		if h := e.Health; h != nil {
			line := h.Summary()
			if h.Verdict != health.Unknown {
				line += fmt.Sprintf(" (drive %s, serial %s)", dash(h.Model), dash(h.Serial))
			}
			if h.Bad() {
				line = "WARNING: " + line + ": do not trust it with backups"
			}
			fmt.Fprintf(w, "%s: %s\n", e.Name, line)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
