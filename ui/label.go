package ui

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"

	"luksdock/fsformat"
)

// DefaultLabel is suggested when no disk in a series is docked.
const DefaultLabel = "backups01"

var seriesRe = regexp.MustCompile(`^(.*?)(\d+)$`)

// SuggestLabel returns the next free name in the user's series of labels:
// given labels seen on docked disks ("backups01", "backups02", "photos"),
// it finds the numbered series with the most members (ties: the one with the
// highest number, then alphabetical) and returns its prefix with the next
// number, keeping the digits' width ("backups03"). Without any numbered
// label it returns DefaultLabel. The result is always a valid label; when the
// next name would be too long, it falls back to DefaultLabel (or the next free
// backupsNN).
func SuggestLabel(labels []string) string {
	type series struct {
		prefix string
		width  int
		count  int
		max    int
	}
	byKey := map[string]*series{}
	used := map[string]bool{}
	for _, l := range labels {
		used[l] = true
		m := seriesRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(m[2])
		if err != nil {
			continue
		}
		k := m[1] + "\x00" + strconv.Itoa(len(m[2]))
		s := byKey[k]
		if s == nil {
			s = &series{prefix: m[1], width: len(m[2])}
			byKey[k] = s
		}
		s.count++
		s.max = max(s.max, n)
	}
	var all []*series
	for _, s := range byKey {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.count != b.count {
			return a.count > b.count
		}
		if a.max != b.max {
			return a.max > b.max
		}
		return a.prefix < b.prefix
	})
	for _, s := range all {
		next := fmt.Sprintf("%s%0*d", s.prefix, s.width, s.max+1)
		if fsformat.ValidateLabel(next) == nil && !used[next] {
			return next
		}
	}
	for n := 1; n < 100; n++ {
		l := fmt.Sprintf("backups%02d", n)
		if !used[l] {
			return l
		}
	}
	return DefaultLabel
}
