// Package inventory remembers the disks luksdock prepared: a rotation set
// of offsite backup disks (backups01, backups02, ...) that travel between
// places and come back to the dock months apart.
//
// The inventory is one JSON file, indented so a person can read it and any
// tool can parse it: /var/lib/luksdock/inventory.json for root, else
// $XDG_STATE_HOME/luksdock/inventory.json (~/.local/state/luksdock/...);
// LUKSDOCK_INVENTORY names another file. Writers take an exclusive flock on
// a lock file beside it, write a temporary file in the same directory,
// fsync it, rename it over the inventory and fsync the directory, so a
// reader sees the old or the new inventory, never half of one, and two
// luksdocks preparing disks at once both get recorded. A file that does not
// parse is reported (ErrCorrupt) and never overwritten: the caller says so
// and the person moves it aside.
//
// It holds no secret: whether a recovery key exists, never the key; the
// header backup's path and SHA-256, never its contents.
package inventory

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// FormatVersion is the version of the file's layout.
const FormatVersion = 1

// File is the inventory as stored.
type File struct {
	Format int      `json:"format"`
	Note   string   `json:"note,omitempty"`
	Disks  []Record `json:"disks"`
}

// Record is one disk luksdock prepared.
type Record struct {
	LUKSUUID string `json:"luks_uuid"`
	Label    string `json:"label"`
	Set      string `json:"set,omitempty"`
	Drive    Drive  `json:"drive"`
	// Size is the whole disk's (or image's) size in bytes.
	Size           int64 `json:"size"`
	LogicalSector  int   `json:"logical_sector,omitempty"`
	PhysicalSector int   `json:"physical_sector,omitempty"`
	LUKSSector     int   `json:"luks_sector,omitempty"`
	// Prepared is when prepare verified it; Version the luksdock that did.
	Prepared time.Time `json:"prepared"`
	Version  string    `json:"luksdock_version"`
	// HeaderBackup is where the header backup was written and the SHA-256
	// of what was written, to tell it from a stale copy.
	HeaderBackup       string `json:"header_backup,omitempty"`
	HeaderBackupSHA256 string `json:"header_backup_sha256,omitempty"`
	// RecoveryKey says that a recovery keyslot was made and verified.
	RecoveryKey bool `json:"recovery_key"`
	// LastSeen is the last time luksdock saw the disk docked (prepare and
	// list update it), LastSeenAs the device it was then.
	LastSeen   time.Time `json:"last_seen"`
	LastSeenAs string    `json:"last_seen_as,omitempty"`
	// PassphraseChanged is when luksdock passwd last replaced the
	// passphrase (zero: never since prepare), RecoveryKeyReplaced when
	// luksdock recovery-key --replace last replaced the recovery key: a set
	// changed disk by disk shows which disks still have the old one.
	PassphraseChanged   time.Time `json:"passphrase_changed,omitzero"`
	RecoveryKeyReplaced time.Time `json:"recovery_key_replaced,omitzero"`
	// PassphraseSlot and RecoveryKeySlot are the LUKS keyslots of the
	// passphrase and the recovery key once passwd or recovery-key moved
	// them (nil: where prepare put them, 0 and 1).
	PassphraseSlot  *int `json:"passphrase_keyslot,omitempty"`
	RecoveryKeySlot *int `json:"recovery_key_keyslot,omitempty"`
	// Retired is when luksdock retire crypto-erased the disk: it opens no
	// more, and its label is free again (zero: in service).
	Retired time.Time `json:"retired,omitzero"`
	// PreparedOn is the host that prepared the disk; SeenHere is set for a
	// disk this machine did not prepare but learned from the disk's own
	// luksdock token when it was docked here.
	PreparedOn string `json:"prepared_on,omitempty"`
	SeenHere   bool   `json:"seen_here,omitempty"`
	// Backups are the backup runs known for the disk (this host's and, once
	// the disk was opened here, those in its own history file), oldest
	// first, at most MaxBackups.
	Backups []Backup `json:"backups,omitempty"`
	// FSSize and FSFree are the filesystem's size and free bytes when last
	// mounted by luksdock (0: not known).
	FSSize int64 `json:"fs_size,omitempty"`
	FSFree int64 `json:"fs_free,omitempty"`
}

// MaxBackups bounds Record.Backups.
const MaxBackups = 100

