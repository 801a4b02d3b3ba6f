package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func rec(uuid, label, set string) Record {
	return Record{LUKSUUID: uuid, Label: label, Set: set, Prepared: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
}

func TestUpdateLoadRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "luksdock", "inventory.json")
	if f, err := Load(p); err != nil || len(f.Disks) != 0 {
		t.Fatalf("missing file: %v %v", f, err)
	}
	err := Update(p, func(f *File) error {
		f.Put(rec("u-2", "backups02", "offsite"))
		f.Put(rec("u-1", "backups01", "offsite"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}
	if dst, _ := os.Stat(filepath.Dir(p)); dst.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v", dst.Mode())
	}
	// Readable by any JSON parser, indented for people.
	b, _ := os.ReadFile(p)
	var generic map[string]any
	if err := json.Unmarshal(b, &generic); err != nil || !strings.Contains(string(b), "\n  \"disks\": [\n") {
		t.Fatalf("not indented JSON: %v\n%s", err, b)
	}
	f, err := Load(p)
	if err != nil || len(f.Disks) != 2 || f.Disks[0].Label != "backups01" {
		t.Fatalf("loaded %+v, %v", f, err)
	}
	when := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	Update(p, func(f *File) error {
		if !f.Seen("U-1", "/dev/sdj", when) || f.Seen("nope", "/dev/sdk", when) {
			t.Error("Seen")
		}
		return nil
	})
	f, _ = Load(p)
	if r := f.Find("u-1"); r == nil || !r.LastSeen.Equal(when) || r.LastSeenAs != "/dev/sdj" {
		t.Errorf("after Seen: %+v", r)
	}
	// No temporary file is left beside it.
	ents, _ := os.ReadDir(filepath.Dir(p))
	for _, e := range ents {
		if e.Name() != "inventory.json" && e.Name() != "inventory.json.lock" {
			t.Errorf("left in the directory: %s", e.Name())
		}
	}
	if err := Update(p, func(*File) error { return errors.New("no") }); err == nil {
		t.Error("fn's error lost")
	}
}

// TestCorruptNeverOverwritten: a damaged file is reported by Load and
// Update and stays byte-identical.
func TestCorruptNeverOverwritten(t *testing.T) {
	for name, content := range map[string]string{
		"truncated":     `{"format": 1, "disks": [{"luks_uuid": "u-1", "lab`,
		"not json":      "hello\n",
		"unknown field": `{"format": 1, "disks": [], "extra": 1}`,
		"newer format":  `{"format": 2, "disks": []}`,
		"no uuid":       `{"format": 1, "disks": [{"label": "x"}]}`,
		"two documents": `{"format": 1, "disks": []} {}`,
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "inventory.json")
			os.WriteFile(p, []byte(content), 0o600)
			if _, err := Load(p); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "will not overwrite") {
				t.Errorf("Load: %v", err)
			}
			called := false
			err := Update(p, func(f *File) error { called = true; return nil })
			if !errors.Is(err, ErrCorrupt) || called {
				t.Errorf("Update: %v (fn called %v)", err, called)
			}
			if b, _ := os.ReadFile(p); string(b) != content {
				t.Error("the damaged file was changed")
			}
		})
	}
}

