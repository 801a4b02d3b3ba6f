package luks

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// hostileCases edit a cryptsetup-made LUKS2 header (argon2id keyslot 0,
// pbkdf2 digest 0) into one a damaged disk or an attacker hands over; each
// must be refused by InspectHeader with the numbers, before any key
// derivation runs.
var hostileCases = []struct {
	name string
	edit func(t testing.TB, meta map[string]any)
	want string
}{
	{"argon2-time-2^31", func(t testing.TB, m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "kdf")["time"] = 1 << 31 },
		"keyslot 0 asks for 2147483648 argon2 passes (tools write 1 to 16777216)"},
	// Argon2's least memory (8 KiB, one lane): 256 GiB of passes in all,
	// at the work bound, not over it; only the bound on passes refuses it
	// (2^25 passes take minutes, whatever their memory).
	{"argon2-time-2^25-least-memory", func(t testing.TB, m map[string]any) {
		kdf := testkit.Obj(t, m, "keyslots", "0", "kdf")
		kdf["time"], kdf["memory"], kdf["cpus"] = 1<<25, 8, 1
	}, "keyslot 0 asks for 33554432 argon2 passes (tools write 1 to 16777216)"},
	{"argon2-memory-4GiB+1KiB", func(t testing.TB, m map[string]any) {
		testkit.Obj(t, m, "keyslots", "0", "kdf")["memory"] = 4<<20 + 1
	}, "keyslot 0 asks for 4194305 KiB of argon2 memory"},
	{"argon2-work", func(t testing.TB, m map[string]any) {
		kdf := testkit.Obj(t, m, "keyslots", "0", "kdf")
		kdf["memory"], kdf["time"] = 4<<20, 1000
	}, "1000 argon2 passes over 4194304 KiB"},
	{"pbkdf2-iterations-2^32-1", func(t testing.TB, m map[string]any) {
		kdf := testkit.Obj(t, m, "keyslots", "0", "kdf")
		salt := kdf["salt"]
		testkit.Obj(t, m, "keyslots", "0")["kdf"] = map[string]any{"type": "pbkdf2", "hash": "sha256", "iterations": 1<<32 - 1, "salt": salt}
	}, "keyslot 0 asks for 4294967295 PBKDF2 iterations"},
	{"digest-iterations-2^31", func(t testing.TB, m map[string]any) { testkit.Obj(t, m, "digests", "0")["iterations"] = 1 << 31 },
		"digest 0 asks for 2147483648 PBKDF2 iterations"},
	{"area-over-json", func(t testing.TB, m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "area")["offset"] = "8192" },
		"keyslot 0's area [8192, 266240) overlaps the JSON metadata area [0, 32768)"},
	{"area-over-data", func(t testing.TB, m map[string]any) {
		testkit.Obj(t, m, "keyslots", "0", "area")["offset"] = "16773120"
	}, "overlaps the data segment at 16777216"},
}

