package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// testPassphrase is what a person would type; the passphrase file holds it
// followed by a newline (luksdock takes the first line without its ending).
const testPassphrase = "correct horse battery staple"

// Small PBKDF costs: a default argon2id keyslot needs ~2 GiB of guest RAM
// and ~18 s to open under TCG.
var smallPBKDF = []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

var (
	guestOnce sync.Once
	guestVal  *Guest
	guestErr  error

	watchOnce sync.Once
	watchPath string
	watchErr  error
)

// skipUnlessVM skips the test, loudly and with the reason, only when VM
// tests are disabled (LUKSDOCK_E2E=0, -short) or QEMU is not installed at
// all. Anything else that stops the guest — not root, a QEMU that does not
// start with TCG, no kernel, a module or guest tool missing, cpio or cache
// I/O — is a harness error and fails the test: a broken harness must not
// report "ok luksdock/e2e". It returns the prepared guest.
func skipUnlessVM(t *testing.T) *Guest {
	t.Helper()
	if os.Getenv("LUKSDOCK_E2E") == "0" {
		t.Skip("SKIPPED: VM end-to-end tests disabled by LUKSDOCK_E2E=0")
	}
	if testing.Short() {
		t.Skip("SKIPPED: VM end-to-end tests do not run with -short (each boots a QEMU guest)")
	}
	if _, err := QEMUBinary(); err != nil {
		t.Skipf("SKIPPED: %v (install with e2e/install-deps.sh)", err)
	}
	guestOnce.Do(func() {
		if os.Geteuid() != 0 {
			guestErr = fmt.Errorf("%w: must run as root (reads /boot and /lib/modules, makes block devices on the host)", ErrNoQEMU)
			return
		}
		if guestErr = probeQEMU(); guestErr != nil {
			return
		}
		guestVal, guestErr = PrepareGuest()
	})
	if guestErr != nil {
		t.Fatalf("QEMU is installed but the guest cannot be prepared: %v (install with e2e/install-deps.sh, or LUKSDOCK_E2E=0 to skip the VM tests)", guestErr)
	}
	return guestVal
}

// probeQEMU checks that qemu-system-x86_64 starts with TCG.
func probeQEMU() error {
	q, err := QEMUBinary()
	if err != nil {
		return err
	}
	cmd := exec.Command(q, "-accel", "tcg", "-machine", "none", "-nodefaults", "-display", "none", "-no-user-config", "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s -accel tcg does not start: %v: %s", ErrNoQEMU, q, err, bytes.TrimSpace(out))
	}
	return nil
}

// repoRoot is the module root (the directory holding go.mod above e2e/).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// luksdockBinary is $LUKSDOCK_E2E_BIN, or the luksdock binary testkit
// builds once per test run, statically (CGO_ENABLED=0) so it runs in the
// guest. A build failure fails the test: the VM tests exist to test that
// binary.
func luksdockBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("LUKSDOCK_E2E_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	return testkit.Luksdock(t)
}

// guestwatchBinary builds the guest helper e2e/guestwatch once per test run
// (statically, like luksdock): it samples /proc and watches directories in
// the guest, and checks that a device can be opened O_EXCL. Install it with
// Config.Programs{"guestwatch": path}.
func guestwatchBinary(t *testing.T) string {
	t.Helper()
	watchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "luksdock-e2e-guestwatch-")
		if err != nil {
			watchErr = err
			return
		}
		watchPath = filepath.Join(dir, "guestwatch")
		cmd := exec.Command("go", "build", "-o", watchPath, "./e2e/guestwatch")
		cmd.Dir = repoRoot(t)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			watchErr = fmt.Errorf("CGO_ENABLED=0 go build -o %s ./e2e/guestwatch failed: %v\n%s", watchPath, err, out)
		}
	})
	if watchErr != nil {
		t.Fatalf("cannot build the guest helper: %v", watchErr)
	}
	return watchPath
}

// newImage creates a sparse image file of size bytes in dir.
func newImage(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	return testkit.SparseFile(t, filepath.Join(dir, name), size)
}

// scratchDir returns a short temporary directory (unix socket paths are
// limited to 108 bytes; t.TempDir() paths can exceed that).
func scratchDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "lde2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("LUKSDOCK_E2E_KEEP") != "" {
			t.Logf("kept scratch dir %s (LUKSDOCK_E2E_KEEP)", d)
			return
		}
		os.RemoveAll(d)
	})
	return d
}

