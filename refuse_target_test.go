package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// TestLoopOnTargetRefused (issue 12 defect 12): a loop device attached to a
// disk itself, or to one of its partitions (losetup /dev/loop0 /dev/sda1, as
// for a VM disk), is a user of that disk like a dm or md holder. Here the
// "disk" is a loop device and its partition a BLKPG partition: list --json
// refuses it, naming the loop device on top, and prepare exits 3 with the
// disk byte-identical.
func TestLoopOnTargetRefused(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup", "sfdisk", "partx")
	for _, onPart := range []bool{false, true} {
		name := map[bool]string{false: "on-disk", true: "on-partition"}[onPart]
		t.Run(name, func(t *testing.T) {
			img := testkit.SparseFile(t, filepath.Join(t.TempDir(), "under.img"), 80<<20)
			if onPart {
				testkit.Run(t, "label: gpt\nstart=2048, size=81920, type=L\n", "sfdisk", "--quiet", img)
			}
			under := testkit.AttachLoop(t, img)
			backing := under
			if onPart {
				testkit.Run(t, "", "partx", "--add", under)
				backing = under + "p1"
			}
			over := testkit.AttachLoop(t, backing)
			before := testkit.SHA256File(t, img)
			uname, oname := filepath.Base(under), filepath.Base(over)
			want := oname + " is attached to " + filepath.Base(backing) + " itself"

			code, out, errs := cli(t, "", "list", "--json")
			if code != 0 {
				t.Fatalf("list --json: exit %d\n%s", code, errs)
			}
			var entries []struct {
				Name    string `json:"name"`
				OK      bool   `json:"ok"`
				Verdict struct {
					Refused []string `json:"refused"`
				} `json:"verdict"`
			}
			if err := json.Unmarshal([]byte(out), &entries); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range entries {
				if e.Name == uname {
					found = true
					if e.OK || !strings.Contains(strings.Join(e.Verdict.Refused, "; "), want) {
						t.Errorf("list --json: %s ok=%v refused=%q; want refused saying %q", uname, e.OK, e.Verdict.Refused, want)
					}
				}
			}
			if !found {
				t.Fatalf("list --json does not list %s:\n%s", uname, out)
			}

			args := append([]string{"prepare", "--device", under, "--label", "lo1", "--passphrase-file", "-", "--confirm", uname}, smallKDF...)
			code, out, errs = cli(t, testPass+"\n", args...)
			if code != exitRefused || !strings.Contains(errs, want) {
				t.Errorf("prepare --device %s: exit %d, want %d saying %q\n%s%s", under, code, exitRefused, want, out, errs)
			}
			if after := testkit.SHA256File(t, img); after != before {
				t.Errorf("the refused disk changed")
			}
		})
	}
}

// TestHeaderBackupOnTargetRefused (issue 12 defect 3): --header-backup naming
// the image to be created (by a relative path) is refused at preflight, exit
// 3, before the image is created; the message gives the absolute path.
func TestHeaderBackupOnTargetRefused(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	args := append([]string{"prepare", "--image", "new.img", "--size", "80M", "--label", "hb1", "--passphrase-file", "-",
		"--confirm", "new.img", "--header-backup", "new.img"}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if want := filepath.Join(dir, "new.img") + " is the target"; code != exitRefused || !strings.Contains(errs, want) {
		t.Errorf("exit %d, want %d saying %q\n%s%s", code, exitRefused, want, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "new.img")); err == nil {
		t.Error("the image was created")
	}
}
