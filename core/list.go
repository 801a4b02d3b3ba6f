package core

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/health"
	"luksdock/inventory"
	"luksdock/pipeline"
)

// ListReason is a refusal in `list --json`: the reason and its fix.
type ListReason struct {
	Text string `json:"text"`
	Fix  string `json:"fix,omitempty"`
}

// ListEntry is one disk as `luksdock list` shows it (its --json object).
type ListEntry struct {
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
	Known *KnownDisk `json:"known,omitempty"`
	// Reasons are why it may not be prepared under the given
	// --allow-internal, each with what to do about it.
	Reasons []ListReason `json:"reasons,omitempty"`
	// Health is the drive's SMART health (not for loop devices).
	Health *health.Report `json:"health,omitempty"`
}

// ListOptions say what List reads besides the disks themselves.
type ListOptions struct {
	AllowInternal bool
	// KernelLog and Health read this machine's kernel log (the disks'
	// arrival) and each drive's SMART health (seconds through a dock).
	KernelLog, Health bool
}

// List describes disks for `luksdock list`: the safety verdict and its
// reasons, the kernel log's account of their arrival, their SMART health
// and what the inventory knows of them. warning is an inventory that could
// not be read or updated.
func List(ctx context.Context, disks []disk.Disk, o ListOptions) (entries []ListEntry, warning string) {
	var arrivals []disk.Arrival
	if o.KernelLog {
		if lines, err := disk.ReadKernelLog(); err == nil {
			arrivals = disk.ParseKernelLog(lines)
		}
	}
	entries = make([]ListEntry, len(disks))
	for i, d := range disks {
		v := disk.Assess(d)
		entries[i] = ListEntry{Disk: d, Summary: d.Summary(), Verdict: v, OK: v.OK(o.AllowInternal), Status: v.Status(o.AllowInternal)}
		for _, r := range v.Reasons(o.AllowInternal) {
			entries[i].Reasons = append(entries[i].Reasons, ListReason{r.Text, r.Fix})
		}
		for j := len(arrivals) - 1; j >= 0; j-- {
			if arrivals[j].Disk == d.Name && !arrivals[j].Gone {
				a := arrivals[j]
				entries[i].Arrival = &a
				break
			}
		}
	}
	if o.Health {
		var wg sync.WaitGroup
		for i := range entries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				entries[i].Health = health.ForDisk(ctx, entries[i].Disk)
			}()
		}
		wg.Wait()
	}
	known, warning := Recognise(inventory.Path(), disks, time.Now())
	for i := range entries {
		entries[i].Known = known[i]
	}
	return entries, warning
}

// InventoryNow is the inventory as `luksdock inventory` shows it: the
// attached disks it knows are recorded as seen first (Recognise; warning
// says when that failed), then the file at path is read and the disks
// overdue under policy listed.
func InventoryNow(path string, policy Every, now time.Time) (f *inventory.File, overdue []string, warning string, err error) {
	if disks, err := System.Scan(); err == nil {
		_, warning = Recognise(path, disks, now)
	}
	if f, err = inventory.Load(path); err != nil {
		return nil, nil, warning, err
	}
	return f, Overdue(f, policy, now), warning, nil
}

// ListDisks are the disks `luksdock list` shows, read below sysRoot: all of
// them, or with wait the next one docked (saying so on progress, unless
// nil); SIGINT or SIGTERM (or ctx) ends the wait as interrupted (exit 130).
func ListDisks(ctx context.Context, sysRoot string, wait bool, progress io.Writer) ([]disk.Disk, error) {
	sys := disk.Sys{Root: sysRoot}
	if !wait {
		return sys.Scan()
	}
	known, err := sys.Scan()
	if err != nil {
		return nil, err
	}
	if progress != nil {
		fmt.Fprintln(progress, "Waiting for a disk to be docked… (Ctrl+C to stop)")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, unix.SIGTERM)
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

// OverdueError is `inventory --check` finding disks overdue for a backup:
// exit status 1.
type OverdueError struct{ N int }

func (e OverdueError) Error() string { return fmt.Sprintf("%d disk(s) overdue for a backup", e.N) }

// ExitCode is inventory --check's status for overdue disks.
func (OverdueError) ExitCode() int { return 1 }