// TestConcurrentWriters runs 4 processes that each add 25 records one
// Update at a time: all 100 must be there and the file must parse.
// Without the lock, read-modify-write races lose records.
func TestConcurrentWriters(t *testing.T) {
	if p := os.Getenv("INVENTORY_TEST_WRITER"); p != "" {
		id := os.Getenv("INVENTORY_TEST_ID")
		for i := 0; i < 25; i++ {
			err := Update(p, func(f *File) error {
				f.Put(rec(fmt.Sprintf("%s-%d", id, i), "l"+id+strconv.Itoa(i), ""))
				return nil
			})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		os.Exit(0)
	}
	p := filepath.Join(t.TempDir(), "inventory.json")
	var cmds []*exec.Cmd
	for id := 0; id < 4; id++ {
		c := exec.Command(os.Args[0], "-test.run=^TestConcurrentWriters$")
		c.Env = append(os.Environ(), "INVENTORY_TEST_WRITER="+p, "INVENTORY_TEST_ID="+strconv.Itoa(id))
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Disks) != 100 {
		t.Errorf("%d records, want 100", len(f.Disks))
	}
}

func TestSuggestLabel(t *testing.T) {
	f := &File{}
	if got := SuggestLabel(f, "offsite", nil); got != "backups01" {
		t.Errorf("empty: %s", got)
	}
	// Without an inventory (not read): the first backupsNN no docked disk has.
	for _, c := range []struct {
		attached []string
		want     string
	}{
		{nil, "backups01"},
		{[]string{"photos"}, "backups01"},
		{[]string{"backups01", "backups02"}, "backups03"},
		{[]string{"backups01", "backups03"}, "backups02"},
	} {
		if got := SuggestLabel(nil, "offsite", c.attached); got != c.want {
			t.Errorf("no inventory, attached %v: %s, want %s", c.attached, got, c.want)
		}
	}
	f.Put(rec("1", "backups01", "offsite"))
	f.Put(rec("2", "backups02", "offsite"))
	f.Put(rec("3", "home001", "home"))
	for _, c := range []struct {
		set      string
		attached []string
		want     string
	}{
		{"offsite", nil, "backups03"},
		{"offsite", []string{"backups03"}, "backups04"}, // an attached disk has it
		{"home", nil, "home002"},
		{"", nil, "backups03"}, // another set's labels are taken too
	} {
		if got := SuggestLabel(f, c.set, c.attached); got != c.want {
			t.Errorf("SuggestLabel(%q, %v) = %s, want %s", c.set, c.attached, got, c.want)
		}
	}
	f.Put(rec("4", "averyverylongn99", "long"))
	if got := SuggestLabel(f, "long", nil); len(got) > MaxLabel || got != "averyverylong100" {
		t.Errorf("long: %s", got)
	}
	if c := LabelClash(f, "offsite", "backups02", ""); !strings.Contains(c, "LUKS UUID 2") {
		t.Errorf("clash: %q", c)
	}
	if c := LabelClash(f, "offsite", "backups02", "2"); c != "" {
		t.Errorf("the disk being prepared over clashes with itself: %q", c)
	}
	if c := LabelClash(f, "home", "backups02", ""); c != "" {
		t.Errorf("clash across sets: %q", c)
	}
}

func TestDescribe(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.Local)
	r := rec("u", "backups01", "offsite")
	r.Prepared = time.Date(2026, 11, 23, 12, 0, 0, 0, time.Local)
	if got := Describe(r, now.Add(-9*24*time.Hour), now); got != "backups01, set offsite, prepared 2026-11-23, last seen 9 days ago" {
		t.Errorf("%q", got)
	}
	for d, want := range map[time.Duration]string{
		10 * time.Second: "just now", 90 * time.Minute: "1 hour ago", 26 * time.Hour: "1 day ago",
		100 * 24 * time.Hour: "3 months ago", 800 * 24 * time.Hour: "2 years ago",
	} {
		if got := Ago(now.Add(-d), now); got != want {
			t.Errorf("Ago(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestPath(t *testing.T) {
	t.Setenv("LUKSDOCK_INVENTORY", "")
	t.Setenv("XDG_STATE_HOME", "/xdg")
	want := "/var/lib/luksdock/inventory.json"
	if os.Geteuid() != 0 {
		want = "/xdg/luksdock/inventory.json"
	}
	if got := Path(); got != want {
		t.Errorf("Path() = %s, want %s", got, want)
	}
	t.Setenv("LUKSDOCK_INVENTORY", "/x/inv.json")
	if Path() != "/x/inv.json" {
		t.Error("LUKSDOCK_INVENTORY ignored")
	}
}

// TestRunIdentity: two runs on one host within one second are two runs
// (the flake of TestRotationTwoSites: runs keyed by host and time to the
// second collapsed into one), one run merged twice (the dock's own record,
// then the disk's history file; a history read again) is recorded once,
// and records written before run IDs are still read and deduplicated.
func TestRunIdentity(t *testing.T) {
	start := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	ok := func(b Backup) Backup { b.Outcome = OutcomeOK; return b }
	r1 := ok(NewRun("nas", start.Add(100*time.Millisecond)))
	r2 := NewRun("nas", start.Add(700*time.Millisecond)) // same second
	r2.Outcome = OutcomeInterrupted
	r3 := ok(NewRun("nas", start.Add(900*time.Millisecond)))
	if r1.ID == "" || r1.ID == r2.ID || r2.ID == r3.ID {
		t.Errorf("run IDs: %q %q %q", r1.ID, r2.ID, r3.ID)
	}

	// The machine that ran them records each as it ends; the disk's
	// history (r1 and r3: an interrupted run is not on the disk) is merged
	// at the next docking, and again at the one after.
	var r Record
	r.AddBackups(r1)
	r.AddBackups(r2)
	r.AddBackups(r3)
	r.AddBackups(r1, r3)
	r.AddBackups(r1, r3)
	if got := outcomesOf(r.Backups); got != "ok interrupted ok" {
		t.Errorf("runs after recording and merging: %s, want ok interrupted ok: %+v", got, r.Backups)
	}
	if lb := r.LastBackup(); lb == nil || lb.ID != r3.ID {
		t.Errorf("the last run is %+v, want the one that started last", lb)
	}

	// Another site with an empty record merges the history file, as JSON.
	var c Record
	c.AddBackups(viaJSON(t, r1), viaJSON(t, r3))
	c.AddBackups(viaJSON(t, r1), viaJSON(t, r3))
	if len(c.Backups) != 2 || c.Backups[0].ID != r1.ID || c.Backups[1].ID != r3.ID {
		t.Errorf("the other site's runs: %+v", c.Backups)
	}

	// Two sites whose hosts have one name (both "nas") back up in the same
	// second: two runs.
	var s Record
	s.AddBackups(ok(NewRun("nas", start)), ok(NewRun("nas", start)))
	if len(s.Backups) != 2 {
		t.Errorf("same host name, same instant, two sites: %+v", s.Backups)
	}

	// Before run IDs: runs are told apart by host and time. Two lines of
	// an old history file in one second on one host are two runs; merging
	// that file again adds nothing; a copy of a new run an older luksdock
	// stripped of its ID is the same run.
	oldA := Backup{Host: "nas", Time: start, Outcome: OutcomeOK, Bytes: 1}
	oldB := Backup{Host: "nas", Time: start, Outcome: OutcomeOK, Bytes: 2}
	var o Record
	o.AddBackups(oldA, oldB)
	o.AddBackups(oldA, oldB)
	o.AddBackups(oldA)
	stripped := r1
	stripped.ID = ""
	o.AddBackups(r1)
	o.AddBackups(stripped)
	if len(o.Backups) != 3 {
		t.Errorf("old runs: %+v, want 3 (two old lines in one second, and r1 once)", o.Backups)
	}
	var old Record
	if err := json.Unmarshal([]byte(`{"luks_uuid":"u","label":"b","prepared":"2026-11-23T10:00:00Z","luksdock_version":"","recovery_key":false,"last_seen":"2026-11-23T10:00:00Z",`+
		`"backups":[{"host":"nas","time":"2026-12-07T10:00:00Z","outcome":"ok"}]}`), &old); err != nil {
		t.Fatal(err)
	}
	old.AddBackups(Backup{Host: "nas", Time: start, Outcome: OutcomeOK}, r1)
	if len(old.Backups) != 2 {
		t.Errorf("an old record merged with its own run and a new one: %+v", old.Backups)
	}
}

func viaJSON(t *testing.T, b Backup) Backup {
	t.Helper()
	raw, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var out Backup
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func outcomesOf(runs []Backup) string {
	var o []string
	for _, b := range runs {
		o = append(o, b.Outcome)
	}
	return strings.Join(o, " ")
}
