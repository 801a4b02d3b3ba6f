package inventory

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var numbered = regexp.MustCompile(`^(.*?)([0-9]+)$`)

// MaxLabel is the longest label luksdock makes (ext4's limit, in bytes).
const MaxLabel = 16

// SuggestLabel proposes a label for the next disk of set: the set's
// numbering continued (backups01, backups02 -> backups03, keeping the
// width), "backups01" for a set with no numbered disks yet. It never
// proposes a label that a disk in the inventory (of any set) or an attached
// disk (attached: their LUKS and filesystem labels) already has: two disks
// with one label, docked together, make the desktop mount the second at
// LABEL1, and a rotation set is exactly the disks that meet at the dock.
// A label too long for the next number keeps its number and loses the end
// of its prefix (MaxLabel). f nil (the inventory could not be read) is an
// empty inventory: the first backupsNN no attached disk has. The CLI and the
// wizard both suggest with this one rule.
func SuggestLabel(f *File, set string, attached []string) string {
	if f == nil {
		f = &File{}
	}
	taken := map[string]bool{}
	for _, l := range attached {
		taken[l] = true
	}
	prefixes := map[string]int{}
	width, next := 2, 1
	var best string
	for _, r := range f.Disks {
		if r.Retired.IsZero() { // a retired disk's label is free again
			taken[r.Label] = true
		}
		if r.Set != set {
			continue
		}
		if m := numbered.FindStringSubmatch(r.Label); m != nil {
			prefixes[m[1]]++
			if prefixes[m[1]] > prefixes[best] || prefixes[m[1]] == prefixes[best] && m[1] < best {
				best = m[1]
			}
		}
	}
	prefix := "backups"
	if len(prefixes) > 0 {
		prefix = best
		for _, r := range f.Disks {
			if m := numbered.FindStringSubmatch(r.Label); r.Set == set && m != nil && m[1] == prefix {
				n, _ := strconv.Atoi(m[2])
				next = max(next, n+1)
				width = max(width, len(m[2]))
			}
		}
	}
	for n := next; ; n++ {
		num := fmt.Sprintf("%0*d", width, n)
		p := prefix
		if len(p)+len(num) > MaxLabel {
			p = p[:MaxLabel-len(num)]
		}
		l := p + num
		if !taken[l] {
			return l
		}
	}
}

// LabelClash reports another disk of the same set in the inventory that has
// label (not the disk whose LUKS UUID is replacing, which is being prepared
// over), with what it is; "" when there is none. A retired disk (luksdock
// retire) holds no label.
func LabelClash(f *File, set, label, replacing string) string {
	for _, r := range f.Disks {
		if r.Label == label && r.Set == set && !strings.EqualFold(r.LUKSUUID, replacing) && r.Retired.IsZero() {
			what := "the inventory already has " + r.Label
			if set != "" {
				what += " in set " + set
			}
			return fmt.Sprintf("%s (LUKS UUID %s, prepared %s)", what, r.LUKSUUID, r.Prepared.Local().Format("2006-01-02"))
		}
	}
	return ""
}

// Remove drops the record of uuid (the disk was prepared again, under a
// new UUID).
func (f *File) Remove(uuid string) {
	for i := range f.Disks {
		if strings.EqualFold(f.Disks[i].LUKSUUID, uuid) {
			f.Disks = append(f.Disks[:i], f.Disks[i+1:]...)
			return
		}
	}
}

// CheckLabel is the one rule for labels within a set: a disk about to be
// prepared with label, in set (the disk now carrying LUKS UUID replacing,
// if any), must not take a label another disk of the same set has in the
// inventory: docked together, the desktop would mount the second at
// LABEL1. Within a set that is refused (err); without a set it is only a
// warning. attached are the labels on the disks docked now, which the
// suggested next label avoids too.
func CheckLabel(f *File, set, label, replacing string, attached []string) (warning string, err error) {
	if f == nil {
		return "", nil
	}
	clash := LabelClash(f, set, label, replacing)
	if clash == "" {
		return "", nil
	}
	msg := fmt.Sprintf("label %s: %s; docked together, the desktop mounts the second at %s1. Next free label: %s",
		label, clash, label, SuggestLabel(f, set, attached))
	if set == "" {
		return msg, nil
	}
	return "", fmt.Errorf("two disks of a set must not share a label: %s", msg)
}
