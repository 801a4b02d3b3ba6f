package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// guestPrepare is the scenario snippet that runs `luksdock prepare` with the
// kernel engine on the disk $n, labelled $label, with small PBKDF costs,
// printing its JSON events to /tmp/prepare.json and its exit status to
// /tmp/prepare.rc.
const guestPrepare = `
luksdock prepare --device /dev/$n --label "$label" --passphrase-file /e2e/pass --confirm $n \
	--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json </dev/null >/tmp/prepare.json 2>/tmp/prepare.err
echo $? > /tmp/prepare.rc
`

// guestCheckVolume is the scenario snippet that checks, with stock tools
// only, that partition $p unlocks with the passphrase typed on standard
// input, fscks clean, carries label $label, and mounts read-write with a
// file written and read back after a remount.
const guestCheckVolume = `
run cryptsetup isLuks /dev/$p
[ "$(blkid -o value -s TYPE /dev/$p)" = crypto_LUKS ] || fail "blkid TYPE of /dev/$p is not crypto_LUKS"
[ "$(blkid -o value -s LABEL /dev/$p)" = "$label" ] || fail "LUKS2 label of /dev/$p is not $label"
echo "+ cryptsetup open /dev/$p chk (passphrase typed on stdin)"
cryptsetup open /dev/$p chk < /e2e/pass || fail "stock cryptsetup open of /dev/$p with the passphrase failed"
e2fsck -fn /dev/mapper/chk > /tmp/fsck.out 2>&1 || { cat /tmp/fsck.out; fail "e2fsck -fn not clean"; }
cat /tmp/fsck.out
grep -vE '^(e2fsck [0-9.]+ \(.*\)|Pass [1-5][a-z]?: .*|'"$label"': [0-9]+/[0-9]+ files .*)$' /tmp/fsck.out && fail "e2fsck printed more than the pass summaries"
[ "$(blkid -o value -s LABEL /dev/mapper/chk)" = "$label" ] || fail "ext4 label is not $label: $(blkid /dev/mapper/chk)"
[ "$(blkid -o value -s TYPE /dev/mapper/chk)" = ext4 ] || fail "not ext4: $(blkid /dev/mapper/chk)"
mount -t ext4 -o rw /dev/mapper/chk /mnt || fail "mount -t ext4 -o rw /dev/mapper/chk: the kernel said: $(dmesg | tail -n 1)"
dd if=/dev/urandom of=/mnt/e2e-file bs=64k count=16 2>/dev/null || fail "writing a file"
sum=$(sha256sum < /mnt/e2e-file)
run umount /mnt
echo 3 > /proc/sys/vm/drop_caches
run mount -t ext4 -o rw /dev/mapper/chk /mnt
[ "$(sha256sum < /mnt/e2e-file)" = "$sum" ] || fail "file read back differs"
run umount /mnt
run cryptsetup close chk
`

