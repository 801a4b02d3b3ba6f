package ui

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// Checks of prepared images with tools no one here wrote: sfdisk, losetup,
// cryptsetup, e2fsck, dumpe2fs, and golang.org/x/crypto/xts for decryption
// (this machine's kernel has no device-mapper, so cryptsetup open cannot map
// the volume; the volume key cryptsetup itself dumps decrypts it instead).

// loopPart attaches partition 1 of img to a loop device (read-only) and
// detaches it when the test ends. It checks partition 1 is the only one and
// starts at 1 MiB.
func loopPart(t *testing.T, img string) string {
	t.Helper()
	parts := testkit.Partitions(t, img)
	if len(parts) != 1 {
		t.Fatalf("sfdisk sees %d partitions, want 1: %+v", len(parts), parts)
	}
	if parts[0].Base != 1<<20 {
		t.Fatalf("partition 1 starts at byte %d, want 1 MiB", parts[0].Base)
	}
	return testkit.AttachLoop(t, img, "--read-only", "--offset", strconv.FormatInt(parts[0].Base, 10), "--sizelimit", strconv.FormatInt(parts[0].Size, 10))
}

// checkPreparedImage proves img is a finished backup disk for pass and
// label: one 1 MiB-aligned partition; cryptsetup sees LUKS2,
// aes-xts-plain64 and the label, accepts the passphrase typed on stdin and
// refuses a wrong one; the data decrypted with the volume key cryptsetup
// dumps is an ext4 that e2fsck -fn passes and dumpe2fs labels.
func checkPreparedImage(t *testing.T, img, pass, label string) {
	t.Helper()
	checkPrepared(t, img, pass, label, 2)
}

// checkPrepared is checkPreparedImage for LUKS version 1 or 2 (LUKS1 has
// no label of its own).
func checkPrepared(t *testing.T, img, pass, label string, version int) {
	t.Helper()
	dev := loopPart(t, img)
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", dev)
	wants := []string{"Version:       \t2", "aes-xts-plain64", "Label:         \t" + label}
	if version == 1 {
		wants = []string{"Version:       \t1", "Cipher name:   \taes", "Cipher mode:   \txts-plain64", "MK bits:       \t512"}
	}
	for _, want := range wants {
		if !strings.Contains(dump, want) {
			t.Errorf("cryptsetup luksDump lacks %q:\n%s", want, dump)
		}
	}
	if out, err := testkit.Cmd(pass+"\n", nil, "cryptsetup", "open", "--test-passphrase", dev); err != nil {
		t.Errorf("cryptsetup open --test-passphrase refused the passphrase: %v\n%s", err, out)
	}
	if _, err := testkit.Cmd(pass+"x\n", nil, "cryptsetup", "open", "--test-passphrase", dev); err == nil {
		t.Errorf("cryptsetup open --test-passphrase accepted a wrong passphrase")
	}
	// The volume key and data segment from cryptsetup (the passphrase on a
	// pipe), the data decrypted with x/crypto/xts.
	v, err := testkit.Unlock(t, testkit.Device{Path: dev}, pass)
	if err != nil {
		t.Fatal(err)
	}
	plain := testkit.DecryptXTS(t, v)
	clear(v.Key)
	if out, err := testkit.Cmd("", nil, "e2fsck", "-fn", plain); err != nil {
		t.Errorf("e2fsck -fn on the decrypted volume: %v\n%s", err, out)
	}
	hdr := testkit.Run(t, "", "dumpe2fs", "-h", plain)
	if !regexp.MustCompile(`(?m)^Filesystem volume name:\s+` + regexp.QuoteMeta(label) + `$`).MatchString(hdr) {
		t.Errorf("dumpe2fs -h does not show label %q:\n%s", label, hdr)
	}
}

// privateTmp points TMPDIR at a fresh directory for the rest of the test,
// so FUSE mounts made by this test's runs (under $TMPDIR/luksdock-*) can be
// told apart from those of other luksdock processes on the machine.
func privateTmp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("TMPDIR", dir)
	return dir
}

// noLeftovers checks that nothing of a run is left: no FUSE mount under
// tmp (the run's TMPDIR), no loop device on img, no device-mapper mapping
// named luksdock-*.
func noLeftovers(t *testing.T, img, tmp string) {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], tmp+"/") {
			t.Errorf("a mount made by the run is left: %s", l)
		}
	}
	if out, _ := testkit.Cmd("", nil, "losetup", "-j", img); strings.TrimSpace(out) != "" {
		t.Errorf("a loop device is left on %s: %s", img, out)
	}
	if ents, err := os.ReadDir("/dev/mapper"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "luksdock") {
				t.Errorf("a device-mapper mapping is left: %s", e.Name())
			}
		}
	}
}
