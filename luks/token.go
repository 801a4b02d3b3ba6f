package luks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"time"
)

// TokenType is the type of the LUKS2 token in which luksdock keeps a
// disk's own, non-secret description (Metadata).
const TokenType = "luksdock"

// MetadataVersion is the layout of the token's fields.
const MetadataVersion = 1

// Metadata is what a luksdock disk says about itself in its LUKS2 header,
// readable while it is locked by any machine (cryptsetup token export, or
// luksdock's own header reader): it lets a machine with an empty inventory
// recognise a disk prepared elsewhere. It holds no secret: host keyslots
// are named by number, never by key.
type Metadata struct {
	Version int    `json:"version"`
	Label   string `json:"label"`
	Set     string `json:"set,omitempty"`
	// Prepared is when the disk was prepared, PreparedOn the host's name.
	Prepared   time.Time `json:"prepared"`
	PreparedOn string    `json:"prepared_on,omitempty"`
	// DriveModel and DriveSerial are the drive's identity as prepare read it.
	DriveModel  string `json:"drive_model,omitempty"`
	DriveSerial string `json:"drive_serial,omitempty"`
	RecoveryKey bool   `json:"recovery_key"`
	// PassphraseChanged is when the passphrase was last changed (zero: never
	// since prepare).
	PassphraseChanged time.Time `json:"passphrase_changed,omitzero"`
	// Hosts are the machines enrolled to unlock the disk on their own.
	Hosts []HostSlot `json:"hosts,omitempty"`
}

// HostSlot is one machine enrolled for auto-unlock: its name, its
// /etc/machine-id (not a secret: a stable identifier), the keyslot its key
// opens and how the key is kept there ("keyfile" or "tpm2").
type HostSlot struct {
	Name      string    `json:"name"`
	MachineID string    `json:"machine_id"`
	Keyslot   int       `json:"keyslot"`
	Method    string    `json:"method"`
	Enrolled  time.Time `json:"enrolled"`
}

// Host returns the enrolled host with this machine ID, or nil.
func (m *Metadata) Host(machineID string) *HostSlot {
	for i := range m.Hosts {
		if m.Hosts[i].MachineID == machineID {
			return &m.Hosts[i]
		}
	}
	return nil
}

// tokenJSON is the token as stored: cryptsetup's required fields (type,
// keyslots: none, so no unlock path ever tries it) and the metadata.
type tokenJSON struct {
	Type     string   `json:"type"`
	Keyslots []string `json:"keyslots"`
	Metadata
}

// ErrNoMetadata means the header holds no luksdock token (a LUKS1 disk, or
// one luksdock did not prepare).
var ErrNoMetadata = errors.New("no luksdock token in the LUKS header")

// ReadMetadata reads the luksdock token from the LUKS2 header at offset 0
// of r, with luksdock's own header reader (no key, no cryptsetup). id is
// the token's number.
func ReadMetadata(r io.ReaderAt) (m Metadata, id int, err error) {
	toks, err := readTokens(r)
	if err != nil {
		return Metadata{}, -1, err
	}
	ids := make([]int, 0, len(toks))
	for k := range toks {
		n, err := strconv.Atoi(k)
		if err == nil {
			ids = append(ids, n)
		}
	}
	sort.Ints(ids)
	for _, n := range ids {
		var t tokenJSON
		if json.Unmarshal(toks[strconv.Itoa(n)], &t) != nil || t.Type != TokenType {
			continue
		}
		return t.Metadata, n, nil
	}
	return Metadata{}, -1, ErrNoMetadata
}