// Backup is one backup run on a disk: where, when, how it ended, how long
// it took, how many bytes it wrote and how much was free afterwards.
//
// ID names the run: random, made when the run starts (NewRun), and carried
// by every copy of it (the inventory of the machine that ran it, the disk's
// history file, the inventories that merged that file), so two runs are
// never taken for one however close in time and whatever their hosts are
// called, and one run merged twice is recorded once. Runs recorded before
// run IDs existed have none; they are told apart by host and time (see
// SameRun).
type Backup struct {
	ID       string    `json:"id,omitempty"`
	Host     string    `json:"host"`
	Time     time.Time `json:"time"`
	Outcome  string    `json:"outcome"` // OutcomeOK, OutcomeFailed, OutcomeInterrupted
	Seconds  float64   `json:"seconds,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	FreeLeft int64     `json:"free,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// Outcomes of a backup run.
const (
	OutcomeOK          = "ok"
	OutcomeFailed      = "failed"
	OutcomeInterrupted = "interrupted"
)

// NewRun is a backup run on host starting at start, with a new random ID;
// its time is kept to the millisecond, so runs sort in the order they
// started.
func NewRun(host string, start time.Time) Backup {
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		panic("inventory: no random numbers: " + err.Error()) // crypto/rand does not fail on Linux
	}
	return Backup{ID: hex.EncodeToString(id[:]), Host: host, Time: start.UTC().Truncate(time.Millisecond)}
}

// SameRun says whether a and b are copies of one run: the same ID when
// both have one; otherwise (a run recorded before run IDs, or a copy an
// older luksdock stripped of it) the same host and time.
func SameRun(a, b Backup) bool {
	if a.ID != "" && b.ID != "" {
		return a.ID == b.ID
	}
	return a.Host == b.Host && a.Time.Equal(b.Time)
}

// AddBackups merges runs into r.Backups: a run already there (SameRun) is
// not added twice; the result is sorted by time and cut to the MaxBackups
// newest. Each run already there stands for one run: two runs without IDs
// in one second on one host (a history file written before run IDs) are
// both kept, and merging them again adds neither.
func (r *Record) AddBackups(runs ...Backup) {
	had := len(r.Backups)
	matched := make([]bool, had)
	for _, b := range runs {
		b.Time = b.Time.UTC()
		dup := false
		for i := 0; i < had; i++ {
			if !matched[i] && SameRun(r.Backups[i], b) {
				matched[i], dup = true, true
				break
			}
		}
		if !dup {
			r.Backups = append(r.Backups, b)
		}
	}
	sort.SliceStable(r.Backups, func(i, j int) bool { return r.Backups[i].Time.Before(r.Backups[j].Time) })
	if n := len(r.Backups); n > MaxBackups {
		r.Backups = r.Backups[n-MaxBackups:]
	}
}

// LastBackup is the newest run (nil: none), LastGood the newest that
// succeeded.
func (r *Record) LastBackup() *Backup {
	if len(r.Backups) == 0 {
		return nil
	}
	return &r.Backups[len(r.Backups)-1]
}

// LastGood is the newest successful run, or nil.
func (r *Record) LastGood() *Backup {
	for i := len(r.Backups) - 1; i >= 0; i-- {
		if r.Backups[i].Outcome == OutcomeOK {
			return &r.Backups[i]
		}
	}
	return nil
}

// Overdue says whether the disk's last successful backup (or, with none,
// its preparation) is more than every before now. every 0: never overdue.
func (r *Record) Overdue(every time.Duration, now time.Time) bool {
	if every <= 0 {
		return false
	}
	since := r.Prepared
	if g := r.LastGood(); g != nil {
		since = g.Time
	}
	return now.Sub(since) > every
}

// Drive is the drive's identity as far as luksdock could read it. Through
// a USB dock the model often is the drive's own (a SCSI-ATA bridge passes
// the ATA model on) while the serial is the dock's (the USB serial), unless
// SMART reaches the drive; ModelFrom and SerialFrom say whose each is.
type Drive struct {
	Model      string `json:"model,omitempty"`
	ModelFrom  string `json:"model_from,omitempty"` // "drive", "dock" or "image"
	Serial     string `json:"serial,omitempty"`
	SerialFrom string `json:"serial_from,omitempty"` // "drive", "dock" or "image"
	WWN        string `json:"wwn,omitempty"`
	// Dock is the USB bridge: "152d:0578 JMicron USB to ATA/ATAPI Bridge".
	Dock string `json:"dock,omitempty"`
}

// Where the identity came from.
const (
	FromDrive = "drive"
	FromDock  = "dock"
	FromImage = "image"
)

// ErrCorrupt is wrapped when the inventory file exists but does not parse.
var ErrCorrupt = errors.New("the inventory file is damaged")

// Path is the inventory file for this user (see the package comment).
func Path() string {
	if p := os.Getenv("LUKSDOCK_INVENTORY"); p != "" {
		return p
	}
	if os.Geteuid() == 0 {
		return "/var/lib/luksdock/inventory.json"
	}
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		home, err := os.UserHomeDir()
		if err != nil {
			home = "/"
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "luksdock", "inventory.json")
}

