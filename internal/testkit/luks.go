package testkit

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/xts"
)

// An independent look inside a LUKS volume. cryptsetup reads the header
// (data segment, volume key); the data is decrypted either by cryptsetup
// itself (DecryptCryptsetup) or by golang.org/x/crypto/xts (DecryptXTS).
// Nothing of luksdock is involved, so a test that finds the expected
// filesystem in the plaintext proves what luksdock wrote.

// Device is a LUKS device: the bytes [Base, Base+Size) of Path, a regular
// file or a block device; Size 0 means up to the end of Path. Partition 1 of
// an image file is a Device without any loop device (see Partition1).
type Device struct {
	Path       string
	Base, Size int64
}

// Segment is the data segment of a LUKS volume as cryptsetup describes it.
type Segment struct {
	Version    int    // LUKS version, 1 or 2
	Offset     int64  // bytes from the start of the device to the ciphertext
	Size       int64  // bytes of ciphertext (cryptsetup's "dynamic" is resolved to the rest of the device)
	SectorSize int    // encryption sector in bytes
	IVTweak    uint64 // added to every plain64 IV, in 512-byte sectors
	Cipher     string // e.g. aes-xts-plain64
}

// Volume is a LUKS volume as cryptsetup unlocked it.
type Volume struct {
	Dev Device
	Seg Segment
	Key []byte // the volume key
}

// headerCopyMax is how much of a device HeaderCopy copies: more than the
// header and keyslot area cryptsetup makes by default (16 MiB for LUKS2).
const headerCopyMax = 32 << 20

