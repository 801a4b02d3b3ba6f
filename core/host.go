package core

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/secret"
	"luksdock/inventory"
	"luksdock/luks"
)

// ConfigDir is luksdock's configuration on this host: /etc/luksdock, or
// LUKSDOCK_CONFIG_DIR (for tests). It holds keys/UUID.key (the host keys,
// 0400 root, in a 0700 directory), forget/UUID (keyslots to remove when
// the disk is next docked) and run/label-LABEL or run/set-SET (the
// command a docked disk's backup runs).
func ConfigDir() string {
	if d := os.Getenv("LUKSDOCK_CONFIG_DIR"); d != "" {
		return d
	}
	return "/etc/luksdock"
}

// KeyFile is where this host keeps the key of the disk with LUKS UUID uuid.
func KeyFile(uuid string) string {
	return filepath.Join(ConfigDir(), "keys", strings.ToLower(uuid)+".key")
}

func forgetFile(uuid string) string {
	return filepath.Join(ConfigDir(), "forget", strings.ToLower(uuid))
}

// MachineID is /etc/machine-id: how a disk's token tells this host from
// another of the same name.
// With LUKSDOCK_CONFIG_DIR set, a machine-id file there stands in for it
// (tests play two machines on one).
func MachineID() (string, error) {
	path := "/etc/machine-id"
	if d := os.Getenv("LUKSDOCK_CONFIG_DIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "machine-id")); err == nil {
			path = filepath.Join(d, "machine-id")
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return id, nil
}

// HostKeyMethod is how the host key is kept: a root-only key file. (Sealing
// it to a TPM2 with systemd-cryptenroll is not done yet; see docs/rotation.md.)
const HostKeyMethod = "keyfile"

// ErrEnrolled means this host already has a keyslot on the disk.
var ErrEnrolled = errors.New("this host is already enrolled on the disk")

// Enroll adds a keyslot to the LUKS2 volume d that only this host can use:
// a key of 32 random bytes in KeyFile (0400 root), added with PBKDF2 at its
// minimal cost (a random key needs no stretching), unlocking the disk with
// passphrase; then it names this host in the disk's luksdock token and
// proves with luksdock's own LUKS code that the key file opens the disk.
// The key travels to cryptsetup on a pipe; it is never in argv, the
// environment, the token or the inventory.
func Enroll(ctx context.Context, d luks.Device, passphrase []byte) (luks.HostSlot, error) {
	info, err := luks.ReadHeaderDevice(d)
	if err != nil {
		return luks.HostSlot{}, err
	}
	if info.Version != 2 {
		return luks.HostSlot{}, errors.New("host keys need LUKS2 (the disk's token names the hosts); this disk is LUKS1")
	}
	mid, err := MachineID()
	if err != nil {
		return luks.HostSlot{}, err
	}
	meta, err := luks.ReadMetadataDevice(d)
	if errors.Is(err, luks.ErrNoMetadata) {
		meta = luks.Metadata{Label: info.Label, Set: info.Subsystem}
	} else if err != nil {
		return luks.HostSlot{}, err
	}
	kf := KeyFile(info.UUID)
	if h := meta.Host(mid); h != nil {
		if _, err := os.Stat(kf); err == nil {
			return *h, fmt.Errorf("%w (keyslot %d); `luksdock host forget` it first to enroll again", ErrEnrolled, h.Keyslot)
		}
		return *h, fmt.Errorf("the disk's token names this host (keyslot %d) but its key file %s is gone: run `luksdock host forget --device` with the disk docked to remove that keyslot, then enroll again", h.Keyslot, kf)
	}
	if _, err := os.Stat(kf); err == nil {
		return luks.HostSlot{}, fmt.Errorf("%s exists but the disk's token does not name this host: move it aside first", kf)
	}
	key := secret.New(32) // locked, outside the heap (docs/secrets.md)
	defer secret.Free(key)
	if _, err := rand.Read(key); err != nil {
		return luks.HostSlot{}, err
	}
	if err := writeKeyFile(kf, key); err != nil {
		return luks.HostSlot{}, err
	}
	slot, err := luks.AddKeyFastDevice(ctx, d, passphrase, key)
	if err != nil {
		os.Remove(kf)
		return luks.HostSlot{}, err
	}
	if _, vk, err := luks.UnsealKey(d, key); err != nil {
		return luks.HostSlot{}, fmt.Errorf("the new keyslot %d does not open with the host key: %w", slot, err)
	} else {
		clear(vk)
	}
	name, _ := os.Hostname()
	h := luks.HostSlot{Name: name, MachineID: mid, Keyslot: slot, Method: HostKeyMethod, Enrolled: nowUTC()}
	meta.Hosts = append(meta.Hosts, h)
	if err := luks.WriteMetadataDevice(ctx, d, meta); err != nil {
		return h, fmt.Errorf("keyslot %d added, but naming the host in the disk's token failed: %w", slot, err)
	}
	return h, nil
}

// writeKeyFile writes key to path, mode 0400 owned by the caller (root),
// in a 0700 directory: a new file written, synced and renamed into place.
func writeKeyFile(path string, key []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.OpenFile(path+".new", os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o400)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	_, err = tmp.Write(key)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".new", path)
	}
	if err != nil {
		os.Remove(path + ".new")
		return fmt.Errorf("host key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Forget removes this host's key for the disk with LUKS UUID uuid at once.
// With the disk docked (d non-nil) its keyslot is wiped now and the host
// removed from its token; otherwise that is left for the next docking
// (ApplyForget, run by the dock service), noted in ConfigDir/forget.
func Forget(ctx context.Context, uuid string, d *luks.Device) (done string, err error) {
	kf := KeyFile(uuid)
	had := true
	if err := os.Remove(kf); errors.Is(err, os.ErrNotExist) {
		had = false
	} else if err != nil {
		return "", err
	}
	if d != nil {
		msg, err := ApplyForget(ctx, *d)
		if had {
			msg = "key file " + kf + " removed; " + msg
		}
		return msg, err
	}
	if !had {
		if _, err := os.Stat(forgetFile(uuid)); err == nil {
			return "already forgotten; the keyslot goes when the disk is next docked", nil
		}
		return "", fmt.Errorf("this host has no key for the disk %s (%s)", uuid, kf)
	}
	if err := os.MkdirAll(filepath.Dir(forgetFile(uuid)), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(forgetFile(uuid), []byte("remove this host's keyslot when the disk is next docked\n"), 0o600); err != nil {
		return "", err
	}
	return "key file " + kf + " removed; its keyslot is wiped when the disk is next docked here", nil
}

// PendingForget says whether this host still has to wipe its keyslot on
// the disk with LUKS UUID uuid.
func PendingForget(uuid string) bool {
	_, err := os.Stat(forgetFile(uuid))
	return err == nil
}

// ApplyForget wipes the keyslot the disk's token names for this host and
// removes the host from the token. The slot must hold a PBKDF2 key of the
// minimal cost a host key is added with, and another keyslot must remain:
// a token edited elsewhere cannot make it wipe the passphrase.
func ApplyForget(ctx context.Context, d luks.Device) (string, error) {
	info, err := luks.ReadHeaderDevice(d)
	if err != nil {
		return "", err
	}
	mid, err := MachineID()
	if err != nil {
		return "", err
	}
	meta, err := luks.ReadMetadataDevice(d)
	if err != nil {
		return "", err
	}
	h := meta.Host(mid)
	if h == nil {
		os.Remove(forgetFile(info.UUID))
		return "the disk's token names no keyslot of this host", nil
	}
	if len(info.Keyslots) < 2 {
		return "", fmt.Errorf("keyslot %d is the disk's only keyslot: not wiped", h.Keyslot)
	}
	if ok, why := luks.IsHostKeyslot(d, h.Keyslot); !ok {
		return "", fmt.Errorf("keyslot %d does not look like a host key's (%s): not wiped; check the disk with cryptsetup luksDump", h.Keyslot, why)
	}
	if err := luks.KillSlotDevice(ctx, d, h.Keyslot); err != nil {
		return "", err
	}
	slot := h.Keyslot
	var keep []luks.HostSlot
	for _, x := range meta.Hosts {
		if x.MachineID != mid {
			keep = append(keep, x)
		}
	}
	meta.Hosts = keep
	if err := luks.WriteMetadataDevice(ctx, d, meta); err != nil {
		return "", err
	}
	os.Remove(forgetFile(info.UUID))
	return fmt.Sprintf("keyslot %d wiped and this host removed from the disk's token", slot), nil
}

// HostKey is one disk this host holds a key for (or still has to forget).
type HostKey struct {
	LUKSUUID string    `json:"luks_uuid"`
	Label    string    `json:"label,omitempty"`
	Set      string    `json:"set,omitempty"`
	KeyFile  string    `json:"key_file,omitempty"`
	Mode     string    `json:"mode,omitempty"`
	Created  time.Time `json:"created,omitzero"`
	Forget   bool      `json:"forget_pending,omitempty"`
	Method   string    `json:"method"`
}

// HostStatus lists the disks this host has keys for, named from the
// inventory at invPath, and those whose keyslot is still to be wiped.
func HostStatus(invPath string) ([]HostKey, error) {
	f, _ := inventory.Load(invPath)
	byUUID := map[string]*HostKey{}
	ents, err := os.ReadDir(filepath.Join(ConfigDir(), "keys"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		uuid, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok {
			continue
		}
		p := filepath.Join(ConfigDir(), "keys", e.Name())
		k := &HostKey{LUKSUUID: uuid, KeyFile: p, Method: HostKeyMethod}
		if st, err := os.Stat(p); err == nil {
			k.Mode, k.Created = fmt.Sprintf("%04o", st.Mode().Perm()), st.ModTime().UTC()
		}
		byUUID[uuid] = k
	}
	fents, _ := os.ReadDir(filepath.Join(ConfigDir(), "forget"))
	for _, e := range fents {
		k := byUUID[e.Name()]
		if k == nil {
			k = &HostKey{LUKSUUID: e.Name(), Method: HostKeyMethod}
			byUUID[e.Name()] = k
		}
		k.Forget = true
	}
	var out []HostKey
	for _, k := range byUUID {
		if f != nil {
			if r := f.Find(k.LUKSUUID); r != nil {
				k.Label, k.Set = r.Label, r.Set
			}
		}
		out = append(out, *k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label+out[i].LUKSUUID < out[j].Label+out[j].LUKSUUID })
	return out, nil
}
