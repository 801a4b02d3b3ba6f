package luks

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	lukslib "github.com/anatol/luks.go"

	"luksdock/internal/secret"
)

// Info is what a LUKS header says about a volume. It never holds a key.
type Info struct {
	Version    int    `json:"luks_version"`
	UUID       string `json:"uuid"`
	Label      string `json:"luks_label,omitempty"`
	Subsystem  string `json:"luks_subsystem,omitempty"` // LUKS2 subsystem: luksdock's rotation set (prepare --set)
	Cipher     string `json:"cipher"`
	SectorSize int    `json:"sector_size"`
	DataOffset int64  `json:"data_offset"`
	DataSize   int64  `json:"data_size"` // bytes of the data segment
	IVTweak    uint64 `json:"-"`
	Keyslots   []int  `json:"keyslots"`
}

// Segment returns the data segment for the userspace data path.
func (i Info) Segment() Segment {
	return Segment{Offset: i.DataOffset, Size: i.DataSize, SectorSize: i.SectorSize, IVTweak: i.IVTweak, Cipher: i.Cipher}
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// ReadHeader parses the LUKS1 or LUKS2 header at offset 0 of r: the fields
// luksdock shows and the layout of the data segment. It does not check
// keyslots; Unseal does that. DataSize is left 0 when the segment runs to the
// end of the device.
func ReadHeader(r io.ReaderAt) (Info, error) {
	var h [4096]byte
	if _, err := r.ReadAt(h[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return Info{}, err
	}
	if !bytes.Equal(h[:6], []byte("LUKS\xba\xbe")) {
		return Info{}, ErrNotLUKS
	}
	switch v := binary.BigEndian.Uint16(h[6:8]); v {
	case 1:
		info := Info{
			Version:    1,
			Cipher:     cstr(h[8:40]) + "-" + cstr(h[40:72]),
			DataOffset: int64(binary.BigEndian.Uint32(h[104:108])) * 512,
			UUID:       cstr(h[168:208]),
			SectorSize: 512,
		}
		for i := 0; i < 8; i++ {
			if binary.BigEndian.Uint32(h[208+i*48:]) == 0x00AC71F3 { // LUKS_KEY_ENABLED
				info.Keyslots = append(info.Keyslots, i)
			}
		}
		return info, nil
	case 2:
		return readLUKS2(r, h[:])
	default:
		return Info{}, fmt.Errorf("unsupported LUKS version %d", v)
	}
}

// UsableSectorSize says whether n is an encryption sector size LUKS2 allows
// (and dm-crypt and the userspace engine can use): 512, 1024, 2048 or 4096.
func UsableSectorSize(n int) bool {
	return n == 512 || n == 1024 || n == 2048 || n == 4096
}

type luks2JSON struct {
	Keyslots map[string]json.RawMessage `json:"keyslots"`
	Segments map[string]struct {
		Type       string `json:"type"`
		Offset     string `json:"offset"`
		Size       string `json:"size"`
		IVTweak    string `json:"iv_tweak"`
		Encryption string `json:"encryption"`
		SectorSize int    `json:"sector_size"`
	} `json:"segments"`
}

func readLUKS2(r io.ReaderAt, h []byte) (Info, error) {
	hdrSize := be64(h[8:16])
	if hdrSize < 4096+512 || hdrSize > 4<<20 {
		return Info{}, fmt.Errorf("LUKS2 header size %d out of range", hdrSize)
	}
	info := Info{Version: 2, Label: cstr(h[24:72]), UUID: cstr(h[168:208]), Subsystem: cstr(h[208:256])}
	js := make([]byte, hdrSize-4096)
	if _, err := r.ReadAt(js, 4096); err != nil {
		return Info{}, fmt.Errorf("reading LUKS2 metadata: %w", err)
	}
	var meta luks2JSON
	if err := json.Unmarshal(bytes.TrimRight(js, "\x00"), &meta); err != nil {
		return Info{}, fmt.Errorf("LUKS2 metadata: %w", err)
	}
	seg, ok := meta.Segments["0"]
	if !ok || seg.Type != "crypt" {
		return Info{}, errors.New("LUKS2 header has no crypt segment 0")
	}
	var err error
	if info.DataOffset, err = strconv.ParseInt(seg.Offset, 10, 64); err != nil {
		return Info{}, fmt.Errorf("LUKS2 segment offset: %w", err)
	}
	if seg.Size != "dynamic" {
		if info.DataSize, err = strconv.ParseInt(seg.Size, 10, 64); err != nil {
			return Info{}, fmt.Errorf("LUKS2 segment size: %w", err)
		}
	}
	if seg.IVTweak != "" {
		if info.IVTweak, err = strconv.ParseUint(seg.IVTweak, 10, 64); err != nil {
			return Info{}, fmt.Errorf("LUKS2 segment iv_tweak: %w", err)
		}
	}
	if info.DataOffset < 0 || info.DataSize < 0 {
		return Info{}, fmt.Errorf("LUKS2 segment at %d of %d bytes", info.DataOffset, info.DataSize)
	}
	if !UsableSectorSize(seg.SectorSize) {
		return Info{}, fmt.Errorf("LUKS2 segment sector size %d: not 512, 1024, 2048 or 4096 (a damaged or hostile header)", seg.SectorSize)
	}
	if info.DataSize%int64(seg.SectorSize) != 0 {
		return Info{}, fmt.Errorf("LUKS2 segment size %d is not a whole number of %d-byte sectors", info.DataSize, seg.SectorSize)
	}
	info.Cipher, info.SectorSize = seg.Encryption, seg.SectorSize
	for k := range meta.Keyslots {
		if n, err := strconv.Atoi(k); err == nil {
			info.Keyslots = append(info.Keyslots, n)
		}
	}
	slices.Sort(info.Keyslots)
	return info, nil
}

// ErrWrongPassphrase means no keyslot opened with the passphrase.
var ErrWrongPassphrase = errors.New("the passphrase does not unlock any keyslot")

// Unseal proves, independently of cryptsetup, that passphrase opens a
// keyslot of the LUKS device d and that the header is sound. It returns the
// header's description; the key is dropped. See UnsealKey.
func Unseal(d Device, passphrase []byte) (Info, error) {
	info, key, err := UnsealKey(d, passphrase)
	secret.Free(key)
	return info, err
}

// UnsealKey is Unseal returning the volume key the keyslot holds, proven by
// the header's digest. LUKS2 keyslots (aes-xts-plain64, argon2id, argon2i or
// pbkdf2: what cryptsetup writes) and LUKS1 keyslots (aes-xts-plain64 with
// sha1, sha256 or sha512: what cryptsetup 1.6 and later writes) are opened
// by luksdock's own code (unseal2.go, unseal1.go, internal/argon2);
// anything else by github.com/anatol/luks.go, which keeps the key to
// itself: key is then nil.
// The caller clears key.
func UnsealKey(d Device, passphrase []byte) (info Info, key []byte, err error) {
	err = d.withPath(func(p string) error {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if info, err = ReadHeader(f); err != nil {
			return err
		}
		// A header no tool writes (a cost of years, a keyslot area over
		// the metadata) is refused before any key derivation runs.
		if _, err := InspectHeader(f); err != nil {
			return err
		}
		if err := checkKDFCosts(p); err != nil {
			return err
		}
		if info.Version == 1 {
			_, key, err = unsealLUKS1(f, passphrase)
		} else {
			_, key, err = unsealLUKS2(f, passphrase)
		}
		if errors.Is(err, errUnsupported) {
			label, subsystem := info.Label, info.Subsystem
			info, err = unsealLuksGo(p, passphrase)
			info.Label, info.Subsystem = label, subsystem
			return err
		}
		if err == nil && info.DataSize == 0 {
			// "dynamic": the segment runs to the end of the device.
			end := d.Size
			if end == 0 {
				end, _ = f.Seek(0, io.SeekEnd)
			}
			info.DataSize = max(end-info.DataOffset, 0)
		}
		return err
	})
	if err != nil {
		return Info{}, nil, err
	}
	return info, key, nil
}

// unsealLuksGo opens a keyslot with github.com/anatol/luks.go.
func unsealLuksGo(p string, passphrase []byte) (info Info, err error) {
	dev, err := lukslib.Open(p)
	if err != nil {
		return Info{}, fmt.Errorf("luks.go: %w", err)
	}
	defer dev.Close() // else the partition stays open until the GC runs
	slots := dev.Slots()
	var lastErr error
	for _, s := range slots {
		v, err := dev.UnsealVolume(s, passphrase)
		if err != nil {
			lastErr = err
			continue
		}
		info = Info{
			Version: dev.Version(), UUID: v.UUID, Cipher: v.StorageEncryption,
			SectorSize: int(v.StorageSectorSize), DataOffset: int64(v.StorageOffset),
			DataSize: int64(v.StorageSize), IVTweak: v.StorageIvTweak, Keyslots: slots,
		}
		// luks.go does not report the label; take it from the binary header.
		if f, err := os.Open(p); err == nil {
			if h, err := ReadHeader(f); err == nil {
				info.Label = h.Label
			}
			f.Close()
		}
		return info, nil
	}
	if lastErr == nil {
		return Info{}, errors.New("the LUKS header has no active keyslot")
	}
	if errors.Is(lastErr, lukslib.ErrPassphraseDoesNotMatch) {
		return Info{}, ErrWrongPassphrase
	}
	return Info{}, fmt.Errorf("luks.go: %w", lastErr)
}

// MaxKDFMemoryKiB is the most memory a keyslot's argon2 may ask for:
// cryptsetup never sets more than 4 GiB.
const MaxKDFMemoryKiB = 4 << 20

// checkKDFCosts refuses a LUKS2 header whose keyslots ask for more argon2
// memory than cryptsetup ever sets, or than half of this machine's memory:
// the header says how much the key derivation allocates, so a damaged or
// hostile disk could make unsealing allocate gigabytes.
func checkKDFCosts(path string) error {
	mem, slot, kdf, err := maxKDFMemory(path)
	if err != nil {
		return err
	}
	limit := machineKDFMemoryKiB()
	if mem > limit {
		return fmt.Errorf("keyslot %s asks for %d KiB of memory for its %s key derivation, more than cryptsetup sets (at most %d KiB here): a damaged or hostile header", slot, mem, kdf, limit)
	}
	return nil
}

// machineKDFMemoryKiB is the most memory a key derivation may take here:
// 4 GiB (cryptsetup's most), or half of this machine's memory if less.
func machineKDFMemoryKiB() int64 {
	limit := int64(MaxKDFMemoryKiB)
	if half := totalRAMKiB() / 2; half > 0 && half < limit {
		limit = half
	}
	return limit
}

// totalRAMKiB is this machine's memory (sysinfo), 0 when unknown; a test
// replaces it to try the rule on a machine smaller than its own.
var totalRAMKiB = func() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit) / 1024
}

