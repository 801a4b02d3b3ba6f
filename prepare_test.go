package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/luks"
	"luksdock/pipeline"
)

// Tests here drive the real CLI (run) against image files and loop devices,
// and check the outcome with tools luksdock did not write: sfdisk, blkid,
// wipefs, cryptsetup, e2fsck, dumpe2fs.

const testPass = "correct horse battery staple"

var smallKDF = []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

// cli runs luksdock in-process with stdin and returns exit code, stdout, stderr.
func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

type sfdiskDump struct {
	PartitionTable struct {
		Label      string `json:"label"`
		SectorSize int    `json:"sectorsize"`
		Partitions []struct {
			Start int64  `json:"start"`
			Size  int64  `json:"size"`
			Type  string `json:"type"`
			Name  string `json:"name"`
		} `json:"partitions"`
	} `json:"partitiontable"`
}

func sfdisk(t *testing.T, img string) sfdiskDump {
	t.Helper()
	var d sfdiskDump
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --json %s: %v", img, err)
	}
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	if d.PartitionTable.SectorSize == 0 {
		d.PartitionTable.SectorSize = 512
	}
	return d
}

// checkPrepared proves with independent tools that img (or a block device)
// is a finished backup disk labelled label.
func checkPrepared(t *testing.T, img, table, label string, luksVersion int) {
	t.Helper()
	d := sfdisk(t, img)
	pt := d.PartitionTable
	wantLabel := map[string]string{"gpt": "gpt", "mbr": "dos"}[table]
	if pt.Label != wantLabel || len(pt.Partitions) != 1 {
		t.Fatalf("sfdisk: label %q with %d partitions, want %q with 1", pt.Label, len(pt.Partitions), wantLabel)
	}
	p, ss := pt.Partitions[0], int64(pt.SectorSize)
	if p.Start*ss != 1<<20 || (p.Size*ss)%(1<<20) != 0 {
		t.Errorf("partition at %d size %d bytes: want start 1 MiB and whole MiBs", p.Start*ss, p.Size*ss)
	}
	wantType := map[string]string{"gpt": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "mbr": "83"}[table]
	if p.Type != wantType {
		t.Errorf("partition type %s, want %s", p.Type, wantType)
	}
	p1, _ := testkit.Partition1(t, img)
	part := testkit.AttachLoop(t, img, "--offset", fmt.Sprint(p1.Base), "--sizelimit", fmt.Sprint(p1.Size))
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", part)
	if !strings.Contains(dump, fmt.Sprintf("Version:       \t%d", luksVersion)) {
		t.Errorf("luksDump: not LUKS%d:\n%s", luksVersion, dump)
	}
	if !strings.Contains(dump, "aes-xts-plain64") && !(strings.Contains(dump, "Cipher name:   \taes") && strings.Contains(dump, "Cipher mode:   \txts-plain64")) {
		t.Errorf("luksDump: cipher is not aes-xts-plain64:\n%s", dump)
	}
	if luksVersion == 2 && !strings.Contains(dump, "Label:         \t"+label+"\n") {
		t.Errorf("luksDump: LUKS2 label is not %q:\n%s", label, dump)
	}
	// The passphrase exactly as typed at cryptsetup's prompt (no newline) opens it; another does not.
	testkit.Run(t, testPass, "cryptsetup", "open", "--test-passphrase", "--key-file", "-", part)
	if out, err := exec.Command("sh", "-c", "printf 'wrong passphrase' | cryptsetup open --test-passphrase --key-file - "+part).CombinedOutput(); err == nil {
		t.Errorf("cryptsetup accepted a wrong passphrase: %s", out)
	}
	// Only the new signatures remain.
	if got := testkit.Run(t, "", "blkid", "-p", "-o", "export", part); !strings.Contains(got, "TYPE=crypto_LUKS") {
		t.Errorf("blkid -p on the partition: %s", got)
	}
	whole := testkit.Run(t, "", "wipefs", "--no-act", "--noheadings", "--output", "TYPE", img)
	for _, line := range strings.Fields(whole) {
		switch line {
		case "gpt", "PMBR":
			if table != "gpt" {
				t.Errorf("wipefs: GPT signature left on an MBR disk: %s", line)
			}
		case "dos":
			if table != "mbr" {
				t.Errorf("wipefs: MBR signature on a GPT disk: %s", line)
			}
		default:
			t.Errorf("wipefs: unexpected signature on the disk: %s", line)
		}
	}
	// The plaintext as cryptsetup alone decrypts it.
	v, err := testkit.Unlock(t, testkit.Device{Path: part}, testPass)
	if err != nil {
		t.Fatal(err)
	}
	plain := testkit.DecryptCryptsetup(t, v)
	fsck := testkit.Run(t, "", "e2fsck", "-fn", plain)
	for _, line := range strings.Split(strings.TrimSpace(fsck), "\n") {
		if !strings.HasPrefix(line, "Pass ") && !strings.HasPrefix(line, "e2fsck ") && !strings.Contains(line, " files (") {
			t.Errorf("e2fsck -fn: unexpected line %q", line)
		}
	}
	h := testkit.Run(t, "", "dumpe2fs", "-h", plain)
	if !strings.Contains(h, "Filesystem volume name:   "+label+"\n") {
		t.Errorf("dumpe2fs -h: label is not %q", label)
	}
	// A kernel mounts ext4 only with blocks at least as large as the LUKS sector.
	var block int
	for _, line := range strings.Split(h, "\n") {
		if v, ok := strings.CutPrefix(line, "Block size:"); ok {
			block, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if block < v.Seg.SectorSize {
		t.Errorf("ext4 block size %d is smaller than the LUKS sector size %d: the kernel would refuse to mount it", block, v.Seg.SectorSize)
	}
	flag := "--image"
	if st, err := os.Stat(img); err == nil && st.Mode()&os.ModeDevice != 0 {
		flag = "--device"
	}
	if code, out, errs := cli(t, testPass+"\n", "verify", flag, img, "--passphrase-file", "-"); code != 0 {
		t.Errorf("luksdock verify: exit %d\n%s%s", code, out, errs)
	}
}

func TestPrepareFreshImage(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "sfdisk", "blkid", "wipefs")
	img := filepath.Join(t.TempDir(), "disk.img")
	args := append([]string{"prepare", "--image", img, "--size", "128M", "--label", "backups01",
		"--passphrase-file", "-", "--confirm", "disk.img"}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"$ cryptsetup luksFormat", "$ mkfs.ext4", "Done: "} {
		if !strings.Contains(out, want) {
			t.Errorf("prepare output lacks %q:\n%s", want, out)
		}
	}
	if st, _ := os.Stat(img); st.Size() != 128<<20 {
		t.Errorf("image size %d", st.Size())
	}
	checkPrepared(t, img, "gpt", "backups01", 2)
}

func TestPrepareMBRLUKS1(t *testing.T) {
	testkit.NeedRoot(t)
	img := filepath.Join(t.TempDir(), "old.img")
	args := append([]string{"prepare", "--image", img, "--size", "100M", "--label", "backups02",
		"--passphrase-file", "-", "--confirm", "old.img", "--table", "mbr", "--luks1", "--json"}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	checkPrepared(t, img, "mbr", "backups02", 1)
	// One name for the table, whoever reports it (blkid says "dos").
	_, vout, _ := cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-", "--json")
	for what, o := range map[string]string{"prepare": out, "verify": vout} {
		if !strings.Contains(o, `"table":"mbr"`) {
			t.Errorf("%s --json: the result's table is not \"mbr\":\n%s", what, o)
		}
	}
}

// TestPrepareReplacesOldLayout lays a disk out as in the manual procedure's
// "before" (MBR, an LVM PV of type 8e and an ext4 "photos" with data) and
// checks that nothing of it survives.
func TestPrepareReplacesOldLayout(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "pvcreate", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "disk.img")
	testkit.Run(t, "", "truncate", "-s", "200M", img)
	testkit.Run(t, "label: dos\nstart=2048, size=100M, type=8e\nstart=206848, type=83\n", "sfdisk", "-q", img)
	pv := testkit.AttachLoop(t, img, "--offset", "1048576", "--sizelimit", strconv.Itoa(100<<20))
	testkit.Run(t, "", "pvcreate", "-q", "--config", "devices { filter = [ \"a|.*|\" ] use_devicesfile = 0 }", "-ff", "-y", pv)
	if err := testkit.DetachLoop(pv); err != nil {
		t.Fatal(err)
	}
	fsOff := int64(206848 * 512)
	ext := testkit.AttachLoop(t, img, "--offset", strconv.FormatInt(fsOff, 10))
	testkit.Run(t, "", "mkfs.ext4", "-q", "-L", "photos", ext)
	testkit.Run(t, "", "debugfs", "-w", "-R", "mkdir holiday", ext)
	if err := testkit.DetachLoop(ext); err != nil {
		t.Fatal(err)
	}
	if got := testkit.Run(t, "", "wipefs", "--no-act", img); !strings.Contains(got, "dos") {
		t.Fatalf("fixture has no MBR: %s", got)
	}
	code, out, errs := cli(t, "", "prepare", "--image", img, "--label", "backups01", "--passphrase-file", "/dev/null", "--confirm", "disk.img", "--dry-run")
	if code != 0 || !strings.Contains(out, "LVM2") || !strings.Contains(out, "photos") {
		t.Errorf("dry-run does not name what it destroys (exit %d):\n%s%s", code, out, errs)
	}
	args := append([]string{"prepare", "--image", img, "--label", "backups01", "--passphrase-file", "-", "--confirm", "disk.img"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	checkPrepared(t, img, "gpt", "backups01", 2)
	// Nothing of the old LVM PV or ext4 where they started.
	for _, off := range []int64{1 << 20, fsOff} {
		l := testkit.AttachLoop(t, img, "--offset", strconv.FormatInt(off, 10), "--sizelimit", strconv.Itoa(8<<20))
		if got, _ := exec.Command("blkid", "-p", "-o", "export", l).CombinedOutput(); bytes.Contains(got, []byte("LVM2")) || bytes.Contains(got, []byte("photos")) {
			t.Errorf("old signature left at %d: %s", off, got)
		}
	}
}

// TestPrepare4KLoopDevice prepares a real block device (a loop device with
// 4096-byte logical sectors) through the device path: O_EXCL, the kernel's
// partition node (BLKRRPART, then BLKPG), cryptsetup on the partition node.
func TestPrepare4KLoopDevice(t *testing.T) {
	testkit.NeedRoot(t)
	img := filepath.Join(t.TempDir(), "4k.img")
	testkit.Run(t, "", "truncate", "-s", "128M", img)
	dev := testkit.AttachLoop(t, img, "--sector-size", "4096")
	name := filepath.Base(dev)
	args := append([]string{"prepare", "--device", dev, "--label", "backups4k", "--passphrase-file", "-"}, smallKDF...)
	// A loop device is file-backed, not an internal disk: its kernel name confirms it.
	code, out, errs := cli(t, testPass+"\n", append(args, "--confirm", name)...)
	if code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	if d := sfdisk(t, dev); d.PartitionTable.SectorSize != 4096 {
		t.Errorf("sector size %d, want 4096", d.PartitionTable.SectorSize)
	}
	if _, err := os.Stat(dev + "p1"); err != nil {
		t.Errorf("no partition node: %v", err)
	}
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", dev+"p1")
	if !strings.Contains(dump, "sector: 4096") {
		t.Errorf("LUKS sector size is not 4096:\n%s", dump)
	}
	checkPrepared(t, dev, "gpt", "backups4k", 2)
}

func TestPrepareKernelEngine(t *testing.T) {
	testkit.NeedRoot(t)
	if ok, why := luks.DeviceMapper(); !ok {
		t.Skipf("SKIPPED: the kernel engine needs device-mapper, and this kernel has none: %s. The QEMU suite (e2e/) runs it on a stock kernel.", why)
	}
	img := filepath.Join(t.TempDir(), "k.img")
	args := append([]string{"prepare", "--image", img, "--size", "128M", "--label", "kern01", "--passphrase-file", "-", "--confirm", "k.img", "--engine", "kernel"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	checkPrepared(t, img, "gpt", "kern01", 2)
}

// TestRefusalsWriteNothing: each refusal exits non-zero with a clear message
// and leaves the image byte-identical.
func TestRefusalsWriteNothing(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	testkit.Run(t, "", "truncate", "-s", "80M", img)
	testkit.Run(t, "label: dos\nstart=2048, type=83\n", "sfdisk", "-q", img)
	before := testkit.SHA256File(t, img)
	base := []string{"prepare", "--image", img, "--passphrase-file", "-"}
	cases := []struct {
		name  string
		stdin string
		args  []string
		env   string
		code  int
		msg   string
	}{
		{"wrong confirm", testPass, []string{"--label", "b1", "--confirm", "sdi"}, "", exitRefused, "confirmation does not match"},
		{"confirm with path", testPass, []string{"--label", "b1", "--confirm", img}, "", exitRefused, "confirmation does not match"},
		{"no confirm", testPass, []string{"--label", "b1"}, "", exitUsage, "--confirm"},
		{"17-byte label", testPass, []string{"--label", "backups0123456789", "--confirm", "disk.img"}, "", exitRefused, "at most 16 bytes"},
		{"empty passphrase", "\n", []string{"--label", "b1", "--confirm", "disk.img"}, "", exitRefused, "passphrase is empty"},
		{"missing cryptsetup", testPass, []string{"--label", "b1", "--confirm", "disk.img"}, "/nonexistent", exitRefused, "apt-get install cryptsetup-bin"},
		{"bad table", testPass, []string{"--label", "b1", "--confirm", "disk.img", "--table", "apm"}, "", exitRefused, "unknown partition table"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("PATH", c.env)
			}
			code, out, errs := cli(t, c.stdin, append(append([]string{}, base...), c.args...)...)
			if code != c.code || !strings.Contains(out+errs, c.msg) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s%s", code, c.code, c.msg, out, errs)
			}
			if testkit.SHA256File(t, img) != before {
				t.Fatalf("the image changed")
			}
		})
	}
}

func TestVerifyWrongPassphrase(t *testing.T) {
	testkit.NeedRoot(t)
	img := filepath.Join(t.TempDir(), "v.img")
	args := append([]string{"prepare", "--image", img, "--size", "80M", "--label", "v1", "--passphrase-file", "-", "--confirm", "v.img"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs := cli(t, "not the passphrase\n", "verify", "--image", img, "--passphrase-file", "-")
	if code != exitWrongPassphrase || !strings.Contains(out+errs, "does not unlock") {
		t.Errorf("verify with a wrong passphrase: exit %d, want %d (not %d: the disk is fine)\n%s%s", code, exitWrongPassphrase, exitNotVerified, out, errs)
	}
	code, out, _ = cli(t, "not the passphrase\n", "verify", "--image", img, "--passphrase-file", "-", "--json")
	if code != exitWrongPassphrase || !strings.Contains(out, `"kind":"wrong-passphrase"`) {
		t.Errorf("verify --json with a wrong passphrase: exit %d, want the failed event's kind wrong-passphrase\n%s", code, out)
	}
	code, out, _ = cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-", "--json")
	if code != 0 || !strings.Contains(out, `"fsck_clean":true`) || strings.Contains(out, testPass) {
		t.Errorf("verify --json: exit %d\n%s", code, out)
	}
}

func TestHeaderBackupAndJSON(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	img, hdr := filepath.Join(dir, "h.img"), filepath.Join(dir, "h.header")
	args := append([]string{"prepare", "--image", img, "--size", "80M", "--label", "h1", "--passphrase-file", "-", "--confirm", "h.img", "--json", "--header-backup", hdr}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	var last pipeline.Event
	n := 0
	var seq []string // the verify step starts early: its key check is announced before mkfs and ends after it
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not one JSON event per line: %q", line)
		}
		last = pipeline.Event{}
		json.Unmarshal([]byte(line), &last)
		n++
		switch k := string(last.Kind) + " " + string(last.Step); {
		case k == "info open" && strings.Contains(last.Message, "verify step started early"),
			k == "start mkfs", k == "done mkfs", k == "start verify", k == "result ":
			seq = append(seq, k)
		case k == "done verify" && strings.Contains(last.Message, "luksdock's own LUKS code and cryptsetup unlocked the keyslot to the volume key this run generated"):
			seq = append(seq, k)
		}
	}
	if got := strings.Join(seq, ", "); got != "info open, start mkfs, done mkfs, start verify, done verify, result " {
		t.Errorf("event order: %s", got)
	}
	if last.Kind != pipeline.EventResult || last.Result == nil || last.Result.HeaderBackup != hdr || n < 10 {
		t.Errorf("last event %+v after %d events", last, n)
	}
	if strings.Contains(out+errs, testPass) {
		t.Error("the passphrase appears in the output")
	}
	st, err := os.Stat(hdr)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("header backup: %v %v", err, st.Mode())
	}
	if got := testkit.Run(t, "", "cryptsetup", "luksDump", hdr); !strings.Contains(got, last.Result.LUKS.UUID) {
		t.Errorf("header backup is not of this volume")
	}
	// It never overwrites an existing backup.
	img2 := filepath.Join(dir, "h2.img")
	args = append([]string{"prepare", "--image", img2, "--size", "80M", "--label", "h2", "--passphrase-file", "-", "--confirm", "h2.img", "--header-backup", hdr}, smallKDF...)
	if code, _, errs := cli(t, testPass+"\n", args...); code != exitRefused || !strings.Contains(errs, "refusing to overwrite") {
		t.Errorf("existing header backup: exit %d %s", code, errs)
	}
	if _, err := os.Stat(img2); err == nil {
		t.Error("the refused run created its image")
	}
}

// TestVerifyRefusesUnmountableBlockSize: an ext4 with 1 KiB blocks inside a
// LUKS volume with 4 KiB sectors passes e2fsck but no kernel mounts it;
// verify must fail it.
func TestVerifyRefusesUnmountableBlockSize(t *testing.T) {
	testkit.NeedRoot(t)
	img := filepath.Join(t.TempDir(), "b.img")
	args := append([]string{"prepare", "--image", img, "--size", "80M", "--label", "b1", "--passphrase-file", "-", "--confirm", "b.img"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	d := sfdisk(t, img).PartitionTable.Partitions[0]
	dev := luks.Device{Path: img, Base: d.Start * 512, Size: d.Size * 512}
	key, err := luks.DumpVolumeKeyDevice(t.Context(), dev, []byte(testPass))
	if err != nil {
		t.Fatal(err)
	}
	info, err := luks.ReadHeaderDevice(dev)
	if err != nil || info.SectorSize != 4096 {
		t.Fatalf("header: %+v %v", info, err)
	}
	v, err := luks.MountUserspace(dev.Path, dev.Base, dev.Size, info.Segment(), key)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, "", "mkfs.ext4", "-q", "-F", "-b", "1024", "-L", "b1", v.Path())
	v.Close()
	code, out, errs := cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-")
	if code != exitNotVerified || !strings.Contains(out+errs, "smaller than the LUKS sector size") {
		t.Errorf("verify of an unmountable filesystem: exit %d\n%s%s", code, out, errs)
	}
}

// TestVerifyRefusesTableKernelIgnores: a prepared disk whose primary GPT
// header, or whose protective MBR, is gone still reads from its backup
// header, but Linux would make no partition node for it when docked (it
// reads the backup only when the primary is good, and needs the protective
// MBR), so verify must not pass it. sfdisk confirms each damage is real.
func TestVerifyRefusesTableKernelIgnores(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "sfdisk")
	dir := t.TempDir()
	img := filepath.Join(dir, "k.img")
	args := append([]string{"prepare", "--image", img, "--size", "80M", "--label", "k1", "--passphrase-file", "-", "--confirm", "k.img"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	good, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		off, n   int
		sfdiskOK bool   // sfdisk still reads a GPT (from the backup)
		sfdisk   string // what sfdisk says
	}{
		{"primary GPT header zeroed", 512, 512, true, "primary GPT table is corrupt"},
		{"protective MBR zeroed", 0, 512, false, "does not contain a recognized partition table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			clear(b[tc.off : tc.off+tc.n])
			if err := os.WriteFile(img, b, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("sfdisk", "--dump", img).CombinedOutput()
			if (err == nil) != tc.sfdiskOK || !strings.Contains(string(out), tc.sfdisk) {
				t.Fatalf("sfdisk --dump: %v, want ok=%v and %q:\n%s", err, tc.sfdiskOK, tc.sfdisk, out)
			}
			code, stdout, errs := cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-")
			if code != exitNotVerified || !strings.Contains(stdout+errs, "the kernel will not read this partition table") {
				t.Errorf("verify: exit %d, want %d saying the kernel will not read the table\n%s%s", code, exitNotVerified, stdout, errs)
			}
		})
	}
	// The same image undamaged passes: the refusals above are the damage's.
	if err := os.WriteFile(img, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-"); code != 0 {
		t.Errorf("verify of the undamaged image: exit %d\n%s%s", code, out, errs)
	}
}

// verifyJSON runs luksdock verify --json on target and returns its result.
func verifyJSON(t *testing.T, flag, target string) (int, *pipeline.Result, string) {
	t.Helper()
	code, out, errs := cli(t, testPass+"\n", "verify", flag, target, "--passphrase-file", "-", "--json")
	var res *pipeline.Result
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e pipeline.Event
		if json.Unmarshal([]byte(line), &e) == nil && e.Result != nil {
			res = e.Result
		}
	}
	return code, res, out + errs
}

// topDir decrypts the LUKS volume at dev with cryptsetup alone and returns
// what debugfs says of the filesystem's top directory ("User: 1000 Group:
// 1001"), after e2fsck -fn found it clean.
func topDir(t *testing.T, dev testkit.Device) string {
	t.Helper()
	v, err := testkit.Unlock(t, dev, testPass)
	if err != nil {
		t.Fatal(err)
	}
	plain := testkit.DecryptCryptsetup(t, v)
	testkit.Run(t, "", "e2fsck", "-fn", plain)
	out := testkit.Run(t, "", "debugfs", "-R", "stat <2>", plain)
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "User:") {
			f := strings.Fields(l)
			return strings.Join(f[:4], " ")
		}
	}
	t.Fatalf("debugfs stat <2>: no owner:\n%s", out)
	return ""
}

