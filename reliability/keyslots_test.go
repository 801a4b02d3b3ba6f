package reliability

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/recovery"
)

// luksKeyslot is one keyslot of cryptsetup luksDump --dump-json-metadata.
type luksKeyslot struct {
	KDF struct {
		Type       string `json:"type"`
		Time       int    `json:"time"`
		Memory     int    `json:"memory"`
		CPUs       int    `json:"cpus"`
		Iterations int    `json:"iterations"`
	} `json:"kdf"`
}

// keyslots reads the keyslots of the LUKS2 header in hdr with stock
// cryptsetup (luksDump --dump-json-metadata).
func keyslots(t *testing.T, hdr string) map[int]luksKeyslot {
	t.Helper()
	out := mustRun(t, "cryptsetup", "luksDump", "--dump-json-metadata", hdr)
	var meta struct {
		Keyslots map[string]luksKeyslot `json:"keyslots"`
	}
	if err := json.Unmarshal([]byte(out), &meta); err != nil {
		t.Fatalf("luksDump --dump-json-metadata: %v\n%s", err, out)
	}
	m := map[int]luksKeyslot{}
	for k, v := range meta.Keyslots {
		n, err := strconv.Atoi(k)
		if err != nil {
			t.Fatalf("keyslot %q", k)
		}
		m[n] = v
	}
	return m
}

var unlockedRe = regexp.MustCompile(`Key slot (\d+) unlocked`)

// opensSlot asks stock cryptsetup (open --test-passphrase --verbose, the
// secret as a key file on standard input) which keyslot of hdr secret
// opens; -1 for none.
func opensSlot(t *testing.T, hdr, secret string) int {
	t.Helper()
	cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--verbose", "--key-file=-", hdr)
	cmd.Stdin = strings.NewReader(secret)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 { // no key available with this passphrase
			return -1
		}
		t.Fatalf("cryptsetup open --test-passphrase: %v\n%s", err, out)
	}
	m := unlockedRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("cryptsetup open --test-passphrase says no keyslot: %s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// recoveryKeyIn is the key a --recovery-key file holds (its last line).
func recoveryKeyIn(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	k := lines[len(lines)-1]
	if !recovery.Valid([]byte(k)) {
		t.Fatalf("%s holds no recovery key: %q", path, b)
	}
	return k
}

// TestResumeKeepsOnlyItsRecoveryKey (issue 20, item 1): `prepare --erase
// --recovery-key FILE1` is stopped with SIGINT in the erase; at that point
// the header has the passphrase's keyslot and FILE1's. The run is then
// continued: with a new recovery key (FILE2), or without one. The finished
// disk must have exactly the keyslots that run names (stock cryptsetup
// luksDump): the passphrase's and, when asked for, FILE2's; the first
// run's key (whose paper the wizard said to throw away) no longer opens it
// (cryptsetup open --test-passphrase), the passphrase and FILE2's key do.
// The recovery keyslot has the passphrase keyslot's key derivation cost
// (item 7).
func TestResumeKeepsOnlyItsRecoveryKey(t *testing.T) {
	requireEnv(t)
	for _, withNew := range []bool{true, false} {
		t.Run(map[bool]string{true: "new-recovery-key", false: "no-recovery-key"}[withNew], func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := sparseImage(t, dir, eraseImgSize)
			pass := passFile(t, []byte(testPass+"\n"))
			tmpdir := t.TempDir()
			rk1, rk2 := filepath.Join(dir, "first.recovery"), filepath.Join(dir, "second.recovery")
			d := drive(t, tmpdir, trigger{event: "progress", step: "erase", sig: syscall.SIGINT},
				prepareArgs(img, pass, "--erase", "--json", "--recovery-key", rk1)...)
			if !d.fired || d.code != 130 {
				t.Fatalf("SIGINT at the first erase progress event: fired %v, exit %d\n%s", d.fired, d.code, d.stderr)
			}
			part, ok := testkit.Partition1(t, img)
			if !ok {
				t.Fatal("no partition after the interrupted erase")
			}
			key1 := recoveryKeyIn(t, rk1)
			hdr := testkit.HeaderCopy(t, part)
			if ks := keyslots(t, hdr); len(ks) != 2 || opensSlot(t, hdr, key1) != 1 {
				t.Fatalf("setup: after the interrupted run the header has keyslots %v and the first key opens %d; want 0 and 1, and 1", ks, opensSlot(t, hdr, key1))
			}

			args := prepareArgs(img, pass, "--erase", "--json")
			if withNew {
				args = append(args, "--recovery-key", rk2)
			}
			r := luksdock(t, runOpts{tmpdir: tmpdir}, args...)
			if r.code != 0 {
				t.Fatalf("continued run: %s", r)
			}
			var steps []string
			for _, e := range parseEvents(t, r.stdout) {
				if e.Kind == "done" {
					steps = append(steps, e.Step)
					if e.Step == "resume" && !strings.Contains(e.Message, "removed keyslot(s) [1] of the interrupted run: its recovery key no longer opens the disk") {
						t.Errorf("the resume step does not say the first run's key was removed: %q", e.Message)
					}
				}
			}
			var result string
			for _, l := range strings.Split(r.stdout, "\n") {
				if strings.Contains(l, `"event":"result"`) {
					result = l
				}
			}
			if !strings.Contains(result, `"removed_keyslots":[1]`) || strings.Contains(result, `"recovery_key":true`) != withNew {
				t.Errorf("the result does not name the keyslots the disk ends with: %s", result)
			}
			if !slices.Contains(steps, "resume") {
				t.Fatalf("the run did not continue the erase (steps %v)", steps)
			}
			hdr = testkit.HeaderCopy(t, part)
			ks := keyslots(t, hdr)
			want := []int{0}
			if withNew {
				want = []int{0, 1}
			}
			var got []int
			for n := range ks {
				got = append(got, n)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("luksDump: keyslots %v, want %v", got, want)
			}
			if n := opensSlot(t, hdr, key1); n != -1 {
				t.Errorf("the interrupted run's recovery key still opens the disk (keyslot %d)", n)
			}
			if n := opensSlot(t, hdr, testPass); n != 0 {
				t.Errorf("the passphrase opens keyslot %d, want 0", n)
			}
			if withNew {
				key2 := recoveryKeyIn(t, rk2)
				if n := opensSlot(t, hdr, key2); n != 1 {
					t.Errorf("this run's recovery key opens keyslot %d, want 1", n)
				}
				if ks[1].KDF != ks[0].KDF {
					t.Errorf("recovery keyslot KDF %+v, passphrase keyslot %+v", ks[1].KDF, ks[0].KDF)
				}
			}
		})
	}
}

