package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/luks"
	"luksdock/pipeline"
)

// Found trying luksdock as a new user: verify of a disk whose preparation
// a stop or a hang-up interrupted (erase position saved) said only "no
// ext4 filesystem inside the LUKS volume: dumpe2fs failed … Bad magic
// number", as for a damaged disk. It still exits 5, and now says the
// preparation was interrupted, where, and how to continue.
func TestVerifyInterruptedSaysContinue(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "sfdisk", "losetup")
	testkit.NeedFUSE(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	img := filepath.Join(dir, "int.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	tg, err := pipeline.ImageTarget(img, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.NewPlan(tg, pipeline.Options{Label: "backups09", Erase: true, PBKDF: luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = p.Run(ctx, "int.img", []byte(testPass), func(e pipeline.Event) {
		if e.Kind == pipeline.EventProgress && e.Step == pipeline.StepErase {
			cancel()
		}
	})
	if pipeline.KindOf(err) != pipeline.KindInterrupted {
		t.Fatalf("setup: the erase was not interrupted: %v", err)
	}
	code, out, errs := cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-")
	if code != 5 {
		t.Errorf("verify of an interrupted preparation: exit %d, want 5\n%s%s", code, out, errs)
	}
	if !strings.Contains(errs, "its preparation was interrupted (the erase stopped at") || !strings.Contains(errs, "to continue") {
		t.Errorf("verify does not say the preparation was interrupted:\n%s", errs)
	}
}
