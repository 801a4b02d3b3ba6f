package ui

import (
	"fmt"
	"strings"

	"luksdock/disk"
	"luksdock/pipeline"
)

// Summary is what luksdock prints on standard output when the wizard ends:
// for a person, one paragraph per disk prepared and verified, and the
// error of a last run that did not finish (nil: none). (--json prints the
// results as JSON instead.)
func Summary(results []*pipeline.Result, last error) string {
	var b strings.Builder
	for _, r := range results {
		fmt.Fprintf(&b, "%s is a verified backup disk, labelled %q.\n", r.Target, r.FSLabel)
		fmt.Fprintf(&b, "  LUKS%d %s, UUID %s; %s usable.\n", r.LUKS.Version, r.LUKS.Cipher, r.LUKS.UUID, disk.SizeString(r.LUKS.DataSize))
		if r.HeaderBackup != "" {
			fmt.Fprintf(&b, "  Header backup: %s (keep it safe and off the disk).\n", r.HeaderBackup)
		}
		if !strings.HasPrefix(r.Partition, "/dev/") {
			fmt.Fprintf(&b, "  Partition: %s\n", r.Partition)
		} else {
			fmt.Fprintf(&b, "  Unlock by hand: cryptsetup open %s %s\n", r.Partition, r.FSLabel)
		}
	}
	if last != nil {
		fmt.Fprintf(&b, "The last preparation did not finish: %v\n", AfterWizard(last))
	}
	if b.Len() == 0 {
		b.WriteString("No disk was prepared.\n")
	}
	return b.String()
}