// KDFMemoryKiBDevice returns the most memory a keyslot of d's LUKS2 header
// asks for its key derivation (0 for LUKS1 or PBKDF2 keyslots).
func KDFMemoryKiBDevice(d Device) (mem int64, err error) {
	err = d.withPath(func(p string) error {
		mem, _, _, err = maxKDFMemory(p)
		return err
	})
	return mem, err
}

func maxKDFMemory(path string) (mem int64, slot, kdf string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", "", err
	}
	defer f.Close()
	var h [4096]byte
	if _, err := f.ReadAt(h[:], 0); err != nil || binary.BigEndian.Uint16(h[6:8]) != 2 {
		return 0, "", "", nil // LUKS1 (pbkdf2 only) or unreadable: unsealing reports it
	}
	hdrSize := be64(h[8:16])
	if hdrSize < 4096+512 || hdrSize > 4<<20 {
		return 0, "", "", fmt.Errorf("LUKS2 header size %d out of range", hdrSize)
	}
	js := make([]byte, hdrSize-4096)
	if _, err := f.ReadAt(js, 4096); err != nil {
		return 0, "", "", fmt.Errorf("reading LUKS2 metadata: %w", err)
	}
	var meta struct {
		Keyslots map[string]struct {
			KDF struct {
				Type   string `json:"type"`
				Memory int64  `json:"memory"`
			} `json:"kdf"`
		} `json:"keyslots"`
	}
	if err := json.Unmarshal(bytes.TrimRight(js, "\x00"), &meta); err != nil {
		return 0, "", "", fmt.Errorf("LUKS2 metadata: %w", err)
	}
	for n, ks := range meta.Keyslots {
		if ks.KDF.Memory > mem {
			mem, slot, kdf = ks.KDF.Memory, n, ks.KDF.Type
		}
	}
	return mem, slot, kdf, nil
}
