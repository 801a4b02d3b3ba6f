package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"luksdock/fsformat"
	"luksdock/internal/testkit"
)

// TestLazyJournalCrash: prepare leaves the ext4 journal unzeroed
// (mke2fs -E lazy_journal_init=1) and that is safe on its brand-new LUKS
// volume. Decrypted with the volume key cryptsetup recovers (x/crypto/xts,
// not luksdock's engine), the journal's blocks hold no zeros but noise and
// its superblock says empty (s_start 0). Then the kernel mounts it, a file
// is written and synced, a second one written, and the filesystem is shut
// down without flushing its log (FS_IOC_SHUTDOWN, NOLOGFLUSH: a crash), so
// the next mount must run jbd2 recovery across the never-zeroed journal.
// That mount must succeed with the synced file intact, and e2fsck -fn must
// be clean afterwards.
func TestLazyJournalCrash(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "debugfs", "dumpe2fs", "xfs_io", "mount", "umount")
	img := filepath.Join(t.TempDir(), "j.img")
	args := append([]string{"prepare", "--image", img, "--size", "300M", "--label", "jtest", "--passphrase-file", "-", "--confirm", "j.img"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	p1, ok := testkit.Partition1(t, img)
	if !ok {
		t.Fatal("no partition 1")
	}
	v, err := testkit.Unlock(t, p1, testPass)
	if err != nil {
		t.Fatal(err)
	}
	plain := testkit.DecryptXTS(t, v)

	hdr := testkit.Run(t, "", "dumpe2fs", "-h", plain)
	if !regexp.MustCompile(`(?m)^Journal start:\s+0$`).MatchString(hdr) {
		t.Fatalf("the new journal is not empty (s_start != 0):\n%s", hdr)
	}
	m := regexp.MustCompile(`(?m)^Block size:\s+(\d+)$`).FindStringSubmatch(hdr)
	if m == nil {
		t.Fatalf("dumpe2fs: no block size:\n%s", hdr)
	}
	bs, _ := strconv.ParseInt(m[1], 10, 64)
	f, err := os.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	noise := 0
	for _, lblk := range []int{5, 100, 1000} {
		out := testkit.Run(t, "", "debugfs", "-R", fmt.Sprintf("bmap <8> %d", lblk), plain)
		pblk, err := strconv.ParseInt(strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:]), 10, 64)
		if err != nil || pblk == 0 {
			t.Fatalf("debugfs bmap <8> %d: %q", lblk, out)
		}
		b := make([]byte, bs)
		if _, err := f.ReadAt(b, pblk*bs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, make([]byte, bs)) {
			noise++
		}
		if binary.BigEndian.Uint32(b) == 0xc03b3998 {
			t.Errorf("journal block %d carries the JBD2 magic", lblk)
		}
	}
	f.Close()
	if noise != 3 {
		t.Fatalf("%d of 3 sampled journal blocks are zeroed: mke2fs zeroed the journal (lazy_journal_init not in effect)", 3-noise)
	}

	mnt := t.TempDir()
	testkit.Run(t, "", "mount", "-o", "loop", plain, mnt)
	mounted := true
	defer func() {
		if mounted {
			testkit.Cmd("", nil, "umount", mnt)
		}
	}()
	if err := os.WriteFile(filepath.Join(mnt, "synced"), bytes.Repeat([]byte("backup"), 50000), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, "", "sync", "-f", filepath.Join(mnt, "synced"))
	if err := os.MkdirAll(filepath.Join(mnt, "dir/sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mnt, "dir/sub/unsynced"), []byte("maybe"), 0o600); err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, "", "xfs_io", "-x", "-c", "shutdown", mnt) // no -f: the log is not flushed
	testkit.Run(t, "", "umount", mnt)
	mounted = false
	if hdr := testkit.Run(t, "", "dumpe2fs", "-h", plain); !strings.Contains(hdr, "needs_recovery") {
		t.Fatalf("after the shutdown the journal needs no recovery, so nothing was tested:\n%s", hdr)
	}
	testkit.Run(t, "", "mount", "-o", "loop", plain, mnt) // jbd2 recovery
	mounted = true
	got, err := os.ReadFile(filepath.Join(mnt, "synced"))
	if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("backup"), 50000)) {
		t.Fatalf("after recovery the synced file is lost or wrong: %v", err)
	}
	testkit.Run(t, "", "umount", mnt)
	mounted = false
	chk, err := fsformat.Fsck(t.Context(), plain)
	if err != nil || !chk.Clean {
		t.Fatalf("e2fsck -fn after recovery: %v %v", err, chk.Output)
	}
}