// boot starts a guest for t with the luksdock binary and the passphrase
// file /e2e/pass. At cleanup the VM is killed, a required kernel module
// that failed to load fails t, and the guest's full output is logged when
// t failed (it is streamed with LUKSDOCK_E2E_VERBOSE=1).
func boot(t *testing.T, dir string, cfg Config) *VM {
	t.Helper()
	if cfg.Files == nil {
		cfg.Files = map[string][]byte{}
	}
	cfg.Files["pass"] = []byte(testPassphrase + "\n")
	if os.Getenv("LUKSDOCK_E2E_VERBOSE") != "" {
		start := time.Now()
		cfg.Log = func(s string) { t.Logf("%7.3f %s", time.Since(start).Seconds(), s) }
	}
	vm, err := Start(dir, cfg)
	if err != nil {
		t.Fatalf("starting the guest: %v", err)
	}
	t.Cleanup(func() {
		vm.Kill()
		for _, l := range vm.Lines() {
			if strings.HasPrefix(l.Text, "@@E2E init-error") {
				t.Errorf("guest init: %s", l.Text)
			}
		}
		if t.Failed() {
			t.Logf("guest transcript (seconds since QEMU start; c=console ttyS0, d=data ttyS1):\n%s", vm.Transcript())
		}
	})
	return vm
}

// mustMark waits for a scenario marker or fails the test.
func mustMark(t *testing.T, vm *VM, name string, timeout time.Duration) []string {
	t.Helper()
	args, _, err := vm.WaitMark(name, timeout)
	if err != nil {
		t.Fatalf("waiting for guest marker %q: %v%s", name, err, guestFailures(vm))
	}
	return args
}

// guestFailures returns the scenario's "FAIL:" lines, for error messages.
func guestFailures(vm *VM) string {
	var fails []string
	for _, l := range vm.Lines() {
		if l.Chan == "data" && strings.HasPrefix(l.Text, "FAIL:") {
			fails = append(fails, l.Text)
		}
	}
	if len(fails) == 0 {
		return ""
	}
	return "; the guest said: " + strings.Join(fails, "; ")
}

// mustExit waits for the scenario to end and requires exit status 0.
func mustExit(t *testing.T, vm *VM, timeout time.Duration) {
	t.Helper()
	rc, err := vm.Wait(timeout)
	if err != nil {
		t.Fatalf("guest did not finish: %v", err)
	}
	if rc != 0 {
		t.Fatalf("guest scenario exited %d%s", rc, guestFailures(vm))
	}
}

// runHost runs a host command (killed after 5 minutes), returning its
// combined output and exit code.
func runHost(t *testing.T, stdin string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// The host's own inventory (/var/lib/luksdock) is not the tests' to write.
	cmd.Env = append(os.Environ(), "LUKSDOCK_INVENTORY="+filepath.Join(t.TempDir(), "inventory.json"))
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// listEntry is the part of `luksdock list --json` the tests check.
type listEntry struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Transport string `json:"transport"`
	Vendor    string `json:"vendor"`
	Model     string `json:"model"`
	Serial    string `json:"serial"`
	USB       *struct {
		Serial string `json:"serial"`
	} `json:"usb"`
	Verdict struct {
		Refused []string `json:"refused"`
	} `json:"verdict"`
	OK      bool   `json:"ok"`
	Status  string `json:"status"`
	Arrival *struct {
		Lines []json.RawMessage `json:"lines"`
	} `json:"arrival"`
}

// event is one line of `luksdock prepare --json`.
type event struct {
	Kind    string `json:"event"`
	Step    string `json:"step"`
	Message string `json:"message"`
	State   string `json:"state"`
	Result  *struct {
		FSLabel       string `json:"fs_label"`
		FsckClean     bool   `json:"fsck_clean"`
		Engine        string `json:"engine"`
		Table         string `json:"table"`
		Owner         string `json:"owner"`
		SectorViews   []int  `json:"sector_views"`
		LogicalSector int    `json:"logical_sector"`
		LUKS          struct {
			UUID string `json:"uuid"`
		} `json:"luks"`
	} `json:"result"`
	// Steps: the plan event's steps.
	Steps []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	} `json:"steps"`
}

// stepTitle is the title the plan event in evs gives step (its ID when
// there is no plan event): what messages name it by.
func stepTitle(evs []event, step string) string {
	for _, e := range evs {
		for _, s := range e.Steps {
			if s.ID == step {
				return s.Title
			}
		}
	}
	return step
}

// parseEvents decodes JSON event lines, ignoring lines that are not JSON.
func parseEvents(b []byte) []event {
	var evs []event
	for _, l := range bytes.Split(b, []byte("\n")) {
		var e event
		if json.Unmarshal(bytes.TrimSpace(l), &e) == nil && e.Kind != "" {
			evs = append(evs, e)
		}
	}
	return evs
}

var floatRe = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

// seconds parses a guest timestamp word ("12.345678").
func seconds(t *testing.T, s string) float64 {
	t.Helper()
	if !floatRe.MatchString(s) {
		t.Fatalf("not a guest timestamp: %q", s)
	}
	var f float64
	fmt.Sscanf(s, "%g", &f)
	return f
}

// statSize returns the size of a host file in bytes.
func statSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
