package testkit

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cryptsetupVolume makes, with cryptsetup alone, a LUKS volume of region
// bytes at base inside a new image file whose data segment holds plain
// encrypted by cryptsetup: luksFormat with key and pass on a region file
// for the header, `cryptsetup reencrypt --encrypt` of plain under a detached
// header with the same key and sector size for the ciphertext, both copied
// into the image. It returns the image and the header's data offset.
func cryptsetupVolume(t *testing.T, luks1 bool, sector int, base, region int64, key []byte, pass string, plain []byte) (string, int64) {
	t.Helper()
	dir := t.TempDir()
	hdrFile := SparseFile(t, filepath.Join(dir, "region"), region)
	args := []string{"luksFormat", "--batch-mode", "--cipher", "aes-xts-plain64", "--key-size", "512",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", "--volume-key-file", "/proc/self/fd/3"}
	if luks1 {
		args = append(args, "--type", "luks1")
	} else {
		args = append(args, "--type", "luks2", "--sector-size", strconv.Itoa(sector))
	}
	RunFD3(t, pass, key, "cryptsetup", append(args, hdrFile)...)
	dump := Run(t, "", "cryptsetup", "luksDump", hdrFile)
	off := int64(16 << 20)
	if luks1 {
		off = 2 << 20 // cryptsetup's LUKS1 payload offset for a 512-bit key: 4096 sectors
	}
	if !strings.Contains(dump, fmt.Sprintf("offset: %d [bytes]", off)) && !strings.Contains(dump, fmt.Sprintf("Payload offset:\t%d", off/512)) {
		t.Fatalf("cryptsetup did not put the data at %d:\n%s", off, dump)
	}
	if int64(len(plain)) != region-off {
		t.Fatalf("plaintext of %d bytes for a segment of %d", len(plain), region-off)
	}
	data := filepath.Join(dir, "data")
	if err := os.WriteFile(data, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	EncryptCryptsetup(t, data, key, sector)
	ct, _ := os.ReadFile(data)
	if bytes.Equal(ct[:4096], plain[:4096]) {
		t.Fatal("cryptsetup reencrypt --encrypt left the data as it was")
	}
	hdr, _ := os.ReadFile(hdrFile)
	img := SparseFile(t, filepath.Join(dir, "disk.img"), base+region+(1<<20))
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(hdr[:off], base); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(ct, base+off); err != nil {
		t.Fatal(err)
	}
	return img, off
}

// TestDecryptMatchesCryptsetup: for volumes made and filled by cryptsetup
// alone, Unlock finds the segment and the key cryptsetup used, and both
// decryptions give back exactly the plaintext cryptsetup encrypted. This
// keeps DecryptXTS's own IV rule (and iv_tweak) honest.
func TestDecryptMatchesCryptsetup(t *testing.T) {
	NeedRoot(t, "cryptsetup")
	for _, c := range []struct {
		luks1  bool
		sector int
	}{{false, 4096}, {false, 512}, {true, 512}} {
		t.Run(fmt.Sprintf("luks1=%v/sector%d", c.luks1, c.sector), func(t *testing.T) {
			const base, region = 1 << 20, 24 << 20
			key := make([]byte, 64)
			rand.Read(key)
			const pass = "pässwort with spaces"
			segSize := int64(region - 16<<20)
			if c.luks1 {
				segSize = region - 2<<20
			}
			plain := make([]byte, segSize)
			rand.Read(plain)
			clear(plain[1<<20 : 2<<20]) // a zero MiB: DecryptXTS leaves a hole there
			img, off := cryptsetupVolume(t, c.luks1, c.sector, base, region, key, pass, plain)
			dev := Device{Path: img, Base: base, Size: region}

			if _, err := Unlock(t, dev, pass+" "); err == nil || !strings.Contains(err.Error(), "does not unlock") {
				t.Errorf("Unlock with a wrong passphrase: %v", err)
			}
			if _, err := Unlock(t, Device{Path: img, Base: 0, Size: base}, pass); err == nil || !strings.Contains(err.Error(), "no LUKS header") {
				t.Errorf("Unlock where there is no LUKS header: %v", err)
			}
			v, err := Unlock(t, dev, pass)
			if err != nil {
				t.Fatal(err)
			}
			want := Segment{Version: 2, Offset: off, Size: segSize, SectorSize: c.sector, Cipher: "aes-xts-plain64"}
			if c.luks1 {
				want.Version = 1
			}
			if v.Seg != want || !bytes.Equal(v.Key, key) {
				t.Fatalf("Unlock: segment %+v, key equal %v; want %+v and the key cryptsetup was given", v.Seg, bytes.Equal(v.Key, key), want)
			}
			decrypts := map[string]func(testing.TB, Volume) string{"DecryptXTS": DecryptXTS, "DecryptXTSWritten": DecryptXTSWritten, "DecryptCryptsetup": DecryptCryptsetup}
			for name, decrypt := range decrypts {
				got, err := os.ReadFile(decrypt(t, v))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, plain) {
					t.Errorf("%s differs from what cryptsetup encrypted (%d bytes, want %d)", name, len(got), len(plain))
				}
			}
			// iv_tweak counts 512-byte sectors added to the segment-relative
			// sector number (dm-crypt's iv_offset): a segment starting 64 KiB
			// later with iv_tweak 128 is the same plaintext from 64 KiB on.
			const shift = 64 << 10
			w := v
			w.Seg.Offset, w.Seg.Size, w.Seg.IVTweak = off+shift, segSize-shift, shift/512
			if got, _ := os.ReadFile(DecryptXTS(t, w)); !bytes.Equal(got, plain[shift:]) {
				t.Errorf("DecryptXTS with iv_tweak %d differs from cryptsetup's plaintext", w.Seg.IVTweak)
			}
			// A MiB of the segment that nothing wrote (zero ciphertext):
			// cryptsetup and DecryptXTS show what dm-crypt would, not zeros;
			// DecryptXTSWritten leaves zeros there and decrypts the rest.
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.WriteAt(make([]byte, 1<<20), base+off+3<<20)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			real, _ := os.ReadFile(DecryptCryptsetup(t, v))
			if bytes.Equal(real[3<<20:4<<20], make([]byte, 1<<20)) || !bytes.Equal(real[:3<<20], plain[:3<<20]) {
				t.Fatalf("cryptsetup's view of an unwritten MiB is zeros, or the MiBs before it changed")
			}
			if got, _ := os.ReadFile(DecryptXTS(t, v)); !bytes.Equal(got, real) {
				t.Errorf("DecryptXTS of a never-written MiB differs from cryptsetup's")
			}
			got, _ := os.ReadFile(DecryptXTSWritten(t, v))
			if !bytes.Equal(got[3<<20:4<<20], make([]byte, 1<<20)) || !bytes.Equal(got[:3<<20], plain[:3<<20]) || !bytes.Equal(got[4<<20:], plain[4<<20:]) {
				t.Errorf("DecryptXTSWritten: not zeros where nothing was written, or not the plaintext elsewhere")
			}
		})
	}
}

func TestPartition1(t *testing.T) {
	NeedTools(t, "sfdisk")
	img := SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), 64<<20)
	if d, ok := Partition1(t, img); ok {
		t.Fatalf("Partition1 of a blank image: %+v", d)
	}
	Run(t, "label: gpt\nstart=4096, size=20MiB\nsize=8MiB\n", "sfdisk", "-q", img)
	if d, ok := Partition1(t, img); !ok || d != (Device{Path: img, Base: 4096 * 512, Size: 20 << 20}) {
		t.Fatalf("Partition1 = %+v %v", d, ok)
	}
	if p := Partitions(t, img); len(p) != 2 || p[1] != (Device{Path: img, Base: 4096*512 + 20<<20, Size: 8 << 20}) {
		t.Fatalf("Partitions = %+v", p)
	}
}

