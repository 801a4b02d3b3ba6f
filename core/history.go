package core

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/inventory"
	"luksdock/luks"
)

// HistoryFile is the disk's own record of its backup runs, inside its
// filesystem: one JSON object (an inventory.Backup) per line, appended by
// every host that runs a backup on it. It travels with the disk, so the
// machine at the other site learns what happened at this one when it
// opens the disk.
const HistoryFile = ".luksdock/history.jsonl"

// AppendHistory adds run to the history file of the filesystem mounted at
// mnt and syncs it.
func AppendHistory(mnt string, run inventory.Backup) error {
	p := filepath.Join(mnt, HistoryFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(run)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadHistory reads the history file of the filesystem mounted at mnt (none:
// no runs). Lines that do not parse (a run cut short by an undock) are
// skipped.
func ReadHistory(mnt string) ([]inventory.Backup, error) {
	f, err := os.OpenFile(filepath.Join(mnt, HistoryFile), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []inventory.Backup
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		var b inventory.Backup
		if json.Unmarshal(sc.Bytes(), &b) == nil && !b.Time.IsZero() {
			runs = append(runs, b)
		}
	}
	return runs, sc.Err()
}

// MergeHistory merges the history file of the disk with LUKS UUID uuid,
// mounted at mnt, into its inventory record at invPath, and notes the
// filesystem's size and free space. A disk the inventory does not know is
// left alone (list or the dock records it first). Open calls it after
// mounting.
func MergeHistory(invPath, uuid, mnt string) error {
	runs, err := ReadHistory(mnt)
	if err != nil {
		return fmt.Errorf("reading the disk's history: %w", err)
	}
	size, free := fsSpace(mnt)
	return inventory.Update(invPath, func(f *inventory.File) error {
		r := f.Find(uuid)
		if r == nil {
			return nil
		}
		r.AddBackups(runs...)
		if size > 0 {
			r.FSSize, r.FSFree = size, free
		}
		return nil
	})
}

// fsSpace is the size and the free bytes (for unprivileged users, as df
// shows them) of the filesystem at mnt.
func fsSpace(mnt string) (size, free int64) {
	var st unix.Statfs_t
	if unix.Statfs(mnt, &st) != nil {
		return 0, 0
	}
	return int64(st.Blocks) * st.Bsize, int64(st.Bavail) * st.Bsize
}

func nowUTC() time.Time { return time.Now().UTC().Truncate(time.Second) }

// NoteOpened is what opening a disk (luksdock open) tells the inventory at
// invPath: a disk it does not know is recorded from its luksdock token (a
// disk prepared elsewhere), and the history file of its filesystem,
// mounted at mnt, is merged into its record.
func NoteOpened(invPath string, d luks.Device, uuid, seenAs, mnt string) error {
	if m, err := luks.ReadMetadataDevice(d); err == nil {
		now := time.Now()
		if err := inventory.Update(invPath, func(f *inventory.File) error {
			if !f.Seen(uuid, seenAs, now) {
				f.Put(RecordFromToken(uuid, m, seenAs, now))
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return MergeHistory(invPath, uuid, mnt)
}

// NotePassphraseChanged records in the disk's luksdock token when its
// passphrase was changed (luksdock passwd). A disk without a token (LUKS1,
// or prepared before tokens) is left as it is.
func NotePassphraseChanged(ctx context.Context, d luks.Device, when time.Time) error {
	m, err := luks.ReadMetadataDevice(d)
	if err != nil {
		return err
	}
	m.PassphraseChanged = when.UTC()
	return luks.WriteMetadataDevice(ctx, d, m)
}
