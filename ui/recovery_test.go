package ui

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Recovery screen's walker types back the groups asked for (Enter
// alone once they were).
func init() {
	walkers[scrRecovery] = func(h *harness, s snapshot) {
		if s.screen == scrRecovery && containsAll(s.view, "✓ recovery key typed back") {
			h.enter()
			return
		}
		h.typeBackRecovery()
	}
}

// typedRe is one line of the key as typed: whole groups, each but the
// key's last followed by its dash.
var typedRe = regexp.MustCompile(`^  (?:[cbdefghijklnrtuv]{8}-)*[cbdefghijklnrtuv]{8}-?$`)

// Issue 20 item 21: at 60 columns the key "as typed at the unlock prompt"
// is broken only between groups, and its lines make the key.
func TestRecoveryKeyTypedFormBreaksBetweenGroups(t *testing.T) {
	for _, w := range []int{80, 60} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			h := startSized(t, imageConfig(filepath.Join(t.TempDir(), "k.img"), 128<<20), w, 24, nil)
			s := h.walkTo(scrRecovery)
			g := shownKey(t, s.body)
			lines := strings.Split(s.body, "\n")
			i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "As typed at the unlock prompt:") })
			if i < 0 {
				t.Fatalf("no typed form:\n%s", s.body)
			}
			typed := ""
			for _, l := range lines[i+1:] {
				l = strings.TrimRight(l, " ")
				if l == "" || !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
					break
				}
				if !typedRe.MatchString(l) {
					t.Errorf("a line of the typed key breaks inside a group: %q", l)
				}
				if len(l) > w {
					t.Errorf("a line of the typed key is %d wide: %q", len(l), l)
				}
				typed += strings.TrimSpace(l)
			}
			var want []string
			for n := 1; n <= 8; n++ {
				want = append(want, g[fmt.Sprint(n)])
			}
			if typed != strings.Join(want, "-") {
				t.Errorf("the typed key's lines make %q, want %q:\n%s", typed, strings.Join(want, "-"), s.body)
			}
		})
	}
}
