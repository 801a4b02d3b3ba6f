package luks

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/procwatch"
	"luksdock/internal/testkit"
)

// These tests run the real thing: cryptsetup formats and decrypts, the FUSE
// mount is served by this process, mke2fs/e2fsck/dumpe2fs run on it.

const usPass = "correct horse battery staple"

func usRequire(t *testing.T) {
	t.Helper()
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "losetup") // FUSE direct mount, loop devices
	testkit.NeedFUSE(t)
}

// usRun runs a command with optional stdin and an optional extra pipe on fd 3
// (for --volume-key-file /proc/self/fd/3), so no secret is in argv or a file.
func usRun(t *testing.T, stdin string, fd3 []byte, name string, args ...string) string {
	t.Helper()
	return testkit.RunFD3(t, stdin, fd3, name, args...)
}

func usRunErr(stdin string, fd3 []byte, name string, args ...string) (string, error) {
	return testkit.Cmd(stdin, fd3, name, args...)
}

func usKey(t *testing.T) []byte {
	key := make([]byte, 64)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func usSparse(t *testing.T, path string, size int64) {
	t.Helper()
	testkit.SparseFile(t, path, size)
}

// usFormat luksFormats a sparse region file of regionSize bytes with the given
// volume key (over a pipe) and copies its header area into image at base.
// It returns the data segment read back from cryptsetup luksDump.
func usFormat(t *testing.T, image string, base, regionSize int64, key []byte, luks1 bool, sectorSize int) Segment {
	t.Helper()
	region := filepath.Join(t.TempDir(), "region.img")
	usSparse(t, region, regionSize)
	args := []string{"luksFormat", "-q", "--cipher", "aes-xts-plain64", "--key-size", "512",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--key-file=-", "--volume-key-file", "/proc/self/fd/3"}
	if luks1 {
		args = append(args, "--type", "luks1")
	} else {
		args = append(args, "--type", "luks2", "--label", "backups01")
		if sectorSize != 0 {
			args = append(args, "--sector-size", strconv.Itoa(sectorSize))
		}
	}
	usRun(t, usPass, key, "cryptsetup", append(args, region)...)

	// The key cryptsetup stored is the one we generated.
	if got, err := testkit.VolumeKey(t, testkit.Device{Path: region}, usPass); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("cryptsetup luksDump --dump-volume-key returned a different volume key (%v)", err)
	}
	seg := usSegment(t, region)
	// Copy the header area (everything before the data segment) to base.
	src, err := os.Open(region)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := io.Copy(io.NewOffsetWriter(dst, base), io.NewSectionReader(src, 0, seg.Offset)); err != nil {
		t.Fatal(err)
	}
	return seg
}

// usSegment reads the data segment of the LUKS device dev with cryptsetup.
func usSegment(t testing.TB, dev string) Segment {
	t.Helper()
	s, err := testkit.ReadSegment(t, testkit.Device{Path: dev})
	if err != nil {
		t.Fatal(err)
	}
	return Segment{Offset: s.Offset, Size: s.Size, SectorSize: s.SectorSize, IVTweak: s.IVTweak, Cipher: s.Cipher}
}

// usCryptsetupDecrypt decrypts the data segment [off, off+size) of image
// independently with cryptsetup (testkit.DecryptCryptsetup) and returns the
// plaintext file.
func usCryptsetupDecrypt(t *testing.T, image string, off, size int64, key []byte, sectorSize int) string {
	t.Helper()
	return testkit.DecryptCryptsetup(t, testkit.Volume{
		Dev: testkit.Device{Path: image},
		Seg: testkit.Segment{Offset: off, Size: size, SectorSize: sectorSize, Cipher: "aes-xts-plain64"},
		Key: key,
	})
}

func usMount(t *testing.T, image string, base, region int64, seg Segment, key []byte) *UserspaceVolume {
	t.Helper()
	v, err := MountUserspace(image, base, region, seg, key)
	if err != nil {
		t.Fatalf("MountUserspace: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func usAssertGone(t *testing.T, v *UserspaceVolume) {
	t.Helper()
	if _, err := os.Stat(v.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("private mount directory %s still exists after Close (stat: %v)", v.dir, err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), v.mnt) {
		t.Errorf("mount %s still in /proc/self/mountinfo after Close", v.mnt)
	}
	if usAlive(v.serverPid()) {
		t.Errorf("volume server %d (which holds the key) still running after Close", v.serverPid())
	}
}

// TestUserspaceMatchesCryptsetup writes data through the mount and decrypts
// it independently with cryptsetup, for LUKS1, LUKS2 with 512- and 4096-byte
// sectors, at base offset 0 and 1 MiB inside an image file.
func TestUserspaceMatchesCryptsetup(t *testing.T) {
	usRequire(t)
	cases := []struct {
		name   string
		luks1  bool
		sector int
		base   int64
	}{
		{"luks2-4096-base0", false, 4096, 0},
		{"luks2-512-base1M", false, 512, 1 << 20},
		{"luks2-4096-base1M", false, 4096, 1 << 20},
		{"luks1-512-base1M", true, 512, 1 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const region = 48 << 20
			image := filepath.Join(t.TempDir(), "disk.img")
			usSparse(t, image, tc.base+region+(1<<20))
			key := usKey(t)
			seg := usFormat(t, image, tc.base, region, key, tc.luks1, tc.sector)
			if seg.SectorSize != tc.sector {
				t.Fatalf("cryptsetup made sector size %d, want %d", seg.SectorSize, tc.sector)
			}
			v := usMount(t, image, tc.base, region, seg, key)
			if want := region - seg.Offset; v.Size() != want {
				t.Fatalf("Size() = %d, want %d", v.Size(), want)
			}
			st, err := os.Stat(v.Path())
			if err != nil || st.Size() != v.Size() || !st.Mode().IsRegular() {
				t.Fatalf("Path() stat: %v %v", st, err)
			}
			// The expected plaintext: random data written in pieces of
			// awkward sizes and offsets (read-modify-write of partial
			// sectors), plus a big write that is split across cores.
			want := make([]byte, v.Size())
			f, err := os.OpenFile(v.Path(), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Never-written areas decrypt whatever is on disk: fetch that first.
			if _, err := io.ReadFull(f, want); err != nil {
				t.Fatal(err)
			}
			write := func(off int64, n int) {
				b := make([]byte, n)
				rand.Read(b)
				if _, err := f.WriteAt(b, off); err != nil {
					t.Fatalf("write %d@%d: %v", n, off, err)
				}
				copy(want[off:], b)
			}
			write(0, 8<<20)
			write(12345, 1)
			write(4095, 2)
			write(8<<20-100, 3000)
			write(9<<20+511, 4096*3+7)
			write(v.Size()-1000, 1000)
			write(20<<20, 3<<20)
			got := make([]byte, len(want))
			if _, err := f.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read back through the mount differs from what was written")
			}
			f.Close()
			if err := v.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			usAssertGone(t, v)

			plain := usCryptsetupDecrypt(t, image, tc.base+seg.Offset, region-seg.Offset, key, seg.SectorSize)
			dec, err := os.ReadFile(plain)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dec, want) {
				t.Fatalf("cryptsetup's decryption differs from the plaintext written through the mount (first difference at byte %d)", firstDiff(dec, want))
			}
			// The header area before base and after the region is untouched.
			img, _ := os.ReadFile(image)
			if !bytes.Equal(img[:tc.base], make([]byte, tc.base)) || !bytes.Equal(img[tc.base+region:], make([]byte, 1<<20)) {
				t.Fatalf("bytes outside the LUKS device were modified")
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestUserspaceReadsCryptsetupCiphertext is the reverse direction: data
// encrypted by cryptsetup reads back as the original through the mount.
func TestUserspaceReadsCryptsetupCiphertext(t *testing.T) {
	usRequire(t)
	for _, sector := range []int{512, 4096} {
		t.Run(fmt.Sprintf("sector%d", sector), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "data.img")
			orig := make([]byte, 24<<20)
			rand.Read(orig)
			if err := os.WriteFile(file, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			key := usKey(t)
			testkit.EncryptCryptsetup(t, file, key, sector)
			ct, _ := os.ReadFile(file)
			if bytes.Equal(ct[:4096], orig[:4096]) {
				t.Fatalf("cryptsetup did not encrypt the file")
			}
			v := usMount(t, file, 0, int64(len(orig)), Segment{SectorSize: sector, Cipher: "aes-xts-plain64"}, key)
			got, err := os.ReadFile(v.Path())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, orig) {
				t.Fatalf("plaintext through the mount differs from what cryptsetup encrypted (first difference at byte %d)", firstDiff(got, orig))
			}
			// Unaligned reads too.
			f, _ := os.Open(v.Path())
			defer f.Close()
			part := make([]byte, 10001)
			if _, err := f.ReadAt(part, 4093); err != nil || !bytes.Equal(part, orig[4093:4093+10001]) {
				t.Fatalf("unaligned read differs (err %v)", err)
			}
			if s := v.Stats(); s.ReadBytes < int64(len(orig)) || s.BackingReadBytes < int64(len(orig)) {
				t.Fatalf("stats do not count the reads: %+v", s)
			}
			// IVTweak is in 512-byte sectors and added to the segment
			// relative sector number (dm-crypt's iv_offset): a segment that
			// starts 64 KiB into the same ciphertext with iv_tweak 128 reads
			// the same plaintext.
			const shift = 64 << 10
			w := usMount(t, file, 0, int64(len(orig)), Segment{Offset: shift, IVTweak: shift / 512, SectorSize: sector, Cipher: "aes-xts-plain64"}, key)
			got, err = os.ReadFile(w.Path())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, orig[shift:]) {
				t.Fatalf("IVTweak: plaintext differs (first difference at byte %d)", firstDiff(got, orig[shift:]))
			}
		})
	}
}

// TestUserspaceMkfsEndToEnd is the full path: a sparse 256 MiB image, LUKS2
// at byte offset 1 MiB, mke2fs/e2fsck through the mount, then cryptsetup's
// own decryption of the result checked with dumpe2fs and e2fsck.
func TestUserspaceMkfsEndToEnd(t *testing.T) {
	usRequire(t)
	const base, size = 1 << 20, 256 << 20
	region := int64(size - base)
	image := filepath.Join(t.TempDir(), "disk.img")
	usSparse(t, image, size)
	key := usKey(t)
	seg := usFormat(t, image, base, region, key, false, 0) // sector size chosen by cryptsetup
	v := usMount(t, image, base, region, seg, key)
	usRun(t, "", nil, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-L", "backups01", v.Path())
	out := usRun(t, "", nil, "e2fsck", "-fn", v.Path())
	usCheckFsck(t, out)
	if !strings.Contains(usRun(t, "", nil, "dumpe2fs", "-h", v.Path()), "backups01") {
		t.Fatalf("dumpe2fs through the mount does not show the label")
	}
	stats := v.Stats()
	// Without -E nodiscard mke2fs tries to discard (hole punching), which the
	// engine refuses; the result must still be clean. Then format again with
	// nodiscard for the independent check below.
	usRun(t, "", nil, "mkfs.ext4", "-q", "-F", "-L", "other", v.Path())
	usCheckFsck(t, usRun(t, "", nil, "e2fsck", "-fn", v.Path()))
	usRun(t, "", nil, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-L", "backups01", v.Path())
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	usAssertGone(t, v)
	t.Logf("sector size %d, data offset %d, stats %+v", seg.SectorSize, seg.Offset, stats)

	plain := usCryptsetupDecrypt(t, image, base+seg.Offset, region-seg.Offset, key, seg.SectorSize)
	dump := usRun(t, "", nil, "dumpe2fs", "-h", plain)
	if !strings.Contains(dump, "Filesystem volume name:   backups01") {
		t.Fatalf("cryptsetup-decrypted volume has no ext4 label backups01:\n%s", dump)
	}
	usCheckFsck(t, usRun(t, "", nil, "e2fsck", "-fn", plain))
	blkid, err := exec.Command("blkid", "-p", "-o", "export", plain).Output()
	if err != nil {
		t.Fatalf("blkid -p %s: %v (it finds nothing in the decrypted volume)", plain, err)
	}
	if !strings.Contains(string(blkid), "TYPE=ext4") {
		t.Fatalf("blkid does not see ext4 in the decrypted volume: %s", blkid)
	}
}

var fsckSummary = regexp.MustCompile(`^\S+: \d+/\d+ files \([0-9.]+% non-contiguous\), \d+/\d+ blocks$`)

// usCheckFsck fails unless e2fsck -fn printed only its pass summaries.
func usCheckFsck(t *testing.T, out string) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "Pass ") || strings.HasPrefix(line, "e2fsck ") || fsckSummary.MatchString(line) {
			continue
		}
		t.Fatalf("e2fsck -fn printed more than the pass summaries: %q\n%s", line, out)
	}
}

// TestUserspaceFileSemantics checks the FUSE file's behaviour at the edges:
// zeroing, refused discard and resize, writes past the end, fsync, and that
// Close cleans up and is idempotent.
func TestUserspaceFileSemantics(t *testing.T) {
	usRequire(t)
	for _, sector := range []int{512, 4096} {
		t.Run(fmt.Sprintf("sector%d", sector), func(t *testing.T) {
			const size = 16 << 20
			image := filepath.Join(t.TempDir(), "raw.img")
			usSparse(t, image, size+8192)
			v := usMount(t, image, 8192, size, Segment{SectorSize: sector, Cipher: "aes-xts-plain64"}, usKey(t))
			f, err := os.OpenFile(v.Path(), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			junk := make([]byte, size)
			rand.Read(junk)
			if _, err := f.WriteAt(junk, 0); err != nil {
				t.Fatal(err)
			}
			// FALLOC_FL_ZERO_RANGE, unaligned at both ends and a large aligned middle.
			zoff, zlen := int64(1000), int64(9<<20+77)
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, zoff, zlen); errors.Is(err, syscall.EOPNOTSUPP) {
				// Kernels before FUSE learned FALLOC_FL_ZERO_RANGE refuse it
				// themselves; mke2fs then writes zeros instead.
				t.Skipf("this kernel (%s) does not pass FALLOC_FL_ZERO_RANGE to FUSE servers; zeroing semantics not testable here", usKernel())
			} else if err != nil {
				t.Fatalf("fallocate ZERO_RANGE: %v", err)
			}
			got := make([]byte, size)
			if _, err := f.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			want := append([]byte(nil), junk...)
			clear(want[zoff : zoff+zlen])
			if !bytes.Equal(got, want) {
				t.Fatalf("after ZERO_RANGE content differs at %d", firstDiff(got, want))
			}
			if z := v.Stats().ZeroedBytes; z != zlen {
				t.Fatalf("ZeroedBytes = %d, want %d", z, zlen)
			}
			// The zeros are encrypted on disk, not holes or plaintext zeros.
			raw, _ := os.ReadFile(image)
			if bytes.Count(raw[8192+4096:8192+8<<20], []byte{0}) > 1<<17 {
				t.Fatalf("zeroed range is stored as plaintext zeros")
			}
			if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096); !errors.Is(err, syscall.EOPNOTSUPP) {
				t.Fatalf("punch hole: got %v, want EOPNOTSUPP", err)
			}
			if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
				t.Fatalf("plain fallocate within the size: %v", err)
			}
			if err := f.Truncate(size / 2); !errors.Is(err, syscall.EPERM) {
				t.Fatalf("truncate: got %v, want EPERM", err)
			}
			if _, err := f.WriteAt([]byte{1}, size); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write past the end: got %v, want ENOSPC", err)
			}
			if n, err := f.ReadAt(make([]byte, 10), size-4); n != 4 || err != io.EOF {
				t.Fatalf("read across the end: n=%d err=%v", n, err)
			}
			if err := f.Sync(); err != nil {
				t.Fatalf("fsync: %v", err)
			}
			if st, _ := os.Stat(filepath.Dir(v.Path())); st.Mode().Perm() != 0o700 {
				t.Fatalf("mountpoint mode %v, want 0700", st.Mode())
			}
			if st, _ := os.Stat(v.dir); st.Mode().Perm() != 0o700 {
				t.Fatalf("private dir mode %v, want 0700", st.Mode())
			}
			f.Close()
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			if err := v.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			usAssertGone(t, v)
			// Bytes before base are untouched.
			raw, _ = os.ReadFile(image)
			if !bytes.Equal(raw[:8192], make([]byte, 8192)) {
				t.Fatalf("bytes before base were modified")
			}
		})
	}
}