// Partitions returns the partitions sfdisk --json lists on path (a disk
// image or block device) as Devices, in its order; none when sfdisk finds
// no partition table.
func Partitions(t testing.TB, path string) []Device {
	t.Helper()
	out, err := Cmd("", nil, "sfdisk", "--json", path)
	if err != nil {
		return nil
	}
	var d struct {
		PT struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Start, Size int64
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	// sfdisk may print a warning before the JSON.
	if i := strings.IndexByte(out, '{'); i < 0 || json.Unmarshal([]byte(out[i:]), &d) != nil {
		t.Fatalf("sfdisk --json %s printed no table:\n%s", path, out)
	}
	ss := d.PT.SectorSize
	if ss == 0 {
		ss = 512
	}
	var parts []Device
	for _, p := range d.PT.Partitions {
		parts = append(parts, Device{Path: path, Base: p.Start * ss, Size: p.Size * ss})
	}
	return parts
}

// Partition1 is the first of Partitions; ok is false when there is none.
func Partition1(t testing.TB, path string) (dev Device, ok bool) {
	t.Helper()
	if p := Partitions(t, path); len(p) > 0 {
		return p[0], true
	}
	return Device{}, false
}

// DeviceSize is the size of dev in bytes.
func DeviceSize(t testing.TB, dev Device) int64 {
	t.Helper()
	if dev.Size > 0 {
		return dev.Size
	}
	f, err := os.Open(dev.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd) // a block device's size too
	if err != nil {
		t.Fatal(err)
	}
	return end - dev.Base
}

// HeaderCopy copies the start of dev (its LUKS header and keyslots, up to
// 32 MiB) into a private file and returns its path, so cryptsetup can read
// the header of a partition inside an image file without a loop device, and
// never holds the device itself. A device that starts at byte 0 of its path
// is returned as it is.
func HeaderCopy(t testing.TB, dev Device) string {
	t.Helper()
	return headerCopy(t, dev, headerCopyMax)
}

func headerCopy(t testing.TB, dev Device, n int64) string {
	t.Helper()
	if dev.Base == 0 && dev.Size == 0 {
		return dev.Path
	}
	p, _ := copyRange(t, dev.Path, dev.Base, min(DeviceSize(t, dev), n), "header")
	return p
}

// copyRange copies the n bytes at off of path (fewer where path ends
// before) into a new private file called name and returns its path and
// the number of bytes copied.
func copyRange(t testing.TB, path string, off, n int64, name string) (string, int64) {
	t.Helper()
	src, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(t.TempDir(), name)
	dst, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := io.Copy(dst, io.NewSectionReader(src, off, n))
	if err != nil {
		t.Fatalf("copying %d bytes at %d of %s: %v", n, off, path, err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return p, c
}

// ReadSegment reads the data segment of the LUKS volume on dev with
// cryptsetup luksDump (--dump-json-metadata for LUKS2). The error says why
// cryptsetup finds no LUKS volume there; anything else unexpected fails the
// test.
func ReadSegment(t testing.TB, dev Device) (Segment, error) {
	t.Helper()
	return readSegment(t, HeaderCopy(t, dev), DeviceSize(t, dev))
}

func readSegment(t testing.TB, hdr string, size int64) (Segment, error) {
	t.Helper()
	out, err := Cmd("", nil, "cryptsetup", "luksDump", hdr)
	if err != nil {
		return Segment{}, fmt.Errorf("no LUKS header (cryptsetup luksDump: %v: %s)", err, strings.TrimSpace(out))
	}
	field := func(name string) string {
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		t.Fatalf("cryptsetup luksDump printed no %q:\n%s", name, out)
		return ""
	}
	seg := Segment{}
	switch v := field("Version"); v {
	case "1":
		sectors, err := strconv.ParseInt(field("Payload offset"), 10, 64)
		if err != nil {
			t.Fatalf("cryptsetup luksDump: Payload offset: %v", err)
		}
		seg = Segment{Version: 1, Offset: sectors * 512, SectorSize: 512, Cipher: field("Cipher name") + "-" + field("Cipher mode")}
	case "2":
		js, err := Cmd("", nil, "cryptsetup", "luksDump", "--dump-json-metadata", hdr)
		if err != nil {
			t.Fatalf("cryptsetup luksDump --dump-json-metadata: %v: %s", err, js)
		}
		var meta struct {
			Segments map[string]struct {
				Offset     string `json:"offset"`
				Size       string `json:"size"`
				IVTweak    string `json:"iv_tweak"`
				Encryption string `json:"encryption"`
				SectorSize int    `json:"sector_size"`
			} `json:"segments"`
		}
		if err := json.Unmarshal([]byte(js), &meta); err != nil {
			t.Fatalf("cryptsetup luksDump --dump-json-metadata: %v\n%s", err, js)
		}
		s, ok := meta.Segments["0"]
		if !ok {
			return Segment{}, fmt.Errorf("the LUKS2 header has no data segment 0")
		}
		seg = Segment{Version: 2, SectorSize: s.SectorSize, Cipher: s.Encryption}
		var errs [3]error
		seg.Offset, errs[0] = strconv.ParseInt(s.Offset, 10, 64)
		seg.IVTweak, errs[1] = strconv.ParseUint(s.IVTweak, 10, 64)
		if s.Size != "dynamic" {
			seg.Size, errs[2] = strconv.ParseInt(s.Size, 10, 64)
		}
		for _, err := range errs {
			if err != nil {
				t.Fatalf("cryptsetup's segment 0 %+v: %v", s, err)
			}
		}
	default:
		t.Fatalf("cryptsetup luksDump: LUKS version %q", v)
	}
	if seg.Size == 0 {
		seg.Size = size - seg.Offset
	}
	return seg, nil
}

// VolumeKey recovers the volume key of the LUKS volume on dev with
// cryptsetup luksDump --dump-volume-key, the passphrase given exactly as
// pass on standard input. The error says why cryptsetup does not unlock it.
func VolumeKey(t testing.TB, dev Device, pass string) ([]byte, error) {
	t.Helper()
	return volumeKey(t, HeaderCopy(t, dev), pass)
}

func volumeKey(t testing.TB, hdr, pass string) ([]byte, error) {
	t.Helper()
	out, err := Cmd(pass, nil, "cryptsetup", "luksDump", "--batch-mode", "--dump-volume-key", "--key-file=-", hdr)
	if err != nil {
		return nil, fmt.Errorf("cryptsetup does not unlock it: %v: %s", err, strings.TrimSpace(out))
	}
	bits, key := 0, []byte(nil)
	in := false
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "MK bits:"); ok {
			bits, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		if i := strings.Index(line, "MK dump:"); i >= 0 {
			in, line = true, line[i+len("MK dump:"):]
		} else if in && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
			break
		}
		if in {
			for _, f := range strings.Fields(line) {
				b, err := hex.DecodeString(f)
				if err != nil || len(b) != 1 {
					t.Fatalf("cryptsetup luksDump --dump-volume-key: %q is not a key byte", f)
				}
				key = append(key, b[0])
			}
		}
	}
	if len(key) == 0 || len(key)*8 != bits {
		t.Fatalf("cryptsetup luksDump --dump-volume-key: a key of %d bytes, MK bits %d", len(key), bits)
	}
	return key, nil
}

// Unlock is ReadSegment and VolumeKey: the LUKS volume on dev unlocked by
// cryptsetup with pass. The error says what is missing (a LUKS header, a
// keyslot pass opens).
func Unlock(t testing.TB, dev Device, pass string) (Volume, error) {
	t.Helper()
	hdr := HeaderCopy(t, dev)
	size := DeviceSize(t, dev)
	seg, err := readSegment(t, hdr, size)
	if err != nil {
		return Volume{}, err
	}
	if seg.Offset > headerCopyMax {
		hdr = headerCopy(t, dev, seg.Offset) // keyslots may lie beyond the first copy
	}
	key, err := volumeKey(t, hdr, pass)
	if err != nil {
		return Volume{}, err
	}
	return Volume{Dev: dev, Seg: seg, Key: key}, nil
}

// Two ways to decrypt a volume exist because they prove different things:
//
// DecryptCryptsetup leaves every decision about a sector to cryptsetup
// (`cryptsetup reencrypt --decrypt`): which IV, counted how, in which
// sector size. Only the segment's place, sector size and key, all as
// cryptsetup reported them, come from the test. It is the reference for
// luksdock's own AES-XTS engine (luks/ tests), whose IV numbering is the
// thing under test and must not be checked against a rule written here, and
// for the CLI acceptance tests (prepare_test.go). It copies the ciphertext
// and rewrites every sector: one to two seconds per 64 MiB, with or without
// -race.
//
// DecryptXTS decrypts with golang.org/x/crypto/xts and applies the plain64
// IV rule itself (sector number in 512-byte units from the segment's start,
// plus iv_tweak), a rule TestDecryptMatchesCryptsetup checks against
// cryptsetup. It only reads the device and runs no tool, and it takes any
// iv_tweak, which a detached header made by cryptsetup cannot. It is about
// five times faster than cryptsetup without -race and three times slower
// with it. The wizard tests (ui/) use it; the reliability suite, which
// judges some seventy disks a run, uses its fast variant DecryptXTSWritten.

// DecryptCryptsetup decrypts v's data segment with cryptsetup alone and
// returns a private file holding the plaintext: the ciphertext is copied
// into that file, a detached LUKS2 header with data offset 0 and v's volume
// key (given on a pipe), cipher and sector size is made for it, and
// `cryptsetup reencrypt --decrypt` decrypts it in place (offline, without
// device-mapper: the copy is private, nothing else has it open). Sector
// numbers count from the segment's start in both layouts, so the result is
// what dm-crypt shows for the original volume.
func DecryptCryptsetup(t testing.TB, v Volume) string {
	t.Helper()
	if v.Seg.IVTweak != 0 {
		t.Fatalf("DecryptCryptsetup: cryptsetup cannot give a detached header iv_tweak %d; use DecryptXTS", v.Seg.IVTweak)
	}
	data, n := copyRange(t, v.Dev.Path, v.Dev.Base+v.Seg.Offset, v.Seg.Size, "data")
	if n != v.Seg.Size {
		t.Fatalf("DecryptCryptsetup: %s holds %d of the segment's %d bytes", v.Dev.Path, n, v.Seg.Size)
	}
	hdr := SparseFile(t, filepath.Join(t.TempDir(), "header"), 16<<20)
	RunFD3(t, "x", v.Key, "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--header", hdr, "--offset", "0",
		"--cipher", v.Seg.Cipher, "--key-size", strconv.Itoa(len(v.Key)*8), "--sector-size", strconv.Itoa(v.Seg.SectorSize),
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", "--volume-key-file", "/proc/self/fd/3", data)
	Run(t, "x", "cryptsetup", "reencrypt", "--batch-mode", "--decrypt", "--force-offline-reencrypt", "--header", hdr, "--key-file=-", data)
	return data
}

// EncryptCryptsetup encrypts the whole file path in place with cryptsetup
// alone (`cryptsetup reencrypt --encrypt`, offline, under a detached LUKS2
// header), aes-xts-plain64 with the volume key key (given on a pipe) in
// sectors of sectorSize bytes, counted from the start of the file: the
// ciphertext dm-crypt would write for that plaintext.
func EncryptCryptsetup(t testing.TB, path string, key []byte, sectorSize int) {
	t.Helper()
	hdr := SparseFile(t, filepath.Join(t.TempDir(), "header"), 16<<20)
	RunFD3(t, "x", key, "cryptsetup", "reencrypt", "--batch-mode", "--encrypt", "--force-offline-reencrypt", "--type", "luks2",
		"--header", hdr, "--cipher", "aes-xts-plain64", "--key-size", strconv.Itoa(len(key)*8), "--sector-size", strconv.Itoa(sectorSize),
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", "--volume-key-file", "/proc/self/fd/3", path)
	if got, err := VolumeKey(t, Device{Path: hdr}, "x"); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("cryptsetup encrypted with another volume key (%v)", err)
	}
}

// DecryptXTS decrypts v's data segment (aes-xts-plain64) with
// golang.org/x/crypto/xts and returns a private file holding the plaintext:
// every sector, written or not, as dm-crypt would show it.
func DecryptXTS(t testing.TB, v Volume) string {
	t.Helper()
	return decryptXTS(t, v, false)
}

// DecryptXTSWritten is DecryptXTS for what was written: a whole MiB of
// ciphertext that is all zeros (an area nothing wrote since the image was
// created sparse or wiped; AES-XTS never outputs a MiB of zeros) is not
// decrypted but left as a hole that reads as zeros, where dm-crypt shows
// pseudo-random bytes. On a 72 MiB disk luksdock prepared it is seven times
// faster than DecryptXTS under -race. e2fsck and dumpe2fs read only what
// mkfs wrote, so their verdict is the same — unless a write of zeros that
// mkfs relied on was lost, which this variant cannot see (luksdock verify,
// which decrypts every sector, can; the reliability suite compares the two).
func DecryptXTSWritten(t testing.TB, v Volume) string {
	t.Helper()
	return decryptXTS(t, v, true)
}

func decryptXTS(t testing.TB, v Volume, skipUnwritten bool) string {
	t.Helper()
	if v.Seg.Cipher != "aes-xts-plain64" {
		t.Fatalf("DecryptXTS: cipher %q, want aes-xts-plain64", v.Seg.Cipher)
	}
	ss := int64(v.Seg.SectorSize)
	if ss < 512 || ss > 4096 || ss&(ss-1) != 0 || v.Seg.Size%ss != 0 {
		t.Fatalf("DecryptXTS: sector size %d for a segment of %d bytes", ss, v.Seg.Size)
	}
	c, err := xts.NewCipher(aes.NewCipher, v.Key)
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(v.Dev.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	plain := filepath.Join(t.TempDir(), "plain")
	dst, err := os.Create(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	buf := make([]byte, 1<<20) // a multiple of every sector size
	zero := make([]byte, len(buf))
	for off := int64(0); off < v.Seg.Size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), v.Seg.Size-off)]
		if _, err := src.ReadAt(b, v.Dev.Base+v.Seg.Offset+off); err != nil {
			t.Fatalf("reading the data segment at %d: %v", off, err)
		}
		if skipUnwritten && bytes.Equal(b, zero[:len(b)]) {
			continue
		}
		for s := int64(0); s < int64(len(b)); s += ss {
			c.Decrypt(b[s:s+ss], b[s:s+ss], uint64((off+s)/512)+v.Seg.IVTweak)
		}
		if bytes.Equal(b, zero[:len(b)]) {
			continue // zeros: a hole reads the same
		}
		if _, err := dst.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := dst.Truncate(v.Seg.Size); err != nil {
		t.Fatal(err)
	}
	return plain
}
