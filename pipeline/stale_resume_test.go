package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/luks"
)

// Found trying the wizard: an erase stopped halfway, then the same disk
// prepared again starting over (r on the Plan): the saved position of the
// first volume stayed in the state directory (erase-UUID.json) though that
// volume no longer exists. The wipe step now removes the saved position
// of the volume it wipes; an interrupted run's own position is kept.
func TestWipeDropsStaleErasePosition(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk", "losetup")
	testkit.NeedFUSE(t)
	t.Setenv("LUKSDOCK_STATE_DIR", t.TempDir())
	img := filepath.Join(t.TempDir(), "st.img")
	pbkdf := luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}
	interrupted := func(o Options) {
		t.Helper()
		tg, err := ImageTarget(img, 96<<20)
		if err != nil {
			t.Fatal(err)
		}
		o.PBKDF, o.Engine, o.Erase = pbkdf, EngineUserspace, true
		p, err := NewPlan(tg, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		_, err = p.Run(ctx, "st.img", []byte("correct horse"), func(e Event) {
			if e.Kind == EventProgress && e.Step == StepErase {
				cancel()
			}
		})
		if KindOf(err) != KindInterrupted {
			t.Fatalf("setup: the erase was not interrupted: %v", err)
		}
	}
	interrupted(Options{Label: "first"})
	first, _ := filepath.Glob(filepath.Join(StateDir(), "erase-*.json"))
	if len(first) != 1 {
		t.Fatalf("saved positions after the first stop: %v", first)
	}
	// starting over: a new volume, stopped again; only its position is left
	interrupted(Options{Label: "first", Restart: true})
	now, _ := filepath.Glob(filepath.Join(StateDir(), "erase-*.json"))
	if len(now) != 1 || now[0] == first[0] {
		t.Errorf("saved positions after starting over: %v (the first: %s)", now, first[0])
	}
	if _, err := os.Stat(first[0]); err == nil {
		t.Errorf("the position of the wiped volume %s is still saved", first[0])
	}
}
