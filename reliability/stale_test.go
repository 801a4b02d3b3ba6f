package reliability

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStalePartitionNode: the kernel still has a partition entry for the
// loop device at another offset (left by an earlier user: on kernels
// without partition-table parsers BLKPG entries survive until deleted). A
// run must never format that stale partition and report a finished disk
// whose partition table points elsewhere: it must replace the stale entry
// and finish (exit 0), and partition 1 of the table it wrote must hold the
// LUKS volume and the filesystem. A run that fails did not reach the
// scenario and fails the test.
func TestStalePartitionNode(t *testing.T) {
	requireEnv(t)
	file := sparseImage(t, t.TempDir(), 128<<20)
	dev := attachLoop(t, file)
	// A table with partition 1 at 2 MiB, made known to the kernel, then
	// wiped from the disk: the kernel's entry stays.
	mustRun(t, "sh", "-c", "printf 'label: gpt\\nstart=4096, size=100000\\n' | sfdisk -q "+dev)
	mustRun(t, "partx", "--add", dev)
	mustRun(t, "wipefs", "--all", "--quiet", dev)
	start, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), filepath.Base(dev)+"p1", "start"))
	if strings.TrimSpace(string(start)) != "4096" {
		t.Fatalf("setup: no stale partition entry at sector 4096 (start %q)", start)
	}
	pass := passFile(t, []byte(testPass+"\n"))
	args := []string{"prepare", "--device", dev, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(dev), "--engine", "userspace"}
	r := luksdock(t, runOpts{}, append(args, lowCost...)...)
	if r.code != 0 {
		t.Fatalf("prepare over a stale kernel partition entry: %v", r)
	}
	if got := luksAt(t, file); got != "crypto_LUKS" {
		t.Errorf("luksdock reported a finished disk, but partition 1 of its table (sfdisk) holds %q: the stale kernel partition was formatted instead", got)
	}
	if ok, why, _ := oracle(t, file, testPass, "backups01"); !ok {
		t.Errorf("luksdock reported a finished disk, but partition 1 of its table is not: %s", why)
	}
}