func hostileImage(t *testing.T) string {
	return testkit.LUKSImage(t, "pw", "--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "8192", "--pbkdf-force-iterations", "4")
}

// TestInspectHeaderRefusesHostile: every hostile header is refused, with
// the numbers, in milliseconds and without the memory it asks for; the
// header it was made from passes with no difference, and the edit is one
// cryptsetup reads (the checksums were recomputed, not left broken).
func TestInspectHeaderRefusesHostile(t *testing.T) {
	orig := hostileImage(t)
	if rep, err := InspectHeaderDevice(Device{Path: orig}); err != nil || len(rep.Differences) > 0 || len(rep.Keyslots) != 1 || len(rep.Digests) != 1 {
		t.Fatalf("control: the cryptsetup-made header: %+v, %v", rep, err)
	}
	if _, err := testkit.Cmd("pw", nil, "cryptsetup", "open", "--test-passphrase", "--key-file=-", orig); err != nil {
		t.Fatalf("control: %v", err)
	}
	for _, c := range hostileCases {
		t.Run(c.name, func(t *testing.T) {
			img := hostileImage(t)
			testkit.EditLUKS2(t, img, 0, func(m map[string]any) { c.edit(t, m) })
			if !strings.HasPrefix(c.name, "area") {
				// cryptsetup accepts the metadata: only its cost is hostile
				if out, err := testkit.Cmd("", nil, "cryptsetup", "luksDump", img); err != nil {
					t.Fatalf("cryptsetup does not read the edited header: %v\n%s", err, out)
				}
			}
			var before, after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			t0 := time.Now()
			_, err := InspectHeaderDevice(Device{Path: img})
			// Unseal must refuse as fast; were it to run the key
			// derivation (hours), the case fails after 20 s.
			done := make(chan error, 1)
			go func() { _, key, err := UnsealKey(Device{Path: img}, []byte("pw")); clear(key); done <- err }()
			var uerr error
			select {
			case uerr = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("UnsealKey still runs after 20 s: it started the key derivation the header asks for")
			}
			took := time.Since(t0)
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			var he *HeaderError
			for _, e := range []error{err, uerr} {
				if !errors.As(e, &he) || !strings.Contains(e.Error(), c.want) || !strings.Contains(e.Error(), "not a disk luksdock or cryptsetup would make") {
					t.Errorf("got %v, want a HeaderError saying %q", e, c.want)
				}
			}
			if took > 5*time.Second {
				t.Errorf("the refusal took %s: a key derivation ran", took)
			}
			if grew := (after.Maxrss - before.Maxrss) << 10; grew > 64<<20 {
				t.Errorf("the peak RSS grew by %d MiB: the refusal allocated what the header asks for", grew>>20)
			}
			t.Logf("refused in %s: %v", took.Round(time.Millisecond), err)
		})
	}
}

// TestInspectHeaderAcceptsLittleMemory: what cryptsetup itself writes is
// never refused. With its least argon2 memory (32 KiB) its benchmark
// raises the passes to fill the time: 168,030 on this project's machine,
// which the first bound on passes (65,536) refused as hostile.
func TestInspectHeaderAcceptsLittleMemory(t *testing.T) {
	img := testkit.LUKSImage(t, "pw", "--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-memory", "32", "--pbkdf-parallel", "1", "--iter-time", "2000")
	rep, err := InspectHeaderDevice(Device{Path: img})
	if err != nil || len(rep.Keyslots) != 1 {
		t.Fatalf("a header cryptsetup wrote with --pbkdf-memory 32: %+v, %v", rep, err)
	}
	t.Logf("cryptsetup wrote %d passes over %d KiB; estimated here at %s", rep.Keyslots[0].Time, rep.Keyslots[0].MemoryKiB, rep.SlotEstimate(0).Round(time.Millisecond))
	if _, err := testkit.Cmd("pw", nil, "cryptsetup", "open", "--test-passphrase", "--key-file=-", img); err != nil {
		t.Fatalf("control: cryptsetup does not open its own header: %v", err)
	}
}

// TestInspectHeaderStripes: af.stripes other than 4000 is a difference
// (cryptsetup reads 4000 whatever the header says and opens the disk), not
// a refusal.
func TestInspectHeaderStripes(t *testing.T) {
	img := hostileImage(t)
	testkit.EditLUKS2(t, img, 0, func(m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "af")["stripes"] = 2000 })
	if _, err := testkit.Cmd("pw", nil, "cryptsetup", "open", "--test-passphrase", "--key-file=-", img); err != nil {
		t.Fatalf("cryptsetup no longer opens it (the premise of the case): %v", err)
	}
	rep, err := InspectHeaderDevice(Device{Path: img})
	if err != nil || len(rep.Differences) != 1 || !strings.Contains(rep.Differences[0], "af.stripes 2000") {
		t.Fatalf("%+v, %v: want one difference naming af.stripes 2000", rep, err)
	}
}

// TestAffordable: a keyslot this machine is estimated to need longer than
// the limit for is refused with the estimate; the estimate grows with the
// cost the header states.
func TestAffordable(t *testing.T) {
	img := hostileImage(t)
	rep, err := InspectHeaderDevice(Device{Path: img})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rep.Affordable(DefaultMaxUnlockTime); err != nil {
		t.Fatalf("the cryptsetup-made keyslot: %v", err)
	}
	small := rep.Keyslots[0].Estimate()
	big := rep.Keyslots[0]
	big.Time, big.MemoryKiB = 4, 4<<20
	if e := big.Estimate(); e < 100*small {
		t.Errorf("4 GiB t=4 estimated %s, 8 MiB t=4 %s: not proportional to the work", e, small)
	}
	rep.Keyslots[0] = big
	_, err = rep.Affordable(10 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "would take about") || !strings.Contains(err.Error(), "--max-unlock-time 10ms") {
		t.Fatalf("4 GiB t=4 with a 10 ms limit: %v", err)
	}
	t.Logf("%v", err)
}

