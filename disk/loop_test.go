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

// TestOwnVolumeLoop: a loop device's backing file on a luksdock FUSE mount
// (the userspace engine's decrypted volume) is luksdock's own; a file on
// any other filesystem, beside the mount (a sibling directory whose name
// starts the same) or on another FUSE filesystem is not. Only the mount
// table decides: the file itself is never looked at.
func TestOwnVolumeLoop(t *testing.T) {
	mounts := ParseMountInfo(`22 1 252:1 / / rw,relatime - ext4 /dev/vda1 rw
44 22 0:39 / /tmp/luksdock-fuse-1926712699/mnt rw,nosuid,nodev,relatime - fuse.luksdock luksdock rw,user_id=0,group_id=0,max_read=1048576
45 22 0:41 / /media/sshfs rw,nosuid,nodev,relatime - fuse.sshfs host:/x rw,user_id=0,group_id=0
`)
	for backing, want := range map[string]bool{
		"/tmp/luksdock-fuse-1926712699/mnt/volume":           true,
		"/tmp/luksdock-fuse-1926712699/mnt/volume (deleted)": true,
		"/tmp/luksdock-fuse-1926712699/mnt2/volume":          false,
		"/tmp/luksdock-fuse-1926712699/volume":               false,
		"/var/tmp/disk.img":                                  false,
		"/media/sshfs/disk.img":                              false,
		"/dev/sdi1":                                          false,
		"":                                                   false,
	} {
		if got := OwnVolumeLoop(backing, mounts); got != want {
			t.Errorf("OwnVolumeLoop(%q) = %v, want %v", backing, got, want)
		}
	}
}
