package testkit

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// CheckErased proves, independently of luksdock, what a full-disk erase
// followed by mkfs must leave in v's data segment: every sector was written
// (no sector of ciphertext is all zeros: the test images start sparse, and
// AES-XTS never outputs a zero sector), and the segment decrypted with
// golang.org/x/crypto/xts (DecryptXTS) is zeros except the blocks that
// dumpe2fs lists as used by the ext4 filesystem, which e2fsck -fn finds
// clean. It returns the number of blocks holding data and the block count.
func CheckErased(t testing.TB, v Volume) (used, blocks int64) {
	t.Helper()
	f, err := os.Open(v.Dev.Path)
	if err != nil {
		t.Fatal(err)
	}
	ss := v.Seg.SectorSize
	buf := make([]byte, 1<<20)
	zero := make([]byte, ss)
	for off := int64(0); off < v.Seg.Size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), v.Seg.Size-off)]
		if _, err := f.ReadAt(b, v.Dev.Base+v.Seg.Offset+off); err != nil {
			f.Close()
			t.Fatalf("reading the data segment at %d: %v", off, err)
		}
		for s := 0; s < len(b); s += ss {
			if bytes.Equal(b[s:s+ss], zero) {
				f.Close()
				t.Fatalf("the sector at byte %d of the data segment was never written (all-zero ciphertext)", off+int64(s))
			}
		}
	}
	f.Close()
	plain := DecryptXTS(t, v)
	if out, err := exec.Command("e2fsck", "-fn", plain).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn on the decrypted volume: %v\n%s", err, out)
	}
	free, bs := freeBlocks(t, plain)
	pb, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < int64(len(pb)); off += bs {
		if bytes.ContainsFunc(pb[off:off+bs], func(r rune) bool { return r != 0 }) {
			if free(off / bs) {
				t.Fatalf("block %d is free in the filesystem but does not decrypt to zeros", off/bs)
			}
			used++
		}
	}
	return used, int64(len(pb)) / bs
}

// freeBlocks returns, per dumpe2fs, which blocks of the ext4 filesystem in
// the file plain are free, and the block size.
func freeBlocks(t testing.TB, plain string) (free func(int64) bool, blockSize int64) {
	t.Helper()
	out := Run(t, "", "dumpe2fs", plain)
	m := regexp.MustCompile(`(?m)^Block size:\s+(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("dumpe2fs prints no block size")
	}
	blockSize, _ = strconv.ParseInt(m[1], 10, 64)
	var ranges [][2]int64
	for _, l := range regexp.MustCompile(`(?m)^\s+Free blocks: (.*)$`).FindAllStringSubmatch(out, -1) {
		for _, r := range strings.Split(l[1], ", ") {
			if r = strings.TrimSpace(r); r == "" {
				continue
			}
			a, b, ok := strings.Cut(r, "-")
			if !ok {
				b = a
			}
			x, err1 := strconv.ParseInt(a, 10, 64)
			y, err2 := strconv.ParseInt(b, 10, 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("dumpe2fs free blocks %q", r)
			}
			ranges = append(ranges, [2]int64{x, y})
		}
	}
	if len(ranges) == 0 {
		t.Fatal("dumpe2fs lists no free blocks")
	}
	return func(blk int64) bool {
		for _, r := range ranges {
			if blk >= r[0] && blk <= r[1] {
				return true
			}
		}
		return false
	}, blockSize
}
