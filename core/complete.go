package core

import (
	"strings"

	"luksdock/disk"
)

// DeviceCompletions lists the disks `luksdock list` reads (the same sysfs
// scan and safety policy), as "/dev/NAME<TAB>size, model, status". With
// eligibleOnly, disks the policy refuses are left out.
func DeviceCompletions(sys disk.Sys, eligibleOnly, allowInternal bool) []string {
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
