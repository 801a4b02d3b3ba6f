package pipeline

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

func wantRefused(t *testing.T, target, backup, msg string) {
	t.Helper()
	if abs, err := CheckHeaderBackupPath(target, backup); err == nil || !strings.Contains(err.Error(), msg) {
		t.Errorf("CheckHeaderBackupPath(%s, %s) = %q, %v; want an error saying %q", target, backup, abs, err, msg)
	}
}

// TestCheckHeaderBackupPath: relative paths are taken from the current
// directory; the target itself is refused by any path that leads to it, also
// an image still to be created; so are an existing file and a missing
// directory.
func TestCheckHeaderBackupPath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	img := filepath.Join(dir, "disk.img") // to be created by the run
	abs, err := CheckHeaderBackupPath(img, "hdr")
	if want := filepath.Join(dir, "hdr"); err != nil || abs != want {
		t.Errorf("relative path: %q, %v; want %q", abs, err, want)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"disk.img", "./disk.img", img, "link/disk.img", "../" + filepath.Base(dir) + "/disk.img"} {
		wantRefused(t, img, b, "is the target")
	}
	os.WriteFile(img, nil, 0o600)
	wantRefused(t, img, "link/disk.img", "is the target")
	os.WriteFile("old", nil, 0o600)
	wantRefused(t, img, "old", "already exists")
	wantRefused(t, img, "nodir/hdr", "does not exist")
	// Found trying prepare: a name longer than the filesystem takes was
	// refused only at the last step, after the disk was written.
	wantRefused(t, img, strings.Repeat("h", 300)+".img", "file name too long")
}

// TestCheckHeaderBackupPathOnTarget: a backup into a filesystem that lives
// on the target is refused: ext4 on the whole loop device, on its (BLKPG)
// partition, through a symlink, and, for an image target, on a loop device
// backed by the image. The same path is accepted for another target.
func TestCheckHeaderBackupPathOnTarget(t *testing.T) {
	testkit.NeedRoot(t, "mkfs.ext4", "mount", "sfdisk", "partx")
	dir := t.TempDir()
	mount := func(dev string) string {
		m, err := os.MkdirTemp(dir, "mnt")
		if err != nil {
			t.Fatal(err)
		}
		testkit.Run(t, "", "mkfs.ext4", "-q", "-F", dev)
		testkit.Run(t, "", "mount", dev, m)
		t.Cleanup(func() { exec.Command("umount", m).Run() })
		return m
	}
	other := testkit.AttachLoop(t, testkit.SparseFile(t, filepath.Join(dir, "other.img"), 64<<20))

	// ext4 on the whole loop device, which is backed by an image
	img := testkit.SparseFile(t, filepath.Join(dir, "whole.img"), 64<<20)
	loop := testkit.AttachLoop(t, img)
	m := mount(loop)
	wantRefused(t, loop, filepath.Join(m, "hdr"), "which is on the target "+loop)
	wantRefused(t, img, filepath.Join(m, "hdr"), "which is on the target "+img)
	os.Symlink(m, filepath.Join(dir, "to-mnt"))
	wantRefused(t, loop, filepath.Join(dir, "to-mnt", "hdr"), "which is on the target")
	if _, err := CheckHeaderBackupPath(other, filepath.Join(m, "hdr")); err != nil {
		t.Errorf("a backup on another disk: %v", err)
	}

	// ext4 on a partition of the target
	pimg := testkit.SparseFile(t, filepath.Join(dir, "parted.img"), 64<<20)
	testkit.Run(t, "label: gpt\nstart=2048, size=65536, type=L\n", "sfdisk", "--quiet", pimg)
	ploop := testkit.AttachLoop(t, pimg)
	testkit.Run(t, "", "partx", "--add", ploop)
	pm := mount(ploop + "p1")
	os.Mkdir(filepath.Join(pm, "sub"), 0o700)
	wantRefused(t, ploop, filepath.Join(pm, "sub", "hdr"), "which is on the target "+ploop)
	if _, err := CheckHeaderBackupPath(other, filepath.Join(pm, "sub", "hdr")); err != nil {
		t.Errorf("a backup on another disk: %v", err)
	}
}
