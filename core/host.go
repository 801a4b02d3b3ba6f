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

// The ways a host key is kept (the method in the disk's token).
const (
	// MethodKeyFile: 32 random bytes in KeyFile (0400 root).
	MethodKeyFile = "keyfile"
	// MethodTPM2: a keyslot sealed to this machine's TPM2 by
	// systemd-cryptenroll; no key is kept on this host, only TPM2Marker.
	MethodTPM2 = "tpm2"
)

// HostKeyWhere says, for a person, where this host's key for the disk
// with that LUKS uuid is kept after an enroll with h's method.
func HostKeyWhere(h luks.HostSlot, uuid string) string {
	if h.Method == MethodTPM2 {
		return "sealed to this host's TPM2 (marker " + TPM2Marker(uuid) + ", no secret)"
	}
	return "key in " + KeyFile(uuid) + " (0400 root)"
}

// TPM2Marker is the file that says this host's keyslot on the disk with
// LUKS UUID uuid is sealed to its TPM2. It holds no secret (the keyslot's
// number); udev's rule tests for it as for a key file.
func TPM2Marker(uuid string) string {
	return filepath.Join(ConfigDir(), "tpm2", strings.ToLower(uuid))
}

// HostMethod is how this host keeps its key for the disk with LUKS UUID
// uuid: MethodKeyFile, MethodTPM2, or "" (not enrolled here).
func HostMethod(uuid string) string {
	if _, err := os.Stat(KeyFile(uuid)); err == nil {
		return MethodKeyFile
	}
	if _, err := os.Stat(TPM2Marker(uuid)); err == nil {
		return MethodTPM2
	}
	return ""
}

// ErrEnrolled means this host already has a keyslot on the disk.
var ErrEnrolled = errors.New("this host is already enrolled on the disk")

// ErrNoTPM2 means a TPM2 enrollment was asked for on a machine that cannot
// seal to one.
var ErrNoTPM2 = errors.New("cannot seal to a TPM2 here")

// Enroll is EnrollMethod with method "auto".
func Enroll(ctx context.Context, d luks.Device, passphrase []byte) (luks.HostSlot, error) {
	return EnrollMethod(ctx, d, passphrase, "auto")
}

// EnrollMethod adds a keyslot to the LUKS2 volume d that only this host
// can use, unlocking the disk with passphrase, and names this host in the
// disk's luksdock token. method "auto" seals it to the TPM2 when this
// machine has one and systemd-cryptenroll (luks.HasTPM2), else makes a
// key file; "tpm2" or "keyfile" insist.
//
// TPM2: systemd-cryptenroll --tpm2-device=auto --tpm2-pcrs= (no PCR: see
// luks.TPM2PCRs) adds the keyslot and its systemd-tpm2 token; the
// passphrase reaches it through the kernel keyring (luks.EnrollTPM2Device);
// cryptsetup then proves the token opens the disk (--test-passphrase
// --token-only), and TPM2Marker records it. No key file is written.
//
// Key file: 32 random bytes in KeyFile (0400 root), added with PBKDF2 at
// its minimal cost (a random key needs no stretching); luksdock's own LUKS
// code proves the key file opens the disk. The key travels to cryptsetup
// on a pipe; it is never in argv, the environment, the token or the
// inventory.
func EnrollMethod(ctx context.Context, d luks.Device, passphrase []byte, method string) (luks.HostSlot, error) {
	switch method {
	case "", "auto":
		method = MethodKeyFile
		if ok, _ := luks.HasTPM2(); ok {
			method = MethodTPM2
		}
	case MethodTPM2:
		if ok, why := luks.HasTPM2(); !ok {
			return luks.HostSlot{}, fmt.Errorf("%w: %s", ErrNoTPM2, why)
		}
	case MethodKeyFile:
	default:
		return luks.HostSlot{}, fmt.Errorf("unknown host key method %q (auto, tpm2, keyfile)", method)
	}
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
	kf, marker := KeyFile(info.UUID), TPM2Marker(info.UUID)
	if h := meta.Host(mid); h != nil {
		if HostMethod(info.UUID) != "" {
			return *h, fmt.Errorf("%w (keyslot %d, %s); `luksdock host forget` it first to enroll again", ErrEnrolled, h.Keyslot, h.Method)
		}
		return *h, fmt.Errorf("the disk's token names this host (keyslot %d, %s) but this host has no key for it (%s, %s): run `luksdock host forget --device` with the disk docked to remove that keyslot, then enroll again", h.Keyslot, h.Method, kf, marker)
	}
	for _, p := range []string{kf, marker} {
		if _, err := os.Stat(p); err == nil {
			return luks.HostSlot{}, fmt.Errorf("%s exists but the disk's token does not name this host: move it aside first", p)
		}
	}
	var slot int
	if method == MethodTPM2 {
		slot, err = enrollTPM2(ctx, d, info.UUID, passphrase)
	} else {
		slot, err = enrollKeyFile(ctx, d, kf, passphrase)
	}
	if err != nil {
		return luks.HostSlot{}, err
	}
	name, _ := os.Hostname()
	h := luks.HostSlot{Name: name, MachineID: mid, Keyslot: slot, Method: method, Enrolled: nowUTC()}
	meta.Hosts = append(meta.Hosts, h)
	if err := luks.WriteMetadataDevice(ctx, d, meta); err != nil {
		return h, fmt.Errorf("keyslot %d added, but naming the host in the disk's token failed: %w", slot, err)
	}
	return h, nil
}