func partitions(dev string) []string {
	name := filepath.Base(dev)
	m, _ := filepath.Glob(filepath.Join("/sys/block", name, name+"p*"))
	return m
}

// TestLoopLeavesNoPartitions: the partition entries a test adds to its loop
// device are gone with the device when the test ends, and an entry that an
// earlier user left on a loop number (detached without dropping it) is
// removed by dropPartitions, which AttachLoop runs right after attaching.
func TestLoopLeavesNoPartitions(t *testing.T) {
	NeedRoot(t, "losetup", "partx", "sfdisk")
	img := SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), 32<<20)
	Run(t, "label: gpt\nsize=8MiB\n", "sfdisk", "-q", img)

	var dev string
	t.Run("attach", func(t *testing.T) {
		dev = AttachLoop(t, img)
		Run(t, "", "partx", "--add", dev)
		if len(partitions(dev)) != 1 {
			t.Fatalf("partx --add made no partition entry for %s", dev)
		}
	})
	if a := attachment(dev); strings.HasPrefix(a, img+" ") {
		t.Fatalf("%s is still attached to the image after the test: %q", dev, a)
	} else if a == "" && len(partitions(dev)) != 0 {
		t.Fatalf("%s has partition entries after the test: %v", dev, partitions(dev))
	}

	// An earlier user that detached without dropping its partitions. The
	// loop lock (across test binaries) is held from attach to the last
	// partx --delete, so the number is not another test's meanwhile and
	// only this test's entries are deleted.
	LoopMu.Lock()
	defer LoopMu.Unlock()
	raw := strings.TrimSpace(Run(t, "", "losetup", "--find", "--show", img))
	Run(t, "", "partx", "--add", raw)
	if len(partitions(raw)) != 1 {
		t.Fatalf("partx --add made no partition entry for %s", raw)
	}
	Run(t, "", "losetup", "--detach", raw)
	if len(partitions(raw)) == 0 {
		t.Skipf("SKIP: this kernel drops BLKPG partition entries when a loop device is detached; there is no stale entry to remove")
	}
	dropPartitions(raw)
	if p := partitions(raw); len(p) != 0 {
		t.Fatalf("dropPartitions left the stale entries %v", p)
	}
}

// TestLoopCleanupSparesAReattachedNumber: once a test detached its device
// early, its cleanup leaves alone the next attachment of the same number.
func TestLoopCleanupSparesAReattachedNumber(t *testing.T) {
	NeedRoot(t, "losetup")
	dir := t.TempDir()
	img := SparseFile(t, filepath.Join(dir, "a.img"), 8<<20)
	other := SparseFile(t, filepath.Join(dir, "b.img"), 8<<20)
	var dev string
	reattached := false
	t.Run("early-detach", func(t *testing.T) {
		dev = AttachLoop(t, img)
		// Held until the number is attached again: no test of this or
		// another binary can take it in between.
		LoopMu.Lock()
		defer LoopMu.Unlock()
		if err := DetachLoop(dev); err != nil {
			t.Fatal(err)
		}
		// The number is free once nothing has the device open any more.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
			if _, err := Cmd("", nil, "losetup", dev, other); err == nil {
				reattached = true
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	if !reattached {
		t.Fatalf("could not attach %s again within 10 s of detaching it, with the loop lock held", dev)
	}
	defer exec.Command("losetup", "--detach", dev).Run()
	if a := attachment(dev); !strings.HasPrefix(a, other+" ") {
		t.Fatalf("the cleanup of a detached device detached its next user: %s is now %q", dev, a)
	}
}
