package e2e

import (
	"strings"
	"testing"
	"time"
)

// Issue 20 (items 3/4): the `prepare --dry-run` script of a docked disk,
// with a recovery key, --erase and --surface-check, run by hand with sh in
// the guest (stock kernel, dm-crypt): the passphrase is fed on stdin, one
// line at each of cryptsetup's prompts (luksFormat, luksAddKey, open, the
// verify open). Then stock tools prove what it made: cryptsetup opens it
// with the passphrase and with the recovery key (last line of the key file
// the script wrote, mode 0600), e2fsck -fn is clean, blkid shows LUKS2 and
// the ext4 label, the erase ran (the last MiB of the volume, blocks
// debugfs says ext4 does not use, decrypts to zeros; an unerased volume
// decrypts to noise) and `luksdock verify` with both keys exits 0.
//
// The script is for a machine's GNU and util-linux tools; this guest's
// busybox sh runs its own applets first, so dd, cmp and partx are
// called by path (the initramfs carries the real ones).
func TestDryRunScriptDevice(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	d := Disk{ID: "dry", Image: newImage(t, dir, "dry.img", 128<<20), Transport: "bot", Vendor: "DRY", Product: "RUN-SCRIPT", Serial: "DRYRUN0001"}
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Disks: []Disk{d}, Timeout: 9 * time.Minute, Script: `
(
n=$(wait_disk ` + d.Serial + ` 60) || fail "the disk did not appear"
mkdir -p /root
luksdock prepare --dry-run --device /dev/$n --label drylabel --recovery-key /root/rk.txt --erase --surface-check --pbkdf pbkdf2 --pbkdf-force-iterations 1000 </dev/null >/tmp/dry.sh 2>/tmp/dry.err || { cat /tmp/dry.err; fail "prepare --dry-run exited $?"; }
emit script /tmp/dry.sh
[ -e /dev/${n}1 ] && fail "prepare --dry-run made a partition"
for c in dd cmp partx; do [ -x /usr/bin/$c ] || [ -x /usr/sbin/$c ] || fail "no real $c in the guest"; done
sed -e 's#^dd #/usr/bin/dd #' -e 's#^cmp #/usr/bin/cmp #' -e 's#&& partx #\&\& /usr/bin/partx #' /tmp/dry.sh >/tmp/dry-gnu.sh
grep -q '^/usr/bin/dd if=/dev/zero of=/dev/mapper/luksdock-drylabel ' /tmp/dry-gnu.sh || fail "the script has no erase"
grep -q '^/usr/bin/cmp --bytes=' /tmp/dry-gnu.sh || fail "the script has no surface check"
grep -q 'cryptsetup luksAddKey' /tmp/dry-gnu.sh || fail "the script adds no recovery key"
{ cat /e2e/pass; cat /e2e/pass; cat /e2e/pass; cat /e2e/pass; } | sh /tmp/dry-gnu.sh >/tmp/dry.out 2>&1 || { cat /tmp/dry-gnu.sh /tmp/dry.out; fail "the dry-run script failed"; }
cat /tmp/dry.out
p=/dev/${n}1
[ -b $p ] || fail "no partition $p after the script"
dmsetup ls | grep -q luksdock && fail "the script left a mapping: $(dmsetup ls)"
[ "$(blkid -o value -s TYPE $p)" = crypto_LUKS ] || fail "blkid: $p is not LUKS: $(blkid $p)"
[ "$(stat -c %a /root/rk.txt)" = 600 ] || fail "the key file is mode $(stat -c %a /root/rk.txt)"
tail -n 1 /root/rk.txt > /tmp/rk.key
[ "$(wc -c < /tmp/rk.key)" = 72 ] || fail "the key file's last line is not a recovery key: $(cat /root/rk.txt)"
echo wrong-passphrase | cryptsetup open --test-passphrase $p && fail "cryptsetup accepted a wrong passphrase"
cryptsetup open --readonly $p pw < /e2e/pass || fail "stock cryptsetup open with the passphrase"
run cryptsetup close pw
cryptsetup open --readonly $p rk < /tmp/rk.key || fail "stock cryptsetup open with the recovery key"
e2fsck -fn /dev/mapper/rk || fail "e2fsck -fn exited $?"
[ "$(blkid -o value -s LABEL /dev/mapper/rk)" = drylabel ] || fail "blkid: $(blkid /dev/mapper/rk)"
[ "$(blkid -o value -s TYPE /dev/mapper/rk)" = ext4 ] || fail "blkid: $(blkid /dev/mapper/rk)"
# The erase: the last MiB of the volume, unused by ext4, decrypts to zeros.
blocks=$(( $(blockdev --getsize64 /dev/mapper/rk) / 4096 ))
first=$((blocks - 256))
debugfs -R "testb $first 256" /dev/mapper/rk >/tmp/testb 2>&1
[ "$(grep -c 'not in use' /tmp/testb)" = 256 ] || { cat /tmp/testb; fail "ext4 uses blocks in the last MiB"; }
head -c 1048576 /dev/zero >/tmp/zero
/usr/bin/dd if=/dev/mapper/rk of=/tmp/tail bs=4096 skip=$first count=256 2>/dev/null || fail "reading the last MiB"
[ "$(wc -c < /tmp/tail)" = 1048576 ] || fail "short read of the last MiB"
/usr/bin/cmp /tmp/tail /tmp/zero || fail "the last MiB of the volume does not decrypt to zeros: the erase did not run"
run cryptsetup close rk
luksdock verify --device /dev/$n --passphrase-file - --recovery-key-file /root/rk.txt < /e2e/pass || fail "luksdock verify exited $?"
)
mark dry-run-device $?
`})
	rc := mustMark(t, vm, "dry-run-device", 8*time.Minute)
	if script, err := vm.Blob("script", 10*time.Second); err == nil {
		t.Logf("the --dry-run script:\n%s", script)
		if !strings.Contains(string(script), "--verify-passphrase") {
			t.Errorf("the script's luksFormat does not ask for the passphrase twice")
		}
	} else {
		t.Errorf("no script from the guest: %v", err)
	}
	if len(rc) != 1 || rc[0] != "0" {
		t.Fatalf("the --dry-run script of a docked disk, run by hand in the guest, did not make a disk stock tools and luksdock verify accept%s", guestFailures(vm))
	}
	mustExit(t, vm, time.Minute)
}
