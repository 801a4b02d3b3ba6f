package luks

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
)

// KeyslotPBKDF reads the key derivation cost of keyslot slot from the
// header of the LUKS device at path: what cryptsetup measured (or was
// told) when it sealed that keyslot. Given to AddKey, it seals a new keyslot
// at exactly the same cost, where cryptsetup's own benchmark, run again
// under another load, would choose a different (often weaker) one.
func KeyslotPBKDF(path string, slot int) (PBKDF, error) {
	f, err := os.Open(path)
	if err != nil {
		return PBKDF{}, err
	}
	defer f.Close()
	var h [4096]byte
	if _, err := f.ReadAt(h[:], 0); err != nil && err != io.EOF {
		return PBKDF{}, err
	}
	if !bytes.Equal(h[:6], []byte("LUKS\xba\xbe")) {
		return PBKDF{}, ErrNotLUKS
	}
	switch binary.BigEndian.Uint16(h[6:8]) {
	case 1:
		if slot < 0 || slot > 7 {
			return PBKDF{}, fmt.Errorf("LUKS1 has no keyslot %d", slot)
		}
		ks := h[208+slot*48:]
		if binary.BigEndian.Uint32(ks) != 0x00AC71F3 {
			return PBKDF{}, fmt.Errorf("LUKS1 keyslot %d is not in use", slot)
		}
		return PBKDF{Type: "pbkdf2", ForceIterations: int(binary.BigEndian.Uint32(ks[4:]))}, nil
	case 2:
	default:
		return PBKDF{}, fmt.Errorf("unsupported LUKS version %d", binary.BigEndian.Uint16(h[6:8]))
	}
	hdrSize := be64(h[8:16])
	if hdrSize < 4096+512 || hdrSize > 4<<20 {
		return PBKDF{}, fmt.Errorf("LUKS2 header size %d out of range", hdrSize)
	}
	js := make([]byte, hdrSize-4096)
	if _, err := f.ReadAt(js, 4096); err != nil {
		return PBKDF{}, fmt.Errorf("reading LUKS2 metadata: %w", err)
	}
	var meta struct {
		Keyslots map[string]struct {
			KDF struct {
				Type       string `json:"type"`
				Time       int    `json:"time"`
				Memory     int    `json:"memory"`
				CPUs       int    `json:"cpus"`
				Iterations int    `json:"iterations"`
			} `json:"kdf"`
		} `json:"keyslots"`
	}
	if err := json.Unmarshal(bytes.TrimRight(js, "\x00"), &meta); err != nil {
		return PBKDF{}, fmt.Errorf("LUKS2 metadata: %w", err)
	}
	ks, ok := meta.Keyslots[strconv.Itoa(slot)]
	if !ok {
		return PBKDF{}, fmt.Errorf("the LUKS2 header has no keyslot %d", slot)
	}
	k := ks.KDF
	switch k.Type {
	case "pbkdf2":
		if k.Iterations <= 0 {
			return PBKDF{}, fmt.Errorf("LUKS2 keyslot %d: pbkdf2 with %d iterations", slot, k.Iterations)
		}
		return PBKDF{Type: k.Type, ForceIterations: k.Iterations}, nil
	case "argon2i", "argon2id":
		if k.Time <= 0 || k.Memory <= 0 || k.CPUs <= 0 {
			return PBKDF{}, fmt.Errorf("LUKS2 keyslot %d: %s with time %d, memory %d, cpus %d", slot, k.Type, k.Time, k.Memory, k.CPUs)
		}
		return PBKDF{Type: k.Type, ForceIterations: k.Time, MemoryKiB: k.Memory, Parallel: k.CPUs}, nil
	}
	return PBKDF{}, fmt.Errorf("LUKS2 keyslot %d: unknown key derivation %q", slot, k.Type)
}

// KeyslotPBKDFDevice is KeyslotPBKDF on a Device.
func KeyslotPBKDFDevice(d Device, slot int) (p PBKDF, err error) {
	err = d.withPath(func(path string) error {
		p, err = KeyslotPBKDF(path, slot)
		return err
	})
	return p, err
}

// KeepOnlyPassphraseDevice removes every keyslot of d except the one
// passphrase opens (cryptsetup luksKillSlot, authorised with passphrase on
// standard input, so cryptsetup itself refuses to remove the last keyslot
// the passphrase opens). It returns that keyslot and the ones removed. A
// region of an image file is worked on in an in-memory copy of its header
// area, written back into the image when done, as AddKeyDevice does.
func KeepOnlyPassphraseDevice(ctx context.Context, d Device, passphrase []byte) (kept int, removed []int, err error) {
	err = d.modifyHeader(func(path string) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		info, err := ReadHeader(f)
		f.Close()
		if err != nil {
			return err
		}
		if kept, err = TestPassphraseSlot(ctx, path, passphrase); err != nil {
			return err
		}
		for _, s := range info.Keyslots {
			if s == kept {
				continue
			}
			if err := KillSlot(ctx, path, s, passphrase); err != nil {
				return err
			}
			removed = append(removed, s)
		}
		return nil
	})
	return kept, removed, err
}
