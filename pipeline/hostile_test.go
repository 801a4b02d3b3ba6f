package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"luksdock/internal/testkit"
	"luksdock/luks"
)

// seam replaces the unlocks keyCheck compares for one test.
func seam(t *testing.T, own func(luks.Device, []byte) (luks.Info, []byte, error), cs func(context.Context, luks.Device, []byte) ([]byte, error)) {
	t.Helper()
	o, c := ownUnsealKey, cryptsetupDumpKey
	if own != nil {
		ownUnsealKey = own
	}
	if cs != nil {
		cryptsetupDumpKey = cs
	}
	t.Cleanup(func() { ownUnsealKey, cryptsetupDumpKey = o, c })
}

// TestKeyCheckHeaderBeforeAnyKDF: a hostile header is refused before
// either key derivation starts: cryptsetup is never started beside
// luksdock's own refusal (the audit saw it run 29 s at 4.2 GB).
func TestKeyCheckHeaderBeforeAnyKDF(t *testing.T) {
	img := keyCheckImage(t, bytes.Repeat([]byte{1}, 64))
	testkit.EditLUKS2(t, img, 0, func(m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "kdf")["memory"] = 4<<20 + 1 })
	var started atomic.Int32
	seam(t, func(d luks.Device, s []byte) (luks.Info, []byte, error) {
		started.Add(1)
		return luks.Info{}, nil, errors.New("own unseal started")
	}, func(ctx context.Context, d luks.Device, s []byte) ([]byte, error) {
		started.Add(1)
		return nil, errors.New("cryptsetup started")
	})
	_, _, _, err := checkKeys(context.Background(), luks.Device{Path: img}, [][]byte{[]byte("first")}, nil)
	var he *luks.HeaderError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "4194305 KiB") {
		t.Errorf("got %v, want the header refused with the numbers", err)
	}
	if n := started.Load(); n != 0 {
		t.Errorf("%d key derivation(s) started for a header that was refused", n)
	}
}

// TestKeyCheckComparesKeys: a standalone verify (no generated key to
// compare with) must still find that luksdock's own unseal and cryptsetup
// recovered different volume keys, whichever side is wrong.
func TestKeyCheckComparesKeys(t *testing.T) {
	img := keyCheckImage(t, bytes.Repeat([]byte{2}, 64))
	part := luks.Device{Path: img}
	flip := func(k []byte) []byte { k = bytes.Clone(k); k[17] ^= 0x40; return k }
	for _, side := range []string{"own", "cryptsetup"} {
		t.Run(side, func(t *testing.T) {
			if side == "own" {
				seam(t, func(d luks.Device, s []byte) (luks.Info, []byte, error) {
					i, k, err := luks.UnsealKey(d, s)
					return i, flip(k), err
				}, nil)
			} else {
				seam(t, nil, func(ctx context.Context, d luks.Device, s []byte) ([]byte, error) {
					k, err := luks.DumpVolumeKeyDevice(ctx, d, s)
					return flip(k), err
				})
			}
			_, key, _, err := checkKeys(context.Background(), part, [][]byte{[]byte("first")}, nil)
			if err == nil || !strings.Contains(err.Error(), "recovered different volume keys") || key != nil {
				t.Errorf("one side recovers another key: %v (key returned: %v)", err, key != nil)
			}
		})
	}
}

// TestKeyCheckCryptsetupDecides: af.stripes other than 4000 makes
// luksdock's own code find no keyslot while cryptsetup (which reads 4000)
// opens the disk: that is reported as a header difference, never as a
// wrong passphrase; a passphrase cryptsetup refuses too is one.
func TestKeyCheckCryptsetupDecides(t *testing.T) {
	img := keyCheckImage(t, bytes.Repeat([]byte{3}, 64))
	testkit.EditLUKS2(t, img, 0, func(m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "af")["stripes"] = 2000 })
	part := luks.Device{Path: img}
	_, _, _, err := checkKeys(context.Background(), part, [][]byte{[]byte("first")}, nil)
	if err == nil || errors.Is(err, luks.ErrWrongPassphrase) || !strings.Contains(err.Error(), "cryptsetup unlocks it") || !strings.Contains(err.Error(), "af.stripes 2000") {
		t.Errorf("the right passphrase: %v; want not a wrong passphrase, the difference named", err)
	}
	_, _, _, err = checkKeys(context.Background(), part, [][]byte{[]byte("wrong")}, nil)
	if !errors.Is(err, luks.ErrWrongPassphrase) {
		t.Errorf("a passphrase cryptsetup refuses too: %v; want a wrong passphrase", err)
	}
}

