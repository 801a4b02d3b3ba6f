package e2e

import (
	"bytes"
	"crypto/aes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/xts"
)

// watchReport is what e2e/guestwatch reports about one watched run (the
// same JSON fields as its Report).
type watchReport struct {
	Command  []string `json:"command"`
	ExitCode int      `json:"exit_code"`
	Samples  int      `json:"samples"`
	Procs    []struct {
		PID     int    `json:"pid"`
		Comm    string `json:"comm"`
		Exe     string `json:"exe"`
		Cmdline []byte `json:"cmdline"`
		Environ []byte `json:"environ"`
	} `json:"procs"`
	Files []struct {
		Path     string `json:"path"`
		Dir      bool   `json:"dir"`
		Read     bool   `json:"read"`
		Unread   string `json:"unread"`
		Contents []byte `json:"contents"`
		Exists   bool   `json:"exists"`
	} `json:"files"`
	DMTable         []string `json:"dm_table"`
	DMTableShowKeys []string `json:"dm_table_showkeys"`
	DMRuns          int      `json:"dm_runs"`
	CoreLimit       string   `json:"core_limit"`
	Watched         []string `json:"watched"`
}

// secretForms are the ways the passphrase or the volume key could show up
// in text or bytes (as reliability/secrets_test.go looks for them).
func secretForms(pass string, key []byte) map[string][]byte {
	return map[string][]byte{
		"passphrase":        []byte(pass),
		"passphrase hex":    []byte(hex.EncodeToString([]byte(pass))),
		"passphrase base64": []byte(base64.StdEncoding.EncodeToString([]byte(pass))),
		"volume key":        key,
		"volume key hex":    []byte(hex.EncodeToString(key)),
		"volume key HEX":    []byte(strings.ToUpper(hex.EncodeToString(key))),
		"volume key base64": []byte(base64.StdEncoding.EncodeToString(key)),
		// cryptsetup luksDump prints the key as "xx xx xx ..."
		"volume key spaced": []byte(strings.TrimSpace(fmt.Sprintf("% x", key[:16]))),
	}
}

// recoveryKeyRe is a recovery key as luksdock writes it: eight groups of
// eight modhex characters joined by dashes.
var recoveryKeyRe = regexp.MustCompile(`[cbdefghijklnrtuv]{8}(?:-[cbdefghijklnrtuv]{8}){7}`)

// found returns the names of the forms that occur in data.
func found(data []byte, forms map[string][]byte) []string {
	var names []string
	for name, f := range forms {
		if len(f) > 0 && bytes.Contains(data, f) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

func scanFor(t *testing.T, where string, data []byte, forms map[string][]byte) {
	t.Helper()
	if names := found(data, forms); len(names) > 0 {
		t.Errorf("%s holds the %s", where, strings.Join(names, ", the "))
	}
}

// parseVolumeKey reads the key from cryptsetup luksDump --dump-volume-key.
func parseVolumeKey(t *testing.T, out []byte) []byte {
	t.Helper()
	var hexkey strings.Builder
	in := false
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "MK dump:"); i >= 0 {
			in = true
			line = line[i+len("MK dump:"):]
		} else if in && (line == "" || (line[0] != '\t' && line[0] != ' ')) {
			break
		}
		if in {
			hexkey.WriteString(strings.Join(strings.Fields(line), ""))
		}
	}
	key, err := hex.DecodeString(hexkey.String())
	if err != nil || len(key) != 64 {
		t.Fatalf("cryptsetup luksDump --dump-volume-key printed no 64-byte key:\n%s", out)
	}
	return key
}

// luksMeta is the part of cryptsetup luksDump --dump-json-metadata used here.
type luksMeta struct {
	Keyslots map[string]struct {
		Area struct{ Offset, Size string } `json:"area"`
	} `json:"keyslots"`
	Segments map[string]struct {
		Offset     string `json:"offset"`
		IVTweak    string `json:"iv_tweak"`
		Encryption string `json:"encryption"`
		SectorSize int    `json:"sector_size"`
	} `json:"segments"`
}

