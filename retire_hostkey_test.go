package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/core"
)

// Found trying luksdock as a new user: after 'host enroll' (a key file)
// and 'retire', /etc/luksdock/keys/UUID.key stayed: a secret for a volume
// that no longer exists, which 'host status' and a later look at the
// directory still show. Retire removes this host's key file of the disk
// and says so.
func TestRetireRemovesHostKey(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_CONFIG_DIR", filepath.Join(dir, "etc"))
	img, _ := preparedImage(t, dir, "lcret02")
	if code, out, errs := cli(t, testPass+"\n", "host", "enroll", "--key-file", "--image", img, "--passphrase-file", "-"); code != 0 {
		t.Fatalf("host enroll: exit %d\n%s%s", code, out, errs)
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "etc", "keys", "*.key"))
	if len(keys) != 1 {
		t.Fatalf("after host enroll, key files %v, want one", keys)
	}
	uuid := strings.TrimSuffix(filepath.Base(keys[0]), ".key")
	if core.KeyFile(uuid) != keys[0] {
		t.Fatalf("core.KeyFile(%s) = %s, enroll wrote %s", uuid, core.KeyFile(uuid), keys[0])
	}
	code, out, errs := cli(t, "", "retire", "--image", img, "--confirm", "disk.img")
	if code != 0 {
		t.Fatalf("retire: exit %d\n%s%s", code, out, errs)
	}
	if _, err := os.Stat(keys[0]); err == nil {
		t.Errorf("the host key %s is still there after retire", keys[0])
	}
	if !strings.Contains(out, "host key: "+keys[0]+" removed") {
		t.Errorf("retire does not say the host key was removed:\n%s", out)
	}
}