// TestKeyCheckDeadline: each unlock is bounded by the --max-unlock-time
// deadline even when it runs longer than estimated.
func TestKeyCheckDeadline(t *testing.T) {
	img := keyCheckImage(t, bytes.Repeat([]byte{4}, 64))
	part := luks.Device{Path: img}
	ctx := WithMaxUnlockTime(context.Background(), 3*time.Second) // the small keyslot is estimated well under it, even under -race
	ownUnsealNeverEnds(t)
	t0 := time.Now()
	_, _, _, err := checkKeys(ctx, part, [][]byte{[]byte("first")}, nil)
	if err == nil || !strings.Contains(err.Error(), "luksdock's own key derivation ran past its deadline") || time.Since(t0) > 20*time.Second {
		t.Errorf("own unseal that never ends: %v after %s", err, time.Since(t0))
	}
	seam(t, luks.UnsealKey, func(ctx context.Context, d luks.Device, s []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	t0 = time.Now()
	_, _, _, err = checkKeys(ctx, part, [][]byte{[]byte("first")}, nil)
	if err == nil || !strings.Contains(err.Error(), "cryptsetup ran past its deadline") || time.Since(t0) > 20*time.Second {
		t.Errorf("cryptsetup that never ends: %v after %s", err, time.Since(t0))
	}
}

// TestParallelFits: two key derivations run side by side only when memory
// holds both (plus 512 MiB) and there are two CPUs.
func TestParallelFits(t *testing.T) {
	for _, c := range []struct {
		cpus      int
		mem, free int64
		want      bool
	}{
		{2, 1 << 20, 3 << 20, true},
		{1, 1 << 20, 30 << 20, false},
		{2, 4 << 20, 8 << 20, false}, // 4 GiB twice does not fit in 8 GiB + 512 MiB
		{2, 4 << 20, 8<<20 + 512<<10, true},
		{4, 4 << 20, 6 << 20, false},
	} {
		if got := parallelFits(c.cpus, c.mem, c.free); got != c.want {
			t.Errorf("%d CPUs, %d KiB each, %d KiB free: side by side %v, want %v", c.cpus, c.mem, c.free, got, c.want)
		}
	}
}

// TestKeyCheckSideBySideOnlyWhenMemoryHoldsBoth: checkKeys runs luksdock's
// own key derivation and cryptsetup's side by side only when the free
// memory holds both (parallelFits); without it, one after the other, so a
// 4 GiB keyslot is never derived twice at once on a machine that cannot
// hold 8 GiB. The two unlocks are the real ones, each held 300 ms so that
// running side by side cannot go unseen.
func TestKeyCheckSideBySideOnlyWhenMemoryHoldsBoth(t *testing.T) {
	img := keyCheckImage(t, bytes.Repeat([]byte{5}, 64))
	part := luks.Device{Path: img}
	var running, overlapped atomic.Int32
	held := func() {
		if running.Add(1) > 1 {
			overlapped.Store(1)
		}
		time.Sleep(300 * time.Millisecond)
		if running.Load() > 1 {
			overlapped.Store(1)
		}
		running.Add(-1)
	}
	seam(t, func(d luks.Device, s []byte) (luks.Info, []byte, error) {
		held()
		return luks.UnsealKey(d, s)
	}, func(ctx context.Context, d luks.Device, s []byte) ([]byte, error) {
		held()
		return luks.DumpVolumeKeyDevice(ctx, d, s)
	})
	free := freeMemoryKiB
	t.Cleanup(func() { freeMemoryKiB = free })
	for _, c := range []struct {
		name    string
		freeKiB int64
		side    bool
	}{
		{"memory for one", 8192 + 1024, false}, // the keyslot's 8 MiB once, not twice plus 512 MiB
		{"memory for both", 64 << 20, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.side && runtime.NumCPU() < 2 {
				t.Logf("one CPU: side by side is never chosen; only the other case proves the rule here")
				return
			}
			freeMemoryKiB = func() (int64, bool) { return c.freeKiB, true }
			overlapped.Store(0)
			_, key, summary, err := checkKeys(context.Background(), part, [][]byte{[]byte("first")}, nil)
			clear(key)
			if err != nil {
				t.Fatal(err)
			}
			if got := overlapped.Load() == 1; got != c.side {
				t.Errorf("%d KiB free: the two key derivations ran side by side: %v, want %v (%s)", c.freeKiB, got, c.side, summary)
			}
			want := map[bool]string{true: "side by side", false: "one after the other"}[c.side]
			if !strings.Contains(summary, want) {
				t.Errorf("summary %q, want %q", summary, want)
			}
		})
	}
}

// TestKeyCheckDeadlineFromEstimate: for a disk someone handed over (no key
// of this run to compare with), a key derivation is stopped at ten times
// this machine's measured estimate (at least minHandedOverDeadline), not
// only at --max-unlock-time: with the default two minutes and an own
// unseal that never ends, the check ends at the floor (here 2 s) or
// ten times the estimate, whichever is later.
func TestKeyCheckDeadlineFromEstimate(t *testing.T) {
	img := keyCheckImage(t, bytes.Repeat([]byte{6}, 64))
	part := luks.Device{Path: img}
	floor := minHandedOverDeadline
	t.Cleanup(func() { minHandedOverDeadline = floor })
	minHandedOverDeadline = 2 * time.Second // the small keyslot's 10× estimate is under it on an idle machine
	ownUnsealNeverEnds(t)
	t0 := time.Now()
	_, _, _, err := checkKeys(context.Background(), part, [][]byte{[]byte("first")}, nil)
	took := time.Since(t0)
	// The deadline is the floor, or ten times the estimate where a loaded
	// machine measured itself slow (2.1 s once in CI): never the default
	// two minutes.
	m := regexp.MustCompile(`luksdock's own key derivation ran past its deadline of ([0-9.]+[a-zµ]+)`).FindStringSubmatch(fmt.Sprint(err))
	var deadline time.Duration
	if m != nil {
		deadline, _ = time.ParseDuration(m[1])
	}
	if err == nil || m == nil || deadline < 2*time.Second || deadline > 10*time.Second || took > 15*time.Second {
		t.Errorf("own unseal that never ends, default --max-unlock-time: %v after %s; want it stopped at a deadline of 2-10 s", err, took.Round(time.Millisecond))
	}
}

// ownUnsealNeverEnds makes luksdock's own unseal block until the test
// ends (then it fails), as a key derivation a header makes endless would.
func ownUnsealNeverEnds(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	seam(t, func(d luks.Device, s []byte) (luks.Info, []byte, error) {
		<-block
		return luks.Info{}, nil, errors.New("released")
	}, nil)
}
