package ui

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
	"luksdock/inventory"
	"luksdock/pipeline"
)

// The actions on a known disk, each proved on a real image prepared by the
// luksdock command (small KDF costs), driven through the wizard and checked
// with cryptsetup, blkid and /proc/mounts.

func init() {
	// Actions: the walker chooses h.act (prepare again when none).
	walkers[scrActions] = func(h *harness, s snapshot) {
		want := h.act
		if want == "" {
			want = actPrepare
		}
		name := actionNames[want]
		if !regexp.MustCompile(`(?m)^(  |› )` + name + `$`).MatchString(s.body) {
			h.t.Fatalf("the Actions screen does not offer %s:\n%s", name, s.body)
		}
		for range 10 {
			if strings.Contains(s.body, "› "+name+"\n") {
				break
			}
			h.key('j')
			s = h.snap()
		}
		h.enter()
	}
	// Each action's walker does it with testPass and goes back to the list.
	walkers[scrOpen] = func(h *harness, s snapshot) {
		h.typ(testPass)
		h.enter()
		h.waitFor("mounted", 60*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "Mounted at") })
		h.enter()
	}
	walkers[scrClose] = func(h *harness, s snapshot) {
		h.enter()
		h.waitFor("closed", 60*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "✓") })
		h.enter()
	}
	walkers[scrPasswd] = func(h *harness, s snapshot) {
		for _, p := range []string{testPass, newPass, newPass} {
			h.typ(p)
			h.enter()
		}
		h.waitFor("changed", 60*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "is changed") })
		h.enter()
	}
	walkers[scrNewKey] = func(h *harness, s snapshot) {
		h.typ(testPass)
		h.enter()
		h.typeBackNewKey()
		h.waitFor("replaced", 60*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "has a new recovery key") })
		h.enter()
	}
	walkers[scrEnroll] = func(h *harness, s snapshot) {
		h.typ(testPass)
		h.enter()
		h.waitFor("enrolled", 60*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "is enrolled") })
		h.enter()
	}
	walkers[scrRetire] = func(h *harness, s snapshot) {
		walkers[scrConfirm](h, s)
		h.waitFor("retired", 120*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "is retired") })
		h.enter()
	}
}

// actionNames are the actions as the Actions screen lists them.
var actionNames = map[action]string{
	actOpen: "Open", actClose: "Close", actPasswd: "Change passphrase", actRecoveryKey: "New recovery key",
	actEnroll: "Enroll this host", actRetire: "Retire", actPrepare: "Prepare again",
}

const newPass = "vivid-Ocelot-parsnip-42-lantern"

// typeBackNewKey reads the new recovery key off the screen, hides it and
// types back the groups asked for; it returns the key as shown.
func (h *harness) typeBackNewKey() string {
	h.t.Helper()
	s := h.waitFor("the new key", 30*time.Second, func(s snapshot) bool { return keyGroupRe.MatchString(s.body) })
	g := shownKey(h.t, s.body)
	h.enter()
	s = h.waitFor("the groups asked", 5*time.Second, func(s snapshot) bool { return askedRe.MatchString(flat(s.body)) })
	m := askedRe.FindStringSubmatch(flat(s.body))
	h.typ(g[m[1]] + "-" + g[m[2]])
	h.enter()
	var parts []string
	for i := 1; i <= 8; i++ {
		parts = append(parts, g[strconv.Itoa(i)])
	}
	return strings.Join(parts, "-")
}

// knownImage prepares dir/disk.img with the luksdock command (label, the
// recovery key in dir/rk.txt, the inventory and open records in dir) and
// returns the image and the recovery key.
func knownImage(t *testing.T, label string) (img, key string) {
	t.Helper()
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "blkid", "sfdisk", "losetup")
	testkit.NeedFUSE(t)
	dir := t.TempDir()
	t.Setenv("LUKSDOCK_INVENTORY", filepath.Join(dir, "inventory.json"))
	t.Setenv("LUKSDOCK_RUN_DIR", filepath.Join(dir, "run"))
	t.Setenv("LUKSDOCK_CONFIG_DIR", filepath.Join(dir, "etc"))
	img = filepath.Join(dir, "disk.img")
	cmd := exec.Command(testkit.Luksdock(t), "prepare", "--image", img, "--size", "80M", "--label", label,
		"--passphrase-file", "-", "--confirm", "disk.img", "--recovery-key", filepath.Join(dir, "rk.txt"),
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000")
	cmd.Stdin = strings.NewReader(testPass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("luksdock prepare: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rk.txt"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return img, lines[len(lines)-1]
}

// actionConfig is the wizard on img with the userspace engine (this host
// has no device-mapper) and the inventory the command wrote.
func actionConfig(img string) Config {
	cfg := imageConfig(img, 0)
	cfg.Engine = "userspace"
	cfg.Inventory = func() (*inventory.File, error) { return inventory.Load(os.Getenv("LUKSDOCK_INVENTORY")) }
	return cfg
}

func startAction(t *testing.T, img string, act action, w, hgt int) *harness {
	t.Helper()
	cfg := actionConfig(img)
	h := startSized(t, cfg, w, hgt, nil)
	h.act = act
	return h
}

// opens reports whether stock cryptsetup accepts secret (a passphrase or
// a recovery key, on stdin as at its prompt) for partition 1 of img.
func opens(t *testing.T, img, secret string) bool {
	t.Helper()
	return opensWith(t, img, secret+"\n")
}

// opensWith is opens with stdin and more arguments for cryptsetup.
func opensWith(t *testing.T, img, stdin string, args ...string) bool {
	t.Helper()
	parts := testkit.Partitions(t, img)
	if len(parts) == 0 {
		t.Fatalf("%s has no partition", img)
	}
	dev := testkit.AttachLoop(t, img, "--read-only", "--offset", strconv.FormatInt(parts[0].Base, 10), "--sizelimit", strconv.FormatInt(parts[0].Size, 10))
	defer testkit.DetachLoop(dev)
	cmd := exec.Command("cryptsetup", append(append([]string{"open", "--test-passphrase"}, args...), dev)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("cryptsetup open --test-passphrase: %v\n%s", err, out)
		}
		return false
	}
	return true
}

// keyslots counts the keyslots cryptsetup luksDump lists on partition 1.
func keyslots(t *testing.T, img string) int {
	t.Helper()
	parts := testkit.Partitions(t, img)
	dev := testkit.AttachLoop(t, img, "--read-only", "--offset", strconv.FormatInt(parts[0].Base, 10), "--sizelimit", strconv.FormatInt(parts[0].Size, 10))
	defer testkit.DetachLoop(dev)
	dump := testkit.Run(t, "", "cryptsetup", "luksDump", dev)
	return len(regexp.MustCompile(`(?m)^\s+\d+: luks2$`).FindAllString(dump, -1))
}

// inProcMounts is the line of /proc/mounts for mountpoint mnt ("": none).
func inProcMounts(mnt string) string {
	b, _ := os.ReadFile("/proc/mounts")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == mnt {
			return l
		}
	}
	return ""
}

