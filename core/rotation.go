package core

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"luksdock/inventory"
)

// Every is how often each disk of a set should get a backup: All for
// every set, BySet for named ones (which take precedence).
type Every struct {
	All   time.Duration
	BySet map[string]time.Duration
}

// For is the interval for set (0: none given).
func (e Every) For(set string) time.Duration {
	if d, ok := e.BySet[set]; ok {
		return d
	}
	return e.All
}

// ParseEvery reads inventory --every values: "7d" (every set) or
// "offsite=14d" (one set). Units: d (days), w (weeks), or a Go duration
// (36h).
func ParseEvery(vals []string) (Every, error) {
	e := Every{BySet: map[string]time.Duration{}}
	for _, v := range vals {
		set, iv, named := strings.Cut(v, "=")
		if !named {
			iv, set = set, ""
		}
		d, err := ParseInterval(iv)
		if err != nil {
			return e, fmt.Errorf("--every %q: %w", v, err)
		}
		if named {
			e.BySet[set] = d
		} else {
			e.All = d
		}
	}
	return e, nil
}

// ParseInterval reads "7d", "2w" or a Go duration; it must be positive.
func ParseInterval(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	switch {
	case strings.HasSuffix(s, "d") || strings.HasSuffix(s, "w"):
		n, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("not a number of days or weeks: %q", s)
		}
		unit := 24 * time.Hour
		if strings.HasSuffix(s, "w") {
			unit *= 7
		}
		d = time.Duration(n * float64(unit))
	default:
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("want e.g. 7d, 2w or 36h: %v", err)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("the interval must be positive: %q", s)
	}
	return d, nil
}

// Overdue lists, for people, the disks whose last successful backup (or,
// with none, their preparation) is older than their set's interval.
func Overdue(f *inventory.File, e Every, now time.Time) []string {
	var out []string
	for _, r := range f.Disks {
		every := e.For(r.Set)
		if !r.Retired.IsZero() || !r.Overdue(every, now) {
			continue
		}
		what := r.Label
		if r.Set != "" {
			what += " (set " + r.Set + ")"
		}
		if g := r.LastGood(); g != nil {
			what += fmt.Sprintf(": last good backup %s on %s", inventory.Ago(g.Time, now), g.Host)
		} else {
			what += ": no good backup since it was prepared " + inventory.Ago(r.Prepared, now)
		}
		out = append(out, what+fmt.Sprintf(", due every %s", humanInterval(every)))
	}
	sort.Strings(out)
	return out
}

func humanInterval(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
