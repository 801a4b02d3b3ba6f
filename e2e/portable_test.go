package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// portableDisk is one disk of TestAnyDockAnyDesktop: prepared through a dock
// of sector size `made`, then checked through one of the other size.
type portableDisk struct {
	label, serial, table string
	made, other          int
	owner                string // --owner, or "" for SUDO_UID/SUDO_GID 1000:1000
	wantOwner            string
}

// Issue 10: a disk prepared with the kernel engine through a dock that
// reports 4096-byte logical sectors opens, fscks clean and mounts through a
// dock that reports 512, and the reverse, for the default layout (the
// portable GPT) and for --table none. Boot 1 runs without /dev/fd (the link
// is removed before anything runs) and prepares the four disks, with
// SUDO_UID/SUDO_GID 1000 (one disk with --owner 2000:2001); it also lists
// the disks (sector sizes, the 4096 warning) and dry-runs --table mbr on a
// 4096 dock (the warning). Boot 2 swaps every disk's sector size: the stock
// kernel must find the partition, stock cryptsetup opens it with the
// passphrase, e2fsck -fn is clean, a file is written and read back, uid
// 1000 (util-linux setpriv by its path: busybox sh prefers its own applet)
// creates a file in the top directory (and, on the --owner
// disk, cannot, while the directory is 2000:2001), and luksdock verify
// reports both sector views and the owner.
func TestAnyDockAnyDesktop(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	disks := []portableDisk{
		{label: "gpt4k", serial: "PORTGPT4K", table: "gpt", made: 4096, other: 512, wantOwner: "1000:1000"},
		{label: "none4k", serial: "PORTNONE4K", table: "none", made: 4096, other: 512, wantOwner: "1000:1000"},
		{label: "gpt512", serial: "PORTGPT512", table: "gpt", made: 512, other: 4096, wantOwner: "1000:1000"},
		{label: "none512", serial: "PORTNONE512", table: "none", made: 512, other: 4096, owner: "2000:2001", wantOwner: "2000:2001"},
	}
	qdisks := func(boot2 bool) []Disk {
		var ds []Disk
		for _, d := range disks {
			ss := d.made
			if boot2 {
				ss = d.other
			}
			ds = append(ds, Disk{ID: d.label, Image: dir + "/" + d.label + ".img", Transport: "bot", Vendor: "DOCK", Product: fmt.Sprintf("BRIDGE-%d", ss),
				Serial: d.serial, LogicalBlockSize: ss, PhysicalBlockSize: 4096})
		}
		return ds
	}
	for _, d := range disks {
		newImage(t, dir, d.label+".img", 72<<20)
	}

	// Boot 1: no /dev/fd; prepare the four disks.
	var s strings.Builder
	s.WriteString(`
rm -f /dev/fd
[ -e /dev/fd ] && fail "/dev/fd is still there"
export SUDO_UID=1000 SUDO_GID=1000
`)
	for _, d := range disks {
		owner := ""
		if d.owner != "" {
			owner = "--owner " + d.owner
		}
		fmt.Fprintf(&s, `
n=$(wait_disk %[1]s 60) || fail "disk %[1]s did not appear"
[ "$(cat /sys/block/$n/queue/logical_block_size)" = %[2]d ] || fail "/dev/$n has $(cat /sys/block/$n/queue/logical_block_size)-byte sectors, want %[2]d"
luksdock prepare --device /dev/$n --label %[3]s --table %[4]s %[5]s --passphrase-file /e2e/pass --confirm $n \
	--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json </dev/null >/tmp/%[3]s.json 2>/tmp/%[3]s.err
rc=$?
cat /tmp/%[3]s.err
emit prepare-%[3]s /tmp/%[3]s.json
mark prepared-%[3]s $rc
`, d.serial, d.made, d.label, d.table, owner)
	}
	s.WriteString(`
luksdock list --json > /tmp/list.json 2>&1
emit list /tmp/list.json
n=$(find_disk PORTGPT4K)
luksdock prepare --device /dev/$n --label mbr4k --table mbr --dry-run > /tmp/mbr.out 2>&1
emit mbr-dry-run /tmp/mbr.out
dmsetup ls
`)
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: qdisks(false), Timeout: 5 * time.Minute, Script: s.String()})
	for _, d := range disks {
		rc := mustMark(t, vm, "prepared-"+d.label, 3*time.Minute)
		evJSON, err := vm.Blob("prepare-"+d.label, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(rc) != 1 || rc[0] != "0" {
			t.Errorf("%s: luksdock prepare --table %s through a %d-byte dock (no /dev/fd) exited %v:\n%s", d.label, d.table, d.made, rc, evJSON)
			continue
		}
		checkPortableResult(t, "prepare "+d.label, evJSON, d, d.made)
	}
	list, err := vm.Blob("list", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		Serial   string `json:"serial"`
		Logical  int    `json:"logical_sector"`
		Physical int    `json:"physical_sector"`
		Verdict  struct {
			Warnings []string `json:"warnings"`
		} `json:"verdict"`
	}
	if err := json.Unmarshal(list, &entries); err != nil {
		t.Fatalf("luksdock list --json: %v\n%s", err, list)
	}
	for _, d := range disks {
		found := false
		for _, e := range entries {
			if e.Serial != d.serial {
				continue
			}
			found = true
			warned := strings.Contains(strings.Join(e.Verdict.Warnings, "\n"), "reports 4096-byte logical sectors")
			// QEMU reports 4096-byte physical sectors, but the kernel asks a
			// USB disk READ CAPACITY(10), which has no room for them: with
			// 512-byte logical sectors it may see 512 physical.
			if e.Logical != d.made || (e.Physical != 4096 && e.Physical != d.made) || warned != (d.made == 4096) {
				t.Errorf("list --json for %s: logical %d physical %d warnings %q; want logical %d, 4096 warning %v", d.serial, e.Logical, e.Physical, e.Verdict.Warnings, d.made, d.made == 4096)
			}
		}
		if !found {
			t.Errorf("list --json lacks %s:\n%s", d.serial, list)
		}
	}
	if mbr, err := vm.Blob("mbr-dry-run", 10*time.Second); err != nil || !strings.Contains(string(mbr), "# warning: --table mbr through a dock that reports 4096-byte logical sectors") {
		t.Errorf("prepare --table mbr --dry-run on a 4096-byte dock does not warn (%v):\n%s", err, mbr)
	}
	mustExit(t, vm, time.Minute)

	// Boot 2: every disk through a dock of the other sector size.
	s.Reset()
	for _, d := range disks {
		fmt.Fprintf(&s, `
umount /mnt 2>/dev/null; cryptsetup close chk 2>/dev/null
(
label=%[1]s
n=$(wait_disk %[2]s 60) || fail "disk %[2]s did not appear"
[ "$(cat /sys/block/$n/queue/logical_block_size)" = %[3]d ] || fail "/dev/$n: not %[3]d-byte sectors"
p=$n
if [ %[4]s = gpt ]; then
	p=${n}1
	d=$(deadline 5); while [ ! -b /dev/$p ]; do past $d && { sfdisk --dump /dev/$n; fail "no /dev/$p: the kernel found no partition with %[3]d-byte sectors"; }; usleep 50000; done
	[ "$(cat /sys/class/block/$p/start)" = 2048 ] || fail "/dev/$p starts at 512-byte sector $(cat /sys/class/block/$p/start), not 2048 (1 MiB)"
	sfdisk --verify /dev/$n || fail "sfdisk --verify /dev/$n"
else
	[ -z "$(ls /sys/block/$n | grep "^$n")" ] || fail "partitions on a --table none disk: $(ls /sys/block/$n)"
fi
`+guestCheckVolume+`
cryptsetup open /dev/$p chk < /e2e/pass || fail "cryptsetup open"
run mount -t ext4 /dev/mapper/chk /mnt
echo "+ top directory: $(stat -c '%%u:%%g %%a' /mnt)"
[ "$(stat -c %%u:%%g /mnt)" = %[5]s ] || fail "top directory owned by $(stat -c %%u:%%g /mnt), want %[5]s"
if [ %[5]s = 1000:1000 ]; then
	/usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo mine > /mnt/by-uid-1000' || fail "uid 1000 cannot create a file in the top directory"
	[ "$(stat -c %%u:%%g /mnt/by-uid-1000)" = 1000:1000 ] || fail "the file of uid 1000 is $(stat -c %%u:%%g /mnt/by-uid-1000)"
	[ "$(cat /mnt/by-uid-1000)" = mine ] || fail "read back"
else
	/usr/bin/setpriv --reuid=1000 --regid=1000 --clear-groups sh -c 'echo x > /mnt/by-uid-1000' 2>/dev/null && fail "uid 1000 wrote into a top directory owned by %[5]s"
	/usr/bin/setpriv --reuid=2000 --regid=2001 --clear-groups sh -c 'echo mine > /mnt/by-owner' || fail "the --owner user cannot create a file in the top directory"
fi
run umount /mnt
run cryptsetup close chk
luksdock verify --device /dev/$n --passphrase-file /e2e/pass --json </dev/null > /tmp/verify.json 2>/tmp/verify.err || { cat /tmp/verify.err; fail "luksdock verify"; }
emit verify-%[1]s /tmp/verify.json
)
mark checked-%[1]s $?
`, d.label, d.serial, d.other, d.table, d.wantOwner)
	}
	vm2 := boot(t, scratchDir(t), Config{Guest: g, Luksdock: bin, Disks: qdisks(true), Timeout: 4 * time.Minute, Script: s.String()})
	for _, d := range disks {
		rc := mustMark(t, vm2, "checked-"+d.label, 2*time.Minute)
		if len(rc) != 1 || rc[0] != "0" {
			t.Errorf("%s (--table %s) made through a %d-byte dock failed through a %d-byte dock%s", d.label, d.table, d.made, d.other, guestFailures(vm2))
			continue
		}
		evJSON, err := vm2.Blob("verify-"+d.label, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		checkPortableResult(t, "verify "+d.label, evJSON, d, d.other)
		t.Logf("%s: --table %s made through a %d-byte dock opens, fscks, mounts and is writable by its owner through a %d-byte dock", d.label, d.table, d.made, d.other)
	}
	mustExit(t, vm2, time.Minute)
}

// checkPortableResult requires the result event of a portable disk: found
// with both sector sizes, the owner, the table and the dock's sector size.
func checkPortableResult(t *testing.T, what string, evJSON []byte, d portableDisk, logical int) {
	t.Helper()
	for _, e := range parseEvents(evJSON) {
		if e.Kind == "result" && e.Result != nil {
			r := e.Result
			if fmt.Sprint(r.SectorViews) != "[512 4096]" || r.Owner != d.wantOwner || r.Table != d.table || r.LogicalSector != logical || !r.FsckClean {
				t.Errorf("%s: result %+v; want sector_views [512 4096], owner %s, table %s, logical sector %d", what, *r, d.wantOwner, d.table, logical)
			}
			return
		}
	}
	t.Errorf("%s: no result event:\n%s", what, evJSON)
}
