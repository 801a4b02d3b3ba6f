package core

import "testing"

// TestAssessPassphraseInChild: zxcvbn runs in the child process (its
// string copies of the passphrase end with it), and its verdict comes back
// whole: a common password is weak with advice, a long random one is not.
func TestAssessPassphraseInChild(t *testing.T) {
	weak, err := assessInChild([]byte("password1"), StrengthInputs("backups01", "sdi"))
	if err != nil {
		t.Fatalf("the strength child did not run: %v", err)
	}
	if !weak.Set || !weak.Weak() || len(weak.Feedback) == 0 {
		t.Errorf("password1: %+v, want weak with advice", weak)
	}
	if in := assess([]byte("password1"), StrengthInputs("backups01", "sdi")); in.Score != weak.Score || len(in.Feedback) != len(weak.Feedback) {
		t.Errorf("the child's verdict %+v differs from zxcvbn's here %+v", weak, in)
	}
	strong := AssessPassphrase([]byte("Tr0ub4dor&3-correct-horse-battery-staple-9f2c41e7"), nil)
	if !strong.Set || strong.Weak() {
		t.Errorf("a long random passphrase: %+v, want not weak", strong)
	}
}
