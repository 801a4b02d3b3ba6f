package ui

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/xts"
)

// Checks of prepared images with tools no one here wrote: sfdisk, losetup,
// cryptsetup, e2fsck, dumpe2fs, and golang.org/x/crypto/xts for decryption
// (this machine's kernel has no device-mapper, so cryptsetup open cannot map
// the volume; the volume key cryptsetup itself dumps decrypts it instead).

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("SKIP: needs root for loop devices and FUSE (euid %d)", os.Geteuid())
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s is not installed (apt-get install cryptsetup-bin e2fsprogs fdisk mount tmux)", tool)
		}
	}
}

func run(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func mustRun(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// partition1 returns partition 1's offset and size in bytes as sfdisk sees
// it, and checks it is the only one and starts at 1 MiB.
func partition1(t *testing.T, img string) (int64, int64) {
	t.Helper()
	var pt struct {
		PartitionTable struct {
			Label      string `json:"label"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start int64 `json:"start"`
				Size  int64 `json:"size"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	out := mustRun(t, "", "sfdisk", "--json", img)
	if err := json.Unmarshal([]byte(out), &pt); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	p := pt.PartitionTable
	if len(p.Partitions) != 1 {
		t.Fatalf("sfdisk sees %d partitions, want 1:\n%s", len(p.Partitions), out)
	}
	ss := p.SectorSize
	if ss == 0 {
		ss = 512
	}
	if p.Partitions[0].Start*ss != 1<<20 {
		t.Fatalf("partition 1 starts at byte %d, want 1 MiB", p.Partitions[0].Start*ss)
	}
	return p.Partitions[0].Start * ss, p.Partitions[0].Size * ss
}

// loopPart attaches partition 1 of img to a loop device (read-only) and
// detaches it when the test ends.
func loopPart(t *testing.T, img string) string {
	t.Helper()
	off, size := partition1(t, img)
	dev := strings.TrimSpace(mustRun(t, "", "losetup", "--find", "--show", "--read-only",
		"-o", strconv.FormatInt(off, 10), "--sizelimit", strconv.FormatInt(size, 10), img))
	t.Cleanup(func() { _, _ = run(t, "", "losetup", "-d", dev) })
	return dev
}

var (
	dataOffRe = regexp.MustCompile(`(?m)^\s+offset:\s+(\d+) \[bytes\]`)
	sectorRe  = regexp.MustCompile(`(?m)^\s+sector:\s+(\d+) \[bytes\]`)
	payloadRe = regexp.MustCompile(`(?m)^Payload offset:\s+(\d+)$`)
)

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
// no label of its own and keeps its data offset in 512-byte sectors).
func checkPrepared(t *testing.T, img, pass, label string, version int) {
	t.Helper()
	dev := loopPart(t, img)
	dump := mustRun(t, "", "cryptsetup", "luksDump", dev)
	wants := []string{"Version:       \t2", "aes-xts-plain64", "Label:         \t" + label}
	if version == 1 {
		wants = []string{"Version:       \t1", "Cipher name:   \taes", "Cipher mode:   \txts-plain64", "MK bits:       \t512"}
	}
	for _, want := range wants {
		if !strings.Contains(dump, want) {
			t.Errorf("cryptsetup luksDump lacks %q:\n%s", want, dump)
		}
	}
	if out, err := run(t, pass+"\n", "cryptsetup", "open", "--test-passphrase", dev); err != nil {
		t.Errorf("cryptsetup open --test-passphrase refused the passphrase: %v\n%s", err, out)
	}
	if _, err := run(t, pass+"x\n", "cryptsetup", "open", "--test-passphrase", dev); err == nil {
		t.Errorf("cryptsetup open --test-passphrase accepted a wrong passphrase")
	}
	// The volume key, from cryptsetup (on a pipe, never a file).
	kd := mustRun(t, pass, "cryptsetup", "luksDump", "--dump-volume-key", "--batch-mode", "--key-file=-", dev)
	key := parseVolumeKey(t, kd)
	var dataOff, sector int64
	if version == 1 {
		pm := payloadRe.FindStringSubmatch(dump)
		if pm == nil {
			t.Fatalf("no payload offset in luksDump:\n%s", dump)
		}
		sectors, _ := strconv.ParseInt(pm[1], 10, 64)
		dataOff, sector = sectors*512, 512
	} else {
		dm, sm := dataOffRe.FindStringSubmatch(dump), sectorRe.FindStringSubmatch(dump)
		if dm == nil || sm == nil {
			t.Fatalf("no data segment offset/sector in luksDump:\n%s", dump)
		}
		dataOff, _ = strconv.ParseInt(dm[1], 10, 64)
		sector, _ = strconv.ParseInt(sm[1], 10, 64)
	}
	plain := decryptVolume(t, dev, key, dataOff, sector)
	clear(key)
	if out, err := run(t, "", "e2fsck", "-fn", plain); err != nil {
		t.Errorf("e2fsck -fn on the decrypted volume: %v\n%s", err, out)
	}
	hdr := mustRun(t, "", "dumpe2fs", "-h", plain)
	if !regexp.MustCompile(`(?m)^Filesystem volume name:\s+` + regexp.QuoteMeta(label) + `$`).MatchString(hdr) {
		t.Errorf("dumpe2fs -h does not show label %q:\n%s", label, hdr)
	}
}

func parseVolumeKey(t *testing.T, dump string) []byte {
	t.Helper()
	i := strings.Index(dump, "MK dump:")
	if i < 0 {
		t.Fatalf("no MK dump in cryptsetup output")
	}
	var key []byte
	sc := bufio.NewScanner(strings.NewReader(dump[i+len("MK dump:"):]))
	for sc.Scan() && len(key) < 64 {
		for _, f := range strings.Fields(sc.Text()) {
			b, err := hex.DecodeString(f)
			if err != nil || len(b) != 1 {
				break
			}
			key = append(key, b[0])
		}
	}
	if len(key) != 64 {
		t.Fatalf("volume key has %d bytes, want 64", len(key))
	}
	return key
}

// decryptVolume decrypts the data segment of the LUKS device dev into a
// temporary file with x/crypto/xts (plain64 IVs count 512-byte sectors from
// the segment's start, as dm-crypt does).
func decryptVolume(t *testing.T, dev string, key []byte, off, sector int64) string {
	t.Helper()
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	outPath := filepath.Join(t.TempDir(), "plain.ext4")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	buf := make([]byte, 1<<20)
	plain := make([]byte, len(buf))
	pos := off
	for {
		n, err := in.ReadAt(buf, pos)
		n -= n % int(sector)
		for s := 0; s < n; s += int(sector) {
			c.Decrypt(plain[s:s+int(sector)], buf[s:s+int(sector)], uint64((pos-off+int64(s))/512))
		}
		if _, werr := out.Write(plain[:n]); werr != nil {
			t.Fatal(werr)
		}
		pos += int64(n)
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if pos-off < 8<<20 {
		t.Fatalf("decrypted only %d bytes", pos-off)
	}
	return outPath
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
	if out, _ := run(t, "", "losetup", "-j", img); strings.TrimSpace(out) != "" {
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