// readTokens returns the tokens object of the LUKS2 header at offset 0 of r.
func readTokens(r io.ReaderAt) (map[string]json.RawMessage, error) {
	info, err := ReadHeader(r) // checks magic, version and the header size
	if err != nil {
		return nil, err
	}
	if info.Version != 2 {
		return nil, ErrNoMetadata
	}
	var h [16]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return nil, err
	}
	js := make([]byte, be64(h[8:16])-4096)
	if _, err := r.ReadAt(js, 4096); err != nil {
		return nil, fmt.Errorf("reading LUKS2 metadata: %w", err)
	}
	var meta struct {
		Tokens map[string]json.RawMessage `json:"tokens"`
	}
	if err := json.Unmarshal(bytes.TrimRight(js, "\x00"), &meta); err != nil {
		return nil, fmt.Errorf("LUKS2 metadata: %w", err)
	}
	return meta.Tokens, nil
}

// ReadMetadataDevice is ReadMetadata on a Device.
func ReadMetadataDevice(d Device) (m Metadata, err error) {
	f, err := os.Open(d.Path)
	if err != nil {
		return Metadata{}, err
	}
	defer f.Close()
	r := io.ReaderAt(f)
	if d.Base != 0 || d.Size > 0 {
		size := d.Size
		if size <= 0 {
			size = maxHeaderArea
		}
		r = io.NewSectionReader(f, d.Base, size)
	}
	m, _, err = ReadMetadata(r)
	return m, err
}

// TokenImportArgs is the cryptsetup command that writes the token: its
// JSON on standard input; with id >= 0 it replaces token id.
func TokenImportArgs(dev string, id int) []string {
	a := []string{"token", "import"}
	if id >= 0 {
		a = append(a, "--token-id", strconv.Itoa(id), "--token-replace")
	}
	return append(a, dev)
}

// WriteMetadata writes m as the luksdock token of the LUKS2 device at
// path with cryptsetup token import, replacing an earlier luksdock token.
func WriteMetadata(ctx context.Context, path string, m Metadata) error {
	m.Version = MetadataVersion
	b, err := json.Marshal(tokenJSON{Type: TokenType, Keyslots: []string{}, Metadata: m})
	if err != nil {
		return err
	}
	id := -1
	if f, err := os.Open(path); err == nil {
		_, id, _ = ReadMetadata(f)
		f.Close()
	}
	_, err = run(ctx, TokenImportArgs(path, id), b, nil)
	return err
}

// WriteMetadataDevice is WriteMetadata on a Device: directly on a block
// device, or, for a region of an image file, on an in-memory stage holding
// a copy of the header area, which is then written back (only the header
// area is written).
func WriteMetadataDevice(ctx context.Context, d Device, m Metadata) error {
	return d.modifyHeader(func(path string) error { return WriteMetadata(ctx, path, m) })
}

// modifyHeader runs fn, which changes the LUKS header, on the device
// itself when it is a block device, else on a stage holding a copy of the
// region's header area, written back into the image when fn succeeds.
func (d Device) modifyHeader(fn func(path string) error) error {
	if d.Direct() {
		return fn(d.Path)
	}
	return d.staged(os.O_RDWR, func(src *os.File, s *stage, size int64) error {
		area, err := headerArea(io.NewSectionReader(src, d.Base, size))
		if err != nil {
			return err
		}
		if _, err := io.Copy(io.NewOffsetWriter(s.f, 0), io.NewSectionReader(src, d.Base, area)); err != nil {
			return fmt.Errorf("reading LUKS header from %s: %w", d.Path, err)
		}
		if err := fn(s.path()); err != nil {
			return err
		}
		if after, err := headerArea(s.f); err != nil || after != area {
			return fmt.Errorf("the LUKS header area changed size (%d -> %d): %v", area, after, err)
		}
		if _, err := io.Copy(io.NewOffsetWriter(src, d.Base), io.NewSectionReader(s.f, 0, area)); err != nil {
			return fmt.Errorf("writing LUKS header into %s: %w", d.Path, err)
		}
		return src.Sync()
	})
}

// KillSlotDevice wipes keyslot slot of d (cryptsetup luksKillSlot in batch
// mode: no passphrase is asked, so the caller must be sure which slot it is).
func KillSlotDevice(ctx context.Context, d Device, slot int) error {
	return d.modifyHeader(func(path string) error {
		_, err := run(ctx, []string{"luksKillSlot", "--batch-mode", path, strconv.Itoa(slot)}, nil, nil)
		return err
	})
}

