package disk

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"luksdock/internal/testkit"
)

// LoopsBackedBy finds every loop device on a file, also one attached
// through another name for it (a hard link), and none once they are gone.
func TestRealLoopsBackedBy(t *testing.T) {
	testkit.NeedRoot(t, "losetup")
	testkit.NeedLoop(t)
	dir := t.TempDir()
	img := testkit.SparseFile(t, filepath.Join(dir, "a.img"), 8<<20)
	link := filepath.Join(dir, "link.img")
	if err := os.Link(img, link); err != nil {
		t.Fatal(err)
	}
	other := testkit.SparseFile(t, filepath.Join(dir, "other.img"), 8<<20)
	byPath := testkit.AttachLoop(t, img)
	byLink := testkit.AttachLoop(t, link)
	notIt := testkit.AttachLoop(t, other)

	got := Host.LoopsBackedBy(img)
	slices.Sort(got)
	want := []string{byPath, byLink}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("LoopsBackedBy(%s) = %v, want %v (not %s)", img, got, want, notIt)
	}
	if got := Host.LoopsBackedBy(filepath.Join(dir, "missing.img")); got != nil {
		t.Errorf("LoopsBackedBy(missing) = %v, want none", got)
	}
	testkit.DetachLoop(byPath)
	testkit.DetachLoop(byLink)
	if got := Host.LoopsBackedBy(img); len(got) != 0 {
		t.Errorf("after detaching: LoopsBackedBy = %v, want none", got)
	}
}
