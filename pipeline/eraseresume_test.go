package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/luks"
	"luksdock/recovery"
)

// TestEraseResumeKeyslots: a prepare --erase --recovery-key stopped during
// the erase, then run again with a new recovery key, continues the erase on
// the first run's LUKS header. The disk must end with exactly the keyslots
// the result names (Result.LUKS.Keyslots, what the Done screen and --json
// show): the passphrase's and this run's recovery key's, as stock
// cryptsetup reads the header; the first run's recovery key opens nothing
// and its keyslot is in Result.RemovedKeyslots.
func TestEraseResumeKeyslots(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk")
	testkit.NeedFUSE(t)
	t.Setenv("LUKSDOCK_STATE_DIR", filepath.Join(t.TempDir(), "state"))
	img := filepath.Join(t.TempDir(), "e.img")
	pass := []byte("a passphrase for the erase")
	var rks [2]string
	for i := range rks {
		k, err := recovery.Generate()
		if err != nil {
			t.Fatal(err)
		}
		rks[i] = string(k)
	}
	rk1, rk2 := rks[0], rks[1]
	keyDir := t.TempDir()
	plan := func(rk, file string) (*Plan, *Target) {
		t.Helper()
		tg, err := ImageTarget(img, 96<<20)
		if err != nil {
			t.Fatal(err)
		}
		p, err := NewPlan(tg, Options{Label: "e01", Engine: EngineUserspace, PBKDF: luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000},
			Erase: true, RecoveryKey: []byte(rk), RecoveryKeyFile: filepath.Join(keyDir, file)})
		if err != nil {
			t.Fatal(err)
		}
		return p, tg
	}

	// The first run, stopped at the erase's first progress event.
	p, tg := plan(rk1, "rk1")
	ctx, cancel := context.WithCancel(context.Background())
	_, err := p.Run(ctx, tg.ConfirmWord(), pass, func(e Event) {
		if e.Kind == EventProgress && e.Step == StepErase {
			cancel()
		}
	})
	cancel()
	if again, _ := ImageTarget(img, 0); err == nil || SavedErase(again) == nil {
		t.Fatalf("the first run was not stopped in its erase with its position saved: %v", err)
	}
	part, ok := testkit.Partition1(t, img)
	if !ok {
		t.Fatal("no partition after the first run")
	}
	// The first run's recovery key keyslot, found by cryptsetup.
	first := openedSlot(t, part, rk1)
	if first < 0 {
		t.Fatal("the first run's recovery key opens no keyslot after the first run: the test proves nothing")
	}

	// The same command again, with a new recovery key: it continues.
	p, tg = plan(rk2, "rk2")
	if p.Resume == nil {
		t.Fatal("the second plan does not continue the interrupted erase")
	}
	res, err := p.Run(context.Background(), tg.ConfirmWord(), pass, nil)
	if err != nil {
		t.Fatalf("the resumed run: %v", err)
	}

	// What the header holds, read by cryptsetup.
	got := cryptsetupKeyslots(t, part)
	named := slices.Clone(res.LUKS.Keyslots)
	sort.Ints(named)
	if fmt.Sprint(got) != fmt.Sprint(named) {
		t.Errorf("cryptsetup reads keyslots %v; the result names %v", got, named)
	}
	if len(got) != 2 || !res.RecoveryKey {
		t.Errorf("keyslots %v (recovery key in the result: %v): want the passphrase's and this run's recovery key's", got, res.RecoveryKey)
	}
	if s := openedSlot(t, part, rk1); s >= 0 {
		t.Errorf("the first run's recovery key still opens keyslot %d", s)
	}
	ps, ns := openedSlot(t, part, string(pass)), openedSlot(t, part, rk2)
	if ps < 0 || ns < 0 || ps == ns || !slices.Contains(got, ps) || !slices.Contains(got, ns) {
		t.Errorf("the passphrase opens keyslot %d, this run's recovery key %d; the header has %v", ps, ns, got)
	}
	if !slices.Contains(res.RemovedKeyslots, first) {
		t.Errorf("the result's removed keyslots %v do not name the first run's recovery keyslot %d", res.RemovedKeyslots, first)
	}
	t.Logf("first run: recovery keyslot %d; after the resume: keyslots %v (passphrase %d, recovery key %d), removed %v", first, got, ps, ns, res.RemovedKeyslots)
}

// openedSlot is the keyslot cryptsetup opens with secret (typed at its
// prompt) in a copy of the partition's header, or -1.
func openedSlot(t *testing.T, part testkit.Device, secret string) int {
	t.Helper()
	c := exec.Command("cryptsetup", "open", "--test-passphrase", "-v", testkit.HeaderCopy(t, part))
	c.Stdin = strings.NewReader(secret + "\n")
	out, err := c.CombinedOutput()
	if err != nil {
		return -1
	}
	m := regexp.MustCompile(`Key slot (\d+) unlocked`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("cryptsetup opened but named no keyslot: %s", out)
	}
	var n int
	fmt.Sscan(string(m[1]), &n)
	return n
}

// cryptsetupKeyslots is the sorted keyslot numbers of the header, from
// cryptsetup luksDump --dump-json-metadata.
func cryptsetupKeyslots(t *testing.T, part testkit.Device) []int {
	t.Helper()
	out, err := exec.Command("cryptsetup", "luksDump", "--dump-json-metadata", testkit.HeaderCopy(t, part)).Output()
	if err != nil {
		t.Fatalf("cryptsetup luksDump: %v", err)
	}
	var m struct {
		Keyslots map[string]json.RawMessage `json:"keyslots"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	var s []int
	for k := range m.Keyslots {
		var n int
		fmt.Sscan(k, &n)
		s = append(s, n)
	}
	sort.Ints(s)
	return s
}