// TestUserspaceCloseWhileBusy: Close with the file still open detaches the
// mount lazily and aborts the connection, instead of hanging or leaving it.
func TestUserspaceCloseWhileBusy(t *testing.T) {
	usRequire(t)
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, 4<<20)
	v := usMount(t, image, 0, 4<<20, Segment{SectorSize: 4096, Cipher: "aes-xts-plain64"}, usKey(t))
	f, err := os.Open(v.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	err = v.Close()
	took := time.Since(start)
	t.Logf("Close with an open file took %v: %v", took, err)
	if err != nil || took > 10*time.Second {
		t.Fatalf("Close of a busy volume: %v after %v", err, took)
	}
	usAssertGone(t, v)
	if _, err := f.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatalf("read through a closed volume succeeded")
	}
}

func TestMountUserspaceRejects(t *testing.T) {
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, 8<<20)
	key := make([]byte, 64)
	for _, tc := range []struct {
		name           string
		base, region   int64
		seg            Segment
		key            []byte
		wantSubstrings string
	}{
		{"cipher", 0, 8 << 20, Segment{SectorSize: 512, Cipher: "aes-cbc-essiv:sha256"}, key, "not supported"},
		{"sector", 0, 8 << 20, Segment{SectorSize: 520, Cipher: "aes-xts-plain64"}, key, "sector size"},
		{"key", 0, 8 << 20, Segment{SectorSize: 512, Cipher: "aes-xts-plain64"}, key[:48], "volume key"},
		{"past-end", 1 << 20, 8 << 20, Segment{SectorSize: 512, Cipher: "aes-xts-plain64"}, key, "past the end"},
		{"segment-too-big", 0, 8 << 20, Segment{Offset: 4 << 20, Size: 5 << 20, SectorSize: 512, Cipher: "aes-xts-plain64"}, key, "does not fit"},
		{"unaligned-size", 0, 8 << 20, Segment{Offset: 0, Size: 4<<20 + 512, SectorSize: 4096, Cipher: "aes-xts-plain64"}, key, "multiple of the sector size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := MountUserspace(image, tc.base, tc.region, tc.seg, tc.key)
			if err == nil {
				v.Close()
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), tc.wantSubstrings) {
				t.Fatalf("error %q does not mention %q", err, tc.wantSubstrings)
			}
		})
	}
	if _, err := MountUserspace(filepath.Join(t.TempDir(), "missing.img"), 0, 8<<20, Segment{SectorSize: 512, Cipher: "aes-xts-plain64"}, key); err == nil {
		t.Fatalf("missing backing file accepted")
	}
}

