package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// secretGuest is the guest the secrets tests (TestSecretHygieneKernelEngine,
// TestSecretsInMemoryKernelEngine) boot, each on its own: one docked
// Kingston stick of 128 MiB (serial), guestwatch, and a passphrase made of
// passPrefix and random bytes (so that what a scan finds cannot be a
// constant in a binary) in /e2e/secret. script runs with $n the stick's
// kernel name. It returns the guest, the passphrase and the stick's image
// file on the host.
func secretGuest(t *testing.T, id, serial, passPrefix string, timeout time.Duration, script string) (vm *VM, pass, image string) {
	t.Helper()
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	gw := guestwatchBinary(t)
	t.Parallel()
	dir := scratchDir(t)
	rnd := make([]byte, 24)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	pass = passPrefix + hex.EncodeToString(rnd)
	d := Disk{ID: id, Image: newImage(t, dir, "disk.img", 128<<20), Transport: "bot",
		Vendor: "Kingston", Product: "DataTraveler", Serial: serial}
	script = `n=$(wait_disk ` + d.Serial + ` 60) || fail "disk did not appear"
` + script
	vm = boot(t, dir, Config{Guest: g, Luksdock: bin, Programs: map[string]string{"guestwatch": gw},
		Files: map[string][]byte{"secret": []byte(pass + "\n")}, Disks: []Disk{d}, Timeout: timeout, Script: script})
	return vm, pass, d.Image
}

// shimTools is guest script that puts a shim for each tool in dir (for the
// front of PATH): it runs before (shell: "kill -STOP $$" to stop until a
// watcher continues it, "sleep 0.5" to stay visible to a sampler) and then
// execs the real tool.
func shimTools(dir, before string, tools ...string) string {
	return `mkdir -p ` + dir + `
for tool in ` + strings.Join(tools, " ") + `; do
	real=$(command -v $tool) || fail "no $tool"
	printf '#!/bin/sh\n` + before + `\nexec %s "$@"\n' "$real" > ` + dir + `/$tool
	chmod +x ` + dir + `/$tool
done
`
}

// emitAll is guest script that emits each file of /root under its name;
// blobsThenExit takes them on the host and waits for the guest to end.
func emitAll(names ...string) string {
	return `for f in ` + strings.Join(names, " ") + `; do
	emit $f /root/$f
done
`
}

func blobsThenExit(t *testing.T, vm *VM, names ...string) map[string][]byte {
	t.Helper()
	blobs := map[string][]byte{}
	for _, f := range names {
		b, err := vm.Blob(f, time.Minute)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		blobs[f] = b
	}
	mustExit(t, vm, time.Minute)
	return blobs
}
