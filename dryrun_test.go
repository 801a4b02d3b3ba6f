package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// TestDryRunScript: --dry-run prints a shell script that does by hand what
// luksdock does. sh -n accepts it; it creates the image before anything
// touches it, attaches it with a real losetup --partscan and opens the
// volume with a real cryptsetup open (no lsblk on a regular file, no
// commented-out open). The part this host can run (it has no device-mapper
// and no partition-table parser, so no loop partition node) — creating,
// wiping and partitioning the image — runs here, and sfdisk finds the same
// table in it as in an image luksdock prepared. The QEMU guest runs the
// whole script (e2e TestDryRunScriptKernel).
func TestDryRunScript(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "sh", "sfdisk", "wipefs", "truncate")
	for _, table := range []string{"gpt", "mbr"} {
		t.Run(table, func(t *testing.T) {
			dir := t.TempDir()
			byHand, made := filepath.Join(dir, "hand.img"), filepath.Join(dir, "made.img")
			code, script, errs := cli(t, "", "prepare", "--dry-run", "--image", byHand, "--size", "80M", "--label", "dry1",
				"--table", table, "--header-backup", filepath.Join(dir, "hdr"))
			if code != 0 {
				t.Fatalf("--dry-run: exit %d\n%s", code, errs)
			}
			if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
				t.Fatalf("sh -n rejects the script: %v\n%s\n%s", err, out, script)
			}
			if _, err := os.Stat(byHand); err == nil {
				t.Fatal("--dry-run created the image")
			}
			for _, bad := range []string{"lsblk", "# cryptsetup", "$(dirname"} {
				if strings.Contains(script, bad) {
					t.Errorf("script holds %q:\n%s", bad, script)
				}
			}
			order := []string{"truncate -s 83886080 " + byHand, "wipefs --all " + byHand, "sfdisk", "losetup --find --show --partscan " + byHand,
				`cryptsetup luksFormat`, `cryptsetup open "$PART" luksdock-dry1`, "mkfs.ext4", "/dev/mapper/luksdock-dry1",
				"cryptsetup close luksdock-dry1", `cryptsetup open --readonly "$PART"`, "e2fsck -fn", "cryptsetup luksHeaderBackup", `losetup --detach "$LOOP"`}
			at := 0
			for _, w := range order {
				i := strings.Index(script[at:], w)
				if i < 0 {
					t.Fatalf("script lacks %q after byte %d (in this order: %q):\n%s", w, at, order, script)
				}
				at += i + len(w)
			}

			// Run what this host can: up to the partition table.
			cut := strings.Index(script, " && LOOP=$(losetup")
			if out, err := exec.Command("sh", "-c", script[:cut]).CombinedOutput(); err != nil {
				t.Fatalf("the script's first steps failed: %v\n%s\n%s", err, out, script[:cut])
			}
			args := append([]string{"prepare", "--image", made, "--size", "80M", "--label", "dry1", "--table", table,
				"--passphrase-file", "-", "--confirm", "made.img"}, smallKDF...)
			if code, out, errs := cli(t, testPass+"\n", args...); code != 0 {
				t.Fatalf("prepare: exit %d\n%s%s", code, out, errs)
			}
			a, b := sfdisk(t, byHand), sfdisk(t, made)
			if !reflect.DeepEqual(a, b) || len(a.PartitionTable.Partitions) != 1 {
				t.Errorf("sfdisk finds\n by hand: %+v\nluksdock: %+v", a, b)
			}
			sa, _ := os.Stat(byHand)
			sb, _ := os.Stat(made)
			if sa.Size() != sb.Size() {
				t.Errorf("image sizes: by hand %d, luksdock %d", sa.Size(), sb.Size())
			}
		})
	}
}
