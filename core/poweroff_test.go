package core

import (
	"os"
	"path/filepath"
	"testing"

	"luksdock/disk"
	"luksdock/internal/testkit"
)

// TestFlushDiskReadOnlyClaim: power-off's flush refuses a disk another
// exclusive open holds, and closing its claim is no write as udev's watch
// sees it (no IN_CLOSE_WRITE: no synthesized change, no partition re-read
// whose add events could start the docking service again).
func TestFlushDiskReadOnlyClaim(t *testing.T) {
	testkit.NeedRoot(t, "losetup")
	img := filepath.Join(t.TempDir(), "d.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	dev := testkit.AttachLoop(t, img)
	held, err := disk.OpenExclusive(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := flushDisk(dev); err == nil {
		t.Error("flushDisk succeeded while another exclusive open holds the disk")
	}
	held.Close()
	w, nw := testkit.CloseEvents(t, dev, func() {
		if err := flushDisk(dev); err != nil {
			t.Fatal(err)
		}
	})
	if w != 0 || nw != 1 {
		t.Errorf("flushDisk: %d IN_CLOSE_WRITE, %d IN_CLOSE_NOWRITE events; want 0 and 1", w, nw)
	}
}
