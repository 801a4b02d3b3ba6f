package core

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// TestAssessPassphraseInChild: zxcvbn runs in the child process (its
// string copies of the passphrase end with it), and its verdict comes back
// whole: a common password is weak with advice, a long random one is not.
func TestAssessPassphraseInChild(t *testing.T) {
	weak, err := assessInChild([]byte("password1"), StrengthInputs("backups01", "sdi"), 9)
	if err != nil {
		t.Fatalf("the strength child did not run: %v", err)
	}
	if !weak.Set || !weak.Weak() || len(weak.Feedback) == 0 {
		t.Errorf("password1: %+v, want weak with advice", weak)
	}
	if in := assess([]byte("password1"), StrengthInputs("backups01", "sdi"), 9); in.Score != weak.Score || len(in.Feedback) != len(weak.Feedback) {
		t.Errorf("the child's verdict %+v differs from zxcvbn's here %+v", weak, in)
	}
	strong := AssessPassphrase([]byte("Tr0ub4dor&3-correct-horse-battery-staple-9f2c41e7"), nil)
	if !strong.Set || strong.Weak() {
		t.Errorf("a long random passphrase: %+v, want not weak", strong)
	}
	// Over JudgeMax bytes only the first part is judged, and the verdict
	// says so (the wizard's keystrokes and prepare's warning stay bounded).
	long := AssessPassphrase([]byte(strings.Repeat("correct horse battery staple ", 20)), nil)
	if long.Partial == 0 || long.Partial > JudgeMax || !strings.Contains(long.Summary(), "judged on its first") {
		t.Errorf("a 580-character passphrase: %+v, %q: want a verdict on its first %d bytes that says so", long, long.Summary(), JudgeMax)
	}
}

// TestStrengthChildMemory: the strength child locks its memory without
// populating what it only reserved. With mlockall(MCL_CURRENT|MCL_FUTURE)
// the Go runtime's reservations were faulted in and locked at once: the
// child peaked at 140 MiB (the largest process of a prepare in
// cmd/bench), against 21 MiB with MCL_ONFAULT. The peak is read by GNU time,
// which execs bash, which execs this test binary as the child (so the
// kernel does not carry the test binary's own peak into the figure).
func TestStrengthChildMemory(t *testing.T) {
	testkit.NeedTools(t, "/usr/bin/time", "bash")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rss := filepath.Join(t.TempDir(), "rss")
	cmd := exec.Command("/usr/bin/time", "-f", "%M", "-o", rss, "bash", "-c", `exec -a `+strengthArg0+` "$0"`, self)
	cmd.Stdin = strings.NewReader(`{"inputs":["backups01"],"total":21}` + "\ncorrect horse battery")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `"score"`) {
		t.Fatalf("strength child: %v, %q", err, out)
	}
	raw, err := os.ReadFile(rss)
	if err != nil {
		t.Fatal(err)
	}
	kib, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatalf("GNU time wrote %q", raw)
	}
	t.Logf("strength child peak RSS %d KiB", kib)
	if kib > 64<<10 {
		t.Errorf("strength child peak RSS %d KiB, want at most 64 MiB", kib)
	}
}
