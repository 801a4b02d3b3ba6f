package ui

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luksdock/disk"
	"luksdock/internal/testkit"
	"luksdock/pipeline"
)

// Found trying the wizard: after a hang-up stopped an erase halfway, the
// next run showed the image as "Known disk: backups01, prepared …" and
// offered Open, Change passphrase… first; continuing was hidden behind
// "Prepare again — start over: a new volume replaces everything on it",
// which says the opposite of what it does then. Now Details and Actions
// say it is not a finished backup disk and where its preparation stopped,
// and the first action is "Continue preparing", which leads to the
// interrupted run's options.
func TestInterruptedEraseOffersContinue(t *testing.T) {
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "sfdisk", "losetup")
	t.Setenv("LUKSDOCK_STATE_DIR", t.TempDir())
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(t.TempDir(), "inventory.json"))
	img := interruptedErase(t, 256<<20, pipeline.Options{Label: "backups08", Table: disk.TableGPT, Erase: true, PBKDF: testPBKDF})

	h := start(t, imageConfig(img, 0), nil)
	s := h.walkTo(scrDetails)
	s = h.waitFor("the details of the known disk", 15*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "Known disk") })
	if b := flat(s.body); !strings.Contains(b, "Not a finished backup disk: its preparation was interrupted (the erase stopped at") || strings.Contains(b, "preparing it again replaces it") {
		t.Errorf("Details does not say the preparation was interrupted:\n%s", s.body)
	}
	h.enter()
	s = h.waitFor("the actions", 10*time.Second, func(s snapshot) bool { return s.screen == scrActions })
	if !strings.Contains(flat(s.body), "Not a finished backup disk") {
		t.Errorf("Actions does not say the preparation was interrupted:\n%s", s.body)
	}
	if !strings.Contains(s.body, "› Continue preparing\n") {
		t.Fatalf("the first action is not Continue preparing:\n%s", s.body)
	}
	h.enter()
	s = h.waitFor("the options", 10*time.Second, func(s snapshot) bool { return s.screen == scrOptions && s.field("Label") != "" })
	if got := s.field("Label"); got != "backups08" {
		t.Errorf("Continue preparing proposes the label %q, want backups08 (the interrupted run's)", got)
	}
	s = h.optionsToPlan(testPass)
	if !strings.Contains(flat(s.body), "Continue the interrupted erase") {
		t.Errorf("the plan after Continue preparing does not continue the erase:\n%s", s.body)
	}
}
