package reliability

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"luksdock/disk"
	"luksdock/internal/testkit"
	"luksdock/luks"
	"luksdock/pipeline"
)

var apiOpts = pipeline.Options{Label: "backups01", Engine: "userspace", PBKDF: luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}}

// runSwapped plans a run on a target, lets swap replace the target, then
// runs the plan. The run must be refused (exit 3, ErrDiskChanged) without
// writing: every file in keep must hash as before.
func runSwapped(t *testing.T, target *pipeline.Target, confirm string, swap func(), keep ...string) {
	t.Helper()
	p, err := pipeline.NewPlan(target, apiOpts)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	swap()
	before := map[string]string{}
	for _, f := range keep {
		before[f] = testkit.SHA256File(t, f)
	}
	var events []pipeline.Event
	_, err = p.Run(context.Background(), confirm, []byte(testPass), func(e pipeline.Event) { events = append(events, e) })
	if kind := pipeline.KindOf(err); kind != pipeline.KindRefused || !errors.Is(err, disk.ErrDiskChanged) {
		t.Errorf("run on a swapped target: %q, %v; want %q and %v", kind, err, pipeline.KindRefused, disk.ErrDiskChanged)
	}
	for _, e := range events {
		if e.Kind == pipeline.EventDone && e.Step != pipeline.StepPreflight {
			t.Errorf("a step ran on the swapped target: %+v", e)
		}
	}
	for _, f := range keep {
		if testkit.SHA256File(t, f) != before[f] {
			t.Errorf("%s changed although the target had been swapped", f)
		}
	}
	t.Logf("refused: %v", err)
}

// identityImage: the confirmed image file is replaced (rename over it) by
// another file between plan and run.
func identityImage(t *testing.T) {
	t.Run("image-replaced", func(t *testing.T) {
		dir := t.TempDir()
		img := sparseImage(t, dir, imgSize)
		withContent(t, img)
		orig := filepath.Join(dir, "orig.link")
		if err := os.Link(img, orig); err != nil { // keeps the confirmed inode reachable
			t.Fatal(err)
		}
		other := filepath.Join(dir, "other.img")
		mustRun(t, "truncate", "-s", "72M", other)
		mustRun(t, "mkfs.ext4", "-q", "-F", "-L", "precious", other)
		target, err := pipeline.ImageTarget(img, 0)
		if err != nil {
			t.Fatal(err)
		}
		runSwapped(t, target, "disk.img", func() {
			if err := os.Rename(other, img); err != nil {
				t.Fatal(err)
			}
		}, img, orig)
	})
	t.Run("image-resized", func(t *testing.T) {
		img := sparseImage(t, t.TempDir(), imgSize)
		withContent(t, img)
		target, err := pipeline.ImageTarget(img, 0)
		if err != nil {
			t.Fatal(err)
		}
		runSwapped(t, target, "disk.img", func() { mustRun(t, "truncate", "-s", "80M", img) }, img)
	})
}

// identityLoop: the confirmed loop device is detached and attached again to
// another file (same size, same device number, new disk sequence number).
func identityLoop(t *testing.T) {
	t.Run("loop-repointed", func(t *testing.T) {
		dir := t.TempDir()
		a := sparseImage(t, dir, imgSize)
		withContent(t, a)
		b := filepath.Join(dir, "b.img")
		mustRun(t, "truncate", "-s", "72M", b)
		mustRun(t, "mkfs.ext4", "-q", "-F", "-L", "precious", b)
		dev := attachLoop(t, a)
		target, err := pipeline.DeviceTarget(disk.Sys{Root: "/"}, dev)
		if err != nil {
			t.Fatal(err)
		}
		runSwapped(t, target, filepath.Base(dev), func() {
			testkit.LoopMu.Lock()
			defer testkit.LoopMu.Unlock()
			if err := testkit.DetachLoop(dev); err != nil {
				t.Fatal(err)
			}
			waitDetached(dev)
			// testkit.LoopMu spans test binaries: no other test can have
			// taken the number between detach and re-attach.
			if out, err := exec.Command("losetup", dev, b).CombinedOutput(); err != nil {
				t.Fatalf("losetup %s %s: %v: %s", dev, b, err, out)
			}
			testkit.DetachAtCleanup(t, dev)
		}, a, b)
	})
}