// --table none: LUKS on the whole disk, no partition table at all (blkid,
// sfdisk, wipefs agree); cryptsetup opens the disk itself; the top
// directory belongs to the user behind sudo; verify finds the volume with
// both sector sizes and reports the owner. --owner overrides sudo's user.
func TestPrepareTableNoneAndOwner(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "sfdisk", "blkid", "wipefs", "debugfs")
	t.Setenv("SUDO_UID", "1000")
	t.Setenv("SUDO_GID", "1001")
	t.Setenv("PKEXEC_UID", "")
	dir := t.TempDir()
	img := filepath.Join(dir, "none.img")
	code, out, errs := cli(t, "", "prepare", "--image", img, "--size", "96M", "--label", "whole1", "--table", "none", "--dry-run")
	for _, want := range []string{"# layout: no partition table: LUKS on the whole disk", "# No partition table (LUKS on the whole disk)\n# no partition table: LUKS goes directly on the whole disk\nLOOP=$(losetup --find --show " + img + ") && PART=$LOOP",
		"--label whole1 --cipher aes-xts-plain64 --key-size 512 \"$PART\"", "# owner of the filesystem's top directory: 1000:1001 (the user behind sudo"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("--dry-run --table none: exit %d, output lacks %q:\n%s%s", code, want, out, errs)
		}
	}
	if _, err := os.Stat(img); err == nil {
		t.Fatalf("--dry-run created %s", img)
	}
	args := append([]string{"prepare", "--image", img, "--size", "96M", "--label", "whole1", "--passphrase-file", "-", "--confirm", "none.img", "--table", "none"}, smallKDF...)
	code, out, errs = cli(t, testPass+"\n", args...)
	if code != 0 {
		t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
	}
	for _, want := range []string{"No partition table (LUKS on the whole disk)", "root_owner=1000:1001", "owner:        1000:1001", "found with:   512- and 4096-byte sectors"} {
		if !strings.Contains(out, want) {
			t.Errorf("prepare output lacks %q:\n%s", want, out)
		}
	}
	b := testkit.Run(t, "", "blkid", "-p", "-o", "export", img)
	if !strings.Contains(b, "TYPE=crypto_LUKS") || strings.Contains(b, "PTTYPE") {
		t.Errorf("blkid -p: want LUKS on the whole image and no table:\n%s", b)
	}
	if out, err := exec.Command("sfdisk", "--dump", img).CombinedOutput(); err == nil {
		t.Errorf("sfdisk finds a partition table:\n%s", out)
	}
	// LUKS2 has two headers; nothing else may be there.
	if got := strings.Fields(testkit.Run(t, "", "wipefs", "--no-act", "--noheadings", "--output", "TYPE", img)); len(got) == 0 || slices.ContainsFunc(got, func(s string) bool { return s != "crypto_LUKS" }) {
		t.Errorf("wipefs: %v, want only crypto_LUKS", got)
	}
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", img)
	if !strings.Contains(dump, "Label:         \twhole1\n") {
		t.Errorf("luksDump:\n%s", dump)
	}
	if got := topDir(t, testkit.Device{Path: img}); got != "User: 1000 Group: 1001" {
		t.Errorf("top directory: %q, want User: 1000 Group: 1001", got)
	}
	code, res, text := verifyJSON(t, "--image", img)
	if code != 0 || res == nil || res.Table != "none" || res.Owner != "1000:1001" || fmt.Sprint(res.SectorViews) != "[512 4096]" || res.Partition != img {
		t.Errorf("verify --json: exit %d, result %+v\n%s", code, res, text)
	}

	img2 := filepath.Join(dir, "owned.img")
	args = append([]string{"prepare", "--image", img2, "--size", "96M", "--label", "owned1", "--passphrase-file", "-", "--confirm", "owned.img", "--owner", "4242:4343"}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare --owner: exit %d\n%s%s", code, out, errs)
	}
	p1, _ := testkit.Partition1(t, img2)
	if got := topDir(t, p1); got != "User: 4242 Group: 4343" {
		t.Errorf("--owner 4242:4343: top directory %q", got)
	}
	if code, res, text := verifyJSON(t, "--image", img2); code != 0 || res == nil || res.Owner != "4242:4343" {
		t.Errorf("verify --json: exit %d %+v\n%s", code, res, text)
	}
	if code, out, errs := cli(t, "", "prepare", "--image", filepath.Join(dir, "x.img"), "--size", "96M", "--label", "x", "--dry-run", "--owner", "nosuchuser-luksdock"); code != exitRefused || !strings.Contains(out+errs, "nosuchuser-luksdock") {
		t.Errorf("--owner of an unknown user: exit %d\n%s%s", code, out, errs)
	}
}

