package core

import (
	"strings"
	"testing"
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
