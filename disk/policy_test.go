package disk

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// everythingDiscoveryDoes runs every read path of the package against the
// disk, plus an exclusive open, and returns the disk and its verdict.
func everythingDiscoveryDoes(t *testing.T, name string) (Disk, Verdict, error) {
	t.Helper()
	s := Sys{Root: "/"}
	if _, err := s.Scan(); err != nil {
		t.Fatal(err)
	}
	d, err := s.Disk(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Identity(name); err != nil {
		t.Fatal(err)
	}
	f, exclErr := OpenExclusive(d.Path)
	if exclErr == nil {
		f.Close()
	}
	return d, Assess(d), exclErr
}

// partitionedLoop makes a GPT image with one partition holding ext4, attaches
// it and adds the partition node with BLKPG (partx --add): the host kernel
// has no partition-table parsers.
func partitionedLoop(t *testing.T) (img, dev, part string) {
	t.Helper()
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup", "sfdisk", "partx", "mkfs.ext4", "mount")
	img = sparse(t, 128<<20)
	testkit.Run(t, "label: gpt\nstart=2048, size=100MiB, type=linux\n", "sfdisk", "-q", img)
	dev = testkit.AttachLoop(t, img)
	testkit.Run(t, "", "partx", "--add", dev)
	part = dev + "p1"
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("partition node %s did not appear: %v", part, err)
	}
	testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-L", "family", "-E", "lazy_itable_init=0,lazy_journal_init=0", part)
	return img, dev, part
}