// Scenario 2: `luksdock prepare` with the kernel engine on a docked disk
// (usb-bot on an EHCI controller) with real dm-crypt; then, in a fresh
// boot, stock cryptsetup opens it, e2fsck -fn is clean, blkid shows the
// label, and it mounts read-write with a file written and read back.
// prepare also makes a recovery key (--recovery-key, issue 11): in the
// fresh boot stock cryptsetup opens the disk with it typed on standard
// input (a wrong one is refused), the file written with the passphrase's
// mapping reads back through it, and luksdock verify proves both keys.
// The disk is also made part of set "offsite" (--set): after it is
// undocked, another disk docked in its place and it is docked again under
// a new kernel name, `luksdock list --json` recognises it by its LUKS UUID
// from the inventory (issue 11).
func TestPrepareKernelEngine(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "dock", Image: newImage(t, dir, "disk.img", 256<<20), Transport: "bot",
		Vendor: "SAMSUNG", Product: "HD103SI", Serial: "S1VSJ9AZ301234", Hotplug: true}
	filler := Disk{ID: "filler", Image: newImage(t, dir, "filler.img", 64<<20), Transport: "bot", Serial: "FILLER0001", Hotplug: true}

	// Boot 1: dock the disk and prepare it.
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{d, filler}, Controller: "ehci", Timeout: 4 * time.Minute,
		Script: `
label=backups01
mark ready
n=$(wait_disk ` + d.Serial + ` 60) || fail "docked disk did not appear"
mark docked $n
` + strings.Replace(guestPrepare, "--json", "--recovery-key /tmp/recovery.key --set offsite --json", 1) + `
emit events /tmp/prepare.json
cat /tmp/prepare.err
[ -f /tmp/recovery.key ] && emit recoverykey /tmp/recovery.key
mark prepared $(cat /tmp/prepare.rc)
dmsetup ls > /tmp/dm.out 2>&1
mark dmsetup $(cat /tmp/dm.out)
sfdisk --dump /dev/$n
[ "$(cat /tmp/prepare.rc)" = 0 ] || fail "luksdock prepare exited $(cat /tmp/prepare.rc)"
host_wait undocked
wait_gone $n 60
f=$(wait_disk ` + filler.Serial + ` 60) || fail "filler disk did not appear"
mark filler $f
host_wait redocked
n2=$(wait_disk ` + d.Serial + ` 60) || fail "the disk did not come back"
luksdock list --json </dev/null > /tmp/list.json 2>/tmp/list.err || { cat /tmp/list.err; fail "luksdock list"; }
luksdock list </dev/null
emit list /tmp/list.json
mark redocked $n2
`})
	mustMark(t, vm, "ready", 90*time.Second)
	if err := vm.Plug(d.ID); err != nil {
		t.Fatal(err)
	}
	name := mustMark(t, vm, "docked", 60*time.Second)
	start := time.Now()
	rcArgs := mustMark(t, vm, "prepared", 3*time.Minute)
	t.Logf("luksdock prepare --engine kernel on /dev/%s took %.1f s in the guest (TCG)", name[0], time.Since(start).Seconds())
	evJSON, err := vm.Blob("events", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if rcArgs[0] != "0" {
		t.Fatalf("luksdock prepare exited %s; events:\n%s", rcArgs[0], evJSON)
	}
	checkResultEvent(t, evJSON, "backups01", "kernel")
	rkFile, err := vm.Blob("recoverykey", 10*time.Second)
	if err != nil {
		t.Fatalf("the recovery key file: %v", err)
	}
	rkLines := strings.Split(strings.TrimSpace(string(rkFile)), "\n")
	rk := rkLines[len(rkLines)-1]
	if len(rk) != 71 || strings.Contains(string(evJSON), rk) {
		t.Fatalf("recovery key %q (or it is in the events)", rk)
	}
	wrong := []byte(rk)
	wrong[0] = map[byte]byte{'c': 'b'}[wrong[0]]
	if wrong[0] == 0 {
		wrong[0] = 'c'
	}
	if dm := strings.Join(mustMark(t, vm, "dmsetup", 10*time.Second), " "); dm != "No devices found" {
		t.Errorf("a device-mapper mapping is left after prepare: %q", dm)
	}
	// Re-dock under another kernel name: recognised by LUKS UUID.
	if err := vm.Unplug(d.ID); err != nil {
		t.Fatal(err)
	}
	vm.Send("undocked")
	if err := vm.Plug(filler.ID); err != nil {
		t.Fatal(err)
	}
	mustMark(t, vm, "filler", time.Minute)
	if err := vm.Plug(d.ID); err != nil {
		t.Fatal(err)
	}
	vm.Send("redocked")
	name2 := mustMark(t, vm, "redocked", 2*time.Minute)[0]
	listJSON, err := vm.Blob("list", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var uuid string
	for _, e := range parseEvents(evJSON) {
		if e.Result != nil {
			uuid = e.Result.LUKS.UUID
		}
	}
	var entries []struct {
		Name  string `json:"name"`
		Known *struct {
			Known       bool   `json:"known"`
			Description string `json:"description"`
			SetOnDisk   string `json:"set_on_disk"`
			Record      *struct {
				UUID string `json:"luks_uuid"`
			} `json:"record"`
		} `json:"known"`
	}
	if err := json.Unmarshal(listJSON, &entries); err != nil {
		t.Fatalf("list --json: %v\n%s", err, listJSON)
	}
	if name2 == name[0] {
		t.Errorf("re-docked under the same name %s; the test wants another", name2)
	}
	found := false
	for _, e := range entries {
		if e.Name != name2 {
			continue
		}
		found = true
		if k := e.Known; k == nil || !k.Known || k.Record == nil || k.Record.UUID != uuid || k.SetOnDisk != "offsite" ||
			!strings.HasPrefix(k.Description, "backups01, set offsite, prepared ") {
			b, _ := json.Marshal(e.Known)
			t.Errorf("re-docked as %s (was %s): not recognised as LUKS UUID %s: %s", name2, name[0], uuid, b)
		}
	}
	if !found {
		t.Errorf("list --json has no %s:\n%s", name2, listJSON)
	}
	mustExit(t, vm, time.Minute)

	// Boot 2: a fresh boot with the disk cold-plugged; stock tools only
	// (and luksdock verify).
	d.Hotplug = false
	files := map[string][]byte{"rk": []byte(rk + "\n"), "rk-wrong": append(wrong, '\n'), "rkfile": rkFile}
	vm2 := boot(t, scratchDir(t), Config{Guest: g, Luksdock: bin, Disks: []Disk{d}, Files: files, Timeout: 3 * time.Minute, Script: `
label=backups01
n=$(wait_disk ` + d.Serial + ` 60) || fail "disk did not appear"
p=${n}1
d=$(deadline 5); while [ ! -b /dev/$p ]; do past $d && fail "no partition /dev/$p: the kernel did not find the partition table"; usleep 50000; done
sfdisk --dump /dev/$n > /tmp/sfdisk.out || fail "sfdisk --dump"
cat /tmp/sfdisk.out
grep -q '^label: gpt' /tmp/sfdisk.out || fail "not a GPT disk"
grep -q "^/dev/$p : start= *2048," /tmp/sfdisk.out || fail "partition does not start at 1 MiB"
` + guestCheckVolume + `
cryptsetup open --test-passphrase /dev/$p < /e2e/rk-wrong && fail "stock cryptsetup accepted a wrong recovery key"
echo "+ cryptsetup open /dev/$p rk (the recovery key typed on stdin)"
cryptsetup open /dev/$p rk < /e2e/rk || fail "stock cryptsetup open of /dev/$p with the recovery key failed"
run mount -t ext4 -o ro /dev/mapper/rk /mnt
[ "$(sha256sum < /mnt/e2e-file)" = "$sum" ] || fail "the file read through the recovery key differs"
run umount /mnt
run cryptsetup close rk
luksdock verify --device /dev/$n --passphrase-file /e2e/pass --recovery-key-file /e2e/rkfile --json </dev/null > /tmp/verify.json 2>/tmp/verify.err || { cat /tmp/verify.json /tmp/verify.err; fail "luksdock verify failed on the prepared disk"; }
grep -q '"recovery_key":true' /tmp/verify.json || fail "luksdock verify did not prove the recovery key"
# The kernel engine's verify fails on an ext4 damaged inside the volume
# (blocks near its end marked in use that no file owns: only e2fsck -fn
# sees it), exit 5 with e2fsck's words. The damage goes through dm-crypt.
cryptsetup open /dev/$p dmg < /e2e/pass || fail "stock cryptsetup open of /dev/$p for the damage failed"
blocks=$(dumpe2fs -h /dev/mapper/dmg 2>/dev/null | sed -n 's/^Block count: *//p')
[ -n "$blocks" ] || fail "dumpe2fs found no block count"
debugfs -w -R "setb $((blocks - 100)) 16" /dev/mapper/dmg || fail "debugfs could not mark blocks in use"
run cryptsetup close dmg
rc=0; luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel </dev/null >/tmp/dmg.out 2>&1 || rc=$?
cat /tmp/dmg.out
[ $rc = 5 ] && grep -q "e2fsck -fn is not clean" /tmp/dmg.out && grep -q "Block bitmap differences" /tmp/dmg.out || fail "luksdock verify --engine kernel of a damaged ext4: exit $rc, want 5 and e2fsck's words"
dmsetup ls
mark checked
`})
	mustMark(t, vm2, "checked", 3*time.Minute)
	mustExit(t, vm2, time.Minute)
}

// checkResultEvent requires a "result" event for a verified disk with the
// label, made by the engine.
func checkResultEvent(t *testing.T, evJSON []byte, label, engine string) {
	t.Helper()
	var res *event
	for _, e := range parseEvents(evJSON) {
		if e.Kind == "failed" {
			t.Errorf("prepare reported a failed step %s: %s (%s)", e.Step, e.Message, e.State)
		}
		if e.Kind == "result" {
			e := e
			res = &e
		}
	}
	if res == nil || res.Result == nil {
		t.Fatalf("no result event from prepare --json:\n%s", evJSON)
	}
	if res.Result.FSLabel != label || !res.Result.FsckClean || res.Result.Engine != engine {
		b, _ := json.Marshal(res.Result)
		t.Errorf("result = %s; want label %s, fsck clean, engine %s", b, label, engine)
	}
}

// Scenario 3: engines are interchangeable. An image prepared on the host
// by the userspace engine opens with stock cryptsetup, fscks clean and
// mounts in the guest; a disk prepared in the guest by the kernel engine
// passes `luksdock verify` on the host (and stock cryptsetup's passphrase
// test there). In the same boot, the `--dry-run` script of an image runs by
// hand (sh, stock losetup, cryptsetup, mkfs.ext4) and makes a disk that
// `luksdock verify` passes, leaving no loop device or mapping.
func TestEnginesInterchangeable(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	pass := filepath.Join(dir, "pass")
	if err := os.WriteFile(pass, []byte(testPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostImg := filepath.Join(dir, "host.img")
	args := append([]string{"prepare", "--image", hostImg, "--size", "160M", "--label", "hostmade",
		"--passphrase-file", pass, "--confirm", "host.img", "--engine", "userspace", "--json"}, smallPBKDF...)
	start := time.Now()
	out, code := runHost(t, "", bin, args...)
	if code != 0 {
		t.Fatalf("host: luksdock %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	checkResultEvent(t, []byte(out), "hostmade", "userspace")
	t.Logf("host: prepare --engine userspace of a 160 MiB image took %.1f s", time.Since(start).Seconds())

	guestImg := newImage(t, dir, "guest.img", 160<<20)
	disks := []Disk{
		{ID: "hostmade", Image: hostImg, Transport: "bot", Vendor: "HOST", Product: "USERSPACE-ENGINE", Serial: "HOSTMADE01"},
		{ID: "guestmade", Image: guestImg, Transport: "uas", Vendor: "GUEST", Product: "KERNEL-ENGINE", Serial: "GUESTMADE01"},
	}
	// The two halves are independent: a failure of the first is reported
	// and the second still runs.
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: disks, Timeout: 4 * time.Minute, Script: `
(
label=hostmade
n=$(wait_disk HOSTMADE01 60) || fail "host-made disk did not appear"
p=${n}1
d=$(deadline 5); while [ ! -b /dev/$p ]; do past $d && fail "no partition /dev/$p"; usleep 50000; done
` + guestCheckVolume + `
)
mark host-image $?
cryptsetup close chk 2>/dev/null
label=guestmade
n=$(wait_disk GUESTMADE01 60) || fail "second disk did not appear"
` + guestPrepare + `
emit events /tmp/prepare.json
cat /tmp/prepare.err
[ "$(cat /tmp/prepare.rc)" = 0 ] || fail "luksdock prepare --engine kernel exited $(cat /tmp/prepare.rc)"
mark guest-prepared
# The --dry-run script of an image, run by hand on this kernel (issue 12):
# cryptsetup reads the passphrase at each of its three prompts from stdin.
(
luksdock prepare --dry-run --image /tmp/dry.img --size 80M --label dryrun --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >/tmp/dry.sh || fail "prepare --dry-run exited $?"
# This guest's busybox sh runs its own losetup applet before any in PATH;
# the script is for util-linux's, as on the machines it is written for.
ul=
for f in /usr/sbin/losetup /usr/bin/losetup; do [ -z "$ul" ] && [ -x $f ] && [ ! -L $f ] && ul=$f; done
[ -n "$ul" ] || fail "no util-linux losetup in the guest"
sed "s#losetup #$ul #g" /tmp/dry.sh >/tmp/dry-ul.sh
{ cat /e2e/pass; cat /e2e/pass; cat /e2e/pass; } | sh /tmp/dry-ul.sh >/tmp/dry.out 2>&1 || { cat /tmp/dry-ul.sh /tmp/dry.out; fail "the dry-run script failed"; }
cat /tmp/dry.out
luksdock verify --image /tmp/dry.img --engine kernel --passphrase-file /e2e/pass </dev/null || fail "luksdock verify of the image the dry-run script made exited $?"
[ -z "$(losetup --associated /tmp/dry.img)" ] || fail "the script left a loop device on the image"
[ -z "$(dmsetup ls | grep luksdock)" ] || fail "the script left a mapping: $(dmsetup ls)"
)
mark dry-run-script $?
`})
	if rc := mustMark(t, vm, "host-image", 2*time.Minute); len(rc) != 1 || rc[0] != "0" {
		t.Errorf("the image prepared on the host by the userspace engine failed the stock checks in the guest%s", guestFailures(vm))
	}
	mustMark(t, vm, "guest-prepared", 3*time.Minute)
	evJSON, err := vm.Blob("events", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	checkResultEvent(t, evJSON, "guestmade", "kernel")
	if rc := mustMark(t, vm, "dry-run-script", 3*time.Minute); len(rc) != 1 || rc[0] != "0" {
		t.Errorf("the --dry-run script of an image, run by hand in the guest, did not make a disk luksdock verify passes%s", guestFailures(vm))
	}
	if rc, err := vm.Wait(time.Minute); err != nil || rc != 0 {
		t.Fatalf("guest scenario ended with %d, %v%s", rc, err, guestFailures(vm))
	}

	// Host: luksdock verify of the guest-made image, and stock cryptsetup's
	// passphrase test on its partition through an offset loop device.
	out, code = runHost(t, "", bin, "verify", "--image", guestImg, "--passphrase-file", pass, "--json")
	if code != 0 {
		t.Fatalf("host: luksdock verify --image of the guest-made disk exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "guestmade") {
		t.Errorf("host: luksdock verify output does not name the label guestmade:\n%s", out)
	}
	t.Logf("host: luksdock verify --image passed on the disk the guest's kernel engine made")
	loop, code := runHost(t, "", "losetup", "--find", "--show", "--read-only", "--offset", "1048576", guestImg)
	if code != 0 {
		t.Fatalf("losetup: %s", loop)
	}
	loop = strings.TrimSpace(loop)
	defer runHost(t, "", "losetup", "-d", loop)
	if out, code := runHost(t, testPassphrase+"\n", "cryptsetup", "open", "--test-passphrase", loop); code != 0 {
		t.Errorf("host: stock cryptsetup rejects the passphrase on the guest-made disk (exit %d): %s", code, out)
	}
	if out, code := runHost(t, "wrong passphrase\n", "cryptsetup", "open", "--test-passphrase", loop); code == 0 {
		t.Errorf("host: stock cryptsetup accepted a wrong passphrase: %s", out)
	}
}
