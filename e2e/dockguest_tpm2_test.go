package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// dockTPM2Scenario runs in the Debian guest, which has a TPM2 (swtpm on
// the host, QEMU's tpm-tis): with cryptsetup's systemd-tpm2 token plugin
// moved aside, host enroll must fail and leave the keyslots and tokens as
// they were (luksDump); then host enroll must seal the keyslot to it
// (systemd-tpm2 token, no key file); the docking through QMP must unlock
// the disk with the TPM2 and run the command; host forget must wipe the
// keyslot and its token at the next docking.
const dockTPM2Scenario = `#!/bin/bash
exec 3<>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo 2>/dev/null
mark() { echo "@@E2E $*" >&3; }
end() { mark exit "$1"; sync; systemctl poweroff --force --force; sleep 600; }
fail() { echo "FAIL: $*" >&3; journalctl -b --no-pager -n 200 >&3; end 1; }
host_wait() { while read -r l <&3; do l=${l%$'\r'}; [ "$l" = "$1" ] && return 0; done; fail "no host $1"; }
wait_for() { local n=0; until eval "$1"; do sleep 1; n=$((n+1)); [ $n -ge $2 ] && return 1; done; return 0; }
emit() { mark blob-begin "$1"; base64 "$2" >&3; mark blob-end "$1"; }
runs() { journalctl -u 'luksdock-dock@*' --no-pager | grep -c "$1"; }

mark booted
wait_for '[ -b /dev/sda ]' 120 || fail "no /dev/sda"
wait_for '[ -c /dev/tpmrm0 ]' 120 || fail "no /dev/tpmrm0: $(ls /dev | grep -i tpm)"
luksdock prepare --device /dev/sda --label tpmdisk01 --set offsite --passphrase-file /root/pass --confirm sda --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >&3 2>&3 || fail prepare
uuid=$(cryptsetup luksUUID /dev/sda1)
# Without cryptsetup's systemd-tpm2 token plugin the sealed keyslot cannot
# open the disk: enroll must fail and take the keyslot and its token back.
plugin=$(ls /usr/lib/*/cryptsetup/libcryptsetup-token-systemd-tpm2.so) || fail "no systemd-tpm2 token plugin"
nslots() { cryptsetup luksDump /dev/sda1 | sed -n '/^Keyslots:/,/^Tokens:/p' | grep -cE '^ +[0-9]+: luks2'; }
slots0=$(nslots)
mv "$plugin" /root/token-plugin.so
luksdock host enroll --device /dev/sda --passphrase-file /root/pass >&3 2>&3 && fail "enroll succeeded without the token plugin"
mv /root/token-plugin.so "$plugin"
cryptsetup luksDump /dev/sda1 | grep -q 'systemd-tpm2' && fail "a systemd-tpm2 token is left after the failed enroll: $(cryptsetup luksDump /dev/sda1)"
[ "$(nslots)" -eq "$slots0" ] || fail "keyslots after the failed enroll: $(nslots), before: $slots0"
[ -e /etc/luksdock/tpm2/$uuid ] && fail "a TPM2 marker is left after the failed enroll"
mark rollback-ok $slots0
udevadm settle
luksdock host enroll --device /dev/sda --passphrase-file /root/pass >&3 2>&3 || fail enroll
echo "@@DUMP-BEGIN" >&3; cryptsetup luksDump /dev/sda1 >&3; echo "@@DUMP-END" >&3
cryptsetup luksDump /dev/sda1 | grep -q 'systemd-tpm2' || fail "no systemd-tpm2 token after enroll"
[ -n "$(ls -A /etc/luksdock/keys 2>/dev/null)" ] && fail "a key file was written: $(ls /etc/luksdock/keys)"
[ -f /etc/luksdock/tpm2/$uuid ] || fail "no TPM2 marker"
grep -q cryptenroll /proc/keys && fail "a cryptenroll passphrase is left in a kernel keyring: $(grep cryptenroll /proc/keys)"
luksdock host status >&3
luksdock host status | grep -q 'enrolled (tpm2)' || fail "host status does not say tpm2"
mkdir -p /etc/luksdock/run
printf '#!/bin/sh\necho "backed up through the TPM2" > "$LUKSDOCK_MOUNT/from-tpm2"\n' > /etc/luksdock/run/set-offsite
chmod 755 /etc/luksdock/run/set-offsite
udevadm settle
sleep 3
wait_for '! systemctl list-units --no-legend --state=activating,active "luksdock-dock@*" | grep -q .' 300 || fail "a run started by the enrollment did not end"
locked0=$(runs "; locked"); tpm0=$(runs "unlocked with this host's TPM2")
mark enrolled
host_wait replugged
wait_for '[ "$(runs "; locked")" -ge $((locked0 + 1)) ]' 300 || fail "the dock service did not finish a run"
wait_for '! systemctl is-active -q luksdock-dock@sda1.service' 60 || fail "the service is still active"
journalctl -u 'luksdock-dock@*' --no-pager >&3
[ "$(runs "unlocked with this host's TPM2")" -ge $((tpm0 + 1)) ] || fail "the run did not unlock with the TPM2"
ls /dev/mapper | grep -q luksdock && fail "a mapping is left: $(ls /dev/mapper)"
[ -e /sys/block/sda ] && fail "the disk was not powered off"
luksdock inventory --json > /tmp/inv1.json; emit inv1 /tmp/inv1.json
mark run1

luksdock host forget --uuid "$uuid" >&3 2>&3 || fail forget
[ -e /etc/luksdock/tpm2/$uuid ] && fail "the TPM2 marker is left after forget"
mark forgot
host_wait replugged2
wait_for '[ "$(runs "systemd-tpm2 token wiped")" -ge 1 ]' 300 || fail "the keyslot was not wiped at the docking after forget"
wait_for '! systemctl is-active -q luksdock-dock@sda1.service' 60 || fail "the service is still active after the forget"
journalctl -u 'luksdock-dock@*' --no-pager >&3
wait_for '[ -b /dev/sda1 ]' 60 || fail "no /dev/sda1 after the forget"
cryptsetup luksDump /dev/sda1 >&3
cryptsetup luksDump /dev/sda1 | grep -q 'systemd-tpm2' && fail "the systemd-tpm2 token is left after the forget"
cryptsetup open --test-passphrase --key-file /root/pass --keyfile-size $(($(wc -c < /root/pass) - 1)) /dev/sda1 || fail "the passphrase no longer opens the disk"
end 0
`

