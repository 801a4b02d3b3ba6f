package core

import (
	"context"
	"sync"
	"time"

	"luksdock/disk"
	"luksdock/health"
	"luksdock/inventory"
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
