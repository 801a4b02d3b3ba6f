package e2e

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"
)

// memReport is what `guestwatch memwatch` reports (e2e/guestwatch/memwatch.go).
type memReport struct {
	ExitCode  int    `json:"exit_code"`
	KeyBytes  int    `json:"key_bytes"`
	RK        bool   `json:"rk"`
	Error     string `json:"error"`
	Snapshots []struct {
		Point     string `json:"point"`
		Who       string `json:"who"`
		PID       int    `json:"pid"`
		VmLck     string `json:"vm_lck"`
		VmLckKB   int    `json:"vm_lck_kb"`
		ReadBytes int64  `json:"read_bytes"`
		Error     string `json:"error"`
		Hits      []struct {
			Form    string `json:"form"`
			Addr    uint64 `json:"addr"`
			Region  string `json:"region"`
			Locked  bool   `json:"locked"`
			Context string `json:"context"`
		} `json:"hits"`
	} `json:"snapshots"`
}

// Issue 21 item 5 with the kernel engine, in the QEMU guest (the host has
// no device-mapper; reliability.TestSecretsInMemory proves the userspace
// engine on the host, with the same rules and the same memory reader,
// internal/procmem). `luksdock prepare --engine kernel --recovery-key` and
// `luksdock verify --engine kernel --recovery-key-file` (passphrase on
// stdin) each run under `guestwatch memwatch`: mkfs.ext4 and e2fsck run
// through shims that stop themselves before they exec the real tool, and
// while one is stopped (just after cryptsetup has mapped the volume with
// the key) luksdock's memory is read; it is read once more at its exit
// stop (ptrace). Afterwards the guest recovers the volume key with stock
// cryptsetup luksDump --dump-volume-key, and memwatch searches every
// snapshot for every form of the passphrase, the recovery key and the
// volume key. With the kernel engine dm-crypt holds the key in the kernel:
// no copy of any form may be outside locked memory at the tool points,
// none at all at exit, VmLck must be > 0 while luksdock holds one, and (a
// control) the passphrase luksdock holds until it returns must be found in
// its locked memory at the tool points.
func TestSecretsInMemoryKernelEngine(t *testing.T) {
	files := []string{"m-prepare.json", "m-verify.json", "prepare.out", "prepare.err", "verify.out", "verify.err"}
	script := shimTools("/tmp/stop", "kill -STOP $$", "mkfs.ext4", "e2fsck") +
		`PATH=/tmp/stop:$PATH guestwatch memwatch -out /root/m-prepare.json -shims /tmp/stop -pass /e2e/secret -vk-dev /dev/${n}1 -rk /root/rk.txt -- \
	luksdock prepare --device /dev/$n --label backups21 --passphrase-file /e2e/secret --confirm $n --recovery-key /root/rk.txt \
	--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json </dev/null >/root/prepare.out 2>/root/prepare.err
mark prepared $?
PATH=/tmp/stop:$PATH guestwatch memwatch -out /root/m-verify.json -shims /tmp/stop -pass /e2e/secret -vk-dev /dev/${n}1 -rk /root/rk.txt -- \
	luksdock verify --device /dev/$n --passphrase-file - --recovery-key-file /root/rk.txt --engine kernel --json </e2e/secret >/root/verify.out 2>/root/verify.err
mark verified $?
` + emitAll(files...)
	vm, _, _ := secretGuest(t, "mem", "KMEMORY0021", "e2e-memory-", 8*time.Minute, script)
	prc := strings.Join(mustMark(t, vm, "prepared", 5*time.Minute), "")
	vrc := strings.Join(mustMark(t, vm, "verified", 3*time.Minute), "")
	blobs := blobsThenExit(t, vm, files...)
	if prc != "0" {
		t.Fatalf("luksdock prepare under guestwatch memwatch: exit %s\n%s\n%s", prc, blobs["prepare.out"], blobs["prepare.err"])
	}
	if vrc != "0" {
		t.Fatalf("luksdock verify under guestwatch memwatch: exit %s\n%s\n%s", vrc, blobs["verify.out"], blobs["verify.err"])
	}
	for _, c := range []struct {
		name   string
		points []string
	}{
		{"prepare", []string{"mkfs.ext4 running", "e2fsck running", "exit"}},
		{"verify", []string{"e2fsck running", "exit"}},
	} {
		var r memReport
		if err := json.Unmarshal(blobs["m-"+c.name+".json"], &r); err != nil {
			t.Fatalf("memwatch report of %s: %v", c.name, err)
		}
		if r.Error != "" || r.KeyBytes != 64 || !r.RK {
			t.Errorf("%s: memwatch: error %q, volume key of %d bytes recovered, recovery key read %v", c.name, r.Error, r.KeyBytes, r.RK)
		}
		seen := map[string]bool{}
		for _, s := range r.Snapshots {
			if s.Error != "" {
				t.Errorf("%s, %s: reading luksdock's memory: %s", c.name, s.Point, s.Error)
				continue
			}
			seen[s.Point] = true
			if s.Who != "luksdock" {
				t.Errorf("%s, %s: a %s (pid %d) ran with the kernel engine", c.name, s.Point, s.Who, s.PID)
			}
			count := map[string]int{}
			for _, h := range s.Hits {
				where := "unlocked"
				if h.Locked {
					where = "locked"
				}
				k := h.Form + " (" + where + ")"
				if count[k] == 0 {
					switch {
					case s.Point == "exit":
						t.Errorf("%s, at exit: luksdock still holds the %s at %#x (%q) in %s", c.name, k, h.Addr, h.Region, h.Context)
					case !h.Locked:
						t.Errorf("%s, %s: luksdock holds the %s at %#x (%q) outside locked memory, in %s", c.name, s.Point, h.Form, h.Addr, h.Region, h.Context)
					}
				}
				count[k]++
			}
			var sum []string
			for k, n := range count {
				sum = append(sum, fmt.Sprintf("%s ×%d", k, n))
			}
			sort.Strings(sum)
			t.Logf("%s, %s: luksdock (pid %d): %d MiB read, VmLck %s; found: %s", c.name, s.Point, s.PID, s.ReadBytes>>20, s.VmLck, strings.Join(sum, ", "))
			if s.Point != "exit" {
				if len(s.Hits) > 0 && s.VmLckKB == 0 {
					t.Errorf("%s, %s: luksdock holds secrets with VmLck %s", c.name, s.Point, s.VmLck)
				}
				if count["passphrase (locked)"] == 0 {
					t.Errorf("control: %s, %s: the passphrase luksdock holds is not found in its locked memory: the scan finds nothing", c.name, s.Point)
				}
			}
		}
		for _, p := range c.points {
			if !seen[p] {
				t.Errorf("%s: no snapshot of luksdock's memory at %q (have %v)", c.name, p, seen)
			}
		}
	}
}