// A disk prepared through a 4096-byte dock (loop device, --sector-size
// 4096) verifies through a 512-byte dock (a second loop device on the same
// image) and back, and verify says both; an MBR made through the 4096-byte
// dock is warned about in the plan and is found with 4096-byte sectors only.
func TestPrepareThroughEitherDock(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "sfdisk")
	dir := t.TempDir()
	img := filepath.Join(dir, "dock.img")
	testkit.Run(t, "", "truncate", "-s", "128M", img)
	dev4k := testkit.AttachLoop(t, img, "--sector-size", "4096")
	args := append([]string{"prepare", "--device", dev4k, "--label", "dock1", "--passphrase-file", "-", "--confirm", filepath.Base(dev4k)}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare through 4096: exit %d\n%s%s", code, out, errs)
	}
	testkit.DetachLoop(dev4k)
	for _, ss := range []string{"512", "4096"} {
		dev := testkit.AttachLoop(t, img, "--sector-size", ss)
		code, res, text := verifyJSON(t, "--device", dev)
		if code != 0 || res == nil || fmt.Sprint(res.SectorViews) != "[512 4096]" || fmt.Sprint(res.LogicalSector) != ss {
			t.Errorf("verify through a %s-byte dock: exit %d %+v\n%s", ss, code, res, text)
		}
		testkit.DetachLoop(dev)
	}

	// The reverse: through a 512-byte dock, where cryptsetup picks 512-byte
	// LUKS sectors and mke2fs alone would pick 1024-byte blocks for a small
	// filesystem, which a 4096-byte dock's kernel refuses to mount.
	img512 := filepath.Join(dir, "dock512.img")
	testkit.Run(t, "", "truncate", "-s", "96M", img512)
	dev512 := testkit.AttachLoop(t, img512, "--sector-size", "512")
	args = append([]string{"prepare", "--device", dev512, "--label", "dock3", "--passphrase-file", "-", "--confirm", filepath.Base(dev512)}, smallKDF...)
	if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
		t.Fatalf("prepare through 512: exit %d\n%s%s", code, out, errs)
	}
	testkit.DetachLoop(dev512)
	dev := testkit.AttachLoop(t, img512, "--sector-size", "4096")
	if code, res, text := verifyJSON(t, "--device", dev); code != 0 || res == nil || fmt.Sprint(res.SectorViews) != "[512 4096]" || res.FSBlockSize != 4096 || strings.Contains(text, "warning") {
		t.Errorf("verify through 4096 of a disk made through 512: exit %d %+v\n%s", code, res, text)
	}
	testkit.DetachLoop(dev)

	dev4k = testkit.AttachLoop(t, img, "--sector-size", "4096")
	code, out, errs := cli(t, "", "prepare", "--device", dev4k, "--label", "dock2", "--table", "mbr", "--dry-run")
	if code != 0 || !strings.Contains(out, "# warning: "+pipeline.MBRNotPortable) || !strings.Contains(out, "# sectors: the dock reports 4096-byte logical") {
		t.Errorf("dry-run of --table mbr through 4096: exit %d\n%s%s", code, out, errs)
	}
	args = append([]string{"prepare", "--device", dev4k, "--label", "dock2", "--table", "mbr", "--passphrase-file", "-", "--confirm", filepath.Base(dev4k)}, smallKDF...)
	code, out, errs = cli(t, testPass+"\n", args...)
	if code != 0 || !strings.Contains(out, "found with:   4096-byte sectors only") || !strings.Contains(out, "warning: the partition is found only through docks that report 4096-byte sectors") {
		t.Errorf("prepare --table mbr through 4096: exit %d\n%s%s", code, out, errs)
	}
}

