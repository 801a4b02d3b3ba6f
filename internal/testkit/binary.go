package testkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The luksdock binary, built once per test process for the suites that
// drive it as a separate program (the real-terminal wizard tests, the
// reliability suite, the shell-completion test, the QEMU guest).

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// BuildLuksdock builds the luksdock command (the module's root package)
// once per test process and returns its path: statically (CGO_ENABLED=0,
// so it runs in the QEMU guest too), into a directory everyone may read
// (the reliability suite runs it as nobody). RemoveBuilt removes it. For
// a TestMain, which has no *testing.T; tests call Luksdock.
func BuildLuksdock() (string, error) {
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "luksdock-test-bin-"); buildErr != nil {
			return
		}
		os.Chmod(buildDir, 0o755)
		buildBin = filepath.Join(buildDir, "luksdock")
		cmd := exec.Command("go", "build", "-o", buildBin, ".")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("CGO_ENABLED=0 go build -o %s . (in %s): %v\n%s", buildBin, root, err, out)
		}
	})
	return buildBin, buildErr
}

// Luksdock is BuildLuksdock for a test: a build failure fails the test
// (the test exists to run that binary).
func Luksdock(t testing.TB) string {
	t.Helper()
	bin, err := BuildLuksdock()
	if err != nil {
		t.Fatalf("cannot build luksdock: %v", err)
	}
	return bin
}

// RemoveBuilt removes the binary BuildLuksdock built, if any. A TestMain
// of a suite that uses it calls it after m.Run.
func RemoveBuilt() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// moduleRoot is the directory of the luksdock module the test runs in
// (go env GOMOD, from the test's package directory).
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("the test does not run inside the luksdock module")
	}
	return filepath.Dir(gomod), nil
}