// TestUserspaceMkfs1TiBBounded: mkfs.ext4 of a 1 TiB sparse image through
// the engine stays within the budgets: at most 1.5 GiB written to the
// image (ext4's 1 GiB journal is the floor) and peak RSS of this process
// and the volume server together under 100 MiB. Timing is left to BenchmarkUserspaceMkfs.
//
// The race detector's shadow memory multiplies RSS, and CI always runs with
// -race: there the test builds this package's tests without -race and runs
// itself in that binary, so the 100 MiB budget is asserted in every run.
func TestUserspaceMkfs1TiBBounded(t *testing.T) {
	usRequire(t)
	if testing.Short() {
		t.Skip("-short: skipping the 1 TiB mkfs (allocates ~1 GiB in $TMPDIR)")
	}
	if usRaceDetector {
		runWithoutRace(t, "TestUserspaceMkfs1TiBBounded")
		return
	}
	const size = 1 << 40
	image := filepath.Join(t.TempDir(), "big.img")
	usSparse(t, image, size)
	var st syscall.Stat_t
	key := usKey(t)
	seg := usFormat(t, image, 1<<20, size-1<<20, key, false, 0)
	syscall.Stat(image, &st)
	before := st.Blocks * 512
	resetHWM()
	v := usMount(t, image, 1<<20, size-1<<20, seg, key)
	usRun(t, "", nil, "mkfs.ext4", "-q", "-E", "nodiscard", "-L", "backups01", v.Path())
	usCheckFsck(t, usRun(t, "", nil, "e2fsck", "-fn", v.Path()))
	stats := v.Stats()
	serverHWM := procwatch.PeakRSS(v.serverPid())
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	selfHWM := readHWM()
	hwm := selfHWM + serverHWM
	syscall.Stat(image, &st)
	written := st.Blocks*512 - before
	t.Logf("1 TiB: %d MiB allocated in the image, engine wrote %d MiB (zeroed %d MiB), peak RSS %d MiB (caller %d MiB + volume server %d MiB)",
		written>>20, stats.BackingWrittenBytes>>20, stats.ZeroedBytes>>20, hwm>>20, selfHWM>>20, serverHWM>>20)
	if written > 3<<29 || stats.BackingWrittenBytes > 3<<29 {
		t.Errorf("wrote more than 1.5 GiB")
	}
	switch {
	case stats.ZeroedBytes >= 1<<30:
		// the journal was zeroed through FALLOC_FL_ZERO_RANGE
	case stats.WrittenBytes >= 1<<30:
		t.Logf("kernel %s does not pass FALLOC_FL_ZERO_RANGE to FUSE: mke2fs wrote the journal's zeros instead", usKernel())
	default:
		t.Errorf("the 1 GiB journal was neither zeroed (%d bytes) nor written (%d bytes) through the engine", stats.ZeroedBytes, stats.WrittenBytes)
	}
	if selfHWM <= 0 || serverHWM <= 0 || hwm > 100<<20 {
		t.Errorf("peak RSS %d + %d bytes (caller + volume server), want under 100 MiB together", selfHWM, serverHWM)
	}
}

