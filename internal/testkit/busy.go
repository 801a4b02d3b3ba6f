package testkit

import (
	"os/exec"
	"testing"
)

// Busy keeps n CPUs busy until the test ends: n shell processes, each
// spinning in an empty loop, killed at cleanup. Tests that must hold under
// load (a stop request while argon2 runs) use it beside the run's own work.
func Busy(t testing.TB, n int) {
	t.Helper()
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
}
