package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/inventory"
)

// Issue 20's CLI defects, each proved through the real CLI (run).

// TestDryRunRefusesLabelOfSet (issue 20 item 10): --dry-run applies every
// refusal the real run would: a label another disk of the set has in the
// inventory is refused with exit 3, and no script is printed.
func TestDryRunRefusesLabelOfSet(t *testing.T) {
	dir := t.TempDir()
	invPath := filepath.Join(dir, "inventory.json")
	t.Setenv("LUKSDOCK_INVENTORY", invPath)
	err := inventory.Update(invPath, func(f *inventory.File) error {
		f.Put(inventory.Record{LUKSUUID: "00000000-0000-0000-0000-000000000001", Label: "backups01", Set: "offsite"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs := cli(t, "", "prepare", "--dry-run", "--image", filepath.Join(dir, "c.img"), "--size", "80M",
		"--label", "backups01", "--set", "offsite")
	if code != 3 || !strings.Contains(errs, "two disks of a set must not share a label") || strings.Contains(out, "#!/bin/sh") {
		t.Errorf("dry run of a label the set has: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	// another label of the same set is fine
	if code, _, errs := cli(t, "", "prepare", "--dry-run", "--image", filepath.Join(dir, "c.img"), "--size", "80M",
		"--label", "backups02", "--set", "offsite"); code != 0 {
		t.Errorf("dry run of a free label: exit %d: %s", code, errs)
	}
}

// TestWeakPassphraseWarned (item 15): prepare warns about a passphrase the
// wizard would want a tick for, with the wizard's estimate (zxcvbn): on
// standard error, and with --json as a warning event.
func TestWeakPassphraseWarned(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	args := func(name string, more ...string) []string {
		return append(append([]string{"prepare", "--image", filepath.Join(dir, name), "--size", "80M", "--label", "weak1",
			"--passphrase-file", "-", "--confirm", name}, smallKDF...), more...)
	}
	code, out, errs := cli(t, "password\n", args("a.img")...)
	if code != 0 || !strings.Contains(errs, "warning: the passphrase is very weak (zxcvbn score 0/4)") || !strings.Contains(errs, "most common passwords") {
		t.Errorf("weak passphrase: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	code, out, errs = cli(t, "password\n", args("b.img", "--json")...)
	found := false
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var e struct{ Event, Message string }
		if json.Unmarshal([]byte(l), &e) == nil && e.Event == "warning" && strings.Contains(e.Message, "the passphrase is very weak") {
			found = true
		}
	}
	if code != 0 || !found {
		t.Errorf("weak passphrase, --json: exit %d, no warning event\nstdout: %s\nstderr: %s", code, out, errs)
	}
	if code, _, errs := cli(t, testPass+"\n", args("c.img")...); code != 0 || strings.Contains(errs, "passphrase is") {
		t.Errorf("strong passphrase: exit %d, stderr: %s", code, errs)
	}
}

// TestListJSONCarriesFix (item 16): a refused disk in list --json has each
// reason with its fix.
func TestListJSONCarriesFix(t *testing.T) {
	out, errs, code := listRun(t, "--json", "--sysroot", fixtureRoot("loop"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got []struct {
		Name    string
		Reasons []struct{ Text, Fix string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.Name != "vda" {
			continue
		}
		if len(e.Reasons) == 0 || !strings.Contains(e.Reasons[0].Text, "holds the running system") || !strings.Contains(e.Reasons[0].Fix, "never prepares it") {
			t.Errorf("vda's reasons: %+v", e.Reasons)
		}
		for _, r := range e.Reasons {
			if strings.Contains(r.Text, "needs --allow-internal") {
				t.Errorf("the system disk is refused regardless, yet: %q", r.Text) // item 24
			}
		}
		return
	}
	t.Fatalf("no vda in %s", out)
}

// TestHelpOwnExitCodes (item 18): verify's help lists verify's exit codes,
// not prepare's, and its --image help does not speak of the wizard.
func TestHelpOwnExitCodes(t *testing.T) {
	_, help, _ := cli(t, "", "verify", "--help")
	for _, bad := range []string{"wrong --confirm", "the disk is made", "the wizard lists it"} {
		if strings.Contains(help, bad) {
			t.Errorf("verify --help says %q:\n%s", bad, help)
		}
	}
	if !strings.Contains(help, "unlocks no keyslot") {
		t.Errorf("verify --help does not list exit 6:\n%s", help)
	}
	_, help, _ = cli(t, "", "prepare", "--help")
	if strings.Contains(help, "verify: the passphrase") || strings.Contains(help, "the wizard lists it") {
		t.Errorf("prepare --help lists verify's exit code or the wizard's --image:\n%s", help)
	}
}

// TestRefusedPrepareSaysSo (item 19): a refused prepare's standard output
// says what was refused, not a bare indented "FAILED:" under no step.
func TestRefusedPrepareSaysSo(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	args := append([]string{"prepare", "--image", filepath.Join(dir, "d.img"), "--size", "80M", "--label", "conf1",
		"--passphrase-file", "-", "--confirm", "other.img"}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != 3 || !strings.HasPrefix(out, "refused before any step ran: confirmation does not match") || strings.Contains(out, "FAILED") {
		t.Errorf("wrong --confirm: exit %d\nstdout: %q\nstderr: %s", code, out, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.img")); err == nil {
		t.Error("the refused image was created")
	}
}

// TestPrepareNoFlags (item 23): prepare without flags asks for the target
// first and points to prepare's own help.
func TestPrepareNoFlags(t *testing.T) {
	code, _, errs := cli(t, "", "prepare")
	if code != 2 || !strings.Contains(errs, "give --device /dev/sdX or --image PATH") || !strings.Contains(errs, "Run 'luksdock prepare --help'") {
		t.Errorf("prepare without flags: exit %d: %s", code, errs)
	}
	code, _, errs = cli(t, "", "verify", "--bogus")
	if code != 2 || !strings.Contains(errs, "Run 'luksdock verify --help'") {
		t.Errorf("verify --bogus: exit %d: %s", code, errs)
	}
}

// TestSizeWithoutImage: --size is the size of an image file luksdock
// creates; without --image it is the same usage error (exit 2, one message:
// core.CheckSizeChoice) for the wizard and for prepare with a device, and
// the wizard refuses it before it looks for a terminal.
func TestSizeWithoutImage(t *testing.T) {
	for _, args := range [][]string{{"--size", "1G"}, {"prepare", "--device", "/dev/sdz", "--size", "1G", "--label", "x"}} {
		code, _, errs := cli(t, "", args...)
		if code != exitUsage || !strings.Contains(errs, "--size goes with --image only") {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", args, code, errs, exitUsage, "--size goes with --image only")
		}
	}
}

// Found trying the CLI: open, close, passwd, recovery-key and retire listed
// the wizard's exit codes ("0 success (prepare: the disk is made and
// verified)", 5 "verification failed", 6 "verify: ..."), not their own.
// Each lists its own now, and the codes seen when trying them are in it.
func TestLifecycleHelpListsOwnExitCodes(t *testing.T) {
	for cmd, want := range map[string][]string{
		"open":         {"0    unlocked and mounted", "3    refused", "6    the passphrase (or the recovery key) opens no keyslot"},
		"close":        {"0    unmounted, locked", "3    refused"},
		"passwd":       {"0    the new passphrase opens the disk", "3    refused", "6    the old passphrase"},
		"recovery-key": {"0    the new recovery key opens the disk", "2    usage error", "6    the passphrase opens no keyslot"},
		"retire":       {"0    crypto-erased and proved", "3    refused: wrong --confirm", "130  interrupted (SIGINT/SIGTERM) during --erase"},
	} {
		code, help, errs := cli(t, "", cmd, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d: %s", cmd, code, errs)
		}
		_, codes, _ := strings.Cut(help, "Exit codes:\n")
		codes, _, _ = strings.Cut(codes, "\n\n")
		if strings.Contains(codes, "prepare: the disk is made") || strings.Contains(codes, "6    verify:") {
			t.Errorf("%s --help lists the wizard's exit codes:\n%s", cmd, codes)
		}
		for _, w := range want {
			if !strings.Contains(codes, w) {
				t.Errorf("%s --help: exit codes lack %q:\n%s", cmd, w, codes)
			}
		}
	}
}

// TestHostUnknownCommand: "host" with no command or an unknown one is a
// usage error (exit 2) that names it, not the help with exit 0.
func TestHostUnknownCommand(t *testing.T) {
	for _, args := range [][]string{{"host", "bogus"}, {"host"}} {
		code, out, errs := cli(t, "", args...)
		if code != 2 || !strings.Contains(errs, "luksdock host") || strings.Contains(out, "Available Commands") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 naming the problem", args, code, out, errs)
		}
	}
}

// TestHostTargetSelection: host enroll and forget find their disk as the
// other lifecycle commands do (core.Selector, core.Find): the same usage
// error without one, --label, and a disk with no LUKS volume still refused
// (exit 3, as host's exit codes say), as is dock --image on one.
func TestHostTargetSelection(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.img")
	if err := os.WriteFile(empty, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"host", "enroll", "--passphrase-file", "-"}, 2, "give exactly one of --device /dev/sdX, --image PATH or --label LABEL"},
		{[]string{"host", "enroll", "--image", empty, "--label", "x", "--passphrase-file", "-"}, 2, "give exactly one of"},
		{[]string{"host", "enroll", "--image", empty, "--passphrase-file", "-"}, 3, "holds no LUKS volume"},
		{[]string{"host", "forget", "--label", "no-such-label-here"}, 3, `no attached disk has a LUKS volume labelled "no-such-label-here"`},
		{[]string{"host", "forget", "--uuid", "1234", "--label", "backups01"}, 2, "give --uuid, or the disk with --device/--image/--label, not both"},
		{[]string{"dock", "--image", empty}, 3, "holds no LUKS volume"},
	} {
		code, _, errs := cli(t, "pass\n", c.args...)
		if code != c.code || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errs, c.code, c.want)
		}
	}
}

// TestPrepareRefusalCarriesFix (item 16): a disk prepare refuses is
// reported with each reason's fix, as list --json and the wizard's Details
// give it: on standard error ("to fix: ..."), and with --json as a
// "reasons" list of text and fix on the failed event, so automation need
// not parse the message. The disk here is a loop device with another loop
// device attached to it (refused: "detach the loop device").
func TestPrepareRefusalCarriesFix(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup")
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(t.TempDir(), "inventory.json"))
	img := testkit.SparseFile(t, filepath.Join(t.TempDir(), "under.img"), 80<<20)
	under := testkit.AttachLoop(t, img)
	over := testkit.AttachLoop(t, under)
	fix := "detach the loop device (losetup -d " + over + ")"
	args := append([]string{"prepare", "--device", under, "--label", "fix1", "--passphrase-file", "-", "--confirm", filepath.Base(under)}, smallKDF...)
	code, out, errs := cli(t, testPass+"\n", args...)
	if code != exitRefused || !strings.Contains(errs, "(to fix: "+fix+")") {
		t.Errorf("prepare --device %s: exit %d, stderr without the fix %q:\n%s%s", under, code, fix, out, errs)
	}
	code, out, errs = cli(t, testPass+"\n", append(args, "--json")...)
	var failed struct {
		Event   string
		Kind    string
		Reasons []struct{ Text, Fix string }
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if json.Unmarshal([]byte(l), &failed) == nil && failed.Event == "failed" {
			break
		}
	}
	if code != exitRefused || failed.Kind != "refused" || len(failed.Reasons) == 0 {
		t.Fatalf("prepare --json: exit %d, failed event %+v\nstdout: %s\nstderr: %s", code, failed, out, errs)
	}
	found := false
	for _, r := range failed.Reasons {
		if strings.Contains(r.Text, filepath.Base(over)+" is attached to") && strings.TrimSuffix(r.Fix, ".") == fix {
			found = true
		}
		if r.Fix == "" || strings.Contains(r.Text, "to fix") {
			t.Errorf("reason without its own fix field: %+v", r)
		}
	}
	if !found {
		t.Errorf("the failed event's reasons do not carry the fix %q: %+v", fix, failed.Reasons)
	}
}

// TestPrepareTooSmallImageSaysFix (item 16): an image file too small to
// prepare is refused with what to do (the wizard's list said it, the CLI
// gave only the sizes), on standard error and as the --json reason's fix.
func TestPrepareTooSmallImageSaysFix(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	img := testkit.SparseFile(t, filepath.Join(dir, "tiny.img"), 1<<20)
	fix := "truncate -s 64M " + img
	code, out, errs := cli(t, "", "prepare", "--dry-run", "--image", img, "--label", "tiny1")
	if code != exitRefused || !strings.Contains(errs, "needs at least 64.0 MiB") || !strings.Contains(errs, "to fix: ") || !strings.Contains(errs, fix) {
		t.Errorf("a 1 MiB image: exit %d, want %d with the fix %q\nstdout: %s\nstderr: %s", code, exitRefused, fix, out, errs)
	}
	code, out, _ = cli(t, "", "prepare", "--dry-run", "--json", "--image", img, "--label", "tiny1")
	var failed struct {
		Event   string
		Reasons []struct{ Text, Fix string }
	}
	_ = json.Unmarshal([]byte(strings.TrimSpace(out)), &failed)
	if code != exitRefused || failed.Event != "failed" || len(failed.Reasons) != 1 || !strings.Contains(failed.Reasons[0].Fix, fix) {
		t.Errorf("a 1 MiB image, --json: exit %d, event %+v\n%s", code, failed, out)
	}
}

// TestPrepareImageInUseCarriesFix (item 16): an image file a loop device
// is attached to is refused with the fix as a reason of its own, on
// standard error and in the --json failed event (the fix was only in the
// message's text).
func TestPrepareImageInUseCarriesFix(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "losetup")
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	img := testkit.SparseFile(t, filepath.Join(dir, "busy.img"), 80<<20)
	loop := testkit.AttachLoop(t, img)
	fix := "detach the loop device (losetup -d " + loop + ")"
	code, out, errs := cli(t, "", "prepare", "--dry-run", "--image", img, "--label", "busy1")
	if code != exitRefused || !strings.Contains(errs, "in use by "+loop) || !strings.Contains(errs, "(to fix: "+fix+")") {
		t.Errorf("an image behind %s: exit %d, want %d with the fix %q\nstdout: %s\nstderr: %s", loop, code, exitRefused, fix, out, errs)
	}
	code, out, _ = cli(t, "", "prepare", "--dry-run", "--json", "--image", img, "--label", "busy1")
	var failed struct {
		Event   string
		Reasons []struct{ Text, Fix string }
	}
	_ = json.Unmarshal([]byte(strings.TrimSpace(out)), &failed)
	if code != exitRefused || failed.Event != "failed" || len(failed.Reasons) != 1 || failed.Reasons[0].Text != "in use by "+loop || strings.TrimSuffix(failed.Reasons[0].Fix, ".") != fix {
		t.Errorf("an image behind %s, --json: exit %d, event %+v\n%s", loop, code, failed, out)
	}
}
