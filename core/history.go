package core

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// mnt and syncs it. A line left without its end by an earlier append that
// was cut short (the disk undocked or full mid-write) is ended first, so
// it cannot swallow this one; an append that fails part way is cut back
// off, so it leaves no such line.
func AppendHistory(mnt string, run inventory.Backup) error {
	p := filepath.Join(mnt, HistoryFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(run)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_APPEND|os.O_CREATE|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	line := append(b, '\n')
	if size := st.Size(); size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, size-1); err != nil {
			f.Close()
			return err
		}
		if last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	if _, err := f.Write(line); err != nil {
		_ = f.Truncate(st.Size())
		_ = f.Sync()
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// maxHistoryLine bounds one line of the history file; a longer one (no run
// writes one) is skipped, and the lines after it are read.
const maxHistoryLine = 1 << 20

// ReadHistory reads the history file of the filesystem mounted at mnt (none:
// no runs). A line that does not parse is skipped, but a run glued to the
// start of a line left unended by an older luksdock (an append cut short,
// then the next run appended to it) is read: the JSON of a run holds no
// nested object, so `{"` starts one.
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
	r := bufio.NewReader(f)
	for {
		line, long, err := readLine(r)
		if len(line) > 0 && !long {
			if b, ok := parseRun(line); ok {
				runs = append(runs, b)
			}
		}
		if err == io.EOF {
			return runs, nil
		}
		if err != nil {
			return runs, err
		}
	}
}

// readLine reads one line (without its end) of at most maxHistoryLine
// bytes; long says it was longer, and was read to its end and dropped.
func readLine(r *bufio.Reader) (line []byte, long bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if !long {
			if len(line)+len(chunk) > maxHistoryLine+1 {
				long, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return line, long, err
		}
		return bytes.TrimSuffix(line, []byte{'\n'}), long, nil
	}
}

// parseRun parses one line of the history file: a run, or a run after the
// unended start of another.
func parseRun(line []byte) (inventory.Backup, bool) {
	for {
		var b inventory.Backup
		if json.Unmarshal(line, &b) == nil && !b.Time.IsZero() {
			return b, true
		}
		i := bytes.Index(line[1:], []byte(`{"`))
		if i < 0 {
			return inventory.Backup{}, false
		}
		line = line[i+1:]
	}
}

// MergeHistory merges the history file of the disk with LUKS UUID uuid,
// mounted at mnt, into its inventory record at invPath (the runs read
// before a read error too), and notes the filesystem's size and free
// space. A disk the inventory does not know is
// left alone (list or the dock records it first). Open calls it after
// mounting.
func MergeHistory(invPath, uuid, mnt string) error {
	runs, rerr := ReadHistory(mnt)
	if rerr != nil {
		rerr = fmt.Errorf("reading the disk's history: %w", rerr)
	}
	size, free := fsSpace(mnt)
	err := inventory.Update(invPath, func(f *inventory.File) error {
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
	return errors.Join(rerr, err)
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
