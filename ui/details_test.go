package ui

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"luksdock/pipeline"

	"luksdock/internal/testkit"
)

// Defect 9: an image to be created says so in the list and in Details
// alike, Details asks about the image file, and the plan's "will be
// created as a sparse file" is gone once the run has made it.
func TestImageWording(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "losetup")
	eachSize(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "new.img")
		var mu sync.Mutex
		var atPreflight, atWipe string
		hook := func(p *probe, msg tea.Msg) {
			if e, ok := msg.(runEventMsg); ok && e.Kind == pipeline.EventStart {
				mu.Lock()
				defer mu.Unlock()
				switch e.Step {
				case pipeline.StepPreflight:
					b, _ := p.m.screens[p.m.cur].View()
					atPreflight = flat(ansi.Strip(b))
				case pipeline.StepWipe:
					b, _ := p.m.screens[p.m.cur].View()
					atWipe = flat(ansi.Strip(b))
				}
			}
		}
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, hook)
		s := h.waitFor("the list", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "new.img") })
		if !strings.Contains(flat(s.view), "to be created") {
			t.Errorf("the list does not say the image is to be created:\n%s", s.view)
		}
		h.enter()
		s = h.onScreen(scrDetails)
		if !strings.Contains(s.view, "Is this the image file you mean?") || strings.Contains(s.view, "disk you just docked") {
			t.Errorf("Details title for an image:\n%s", s.view)
		}
		if !strings.Contains(flat(s.body), "Holds nothing yet: the file is to be created") || strings.Contains(s.body, "empty") {
			t.Errorf("Details do not agree with the list:\n%s", s.body)
		}
		h.enter()
		h.onScreen(scrOptions)
		h.optionsToPlan(testPass)
		h.enter()
		h.onScreen(scrConfirm)
		h.typ("new.img")
		h.enter()
		s = h.waitFor("the end", 60*time.Second, func(s snapshot) bool { return s.screen == scrDone || s.screen == scrFailed })
		if s.screen != scrDone {
			t.Fatalf("run failed:\n%s", s.body)
		}
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(atPreflight, "will be created as a sparse file") {
			t.Errorf("before the run made it, the warning was not shown:\n%s", atPreflight)
		}
		if strings.Contains(atWipe, "sparse file") {
			t.Errorf("after the image was created, the warning is still shown:\n%s", atWipe)
		}
	})
}
