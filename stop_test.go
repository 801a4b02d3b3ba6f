package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/testkit"
	"luksdock/pipeline"
)

// TestMain lets a test run this package's test binary as the luksdock CLI
// (testkit.CLICommand), to send it real signals or run luksdocks
// concurrently, and keeps the tests off the machine's own inventory
// (/var/lib/luksdock): every prepare here records its disk.
func TestMain(m *testing.M) {
	testkit.ServeCLI(run)
	// Every run here records into a private inventory, never the host's
	// /var/lib/luksdock (the CLI children inherit it).
	dir, err := os.MkdirTemp("", "luksdock-test-inventory-")
	if err != nil {
		panic(err)
	}
	os.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	// and keeps erase positions and its journal (journal.log) there too
	if os.Getenv("LUKSDOCK_STATE_DIR") == "" {
		os.Setenv("LUKSDOCK_STATE_DIR", filepath.Join(dir, "state"))
	}
	code := m.Run()
	os.RemoveAll(dir)
	testkit.RemoveBuilt()
	os.Exit(code)
}

// TestStopUnderLoad (issue 12 defect 7): a stop request takes effect at the
// next step boundary, every time, while argon2 (cryptsetup luksFormat with
// two threads, and luks.go in verify) and two spinning goroutines keep both
// cores busy. SIGINT to luksdock, and to its whole process group (a
// terminal's Ctrl-C), during luksFormat: luksFormat finishes, no later step
// starts, exit 130 with one failed event at open (kind interrupted). SIGINT
// during verify, the last step: the run did finish, so it exits 0 with its
// result.
func TestStopUnderLoad(t *testing.T) {
	testkit.NeedRoot(t)
	kdf := []string{"--pbkdf", "argon2id", "--pbkdf-memory", "65536", "--pbkdf-parallel", "2", "--iter-time", "1500"}
	for _, c := range []struct {
		name   string
		at     pipeline.StepID
		group  bool
		code   int
		failAt pipeline.StepID
	}{
		{"luks-format", pipeline.StepFormat, false, exitInterrupted, pipeline.StepOpen},
		{"luks-format-group", pipeline.StepFormat, true, exitInterrupted, pipeline.StepOpen},
		{"verify", pipeline.StepVerify, false, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			testkit.Busy(t, max(2, runtime.NumCPU()))

			img := filepath.Join(t.TempDir(), "stop.img")
			args := append([]string{"prepare", "--image", img, "--size", "80M", "--label", "stop1", "--passphrase-file", "-",
				"--confirm", "stop.img", "--json"}, kdf...)
			cmd := testkit.CLICommand(args...)
			cmd.Stdin = strings.NewReader(testPass + "\n")
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var stderr testkit.LockedBuffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var events []pipeline.Event
			var signalled atomic.Bool
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var e pipeline.Event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("%v: %s", err, sc.Bytes())
				}
				events = append(events, e)
				if e.Kind == pipeline.EventStart && e.Step == c.at && !signalled.Load() {
					signalled.Store(true)
					time.Sleep(300 * time.Millisecond) // inside the step's argon2
					pid := cmd.Process.Pid
					if c.group {
						pid = -pid
					}
					if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
						t.Fatal(err)
					}
				}
			}
			err = cmd.Wait()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			for _, e := range events {
				log.WriteString(string(e.Kind) + " " + string(e.Step) + " " + e.Message + "\n")
			}
			if !signalled.Load() {
				t.Fatalf("the run never started %s:\n%s%s", c.at, log.String(), stderr.String())
			}
			if code != c.code {
				t.Errorf("exit %d, want %d\n%s%s", code, c.code, log.String(), stderr.String())
			}
			// After the signalled step: its done event, then (when stopped)
			// exactly one failed event at the next step, and no start.
			after := false
			var rest []pipeline.Event
			for _, e := range events {
				if after {
					rest = append(rest, e)
				}
				if e.Kind == pipeline.EventStart && e.Step == c.at {
					after = true
				}
			}
			if c.failAt == "" {
				last := events[len(events)-1]
				if last.Kind != pipeline.EventResult {
					t.Errorf("a run whose steps all finished ended with %s %s, want the result\n%s", last.Kind, last.Step, log.String())
				}
				return
			}
			if len(rest) != 2 || rest[0].Kind != pipeline.EventDone || rest[0].Step != c.at ||
				rest[1].Kind != pipeline.EventFailed || rest[1].Step != c.failAt || rest[1].Failure != pipeline.KindInterrupted {
				t.Errorf("after the signal in %s: want done %s, failed %s (interrupted), nothing else; got\n%s%s", c.at, c.at, c.failAt, log.String(), stderr.String())
			}
		})
	}
}
