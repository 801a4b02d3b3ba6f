// Package testkit holds what luksdock's test suites share: running tools,
// sparse images, loop devices (loop.go), an independent look inside LUKS
// volumes (luks.go, erase.go), a terminal (pty.go), what a test needs from
// the machine (require.go), the built luksdock binary (binary.go), the test
// binary as the CLI (cli.go) and CPU load (busy.go).
//
// Everything here checks luksdock with tools no one here wrote (cryptsetup,
// losetup, partx, sfdisk, golang.org/x/crypto/xts). testkit must never import
// luksdock's own packages: a test that used luksdock's code to check
// luksdock would prove nothing.
//
// # Requirements: one rule
//
// A test that needs root, a tool or a device says so first, with NeedRoot,
// NeedTools, NeedFUSE or NeedLoop. When the machine lacks it the test SKIPS, loudly:
// "SKIP: " and the reason, with what to install. It never fails for that
// and never passes silently:
//
//   - A developer's `go test ./pkg/` as a user, or on a machine without
//     some tool, runs what it can and lists the rest as skipped, each with
//     its reason.
//   - scripts/test (the full run, as root, after installing every tool)
//     fails on any skip that is not on the allow-list scripts/skips.allow
//     (read by internal/testreport). So in the full run a missing tool or
//     device is a failure, unless the allow-list names the test and says
//     where its promise is proved instead.
//   - Under -fuzz a requirement that is not met fails the fuzz target (a
//     skip there would throw every generated input away unseen).
//
// A test never checks os.Geteuid or exec.LookPath itself for this.
package testkit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// SHA256File returns the hex SHA-256 of a file or block device, the
// "byte-identical before and after" check of every refusal test.
func SHA256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SparseFile creates (or truncates) the file path as size bytes of holes and
// returns path.
func SparseFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

// Cmd runs name with args and returns its standard output and standard
// error together. stdin is its standard input; when fd3 is not nil the
// command can read fd3 from file descriptor 3 (a pipe), so that a secret
// reaches cryptsetup as --volume-key-file /proc/self/fd/3 and never appears in
// argv or in a file.
func Cmd(stdin string, fd3 []byte, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	var w *os.File
	if fd3 != nil {
		r, pw, err := os.Pipe()
		if err != nil {
			return "", err
		}
		defer r.Close()
		w = pw
		cmd.ExtraFiles = []*os.File{r}
	}
	if err := cmd.Start(); err != nil {
		if w != nil {
			w.Close()
		}
		return "", err
	}
	if w != nil {
		go func() { w.Write(fd3); w.Close() }()
	}
	err := cmd.Wait()
	return out.String(), err
}

// Run is Cmd without a secret on file descriptor 3; it fails the test, with
// the command line and its output, when the command fails.
func Run(t testing.TB, stdin string, name string, args ...string) string {
	t.Helper()
	return RunFD3(t, stdin, nil, name, args...)
}

// RunFD3 is Cmd that fails the test when the command fails.
func RunFD3(t testing.TB, stdin string, fd3 []byte, name string, args ...string) string {
	t.Helper()
	out, err := Cmd(stdin, fd3, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// LUKSImage is a 20 MiB file in the test's temporary directory that
// cryptsetup luksFormat made with passphrase pass (read from standard input)
// and the extra luksFormat arguments args (type, PBKDF and its cost...).
func LUKSImage(t testing.TB, pass string, args ...string) string {
	t.Helper()
	img := SparseFile(t, t.TempDir()+"/luks.img", 20<<20)
	RunFD3(t, pass, nil, "cryptsetup", append(append([]string{"luksFormat", "--batch-mode"}, args...), "--key-file=-", img)...)
	return img
}