// A partition table that points, with either sector size, at something that
// is not LUKS fails verify (exit 5) and says what kernels find.
func TestVerifyFailsReadableInNeither(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "sfdisk")
	img := filepath.Join(t.TempDir(), "n.img")
	testkit.Run(t, "", "truncate", "-s", "96M", img)
	testkit.Run(t, "label: dos\nstart=2048, size=100000, type=83\n", "sfdisk", "-q", img)
	// LUKS at 3 MiB: neither 2048×512 nor 2048×4096.
	region := filepath.Join(t.TempDir(), "r.img")
	testkit.Run(t, "", "truncate", "-s", "40M", region)
	testkit.Run(t, testPass, "cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", region)
	testkit.Run(t, "", "dd", "if="+region, "of="+img, "bs=1M", "seek=3", "count=17", "conv=notrunc", "status=none")
	code, out, errs := cli(t, testPass+"\n", "verify", "--image", img, "--passphrase-file", "-")
	if code != exitNotVerified || !strings.Contains(out+errs, "no dock would show the encrypted volume: a kernel reading the partition table with 512- or with 4096-byte sectors finds no LUKS header") ||
		!strings.Contains(out+errs, "512-byte sectors: dos, partition 1 at 1048576 holds no LUKS header; 4096-byte sectors: dos, no partition 1 within the disk") {
		t.Errorf("verify: exit %d\n%s%s", code, out, errs)
	}
}