// runWithoutRace builds this package's tests without -race (go test -c)
// and runs the one test in that binary, passing on its log; the test fails
// unless the child ran it and it passed.
func runWithoutRace(t *testing.T, test string) {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, "luks.norace.test")
	build := exec.Command("go", "test", "-c", "-o", exe, ".")
	build.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the tests without -race for %s: %v\n%s", test, err, out)
	}
	run := exec.Command(exe, "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	out, err := run.CombinedOutput()
	t.Logf("%s in a build without -race (its RSS is what a user's luksdock uses):\n%s", test, out)
	if err != nil {
		t.Fatalf("%s without -race: %v", test, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+test+" ") {
		t.Fatalf("%s without -race did not run and pass", test)
	}
}

func usKernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// TestUserspaceBackingFull: when the backing file cannot grow (a sparse
// image on a full tmpfs), writes through the engine fail with ENOSPC, mke2fs
// fails, and Close still cleans up.
func TestUserspaceBackingFull(t *testing.T) {
	usRequire(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs for the full-disk case: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	image := filepath.Join(dir, "small.img")
	usSparse(t, image, 64<<20)
	v := usMount(t, image, 0, 64<<20, Segment{SectorSize: 4096, Cipher: "aes-xts-plain64"}, usKey(t))
	f, err := os.OpenFile(v.Path(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(make([]byte, 8<<20), 0)
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 8 MiB to a 4 MiB tmpfs through the engine: %v, want ENOSPC", err)
	}
	if out, err := usRunErr("", nil, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", v.Path()); err == nil {
		t.Fatalf("mkfs.ext4 succeeded on a full backing store:\n%s", out)
	}
	if err := v.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	usAssertGone(t, v)
}

// TestUserspaceConcurrentWrites: many writers at once, with byte ranges that
// share sectors (read-modify-write), lose no update; checked through the
// engine and by independent decryption with x/crypto's XTS. The writers call
// the engine (the server's data path) directly, because the kernel
// serializes FUSE writes to one file (inode lock) and would hide a locking
// bug; zeroing with FALLOC_FL_KEEP_SIZE is not serialized by the kernel, so
// the engine's own locking matters.
func TestUserspaceConcurrentWrites(t *testing.T) {
	usRequire(t)
	const size = 2 << 20
	image := filepath.Join(t.TempDir(), "raw.img")
	usSparse(t, image, size)
	key := usKey(t)
	backing, err := os.OpenFile(image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	v, err := newVolServer(backing, serverConfig{Size: size, SectorSize: 4096}, key)
	if err != nil {
		t.Fatal(err)
	}
	// Cut [0, size) into pieces of odd lengths; neighbours share sectors
	// and are written by different goroutines at about the same time.
	type piece struct{ off, n int }
	var pieces []piece
	for off, i := 0, 0; off < size; i++ {
		n := min(1+(i*7919)%20000, size-off)
		pieces = append(pieces, piece{off, n})
		off += n
	}
	want := make([]byte, size)
	for round := 0; round < 25; round++ {
		rand.Read(want)
		errs := make(chan error, 8)
		for w := 0; w < 8; w++ {
			go func(w int) {
				for i := w; i < len(pieces); i += 8 {
					p := pieces[i]
					if _, err := v.write(want[p.off:p.off+p.n], int64(p.off)); err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}(w)
		}
		for w := 0; w < 8; w++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, size)
		if n, err := v.read(got, 0); err != nil || n != size {
			t.Fatalf("read back: %d bytes, %v", n, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: lost update: content differs at byte %d", round, firstDiff(got, want))
		}
	}
	v.wipe()
	if err := backing.Close(); err != nil {
		t.Fatal(err)
	}
	plain, _ := os.ReadFile(testkit.DecryptXTS(t, testkit.Volume{
		Dev: testkit.Device{Path: image},
		Seg: testkit.Segment{Size: size, SectorSize: 4096, Cipher: "aes-xts-plain64"},
		Key: key,
	}))
	if !bytes.Equal(plain, want) {
		t.Fatalf("x/crypto/xts decryption of the image differs at byte %d", firstDiff(plain, want))
	}
}
