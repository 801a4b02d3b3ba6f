package health

import (
	"context"

	"luksdock/disk"
)

// ForDisk reads the health of a discovered disk, or returns nil for
// devices that have no drive behind them (loop devices).
func ForDisk(ctx context.Context, d disk.Disk) *Report {
	if d.Transport == "loop" || d.LoopBacking != "" {
		return nil
	}
	vendor := ""
	if d.USB != nil {
		vendor = d.USB.VendorID
	}
	r := Read(ctx, Smartctl(), d.Path, d.USB != nil, vendor)
	return &r
}