// swtpm starts a software TPM2 for QEMU (its control channel at sock) and
// returns the QEMU arguments that give the guest a tpm-tis device on it.
func swtpm(t *testing.T, dir string) []string {
	t.Helper()
	if _, err := exec.LookPath("swtpm"); err != nil {
		t.Fatal("swtpm is not installed (apt-get install swtpm swtpm-tools; scripts/test installs it): the TPM2 guest needs it")
	}
	state := filepath.Join(dir, "tpm")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "swtpm.sock")
	cmd := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+state, "--ctrl", "type=unixio,path="+sock, "--terminate")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if s := stderr.String(); s != "" {
			t.Logf("swtpm: %s", s)
		}
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			t.Fatalf("swtpm made no socket: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return []string{"-chardev", "socket,id=chrtpm,path=" + sock, "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"}
}

// TestDockTPM2DebianGuest: see dockTPM2Scenario. On the host afterwards,
// the command's file is on the disk (cryptsetup with the passphrase,
// debugfs), and the guest's inventory recorded the run.
func TestDockTPM2DebianGuest(t *testing.T) {
	dir := dockGuestDir(t)
	tpm := swtpm(t, dir)
	deb := buildDeb(t, dir)
	rootImg, kernel, initrd := dockGuestRoot(t, dir, deb, dockTPM2Scenario)
	backup := newImage(t, dir, "backup.img", 256<<20)
	vm := bootDockGuest(t, dir, rootImg, kernel, initrd, tpm,
		Disk{ID: "d1", Image: backup, Vendor: "WDC", Product: "WD40EFRX", Serial: "WD-TPM20001"})
	redock := func(word string) { t.Helper(); redockGuest(t, vm, "d1", word) }
	enrolledThenRun(t, vm)
	t.Logf("the enroll without the token plugin failed and left the %s keyslot(s) of before", mustMark(t, vm, "rollback-ok", time.Second))
	b, err := vm.Blob("inv1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"outcome": "ok"`) && !strings.Contains(string(b), `"outcome":"ok"`) {
		t.Errorf("the guest's inventory records no good run: %s", b)
	}
	mustMark(t, vm, "forgot", 2*time.Minute)
	redock("replugged2")
	mustExit(t, vm, 10*time.Minute)

	plain := decryptedDisk(t, backup)
	if out, _ := exec.Command("debugfs", "-R", "cat /from-tpm2", plain).Output(); string(out) != "backed up through the TPM2\n" {
		t.Errorf("/from-tpm2 on the disk holds %q", out)
	}
	// After the forget: no systemd-tpm2 token, cryptsetup on the host says.
	p1, _ := testkit.Partition1(t, backup)
	if out := testkit.Run(t, "", "cryptsetup", "luksDump", testkit.HeaderCopy(t, p1)); strings.Contains(out, "systemd-tpm2") {
		t.Errorf("the systemd-tpm2 token is left after the forget:\n%s", out)
	}
}