// enrollKeyFile adds a keyslot for a new host key kept in kf. The
// passphrase is checked first (luksdock's own LUKS code), so a wrong one
// writes nothing on this host: not even the key directory.
func enrollKeyFile(ctx context.Context, d luks.Device, kf string, passphrase []byte) (int, error) {
	if _, vk, err := luks.UnsealKey(d, passphrase); err != nil {
		return -1, err
	} else {
		clear(vk)
	}
	key := secret.New(32) // locked, outside the heap (docs/secrets.md)
	defer secret.Free(key)
	if _, err := rand.Read(key); err != nil {
		return -1, err
	}
	if err := writeKeyFile(kf, key); err != nil {
		return -1, err
	}
	slot, err := luks.AddKeyFastDevice(ctx, d, passphrase, key)
	if err != nil {
		os.Remove(kf)
		return -1, err
	}
	if _, vk, err := luks.UnsealKey(d, key); err != nil {
		return -1, fmt.Errorf("the new keyslot %d does not open with the host key: %w", slot, err)
	} else {
		clear(vk)
	}
	return slot, nil
}

// checkTPM2Token proves that the disk's systemd-tpm2 token opens it
// (luks.TestTPM2Device). Only a test replaces it: on a machine without a
// kernel TPM2 device, where the token plugin cannot unseal at all.
var checkTPM2Token = luks.TestTPM2Device

// enrollTPM2 seals a new keyslot to the TPM2. The passphrase is checked
// first with luksdock's own LUKS code: systemd-cryptenroll would ask
// again for one it refuses.
func enrollTPM2(ctx context.Context, d luks.Device, uuid string, passphrase []byte) (int, error) {
	if _, vk, err := luks.UnsealKey(d, passphrase); err != nil {
		return -1, err
	} else {
		clear(vk)
	}
	slot, err := luks.EnrollTPM2Device(ctx, d, passphrase, luks.TPM2PCRs)
	if err != nil {
		return -1, err
	}
	if err := checkTPM2Token(ctx, d); err != nil {
		// Useless to the dock service (cryptsetup's systemd-tpm2 token
		// plugin missing, a TPM2 that does not unseal): taken back.
		if werr := luks.WipeSlotTPM2Device(context.WithoutCancel(ctx), d, slot); werr != nil {
			return -1, fmt.Errorf("keyslot %d was sealed to the TPM2, but its token does not open the disk (%v), and wiping it failed: %w; wipe it with systemd-cryptenroll --wipe-slot=%d", slot, err, werr, slot)
		}
		return -1, fmt.Errorf("the keyslot sealed to the TPM2 does not open the disk with cryptsetup's systemd-tpm2 token, so it was wiped again (is libcryptsetup-token-systemd-tpm2.so installed?): %w; --key-file enrolls with a key file", err)
	}
	if err := writeMarker(TPM2Marker(uuid), fmt.Sprintf("keyslot %d of LUKS %s is sealed to this host's TPM2 (systemd-tpm2 token); no key is kept here\n", slot, uuid)); err != nil {
		return -1, err
	}
	return slot, nil
}

