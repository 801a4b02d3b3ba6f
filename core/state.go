package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"luksdock/pipeline"
)

// openRecord is what luksdock open leaves for luksdock close, in
// $LUKSDOCK_RUN_DIR (default /run/luksdock/open), one file per volume named
// by its LUKS UUID. It holds no secret. /run is a tmpfs: after a reboot
// nothing is open and nothing is left.
type openRecord struct {
	Opened
	// Disk is the whole disk (/dev/sdi) of a block device, for the power-off.
	Disk string `json:"disk,omitempty"`
	// Mapping is the kernel engine's dm-crypt mapping name (luks-UUID).
	Mapping string `json:"mapping,omitempty"`
	// MadeDir is set when luksdock made the mountpoint directory (close
	// removes it again, as the desktop does).
	MadeDir bool      `json:"made_dir,omitempty"`
	Time    time.Time `json:"opened_at"`
}

// RunDir is where open records live.
func RunDir() string {
	if d := os.Getenv("LUKSDOCK_RUN_DIR"); d != "" {
		return d
	}
	return "/run/luksdock/open"
}

func recordPath(uuid string) string {
	return filepath.Join(RunDir(), strings.ToLower(uuid)+".json")
}

func saveRecord(r *openRecord) error {
	if err := os.MkdirAll(RunDir(), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	p := recordPath(r.LUKSUUID)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func removeRecord(uuid string) { os.Remove(recordPath(uuid)) }

// records reads every open record.
func records() []*openRecord {
	files, _ := filepath.Glob(filepath.Join(RunDir(), "*.json"))
	var out []*openRecord
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var r openRecord
		if json.Unmarshal(b, &r) == nil && r.LUKSUUID != "" {
			out = append(out, &r)
		}
	}
	return out
}

// findRecord finds the open record the selector or mountpoint names.
func findRecord(sel Selector, mountpoint string) *openRecord {
	for _, r := range records() {
		switch {
		case mountpoint != "" && filepath.Clean(mountpoint) == r.Mountpoint,
			sel.Label != "" && sel.Label == r.Label,
			sel.Image != "" && sameFile(sel.Image, r.Target),
			sel.Device != "" && r.Disk != "" && sameFile(sel.Device, r.Disk):
			return r
		}
	}
	return nil
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// Open records are written by root only; a user other than root runs
// nothing here.
func needRoot(what string) error {
	if os.Geteuid() != 0 {
		return &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf("%s needs root (run it with sudo): it mounts filesystems", what)}
	}
	return nil
}

var errNotOpen = errors.New("not open")