var mountedAtRe = regexp.MustCompile(`Mounted at\s+(\S+)`)

// An unknown disk (no token, not in the inventory) shows no Actions
// screen: Details goes on to prepare, as before.
func TestUnknownDiskOnlyPrepares(t *testing.T) {
	testkit.NeedTools(t, "cryptsetup")
	img := filepath.Join(t.TempDir(), "u.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, "x", "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", "-", img)
	h := start(t, imageConfig(img, 0), nil)
	h.walkTo(scrDetails)
	h.enter()
	s := h.waitFor("the next screen", 10*time.Second, func(s snapshot) bool { return s.screen != scrDetails && s.screen != "" })
	if s.screen == scrActions {
		t.Fatalf("an unknown LUKS disk got the Actions screen:\n%s", s.view)
	}
}

// Quitting the wizard wipes what was typed on an action's screen (the
// buffers themselves, not only their length).
func TestQuitClearsActionSecrets(t *testing.T) {
	m := New(Config{})
	pw := m.screens[scrPasswd].(*passwdScreen)
	op := m.screens[scrOpen].(*openScreen)
	nk := m.screens[scrNewKey].(*newKeyScreen)
	en := m.screens[scrEnroll].(*enrollScreen)
	bufs := []*secret{&pw.sec[0], &pw.sec[1], &pw.sec[2], &op.pass, &nk.pass, &en.pass}
	for _, b := range bufs {
		b.Insert(nil, "secret words here")
	}
	m.quit()
	for i, b := range bufs {
		if all := b.Bytes()[:cap(b.Bytes())]; strings.Trim(string(all), "\x00") != "" {
			t.Errorf("buffer %d still holds %q after quit", i, strings.Trim(string(all), "\x00"))
		}
	}
}

// What the Actions screen offers by the disk's state: an open disk gets
// Close first and never Retire or Prepare again (nor Open); an open disk
// neither the inventory nor a token knows (a luks-UUID mapping the desktop
// made) gets the Actions screen all the same, with Close only; a known disk
// that is not open gets Open, Retire and Prepare again.
func TestActionsByState(t *testing.T) {
	m := New(Config{})
	s := m.screens[scrActions].(*actionsScreen)
	s.c.target = &pipeline.Target{Path: "/dev/sdz", Name: "sdz"}
	names := func() string {
		var n []string
		for _, it := range s.items() {
			n = append(n, it.name)
		}
		return strings.Join(n, ", ")
	}
	for _, c := range []struct {
		k    knownDisk
		skip bool
		want string
	}{
		{knownDisk{known: true, open: true, mounted: "/media/a/b", luks2: true, enrolled: true}, false, "Close, Change passphrase, New recovery key"},
		{knownDisk{known: true, open: true, luks2: true}, false, "Close, Change passphrase, New recovery key, Enroll this host"},
		{knownDisk{open: true, mounted: "/media/a/b"}, false, "Close"},
		{knownDisk{known: true, luks2: true, enrolled: true}, false, "Open, Change passphrase, New recovery key, Retire, Prepare again"},
		{knownDisk{}, true, ""},
	} {
		s.c.knownDisk = c.k
		if s.Skip() != c.skip {
			t.Errorf("%+v: Skip = %v", c.k, s.Skip())
		}
		if c.skip {
			continue
		}
		if got := names(); got != c.want {
			t.Errorf("%+v: offers %q, want %q", c.k, got, c.want)
		}
		if c.k.open {
			if v, _ := s.View(); !strings.Contains(flat(v), "Open now:") {
				t.Errorf("%+v: the Actions screen does not say it is open:\n%s", c.k, v)
			}
		}
	}
	// Close powers a disk off, never an image file.
	s.c.knownDisk = knownDisk{known: true, open: true, mounted: "/media/a/b", luks2: true}
	for _, c := range []struct {
		target *pipeline.Target
		power  bool
	}{
		{&pipeline.Target{Path: "/dev/sdz", Name: "sdz"}, true},
		{&pipeline.Target{Path: "/tmp/b.img", Name: "b.img", Image: true}, false},
	} {
		s.c.target = c.target
		if got := strings.Contains(s.items()[0].what, "power it off"); got != c.power {
			t.Errorf("%s: Close says %q", c.target.Path, s.items()[0].what)
		}
	}
}