// Load reads the inventory at path under a shared lock. A missing file is
// an empty inventory.
func Load(path string) (*File, error) {
	unlock, err := lock(path, unix.LOCK_SH, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return read(path)
}

func read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &File{Format: FormatVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory %s: %w", path, err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s: %v; luksdock will not overwrite it: move it aside (or repair it) to record disks again", ErrCorrupt, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: data after the inventory; luksdock will not overwrite it: move it aside (or repair it)", ErrCorrupt, path)
	}
	if f.Format != FormatVersion {
		return nil, fmt.Errorf("%w: %s: format %d, this luksdock reads %d; it will not overwrite it", ErrCorrupt, path, f.Format, FormatVersion)
	}
	for i, r := range f.Disks {
		if r.LUKSUUID == "" {
			return nil, fmt.Errorf("%w: %s: disk %d has no luks_uuid; luksdock will not overwrite it", ErrCorrupt, path, i+1)
		}
	}
	return &f, nil
}

// Update applies fn to the inventory at path under an exclusive lock and
// writes the result atomically (temporary file, fsync, rename, fsync of the
// directory). The directory is made (0700) if missing. A damaged file is
// not touched: Update returns the ErrCorrupt error without calling fn.
func Update(path string, fn func(*File) error) error {
	unlock, err := lock(path, unix.LOCK_EX, true)
	if err != nil {
		return err
	}
	defer unlock()
	f, err := read(path)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	f.Format = FormatVersion
	f.Note = "disks prepared by luksdock; see `luksdock inventory`. Holds no secrets."
	sort.SliceStable(f.Disks, func(i, j int) bool {
		if f.Disks[i].Set != f.Disks[j].Set {
			return f.Disks[i].Set < f.Disks[j].Set
		}
		return f.Disks[i].Label < f.Disks[j].Label
	})
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	return writeAtomic(path, b)
}

func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".inventory-*.tmp")
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing there
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("inventory: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("inventory: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("inventory: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("inventory: %w", err)
	}
	defer d.Close()
	return d.Sync()
}

// lock takes a flock on path+".lock"; with create the directory and the
// lock file are made when missing. A reader of a missing inventory gets a
// no-op lock.
func lock(path string, how int, create bool) (func(), error) {
	if create {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
	}
	flags := os.O_RDONLY
	if create {
		flags = os.O_RDWR | os.O_CREATE
	}
	lf, err := os.OpenFile(path+".lock", flags|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, os.ErrNotExist) && !create {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	for {
		err = unix.Flock(int(lf.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("inventory: locking %s: %w", lf.Name(), err)
	}
	return func() { lf.Close() }, nil
}

// Find returns the record of the disk with this LUKS UUID, or nil.
func (f *File) Find(uuid string) *Record {
	for i := range f.Disks {
		if strings.EqualFold(f.Disks[i].LUKSUUID, uuid) {
			return &f.Disks[i]
		}
	}
	return nil
}

// Put adds r, replacing an earlier record of the same LUKS UUID.
func (f *File) Put(r Record) {
	if old := f.Find(r.LUKSUUID); old != nil {
		*old = r
		return
	}
	f.Disks = append(f.Disks, r)
}

// Seen notes that the disk with uuid was docked as dev at when. It reports
// whether the inventory knows the disk.
func (f *File) Seen(uuid, dev string, when time.Time) bool {
	r := f.Find(uuid)
	if r == nil {
		return false
	}
	r.LastSeen, r.LastSeenAs = when.UTC().Truncate(time.Second), dev
	return true
}

// Describe says what a known disk is, for people: "backups01, set offsite,
// prepared 2026-11-23, last seen 9 days ago". lastSeen is the sighting
// before this one (the zero time: never).
func Describe(r Record, lastSeen, now time.Time) string {
	s := r.Label
	if r.Set != "" {
		s += ", set " + r.Set
	}
	s += ", prepared " + r.Prepared.Local().Format("2006-01-02")
	if !lastSeen.IsZero() {
		s += ", last seen " + Ago(lastSeen, now)
	}
	return s
}

// Recognise says what the LUKS disk with uuid is, for list and the
// wizard: a known disk's Describe (with the sighting before this one), or
// that luksdock does not know it, naming the set its LUKS2 subsystem field
// names (setOnDisk, "" for none). f may be nil (no inventory).
func Recognise(f *File, uuid, setOnDisk string, now time.Time) (desc string, known bool) {
	if f != nil {
		if r := f.Find(uuid); r != nil {
			return Describe(*r, r.LastSeen, now), true
		}
	}
	desc = "a LUKS disk luksdock does not know (not in its inventory)"
	if setOnDisk != "" {
		desc += "; its LUKS2 subsystem names set " + setOnDisk
	}
	return desc, false
}

// Ago says how long before now t was, in words: "just now", "3 hours ago",
// "9 days ago", "5 months ago", "2 years ago".
func Ago(t, now time.Time) string {
	d := now.Sub(t)
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 24*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d < 60*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	case d < 730*24*time.Hour:
		return plural(int(d/(30*24*time.Hour)), "month")
	}
	return plural(int(d/(365*24*time.Hour)), "year")
}