func TestRealMountedPartitionRefused(t *testing.T) {
	img, dev, part := partitionedLoop(t)
	name := filepath.Base(dev)
	mnt := t.TempDir()
	testkit.Run(t, "", "mount", "-o", "ro", part, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	before, beforeDev := testkit.SHA256File(t, img), testkit.SHA256File(t, dev)
	d, v, exclErr := everythingDiscoveryDoes(t, name)
	if v.OK(true) || !hasReason(v, filepath.Base(part)+" is mounted at "+mnt) {
		t.Errorf("verdict = %+v, want refused: %s mounted at %s", v, part, mnt)
	}
	if len(d.Partitions) != 1 || d.Partitions[0].Content.Label != "family" || !d.Partitions[0].InKernel {
		t.Errorf("partitions = %+v", d.Partitions)
	}
	if exclErr == nil {
		t.Error("O_EXCL open of a disk with a mounted partition succeeded")
	}
	if after := testkit.SHA256File(t, img); after != before {
		t.Errorf("image changed: %s -> %s", before, after)
	}
	if after := testkit.SHA256File(t, dev); after != beforeDev {
		t.Errorf("device contents changed")
	}

	// The partition itself is refused by name, by path and through a symlink.
	s := Sys{Root: "/"}
	link := filepath.Join(t.TempDir(), "by-id-usb-fake-part1")
	os.Symlink(part, link)
	for _, p := range []string{part, link} {
		n, err := s.NameOf(p)
		if err != nil || n != filepath.Base(part) {
			t.Fatalf("NameOf(%s) = %q, %v", p, n, err)
		}
		_, err = s.Disk(n)
		var pe *PartitionError
		if !errors.As(err, &pe) || !errors.Is(err, ErrPartition) || pe.Parent != name {
			t.Errorf("Disk(%s) = %v, want ErrPartition of %s", n, err, name)
		}
	}
	if n, err := s.NameOf(dev); err != nil || n != name {
		t.Errorf("NameOf(%s) = %q %v", dev, n, err)
	}
	if _, err := s.NameOf(img); err == nil {
		t.Error("NameOf(regular file) succeeded")
	}
	if after := testkit.SHA256File(t, img); after != before {
		t.Errorf("image changed: %s -> %s", before, after)
	}
}

func TestRealSwapOnLoopRefused(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup", "mkswap", "swapon", "swapoff")
	img := sparse(t, 96<<20)
	testkit.Run(t, "", "mkswap", "-L", "tmpswap", img)
	dev := testkit.AttachLoop(t, img)
	if out, err := exec.Command("swapon", dev).CombinedOutput(); err != nil {
		t.Skipf("SKIP: swapon %s not permitted on this machine: %v %s", dev, err, out)
	}
	t.Cleanup(func() { exec.Command("swapoff", dev).Run() })
	before := testkit.SHA256File(t, img)
	d, v, exclErr := everythingDiscoveryDoes(t, filepath.Base(dev))
	if !d.Swap || v.OK(true) || !hasReason(v, filepath.Base(dev)+" is active swap") {
		t.Errorf("disk swap=%v verdict=%+v, want refused as active swap", d.Swap, v)
	}
	if d.Content.Type != "swap" || d.Content.Label != "tmpswap" {
		t.Errorf("content = %+v", d.Content)
	}
	if exclErr == nil {
		t.Error("O_EXCL open of active swap succeeded")
	}
	if after := testkit.SHA256File(t, img); after != before {
		t.Errorf("image changed: %s -> %s", before, after)
	}
}

// A loop device whose backing file lives on the target: the target is
// refused for it (it is also mounted), and naming the loop device's path.
func TestRealLoopBackedByFileOnTarget(t *testing.T) {
	_, dev, part := partitionedLoop(t)
	mnt := t.TempDir()
	testkit.Run(t, "", "mount", part, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	inner := filepath.Join(mnt, "inner.img")
	testkit.SparseFile(t, inner, 80<<20)
	innerDev := testkit.AttachLoop(t, inner)
	_, v, _ := everythingDiscoveryDoes(t, filepath.Base(dev))
	want := filepath.Base(innerDev) + " is backed by the file " + inner + " on it"
	if !hasReason(v, want) {
		t.Errorf("verdict = %+v, want reason %q", v, want)
	}
	// The inner loop device itself is a fine target (warning names its file).
	_, iv, exclErr := everythingDiscoveryDoes(t, filepath.Base(innerDev))
	if !iv.OK(false) || exclErr != nil || !strings.Contains(strings.Join(iv.Warnings, "|"), inner) {
		t.Errorf("inner loop verdict = %+v, excl %v", iv, exclErr)
	}
}

func TestRealUnusedLoopAllowedAndExclusive(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup", "mkfs.ext4", "mount")
	img := sparse(t, 80<<20)
	testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-L", "mountable", img)
	dev := testkit.AttachLoop(t, img)
	d, v, exclErr := everythingDiscoveryDoes(t, filepath.Base(dev))
	if !v.OK(false) || exclErr != nil {
		t.Fatalf("verdict = %+v, excl = %v", v, exclErr)
	}
	if d.Summary() != `ext4 "mountable"` || d.Size != 80<<20 || d.LoopBacking != img {
		t.Errorf("disk = %+v", d)
	}
	// While we hold the exclusive open, a second one (another luksdock, a
	// mount) is refused.
	f, err := OpenExclusive(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if g, err := OpenExclusive(dev); err == nil {
		g.Close()
		t.Fatal("second O_EXCL open succeeded")
	}
	// Without the exclusive open this mount would succeed (it is ext4).
	if out, err := exec.Command("mount", "-o", "ro", dev, t.TempDir()).CombinedOutput(); err == nil {
		exec.Command("umount", dev).Run()
		t.Fatalf("mount succeeded during the exclusive open: %s", out)
	}
	if _, err := OpenExclusive(img); err == nil {
		t.Error("OpenExclusive accepted a regular file")
	}
	// Released: the same mount now works, so the refusal above was the
	// exclusive open's doing.
	f.Close()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount after release failed: %v %s", err, out)
	}
	exec.Command("umount", mnt).Run()
}

// TestClaimExclusive: the read-only claim refuses a disk another exclusive
// open holds, as OpenExclusive does, and closing it is not a write as the
// kernel tells udev's watch (inotify IN_CLOSE_WRITE, which makes udev
// re-read the partition table and replay "add" events); closing
// OpenExclusive's descriptor is.
func TestClaimExclusive(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup")
	dev := testkit.AttachLoop(t, sparse(t, 8<<20))
	f, err := OpenExclusive(dev)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := ClaimExclusive(dev); err == nil {
		g.Close()
		t.Fatal("ClaimExclusive succeeded while OpenExclusive holds the disk")
	}
	f.Close()
	closes := func(open func(string) (*os.File, error)) (write, nowrite int) {
		return testkit.CloseEvents(t, dev, func() {
			g, err := open(dev)
			if err != nil {
				t.Fatal(err)
			}
			g.Close()
		})
	}
	if w, _ := closes(OpenExclusive); w != 1 {
		t.Fatalf("control: closing OpenExclusive's descriptor gave %d IN_CLOSE_WRITE events, want 1", w)
	}
	if w, nw := closes(ClaimExclusive); w != 0 || nw != 1 {
		t.Errorf("closing ClaimExclusive's descriptor: %d IN_CLOSE_WRITE, %d IN_CLOSE_NOWRITE; want 0 and 1", w, nw)
	}
}
