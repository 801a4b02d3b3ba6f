package core

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// Found trying the wizard: an image prepared (backups02), then prepared
// again with an erase that a hang-up stopped halfway, then continued to a
// verified disk (backups01): the inventory still listed backups02, whose
// volume the second run had destroyed, "last seen as" the same image. The
// finished run removes the record of the volume it finds on the disk, but
// the continuing run finds the interrupted run's volume, not backups02's.
// Now a run that wrote to the disk and did not finish removes the record
// of the volume the disk held; a run refused before writing keeps it.
func TestInterruptedRunForgetsDestroyedVolume(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk", "losetup")
	testkit.NeedFUSE(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_STATE_DIR", filepath.Join(dir, "state"))
	t.Setenv("LUKSDOCK_CONFIG_DIR", filepath.Join(dir, "etc"))
	inv := filepath.Join(dir, "inventory.json")
	img := filepath.Join(dir, "d.img")
	pbkdf := luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}
	pass := []byte("orbit velvet canyon mustard")
	plan := func(o pipeline.Options) *pipeline.Plan {
		t.Helper()
		tgt, err := ImageTarget(img, 128<<20, false)
		if err != nil {
			t.Fatal(err)
		}
		o.PBKDF = pbkdf
		p, err := pipeline.NewPlan(tgt, o)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	recorded := func(uuid string) bool {
		t.Helper()
		f, err := inventory.Load(inv)
		if err != nil {
			t.Fatal(err)
		}
		return f.Find(uuid) != nil
	}
	res, recErr, err := RunPlan(context.Background(), plan(pipeline.Options{Label: "backups02"}), inv, "d.img", pass, func(pipeline.Event) {})
	if err != nil || recErr != nil {
		t.Fatalf("first run: %v, %v", err, recErr)
	}
	first := res.LUKS.UUID
	if !recorded(first) {
		t.Fatalf("the first run's disk %s is not in the inventory", first)
	}

	// this host's key of it, as host enroll leaves it
	enrolled := func(uuid string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(KeyFile(uuid)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(KeyFile(uuid), make([]byte, 32), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	enrolled(first)

	// refused before anything was written: the record stays
	if _, _, err := RunPlan(context.Background(), plan(pipeline.Options{Label: "backups01", Erase: true}), inv, "not-it.img", pass, func(pipeline.Event) {}); pipeline.KindOf(err) != pipeline.KindRefused {
		t.Fatalf("a wrong confirmation: %v", err)
	}
	if _, err := os.Stat(KeyFile(first)); !recorded(first) || err != nil {
		t.Errorf("a run refused before writing removed the record of %s or this host's key (%v)", first, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, _, err = RunPlan(ctx, plan(pipeline.Options{Label: "backups01", Erase: true}), inv, "d.img", pass, func(e pipeline.Event) {
		if e.Kind == pipeline.EventProgress && e.Step == pipeline.StepErase {
			cancel()
		}
	})
	if pipeline.KindOf(err) != pipeline.KindInterrupted {
		t.Fatalf("the second run was not interrupted in its erase: %v", err)
	}
	// cryptsetup: the volume on the disk now is the interrupted run's
	parts := testkit.Partitions(t, img)
	dev := testkit.AttachLoop(t, img, "--read-only", "--offset", strconv.FormatInt(parts[0].Base, 10), "--sizelimit", strconv.FormatInt(parts[0].Size, 10))
	now := strings.TrimSpace(testkit.Run(t, "", "cryptsetup", "luksUUID", dev))
	testkit.DetachLoop(dev)
	if now == "" || now == first {
		t.Fatalf("cryptsetup luksUUID after the interrupted run: %q (the first run's: %s)", now, first)
	}
	if recorded(first) {
		t.Errorf("the inventory still records %s (backups02), whose volume the interrupted run destroyed", first)
	}
	if _, err := os.Stat(KeyFile(first)); err == nil {
		t.Errorf("this host's key of %s stayed after the interrupted run destroyed the volume", first)
	}

	// a finished run over a disk removes this host's key of the volume it replaced
	enrolled(now)
	_, _, err = RunPlan(context.Background(), plan(pipeline.Options{Label: "backups05"}), inv, "d.img", pass, func(pipeline.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(KeyFile(now)); err == nil {
		t.Errorf("this host's key of %s stayed after a finished run replaced the volume", now)
	}
}