// AddKeyFastDevice adds a keyslot for a high-entropy key (a host key of 32
// random bytes) with PBKDF2 at its minimal cost, as systemd-cryptenroll
// does for such keys: a stretched KDF adds nothing to 256 random bits.
// The passphrase goes on standard input, the key on a pipe. It returns the
// new keyslot's number.
func AddKeyFastDevice(ctx context.Context, d Device, passphrase, key []byte) (slot int, err error) {
	if len(key) < 32 {
		return -1, errors.New("a host key must be at least 32 random bytes")
	}
	err = d.modifyHeader(func(path string) (err error) {
		if err := refuseHostile(path); err != nil {
			return err
		}
		slot, err = newSlot(path, "adding the key", func() error {
			_, err := run(ctx, AddKeyArgs(path, PBKDF{Type: "pbkdf2", ForceIterations: 1000}), passphrase, key)
			return err
		})
		return err
	})
	return slot, err
}

// newSlot runs add on the LUKS header at path and returns the keyslot it
// made: the one that is there after and was not before.
func newSlot(path, what string, add func() error) (int, error) {
	before, err := slotsAt(path)
	if err != nil {
		return -1, err
	}
	if err := add(); err != nil {
		return -1, err
	}
	after, err := slotsAt(path)
	if err != nil {
		return -1, err
	}
	for _, s := range after {
		if !containsInt(before, s) {
			return s, nil
		}
	}
	return -1, fmt.Errorf("no new keyslot after %s (%v)", what, after)
}

func slotsAt(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := ReadHeader(f)
	return info.Keyslots, err
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// IsHostKeyslot says whether keyslot slot of d looks like one a host key
// was added with (AddKeyFastDevice): PBKDF2 at no more than 1000
// iterations. A passphrase's keyslot made with cryptsetup's defaults
// (Argon2id, or PBKDF2 benchmarked to a second) does not.
func IsHostKeyslot(d Device, slot int) (bool, string) {
	var ok bool
	var why string
	err := d.withPath(func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		var h [16]byte
		if _, err := f.ReadAt(h[:], 0); err != nil {
			return err
		}
		if _, err := ReadHeader(f); err != nil {
			return err
		}
		js := make([]byte, be64(h[8:16])-4096)
		if _, err := f.ReadAt(js, 4096); err != nil {
			return err
		}
		var meta struct {
			Keyslots map[string]struct {
				KDF struct {
					Type       string `json:"type"`
					Iterations int    `json:"iterations"`
				} `json:"kdf"`
			} `json:"keyslots"`
		}
		if err := json.Unmarshal(bytes.TrimRight(js, "\x00"), &meta); err != nil {
			return err
		}
		ks, found := meta.Keyslots[strconv.Itoa(slot)]
		switch {
		case !found:
			why = "no such keyslot"
		case ks.KDF.Type != "pbkdf2" || ks.KDF.Iterations > 1000:
			why = fmt.Sprintf("its KDF is %s with %d iterations", ks.KDF.Type, ks.KDF.Iterations)
		default:
			ok = true
		}
		return nil
	})
	if err != nil {
		return false, err.Error()
	}
	return ok, why
}

// OpenKeyFile opens the LUKS device dev as /dev/mapper/name with the key in
// keyFile (a host key: cryptsetup reads the file; its path, not the key, is
// in argv).
func OpenKeyFile(ctx context.Context, dev, name, keyFile string) error {
	if err := refuseHostile(dev); err != nil {
		return err
	}
	_, err := run(ctx, []string{"open", "--type", "luks", "--key-file", keyFile, dev, name}, nil, nil)
	return err
}

// CloseDeferred asks the kernel to remove mapping name as soon as its last
// user lets go (cryptsetup close --deferred).
func CloseDeferred(ctx context.Context, name string) error {
	return runClose(ctx, "--deferred", name)
}
