package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Scenario 5: wrong-disk protection on a real kernel. The docked disk (a
// legacy usb-storage device on xHCI) with a mounted partition, and the same
// disk with an open dm-crypt mapping on its partition, are listed as
// refused and `luksdock prepare` refuses them (exit 3); the disk image, hashed
// on the host after the guest synced, is byte-identical before and after
// each list+prepare attempt. So is the disk with a loop device attached to
// its partition itself (losetup /dev/loopN /dev/sdX1, issue 12), which
// leaves no holder link in sysfs and takes no exclusive claim.
func TestWrongDiskRefused(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "inuse", Image: newImage(t, dir, "disk.img", 128<<20), Transport: "storage", Serial: "INUSE0001"}
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{d}, Timeout: 4 * time.Minute, Script: `
n=$(wait_disk ` + d.Serial + ` 60) || fail "disk did not appear"
p=${n}1
printf 'label: gpt\n,,L\n' | sfdisk -q /dev/$n || fail "sfdisk"
d=$(deadline 5); while [ ! -b /dev/$p ]; do past $d && fail "no /dev/$p"; usleep 50000; done
run mkfs.ext4 -q -L photos -E lazy_itable_init=0,lazy_journal_init=0,nodiscard /dev/$p
run mount -t ext4 -o rw,noinit_itable /dev/$p /mnt
echo "precious" > /mnt/keep; sync

attempt() { # attempt CASE: the host hashes the image, we list and try to prepare, the host hashes again
	sync; mark hash-before-$1; host_wait hashed
	luksdock list --json </dev/null > /tmp/list-$1.json 2>/tmp/list-$1.err || { cat /tmp/list-$1.err; fail "luksdock list exited $?"; }
	emit list-$1 /tmp/list-$1.json
	luksdock prepare --device /dev/$n --label wrong --passphrase-file /e2e/pass --confirm $n \
		--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 </dev/null >/tmp/prep-$1.out 2>&1
	rc=$?
	cat /tmp/prep-$1.out
	emit prepare-$1 /tmp/prep-$1.out
	sync
	mark attempt-$1 $n $rc
	host_wait hashed
}
attempt mounted
[ "$(cat /mnt/keep)" = precious ] || fail "file on the mounted partition changed"
run umount /mnt

run cryptsetup luksFormat --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 /dev/$p --key-file /e2e/pass
run cryptsetup open /dev/$p holder --key-file /e2e/pass
ls /sys/block/$n/$p/holders
attempt holder
dmsetup ls
run cryptsetup close holder

# Issue 12: a loop device attached to the partition itself (as for a VM
# disk): no holder link, no O_EXCL claim, yet a user of the disk.
l=$(/usr/sbin/losetup --find --show /dev/$p) || fail "losetup on /dev/$p"
echo "$l is attached to /dev/$p"
attempt loop
run /usr/sbin/losetup --detach $l
`})
	cases := []struct {
		name   string
		reason []string // words the refusal should contain (any of them)
	}{
		{"mounted", []string{"mount"}},
		{"holder", []string{"holder", "dm-", "crypt", "mapper"}},
		{"loop", []string{"is attached to " + "sd"}},
	}
	for _, c := range cases {
		// The guest has synced; nothing else writes to the disk.
		mustMark(t, vm, "hash-before-"+c.name, 3*time.Minute)
		h0 := testkit.SHA256File(t, d.Image)
		if err := vm.Send("hashed"); err != nil {
			t.Fatal(err)
		}
		args := mustMark(t, vm, "attempt-"+c.name, 3*time.Minute)
		h1 := testkit.SHA256File(t, d.Image)
		if err := vm.Send("hashed"); err != nil {
			t.Fatal(err)
		}
		if len(args) != 2 {
			t.Fatalf("%s: bad marker %v", c.name, args)
		}
		name, rc := args[0], args[1]
		listJSON, err := vm.Blob("list-"+c.name, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		prepOut, _ := vm.Blob("prepare-"+c.name, 10*time.Second)
		var entries []listEntry
		if err := json.Unmarshal(listJSON, &entries); err != nil {
			t.Fatalf("%s: luksdock list --json: %v\n%s", c.name, err, listJSON)
		}
		var e *listEntry
		for i := range entries {
			if entries[i].Name == name {
				e = &entries[i]
			}
		}
		switch {
		case e == nil:
			t.Errorf("%s: %s not in luksdock list --json:\n%s", c.name, name, listJSON)
		case e.OK || len(e.Verdict.Refused) == 0:
			t.Errorf("%s: %s is not listed as refused (ok=%v, status %q)", c.name, name, e.OK, e.Status)
		case !containsAny(strings.ToLower(strings.Join(e.Verdict.Refused, "; ")), c.reason):
			t.Errorf("%s: refusal reasons %q do not mention %v", c.name, e.Verdict.Refused, c.reason)
		default:
			t.Logf("%s: listed as %q", c.name, e.Status)
		}
		if rc != "3" {
			t.Errorf("%s: luksdock prepare exited %s, want 3 (refused by safety):\n%s", c.name, rc, prepOut)
		} else {
			t.Logf("%s: prepare refused: %s", c.name, strings.TrimSpace(string(prepOut)))
		}
		if h0 != h1 {
			t.Errorf("%s: the disk image changed during the refused list+prepare: sha256 %s -> %s", c.name, h0, h1)
		}
	}
	mustExit(t, vm, time.Minute)
}

func containsAny(s string, words []string) bool {
	for _, w := range words {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}