// Issue 6 secret hygiene with the kernel engine, in the QEMU guest (the
// host has no device-mapper; reliability.TestSecretHygiene covers the
// userspace engine on the host). A fresh random passphrase; `luksdock
// prepare --engine kernel` (passphrase file) and `luksdock verify --engine
// kernel` (passphrase on stdin) each run under guestwatch, which samples the
// argv and environment of luksdock and every descendant every 2 ms, runs
// `dmsetup table` every 100 ms, and reads every file created or written
// under /tmp, /run (with /run/cryptsetup) and /dev/shm when it is closed.
// cryptsetup, mkfs.ext4, e2fsck and dumpe2fs run through shims that sleep
// 0.5 s first
// (the slowTools idea of the reliability suite), and the sampler must have
// seen each real executable (among them the cryptsetup runs that are handed
// the passphrase or the key), luksdock's own argv and a crypt target in
// `dmsetup table`, or the test fails. No file created during a run may be
// left behind. Afterwards the guest recovers the
// volume key with stock `cryptsetup luksDump --dump-volume-key`. Neither the
// passphrase nor the volume key (raw, hex, HEX, base64, cryptsetup's spaced
// hex; the passphrase also hex and base64) may appear in any argv,
// environment, `dmsetup table` output (without --showkeys: with it the
// kernel hands root the key by design, and the test only logs what it
// shows), file, stdout, stderr or --json output, in the disk image outside
// the LUKS2 keyslot areas, or in the filesystem decrypted on the host with
// golang.org/x/crypto/xts. Controls: a process that puts the passphrase in
// its argv, its environment and a file under /run is caught by the same
// sampler and scan, the key forms are found in luksDump's own output, and
// the decrypted volume is the ext4 luksdock made.
func TestSecretHygieneKernelEngine(t *testing.T) {
	const label = "backups05"
	files := []string{"w-prepare.json", "w-verify.json", "w-control.json", "prepare.out", "prepare.err", "verify.out", "verify.err", "meta.json", "vk", "rk.txt"}
	watch := "guestwatch watch -dirs /tmp,/run,/dev/shm -out"
	script := `label=` + label + `
# The shims keep the tools' processes alive for the sampler; the real
# cryptsetup that is handed the passphrase lives as long as its KDF, hence
# 50000 pbkdf2 iterations (with 1000 a loaded CI machine once sampled
# past it).
` + shimTools("/tmp/slow", "sleep 0.5", "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs") +
		`PATH=/tmp/slow:$PATH ` + watch + ` /root/w-prepare.json -- \
	luksdock prepare --device /dev/$n --label $label --passphrase-file /e2e/secret --confirm $n --recovery-key /root/rk.txt \
	--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 50000 --json </dev/null >/root/prepare.out 2>/root/prepare.err
mark prepared $?
PATH=/tmp/slow:$PATH ` + watch + ` /root/w-verify.json -- \
	luksdock verify --device /dev/$n --passphrase-file - --recovery-key-file /root/rk.txt --engine kernel --json </e2e/secret >/root/verify.out 2>/root/verify.err
mark verified $?
# Control: a leak in an argv, an environment and a file under /run.
LEAK=$(cat /e2e/secret) ` + watch + ` /root/w-control.json -- \
	sh -c 'cat /e2e/secret > /run/leak; sleep 0.5; rm -f /run/leak' "$(cat /e2e/secret)"
mark control $?
mark dmsetup $(dmsetup ls 2>&1)
mark part $(cat /sys/block/$n/${n}1/start /sys/block/$n/${n}1/size)
cryptsetup luksDump --dump-json-metadata /dev/${n}1 > /root/meta.json || fail "luksDump --dump-json-metadata"
cryptsetup luksDump --batch-mode --dump-volume-key /dev/${n}1 < /e2e/secret > /root/vk 2>&1 || { cat /root/vk; fail "luksDump --dump-volume-key"; }
` + emitAll(files...)
	start := time.Now()
	vm, pass, image := secretGuest(t, "sec", "KSECRET0005", "e2e-secret-", 6*time.Minute, script)
	if rc := strings.Join(mustMark(t, vm, "prepared", 4*time.Minute), ""); rc != "0" {
		t.Errorf("luksdock prepare under guestwatch: exit %s", rc)
	}
	if rc := strings.Join(mustMark(t, vm, "verified", 2*time.Minute), ""); rc != "0" {
		t.Errorf("luksdock verify under guestwatch: exit %s", rc)
	}
	mustMark(t, vm, "control", time.Minute)
	if dm := strings.Join(mustMark(t, vm, "dmsetup", 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("mapping left after prepare and verify: %q", dm)
	}
	part := mustMark(t, vm, "part", 10*time.Second)
	blobs := blobsThenExit(t, vm, files...)
	t.Logf("guest scenario: %.1f s", time.Since(start).Seconds())

	key := parseVolumeKey(t, blobs["vk"])
	forms := secretForms(pass, key)
	// Control: the key forms are found where cryptsetup printed the key.
	if got := found(blobs["vk"], forms); !slices.Contains(got, "volume key spaced") {
		t.Fatalf("control: the scan does not find the volume key in luksDump's output (found %v)", got)
	}
	// The recovery key prepare wrote to /root (outside the watched
	// directories: that file is where it belongs) is a secret like the
	// passphrase, in every form.
	rk := recoveryKeyRe.Find(blobs["rk.txt"])
	if rk == nil {
		t.Fatalf("no recovery key in the file prepare wrote:\n%s", blobs["rk.txt"])
	}
	forms["recovery key"] = rk
	forms["recovery key hex"] = []byte(hex.EncodeToString(rk))
	forms["recovery key base64"] = []byte(base64.StdEncoding.EncodeToString(rk))
	forms["recovery key without dashes"] = bytes.ReplaceAll(rk, []byte("-"), nil)
	if got := found(blobs["rk.txt"], forms); !slices.Contains(got, "recovery key") {
		t.Fatalf("control: the scan does not find the recovery key in its own file (found %v)", got)
	}

	reports := map[string]*watchReport{}
	for _, name := range []string{"prepare", "verify", "control"} {
		var r watchReport
		if err := json.Unmarshal(blobs["w-"+name+".json"], &r); err != nil {
			t.Fatalf("guestwatch report %s: %v", name, err)
		}
		reports[name] = &r
	}

	// Control: the same sampler and scan catch a leak in each channel.
	ctl := reports["control"]
	var inArgv, inEnv, inFile bool
	for _, p := range ctl.Procs {
		inArgv = inArgv || bytes.Contains(p.Cmdline, forms["passphrase"])
		inEnv = inEnv || bytes.Contains(p.Environ, forms["passphrase"])
	}
	for _, f := range ctl.Files {
		inFile = inFile || (f.Path == "/run/leak" && bytes.Contains(f.Contents, forms["passphrase"]))
	}
	if !inArgv || !inEnv || !inFile {
		t.Fatalf("control: a deliberate leak was not caught (argv %v, environment %v, /run/leak %v): the sampler proves nothing", inArgv, inEnv, inFile)
	}

	for _, name := range []string{"prepare", "verify"} {
		r := reports[name]
		// The sampler must have seen what it is meant to watch.
		exes := map[string]bool{}
		ownArgv := false
		for _, p := range r.Procs {
			exes[filepath.Base(p.Exe)] = true
			if p.Comm == "luksdock" && bytes.Contains(p.Cmdline, []byte("--passphrase-file\x00")) {
				ownArgv = true
			}
		}
		want := []string{"cryptsetup", "e2fsck", "dumpe2fs"}
		if name == "prepare" {
			want = append(want, "mkfs.ext4")
		}
		for _, w := range want {
			if !exes[w] && !(w == "mkfs.ext4" && exes["mke2fs"]) {
				t.Errorf("%s: the sampler never saw %s running (%d samples; executables seen: %v)", name, w, r.Samples, keys(exes))
			}
		}
		// ... and, in particular, the cryptsetup runs that are handed a
		// secret (on standard input or on fd 3).
		// verify: cryptsetup's unlock recovers the volume key from the
		// passphrase, then maps the volume read-only with that key.
		handed := []string{"luksDump\x00--batch-mode\x00--dump-volume-key\x00--key-file=-", "open\x00--type\x00luks\x00--readonly\x00--volume-key-file=/proc/self/fd/3"}
		if name == "prepare" {
			// luksAddKey: the recovery key's keyslot (the passphrase on
			// stdin, the recovery key on fd 3)
			handed = append(handed, "luksFormat\x00", "open\x00--type\x00luks\x00--volume-key-file=/proc/self/fd/3", "luksAddKey\x00")
		}
		for _, h := range handed {
			seen := false
			for _, p := range r.Procs {
				seen = seen || (filepath.Base(p.Exe) == "cryptsetup" && bytes.Contains(p.Cmdline, []byte(h)))
			}
			if !seen {
				t.Errorf("%s: the sampler never saw the real cryptsetup run with %q", name, strings.ReplaceAll(h, "\x00", " "))
			}
		}
		if !ownArgv {
			t.Errorf("%s: the sampler did not record luksdock's own argv", name)
		}
		crypt := false
		for _, tb := range r.DMTable {
			crypt = crypt || strings.Contains(tb, " crypt ")
			scanFor(t, name+": `dmsetup table` ("+strings.TrimSpace(tb)+")", []byte(tb), forms)
		}
		if !crypt {
			t.Errorf("%s: `dmsetup table` (%d runs) never showed the crypt mapping: %q", name, r.DMRuns, r.DMTable)
		}
		for _, tb := range r.DMTable {
			if l := firstCrypt(tb); l != "" {
				t.Logf("%s: `dmsetup table` shows: %s", name, l)
				break
			}
		}
		for _, tb := range r.DMTableShowKeys {
			if strings.Contains(tb, " crypt ") {
				if f := found([]byte(tb), forms); len(f) > 0 {
					t.Logf("%s: `dmsetup table --showkeys` shows the %v (by design: root asks the kernel for the key; not a luksdock leak)", name, f)
				} else {
					t.Logf("%s: `dmsetup table --showkeys` does not show the key itself: %s", name, firstCrypt(tb))
				}
			}
		}
		for _, p := range r.Procs {
			what := fmt.Sprintf("%s: pid %d (%s, %s)", name, p.PID, p.Comm, p.Exe)
			scanFor(t, what+" argv "+strings.ReplaceAll(string(p.Cmdline), "\x00", " "), p.Cmdline, forms)
			scanFor(t, what+" environment", p.Environ, forms)
		}
		var created, unread, left []string
		for _, f := range r.Files {
			created = append(created, f.Path)
			if f.Read {
				scanFor(t, name+": file "+f.Path, f.Contents, forms)
			} else if !f.Dir {
				unread = append(unread, f.Path+" ("+f.Unread+")")
			}
			if f.Exists {
				left = append(left, f.Path)
			}
		}
		t.Logf("%s: %d /proc samples, %d distinct process images, %d dmsetup table runs; watched %v", name, r.Samples, len(r.Procs), r.DMRuns, r.Watched)
		t.Logf("%s: created under /tmp, /run, /dev/shm: %v; not readable: %v", name, created, unread)
		if len(left) > 0 {
			t.Errorf("%s: files created during the run are left behind: %v", name, left)
		}
		if r.CoreLimit != "Max core file size 0 0 bytes" {
			t.Errorf("%s: luksdock's core file limit is %q, want 0", name, r.CoreLimit)
		}
		scanFor(t, name+" stdout (--json)", blobs[name+".out"], forms)
		scanFor(t, name+" stderr", blobs[name+".err"], forms)
	}
	checkResultEvent(t, blobs["prepare.out"], label, "kernel")

	// The disk, outside the keyslot areas, and the decrypted filesystem.
	var meta luksMeta
	if err := json.Unmarshal(blobs["meta.json"], &meta); err != nil {
		t.Fatalf("luksDump --dump-json-metadata: %v", err)
	}
	if len(part) != 2 {
		t.Fatalf("bad part marker %v", part)
	}
	pstart, _ := strconv.ParseInt(part[0], 10, 64)
	psize, _ := strconv.ParseInt(part[1], 10, 64)
	pstart, psize = pstart*512, psize*512
	img, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(img[pstart:], []byte("LUKS\xba\xbe")) {
		t.Fatalf("control: no LUKS header at byte %d of the image the guest wrote", pstart)
	}
	masked := bytes.Clone(img)
	for id, ks := range meta.Keyslots {
		o, _ := strconv.ParseInt(ks.Area.Offset, 10, 64)
		s, _ := strconv.ParseInt(ks.Area.Size, 10, 64)
		if s <= 0 {
			t.Fatalf("keyslot %s has no area: %+v", id, ks)
		}
		clear(masked[pstart+o : pstart+o+s])
	}
	if len(meta.Keyslots) == 0 {
		t.Fatal("no keyslot in the LUKS2 metadata")
	}
	scanFor(t, "the disk outside the keyslot areas", masked, forms)
	plain := decryptSegment(t, img, pstart, psize, meta, key)
	// Control: what was decrypted is the filesystem luksdock made.
	if binary.LittleEndian.Uint16(plain[1024+56:]) != 0xEF53 || string(bytes.TrimRight(plain[1024+120:1024+136], "\x00")) != label {
		t.Fatalf("control: the data segment decrypted with the recovered key is not ext4 labelled %s", label)
	}
	scanFor(t, "the decrypted filesystem", plain, forms)
}

// decryptSegment decrypts LUKS2 segment 0 of the partition at pstart in img
// with golang.org/x/crypto/xts (independent of luksdock and of the kernel).
// Ciphertext that is all zeros was never written and is left as zeros.
func decryptSegment(t *testing.T, img []byte, pstart, psize int64, meta luksMeta, key []byte) []byte {
	t.Helper()
	seg, ok := meta.Segments["0"]
	if !ok || seg.Encryption != "aes-xts-plain64" {
		t.Fatalf("unexpected LUKS2 segment: %+v", meta.Segments)
	}
	if seg.SectorSize != 512 {
		t.Fatalf("segment sector size %d: only 512 is handled here", seg.SectorSize)
	}
	off, _ := strconv.ParseInt(seg.Offset, 10, 64)
	tweak, _ := strconv.ParseUint(seg.IVTweak, 10, 64)
	c, err := xts.NewCipher(aes.NewCipher, key)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Clone(img[pstart+off : pstart+psize])
	zero := make([]byte, 4096)
	for o := 0; o+4096 <= len(data); o += 4096 {
		b := data[o : o+4096]
		if bytes.Equal(b, zero) {
			continue
		}
		for s := 0; s < 4096; s += 512 {
			c.Decrypt(b[s:s+512], b[s:s+512], uint64(o+s)/512+tweak)
		}
	}
	return data
}

func firstCrypt(table string) string {
	for _, l := range strings.Split(table, "\n") {
		if strings.Contains(l, " crypt ") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func keys(m map[string]bool) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}