// writeMarker writes a non-secret note (0600, root) in a 0700 directory.
func writeMarker(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path+".new", []byte(text), 0o600); err != nil {
		return err
	}
	return os.Rename(path+".new", path)
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
	if HostMethod(uuid) == MethodTPM2 {
		kf = TPM2Marker(uuid)
	}
	had := true
	if err := os.Remove(kf); errors.Is(err, os.ErrNotExist) {
		had = false
	} else if err != nil {
		return "", err
	}
	if d != nil {
		msg, err := ApplyForget(ctx, *d)
		if had {
			msg = kf + " removed; " + msg
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
	return kf + " removed; its keyslot is wiped when the disk is next docked here", nil
}

// dropHostKey removes what this host keeps for a volume that no longer
// exists (crypto-erased, or replaced by a prepare): its key file or TPM2
// marker and a pending forget. It returns the key file or marker it
// removed ("": there was none).
func dropHostKey(uuid string) string {
	os.Remove(forgetFile(uuid))
	removed := ""
	for _, f := range []string{KeyFile(uuid), TPM2Marker(uuid)} {
		if os.Remove(f) == nil {
			removed = f
		}
	}
	return removed
}

// PendingForget says whether this host still has to wipe its keyslot on
// the disk with LUKS UUID uuid.
func PendingForget(uuid string) bool {
	_, err := os.Stat(forgetFile(uuid))
	return err == nil
}

// ApplyForget wipes the keyslot the disk's token names for this host and
// removes the host from the token. The slot must hold a PBKDF2 key of the
// minimal cost a host key is added with (systemd-cryptenroll adds its TPM2
// keyslots so too), and another keyslot must remain: a token edited
// elsewhere cannot make it wipe the passphrase. A TPM2 keyslot is wiped
// with systemd-cryptenroll --wipe-slot, which removes its systemd-tpm2
// token too.
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
	wipe := luks.KillSlotDevice
	if h.Method == MethodTPM2 {
		wipe = luks.WipeSlotTPM2Device
	}
	if err := wipe(ctx, d, h.Keyslot); err != nil {
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
	if h.Method == MethodTPM2 {
		return fmt.Sprintf("keyslot %d and its systemd-tpm2 token wiped, and this host removed from the disk's token", slot), nil
	}
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
	// Method is "keyfile" or "tpm2" ("" for a forgotten disk's).
	Method string `json:"method"`
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
		k := &HostKey{LUKSUUID: uuid, KeyFile: p, Method: MethodKeyFile}
		if st, err := os.Stat(p); err == nil {
			k.Mode, k.Created = fmt.Sprintf("%04o", st.Mode().Perm()), st.ModTime().UTC()
		}
		byUUID[uuid] = k
	}
	tents, err := os.ReadDir(filepath.Join(ConfigDir(), "tpm2"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range tents {
		if strings.HasSuffix(e.Name(), ".new") {
			continue
		}
		k := &HostKey{LUKSUUID: e.Name(), Method: MethodTPM2}
		if st, err := os.Stat(filepath.Join(ConfigDir(), "tpm2", e.Name())); err == nil {
			k.Created = st.ModTime().UTC()
		}
		byUUID[e.Name()] = k
	}
	fents, _ := os.ReadDir(filepath.Join(ConfigDir(), "forget"))
	for _, e := range fents {
		k := byUUID[e.Name()]
		if k == nil {
			k = &HostKey{LUKSUUID: e.Name()}
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
