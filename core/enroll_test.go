package core

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"luksdock/internal/testkit"
)

// A wrong passphrase makes no key directory: it is checked before
// anything is written on this host. The right one writes the key there.
func TestEnrollWrongPassphraseWritesNothing(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup")
	cfg, _, d, info := tpm2Disk(t)
	keys := filepath.Dir(KeyFile(info.UUID))
	if _, err := EnrollHost(context.Background(), d, []byte("wrong passphrase"), true, false); !IsWrongPassphrase(err) {
		t.Fatalf("enroll with a wrong passphrase: %v", err)
	}
	if _, err := os.Stat(keys); !os.IsNotExist(err) {
		t.Errorf("a wrong passphrase left %s (%v)", keys, err)
	}
	if ents, _ := os.ReadDir(cfg); len(ents) != 1 {
		t.Errorf("a wrong passphrase left files in the configuration directory: %v", ents)
	}
	if _, err := EnrollHost(context.Background(), d, []byte(tpm2Pass), true, false); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	if _, err := os.Stat(KeyFile(info.UUID)); err != nil {
		t.Errorf("no key file after enrolling: %v", err)
	}
}