// TestRecoveryKeyslotSameKDF (issue 20, item 7): with a PBKDF cost that
// cryptsetup benchmarks (--iter-time: pbkdf2, and argon2id with a memory
// cap), the recovery key's keyslot must get exactly the cost luksFormat
// gave the passphrase's keyslot, not a second benchmark's (which, under
// another load, is a different and often weaker one): stock cryptsetup
// luksDump --dump-json-metadata shows the same kdf for keyslots 0 and 1,
// and each key opens its own keyslot.
func TestRecoveryKeyslotSameKDF(t *testing.T) {
	requireEnv(t)
	for name, kdf := range map[string][]string{
		"pbkdf2":   {"--pbkdf", "pbkdf2", "--iter-time", "20"},
		"argon2id": {"--pbkdf", "argon2id", "--pbkdf-memory", "16384", "--iter-time", "300"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := sparseImage(t, dir, imgSize)
			pass := passFile(t, []byte(testPass+"\n"))
			rk := filepath.Join(dir, "backups01.recovery")
			args := append([]string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(img),
				"--recovery-key", rk}, kdf...)
			r := luksdock(t, runOpts{}, args...)
			if r.code != 0 {
				t.Fatalf("prepare: %s", r)
			}
			part, ok := testkit.Partition1(t, img)
			if !ok {
				t.Fatal("no partition")
			}
			hdr := testkit.HeaderCopy(t, part)
			ks := keyslots(t, hdr)
			if len(ks) != 2 {
				t.Fatalf("luksDump: %d keyslots, want 2", len(ks))
			}
			if ks[0].KDF.Type != kdf[1] {
				t.Errorf("keyslot 0 has %s, asked for %s", ks[0].KDF.Type, kdf[1])
			}
			if ks[1].KDF != ks[0].KDF {
				t.Errorf("the recovery keyslot's KDF is %+v, the passphrase keyslot's %+v", ks[1].KDF, ks[0].KDF)
			}
			if n := opensSlot(t, hdr, testPass); n != 0 {
				t.Errorf("the passphrase opens keyslot %d", n)
			}
			if n := opensSlot(t, hdr, recoveryKeyIn(t, rk)); n != 1 {
				t.Errorf("the recovery key opens keyslot %d", n)
			}
			t.Logf("keyslot 0 %+v, keyslot 1 %+v", ks[0].KDF, ks[1].KDF)
		})
	}
}
