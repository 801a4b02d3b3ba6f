package luks

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// guardShim makes a fake cryptsetup in a new directory: "open" records the
// bytes it got on stdin and fd 3 and, after openDelay, the mapping name;
// "close --deferred NAME" records NAME. It returns the directory, to put
// first in PATH, where the records go too.
func guardShim(t *testing.T, openDelay string) string {
	dir := t.TempDir()
	script := `#!/bin/sh
d=` + dir + `
case "$1" in
open)
	for a; do name=$a; done
	wc -c < /proc/self/fd/3 > $d/fd3.$name
	wc -c > $d/stdin.$name
	sleep ` + openDelay + `
	touch $d/opened.$name ;;
close)
	[ "$2" = --deferred ] && touch $d/closed.$3 ;;
esac
exit 0
`
	if err := os.WriteFile(filepath.Join(dir, "cryptsetup"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The owner process for the guard tests: it opens a (fake) mapping with a
// volume key, says so, optionally holds it, and waits to be killed.
func TestMappingGuardOwnerProcess(t *testing.T) {
	name := os.Getenv("LUKSDOCK_GUARD_OWNER")
	if name == "" {
		t.Skip("owner process for the mapping guard tests; runs only when started by them")
	}
	key := make([]byte, 64)
	rand.Read(key)
	fmt.Println("opening")
	if err := OpenWithKey(context.Background(), "/dev/null", name, key); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if os.Getenv("LUKSDOCK_GUARD_HOLD") != "" {
		HoldMapping(context.Background(), name) // fails here (no real mapping), and ends the guard
	}
	fmt.Println("opened")
	time.Sleep(time.Minute)
	os.Exit(1)
}

func guardOwner(t *testing.T, shim, name string, hold bool, waitFor string) *exec.Cmd {
	env := []string{"PATH=" + shim + ":" + os.Getenv("PATH"), "LUKSDOCK_GUARD_OWNER=" + name}
	if hold {
		env = append(env, "LUKSDOCK_GUARD_HOLD=1")
	}
	cmd, sc := startTestProcess(t, "TestMappingGuardOwnerProcess", env...)
	for sc.Scan() {
		if sc.Text() == waitFor {
			return cmd
		}
		if strings.HasPrefix(sc.Text(), "ERROR") {
			t.Fatalf("owner: %s", sc.Text())
		}
	}
	t.Fatalf("owner ended before %q", waitFor)
	return nil
}

func waitFile(p string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// TestMappingGuard: when the process that ran `cryptsetup open` dies before
// it holds the mapping — after cryptsetup finished, or while it still runs
// — the guard closes the mapping (deferred) once cryptsetup is done; when
// the mapping was held, it does nothing. cryptsetup gets the 64-byte key on
// fd 3 through the guard, and nothing on stdin.
func TestMappingGuard(t *testing.T) {
	for _, tc := range []struct {
		name       string
		delay      string // of the fake cryptsetup open
		killAt     string // the owner's line after which it is killed
		hold, want bool   // HoldMapping called; the guard must close
	}{
		{"killed after open", "0", "opened", false, true},
		{"killed during open", "1", "opening", false, true},
		{"held, then killed", "0", "opened", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shim := guardShim(t, tc.delay)
			name := "luksdock-guardtest"
			cmd := guardOwner(t, shim, name, tc.hold, tc.killAt)
			if tc.killAt == "opening" {
				// The fake open is running once it has read its input
				// (it then sleeps 1 s): wait for that, not a fixed time.
				if !waitFile(filepath.Join(shim, "stdin."+name), 5*time.Second) {
					t.Fatalf("the fake cryptsetup open did not start within 5 s")
				}
				if _, err := os.Stat(filepath.Join(shim, "opened."+name)); err == nil {
					t.Fatalf("the fake cryptsetup open had finished before the kill; the case was not reached")
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			if !waitFile(filepath.Join(shim, "opened."+name), 5*time.Second) {
				t.Fatalf("the fake cryptsetup open never finished")
			}
			closed := waitFile(filepath.Join(shim, "closed."+name), 5*time.Second)
			if closed != tc.want {
				t.Errorf("guard ran cryptsetup close --deferred: %v, want %v", closed, tc.want)
			}
			if b, _ := os.ReadFile(filepath.Join(shim, "fd3."+name)); strings.TrimSpace(string(b)) != "64" {
				t.Errorf("cryptsetup got %q bytes on fd 3, want 64", b)
			}
			if b, _ := os.ReadFile(filepath.Join(shim, "stdin."+name)); strings.TrimSpace(string(b)) != "0" {
				t.Errorf("cryptsetup got %q bytes on stdin, want 0", b)
			}
		})
	}
}