// TestDumpVolumeKeyDeadline: a context deadline ends cryptsetup's key
// derivation (its process is gone at once), and a cryptsetup child dies
// with the process that started it.
func TestDumpVolumeKeyDeadline(t *testing.T) {
	img := hostileImage(t)
	// 2000 passes over 8 MiB: seconds to minutes; the deadline is 500 ms.
	testkit.EditLUKS2(t, img, 0, func(m map[string]any) { testkit.Obj(t, m, "keyslots", "0", "kdf")["time"] = 2000 })
	ctx, cancel := contextWithTimeout(500 * time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := DumpVolumeKey(ctx, img, []byte("pw"))
	took := time.Since(t0)
	if err == nil || took > 3*time.Second {
		t.Fatalf("DumpVolumeKey under a 500 ms deadline: %v after %s", err, took)
	}
	if out, _ := exec.Command("pgrep", "-f", "cryptsetup luksDump --batch-mode --dump-volume-key --key-file=- "+img).Output(); len(out) > 0 {
		t.Errorf("cryptsetup still runs after the deadline: pids %s", out)
	}
	t.Logf("stopped after %s: %v", took.Round(time.Millisecond), err)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// TestInspectHeaderLUKS1: a cryptsetup-made LUKS1 header passes; one whose
// keyslot or digest asks for 2^32-1 PBKDF2 iterations (LUKS1 has no
// checksum: the field is simply rewritten) is refused with the number.
func TestInspectHeaderLUKS1(t *testing.T) {
	img := testkit.LUKSImage(t, "pw", "--type", "luks1", "--pbkdf-force-iterations", "1000")
	if rep, err := InspectHeaderDevice(Device{Path: img}); err != nil || rep.Version != 1 || len(rep.Keyslots) != 1 || len(rep.Differences) != 0 {
		t.Fatalf("control: %+v, %v", rep, err)
	}
	for _, c := range []struct {
		at   int64
		want string
	}{
		{208 + 4, "keyslot 0 asks for 4294967295 PBKDF2 iterations"},
		{164, "the volume key digest asks for 4294967295 PBKDF2 iterations"},
	} {
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		var old [4]byte
		f.ReadAt(old[:], c.at)
		f.WriteAt([]byte{0xff, 0xff, 0xff, 0xff}, c.at)
		_, err = InspectHeaderDevice(Device{Path: img})
		var he *HeaderError
		if !errors.As(err, &he) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
		f.WriteAt(old[:], c.at)
		f.Close()
	}
}

// TestAffordableMemory: on a machine with 2 GiB of memory, a keyslot that
// asks for more than half of it (1.5 GiB: within what tools write) is
// refused before it runs, saying so; one that fits passes.
func TestAffordableMemory(t *testing.T) {
	ram := totalRAMKiB
	t.Cleanup(func() { totalRAMKiB = ram })
	totalRAMKiB = func() int64 { return 2 << 20 }
	c := KDFCost{What: "keyslot 0", Type: "argon2id", Time: 1, MemoryKiB: 1536 << 10, Threads: 1}
	rep := HeaderReport{Keyslots: []KDFCost{c}}
	_, err := rep.Affordable(time.Hour)
	if err == nil || !strings.Contains(err.Error(), "keyslot 0 asks for 1572864 KiB of memory for its key derivation, more than half of this machine's memory (1048576 KiB)") {
		t.Errorf("1.5 GiB on a 2 GiB machine: %v", err)
	}
	rep.Keyslots[0].MemoryKiB = 512 << 10
	if _, err := rep.Affordable(time.Hour); err != nil {
		t.Errorf("512 MiB on a 2 GiB machine: %v", err)
	}
}
