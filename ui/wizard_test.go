package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"luksdock/disk"
	"luksdock/health"
	"luksdock/internal/testkit"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// testPBKDF keeps key derivation cheap in tests.
var testPBKDF = luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}

// snapshot is the wizard as drawn, read from inside the program's event
// loop (so reading it does not race with Update). Tests assert on what is
// on the screen, on messages and on the Model's public methods only.
type snapshot struct {
	screen   screenID // the current screen, whose title is the one drawn
	view     string   // plain text of the screen as drawn (clipped to the terminal)
	body     string   // plain text of the screen's whole body, before clipping
	results  []*pipeline.Result
	lastErr  error
	running  bool
	openPath string
	actions  []string // Model.ActionsDone: the exit summary's action lines
}

// titleRe reads the title line: "luksdock · 3/9 Options".
var titleRe = regexp.MustCompile(`^luksdock · (?:\d+/\d+ )?(.*)$`)

// titleOf is the screen's title as drawn on the first line.
func titleOf(view string) string {
	first, _, _ := strings.Cut(view, "\n")
	m := titleRe.FindStringSubmatch(strings.TrimRight(first, " "))
	if m == nil {
		return ""
	}
	return m[1]
}

// selected is the name on the row marked "›" in the disk list.
func (s snapshot) selected() string {
	for _, l := range strings.Split(s.view, "\n") {
		if rest, ok := strings.CutPrefix(l, "› "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				return f[0]
			}
		}
	}
	return ""
}

// field is the value shown after a field's name on the Options screen.
func (s snapshot) field(name string) string {
	for _, l := range strings.Split(s.body, "\n") {
		l = strings.TrimLeft(l, "› ")
		if rest, ok := strings.CutPrefix(l, name); ok {
			return strings.TrimRight(strings.TrimSpace(rest), "▏")
		}
	}
	return ""
}

// dots counts the masked characters on the Passphrase screen's line name.
func (s snapshot) dots(name string) int {
	for _, l := range strings.Split(s.body, "\n") {
		if strings.HasPrefix(strings.TrimLeft(l, "› "), name) {
			return strings.Count(l, "•")
		}
	}
	return -1
}

type snapMsg chan snapshot

// probe wraps the wizard for tests: it answers snapMsg with a snapshot, and
// can run a hook on every message after the wizard has handled it.
type probe struct {
	m    *Model
	hook func(p *probe, msg tea.Msg)
	// openPath is where the userspace engine served the volume (from the
	// open step's done message).
	openPath string
}

func (p *probe) Init() tea.Cmd { return p.m.Init() }

// view is the screen as drawn, in plain text.
func (p *probe) view() string { return ansi.Strip(p.m.View().Content) }

func (p *probe) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if ch, ok := msg.(snapMsg); ok {
		body, _ := p.m.screens[p.m.cur].View()
		if sl, ok := p.m.screens[p.m.cur].(statusLiner); ok {
			body += "\n" + sl.Status()
		}
		v := p.view()
		sc := p.m.cur
		if !strings.HasPrefix(p.m.screens[sc].Title(), strings.TrimSuffix(titleOf(v), "…")) || p.m.c.quitting {
			sc = "" // the screen drawn is not the current one
		}
		ch <- snapshot{
			screen: sc, view: v, body: ansi.Strip(body),
			results: p.m.Results(), lastErr: p.m.LastError(), running: p.m.Running(), openPath: p.openPath,
			actions: p.m.ActionsDone(),
		}
		return p, nil
	}
	if e, ok := msg.(runEventMsg); ok && e.Kind == pipeline.EventDone && e.Step == pipeline.StepOpen {
		if i := strings.Index(e.Message, " at "); i >= 0 {
			p.openPath = e.Message[i+4:]
		}
	}
	_, cmd := p.m.Update(msg)
	if p.hook != nil {
		p.hook(p, msg)
	}
	return p, cmd
}

func (p *probe) View() tea.View { return p.m.View() }

type harness struct {
	t    *testing.T
	tm   *teatest.TestModel
	p    *probe
	w, h int
	// act is what the Actions screen's walker chooses on a known disk
	// ("": prepare again).
	act action
}

func start(t *testing.T, cfg Config, hook func(*probe, tea.Msg)) *harness {
	t.Helper()
	return startSized(t, cfg, 80, 24, hook)
}

// startSized runs the wizard in a w x h terminal. Configs without a
// Keyboard get a US-only machine, so tests do not depend on this host's.
func startSized(t *testing.T, cfg Config, w, hgt int, hook func(*probe, tea.Msg)) *harness {
	t.Helper()
	if cfg.Keyboard == nil {
		cfg.Keyboard = func() []string { return nil }
	}
	if cfg.Inventory == nil { // not this host's inventory
		cfg.Inventory = func() (*inventory.File, error) { return &inventory.File{}, nil }
	}
	p := &probe{m: New(cfg), hook: hook}
	tm := teatest.NewTestModel(t, p, teatest.WithInitialTermSize(w, hgt))
	h := &harness{t: t, tm: tm, p: p, w: w, h: hgt}
	t.Cleanup(func() {
		_ = tm.Quit()
		tm.WaitFinished(t, teatest.WithFinalTimeout(30*time.Second))
		p.m.Close()
	})
	return h
}

func (h *harness) snap() snapshot {
	ch := make(snapMsg, 1)
	h.tm.Send(ch)
	select {
	case s := <-ch:
		h.checkFits(s)
		return s
	case <-time.After(10 * time.Second):
		h.t.Fatal("the wizard did not answer")
	}
	return snapshot{}
}

// checkFits fails the test when a screen does not fit the terminal the
// test runs in (every screen a test visits is checked).
func (h *harness) checkFits(s snapshot) {
	h.t.Helper()
	lines := strings.Split(s.view, "\n")
	if len(lines) > h.h {
		h.t.Errorf("screen %s has %d lines, more than %d:\n%s", s.screen, len(lines), h.h, s.view)
	}
	for _, l := range lines {
		if w := ansi.StringWidth(l); w > h.w {
			h.t.Errorf("screen %s has a line of %d columns: %q", s.screen, w, l)
		}
	}
}

// waitFor polls the wizard until cond holds.
func (h *harness) waitFor(what string, timeout time.Duration, cond func(snapshot) bool) snapshot {
	h.t.Helper()
	deadline := time.Now().Add(timeout)
	var s snapshot
	for time.Now().Before(deadline) {
		s = h.snap()
		if cond(s) {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("timed out waiting for %s; screen %s shows:\n%s", what, s.screen, s.view)
	return s
}

// onScreen waits for screen sc, and on Details for the target to be read.
func (h *harness) onScreen(sc screenID) snapshot {
	h.t.Helper()
	return h.waitFor("screen "+string(sc), 10*time.Second, func(s snapshot) bool {
		return s.screen == sc && !(sc == scrDetails && strings.Contains(s.body, "Reading "))
	})
}

// enterOn presses Enter with the disk name selected and returns the
// Details screen it opens. Other tests (and packages) run side by side and
// attach and detach loop devices of their own: a list change can move the
// selection, or hold Enter back for settle (as it should), so the disk is
// selected again and Enter pressed again until Details shows.
func (h *harness) enterOn(name string) snapshot {
	h.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s := h.snap()
		switch {
		case s.screen == scrDetails && !strings.Contains(s.body, "Reading "):
			return s
		case s.screen != scrDisks:
			time.Sleep(20 * time.Millisecond)
		case s.selected() != name:
			for i := 0; i < 20; i++ { // to the top
				h.key(tea.KeyUp)
			}
			time.Sleep(100 * time.Millisecond)
			for i := 0; i < 20 && h.snap().selected() != name; i++ {
				h.key(tea.KeyDown)
				time.Sleep(30 * time.Millisecond)
			}
		default:
			time.Sleep(settle)
			if h.snap().selected() == name {
				h.enter()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return h.onScreen(scrDetails)
}

func (h *harness) key(code rune) { h.tm.Send(tea.KeyPressMsg{Code: code}) }
func (h *harness) enter()        { h.key(tea.KeyEnter) }
func (h *harness) esc()          { h.key(tea.KeyEscape) }
func (h *harness) ctrlC()        { h.tm.Send(tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}) }
func (h *harness) typ(s string)  { h.tm.Type(s) }

func imageConfig(img string, size int64) Config {
	return Config{
		Scan:   func() ([]disk.Disk, error) { return nil, nil },
		Images: []Image{{Path: img, Size: size}},
		PBKDF:  testPBKDF,
	}
}

// toOptions walks from the disk list to the options screen.
func (h *harness) toOptions() {
	h.t.Helper()
	h.walkTo(scrOptions)
}

// optionsToPlan goes on from the options screen to the plan screen,
// typing the passphrase pass twice.
func (h *harness) optionsToPlan(pass string) snapshot {
	h.t.Helper()
	h.onScreen(scrOptions)
	h.enter()
	h.passphrase(pass)
	return h.walkTo(scrPlan)
}

// passphrase types pass twice on the Passphrase screen.
func (h *harness) passphrase(pass string) {
	h.t.Helper()
	h.onScreen(scrPassphrase)
	h.typ(pass)
	h.enter()
	h.typ(pass)
	h.enter()
}

// confirmAndRun goes from the Plan to Confirm, types name and waits (up
// to timeout) for the run to end on Done or Failed.
func (h *harness) confirmAndRun(name string, timeout time.Duration) snapshot {
	h.t.Helper()
	h.walkTo(scrConfirm)
	h.typ(name)
	h.enter()
	return h.waitFor("the done screen", timeout, func(s snapshot) bool { return s.screen == scrDone || s.screen == scrFailed })
}

var keyGroupRe = regexp.MustCompile(`(\d) ([cbdefghijklnrtuv]{8})`)

// shownKey reads the recovery key's numbered groups off the recovery
// screen.
func shownKey(t *testing.T, body string) map[string]string {
	t.Helper()
	g := map[string]string{}
	for _, m := range keyGroupRe.FindAllStringSubmatch(body, -1) {
		g[m[1]] = m[2]
	}
	if len(g) != 8 {
		t.Fatalf("the recovery screen shows %d groups, want 8:\n%s", len(g), body)
	}
	return g
}

var askedRe = regexp.MustCompile(`type groups (\d) and (\d) of the recovery key`)

// typeBackRecovery reads the recovery key on its screen, hides it with
// Enter and types back the groups asked for.
func (h *harness) typeBackRecovery() {
	h.t.Helper()
	s := h.onScreen(scrRecovery)
	g := shownKey(h.t, s.body)
	h.enter()
	s = h.waitFor("the groups asked", 5*time.Second, func(s snapshot) bool { return askedRe.MatchString(flat(s.body)) })
	m := askedRe.FindStringSubmatch(flat(s.body))
	h.typ(g[m[1]] + "-" + g[m[2]])
	h.enter()
}

// toPlan walks from the disk list to the plan screen with passphrase pass.
func (h *harness) toPlan(pass string) {
	h.t.Helper()
	h.walkTo(scrPassphrase)
	h.passphrase(pass)
	h.walkTo(scrPlan)
}

const testPass = "Tr0ub4dor & horse battery"

func TestHappyPathToVerifiedDisk(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "sfdisk", "losetup")
	tmp := privateTmp(t)
	img := filepath.Join(t.TempDir(), "backup.img")
	h := start(t, imageConfig(img, 128<<20), nil)
	h.waitFor("the image row", 10*time.Second, func(s snapshot) bool {
		return strings.Contains(s.view, "backup.img") && strings.Contains(s.view, "to be created")
	})
	h.enter()
	s := h.onScreen(scrDetails)
	if !strings.Contains(s.view, "to be created as a sparse file") {
		t.Errorf("details do not say the image will be created:\n%s", s.view)
	}
	h.enter()
	s = h.onScreen(scrOptions)
	if l := s.field("Label"); l != "backups01" {
		t.Errorf("suggested label %q, want backups01", l)
	}
	// Header backup: Tab to its field (label, table, LUKS version, header).
	hdr := filepath.Join(t.TempDir(), "backups01.header")
	h.key(tea.KeyTab)
	h.key(tea.KeyTab)
	h.key(tea.KeyTab)
	h.typ(hdr)
	h.waitFor("the header path", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, hdr) && strings.Contains(s.body, "✓ ready") })
	h.enter()
	h.onScreen(scrPassphrase)
	h.typ(testPass)
	h.enter()
	h.typ(testPass)
	s = h.waitFor("the match message", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "entries match") })
	if strings.Contains(s.view, testPass) || strings.Contains(s.view, "horse") {
		t.Fatalf("the passphrase is on the screen:\n%s", s.view)
	}
	h.enter()
	h.typeBackRecovery()
	s = h.onScreen(scrPlan)
	for _, want := range []string{"cryptsetup luksFormat", "mkfs.ext4", "backup.img"} {
		if !strings.Contains(s.body, want) {
			t.Errorf("plan lacks %q:\n%s", want, s.body)
		}
	}
	if _, err := os.Stat(img); err == nil {
		t.Fatal("the image exists before confirmation")
	}
	s = h.confirmAndRun("backup.img", 120*time.Second)
	if s.screen != scrDone || len(s.results) != 1 {
		t.Fatalf("run failed: %v\n%s", s.lastErr, s.view)
	}
	r := s.results[0]
	if r.FSLabel != "backups01" || r.LUKS.Version != 2 || !r.FsckClean {
		t.Fatalf("result %+v", r)
	}
	for _, want := range []string{r.LUKS.UUID, "backups01", "cryptsetup open $LOOP backups01", "losetup --find --show --offset 1048576", "prepare another disk"} {
		if !strings.Contains(s.body+s.view, want) {
			t.Errorf("done screen lacks %q:\n%s", want, s.body)
		}
	}
	if r.HeaderBackup != hdr {
		t.Errorf("header backup %q, want %q", r.HeaderBackup, hdr)
	}
	if st, err := os.Stat(hdr); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("header backup file: %v, mode %v", err, st.Mode())
	} else if dump := testkit.Run(t, "", "cryptsetup", "luksDump", hdr); !strings.Contains(dump, r.LUKS.UUID) {
		t.Errorf("the header backup is not this disk's header:\n%s", dump)
	}
	noLeftovers(t, img, tmp)
	checkPreparedImage(t, img, testPass, "backups01")

	// "Prepare another disk" goes back to the list, where the image is now
	// a known disk; preparing it again proposes its own label (the volume
	// it replaces is the one that had it), not the next in the series.
	h.key('n')
	h.waitFor("the disk list with the prepared image", 10*time.Second, func(s snapshot) bool {
		return s.screen == scrDisks && strings.Contains(s.view, `LUKS2 "backups01"`)
	})
	h.enter()
	h.onScreen(scrDetails)
	s = h.walkTo(scrOptions) // a known disk: Actions, Prepare again
	if l := s.field("Label"); l != "backups01" {
		t.Errorf("Prepare again suggests %q, want the disk's own backups01", l)
	}
	// The passphrase never reached the terminal output.
	_ = h.tm.Quit()
	out, _ := io.ReadAll(h.tm.FinalOutput(t, teatest.WithFinalTimeout(10*time.Second)))
	if strings.Contains(string(out), "horse") {
		t.Error("the passphrase appears in the terminal output")
	}
}

func TestWrongConfirmationWritesNothing(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(96 << 20); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("old data that must survive"), 4096)
	f.WriteAt([]byte("more old data"), 90<<20)
	f.Close()
	before := testkit.SHA256File(t, img)

	h := start(t, imageConfig(img, 0), nil)
	h.toPlan(testPass)
	h.enter()
	h.onScreen(scrConfirm)
	for _, wrong := range []string{"disk.im", "Disk.img", "disk.img ", "sdi", "yes"} {
		h.typ(wrong)
		h.enter()
		time.Sleep(100 * time.Millisecond)
		s := h.snap()
		if s.screen != scrConfirm || s.running {
			t.Fatalf("typing %q and Enter left the Confirm screen (%s, running %v)", wrong, s.screen, s.running)
		}
		if !strings.Contains(s.view, "Enter stays disabled") {
			t.Errorf("with %q typed the screen does not say Enter is disabled:\n%s", wrong, s.view)
		}
		for range wrong {
			h.key(tea.KeyBackspace)
		}
	}
	h.esc()
	h.onScreen(scrPlan)
	_ = h.tm.Quit()
	h.tm.WaitFinished(t, teatest.WithFinalTimeout(10*time.Second))
	if after := testkit.SHA256File(t, img); after != before {
		t.Fatalf("the image changed without a confirmation: %s -> %s", before, after)
	}
}

func TestPassphraseMismatchShownAtOnce(t *testing.T) {
	img := filepath.Join(t.TempDir(), "p.img")
	h := start(t, imageConfig(img, 128<<20), nil)
	h.toOptions()
	h.enter()
	h.onScreen(scrPassphrase)
	h.typ("correct horse")
	h.enter()
	h.typ("corr")
	s := h.snap()
	if strings.Contains(s.body, "✗") {
		t.Errorf("a prefix of the passphrase shows an error:\n%s", s.body)
	}
	h.typ("x")
	s = h.snap()
	if !strings.Contains(s.view, "do not match") {
		t.Fatalf("mismatch not shown as soon as it happened:\n%s", s.view)
	}
	h.enter()
	s = h.snap()
	if s.screen != scrPassphrase {
		t.Fatalf("Enter with mismatched entries went to %s", s.screen)
	}
	h.key(tea.KeyBackspace)
	h.typ("ect horse")
	s = h.waitFor("match", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "entries match") })
	if strings.Contains(s.body, "✗") {
		t.Errorf("error after fixing:\n%s", s.body)
	}
	// Esc goes back and forgets the passphrase.
	h.esc()
	h.onScreen(scrOptions)
	h.enter()
	s = h.onScreen(scrPassphrase)
	if s.dots("Passphrase") != 0 || s.dots("Again") != 0 {
		t.Errorf("passphrase kept after Esc:\n%s", s.body)
	}
}

// fakeDiscovery is a disk source whose list the test changes, with a
// hotplug channel it feeds.
type fakeDiscovery struct {
	mu    sync.Mutex
	disks []disk.Disk
	ch    chan disk.Hotplug
}

func (f *fakeDiscovery) scan() ([]disk.Disk, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]disk.Disk(nil), f.disks...), nil
}

func (f *fakeDiscovery) set(d ...disk.Disk) {
	f.mu.Lock()
	f.disks = d
	f.mu.Unlock()
}

var dockLog = []string{
	"[ 5678.100000] usb 2-1.4: new high-speed USB device number 9 using ehci-pci",
	"[ 5678.300000] usb-storage 2-1.4:1.0: USB Mass Storage device detected",
	"[ 5678.300100] scsi host13: usb-storage 2-1.4:1.0",
	"[ 5679.400000] scsi 13:0:0:0: Direct-Access     MAXTOR S TM3500630AS      PQ: 0 ANSI: 2 CCS",
	"[ 5679.400200] sd 13:0:0:0: [sdz] 976773168 512-byte logical blocks: (500 GB/465 GiB)",
	"[ 5679.401000] sd 13:0:0:0: [sdz] Write Protect is off",
	"[ 5679.450000]  sdz: sdz1",
	"[ 5679.460000] sd 13:0:0:0: [sdz] Attached SCSI disk",
}

func TestHotplugOnDisksScreen(t *testing.T) {
	fd := &fakeDiscovery{ch: make(chan disk.Hotplug, 4)}
	root := disk.Disk{Name: "vdz", Path: "/dev/vdz", MajMin: "254:0", Size: 256 << 30, LogicalSector: 512, PhysicalSector: 512,
		Transport: "virtio", Mounts: []string{"/"}}
	fd.set(root)
	var logMu sync.Mutex
	var logLines []disk.KernelLine
	dock := disk.Disk{Name: "sdz", Path: "/dev/sdz", MajMin: "65:144", Size: 500107862016, LogicalSector: 512, PhysicalSector: 512,
		Rotational: true, Transport: "usb-storage", Vendor: "MAXTOR S", Model: "TM3500630AS", Serial: "5QG0ABCD",
		USB:     &disk.USBInfo{VendorID: "152d", ProductID: "2329", Port: "2-1.4", Speed: "480"},
		Content: disk.Signature{Table: "dos"},
		Partitions: []disk.Partition{{Name: "sdz1", Path: "/dev/sdz1", Number: 1, Start: 1 << 20, Size: 500106813440,
			Content: disk.Signature{Type: "LVM2_member", Version: "LVM2 001", UUID: "abc"}}}}
	cfg := Config{
		Scan:    fd.scan,
		Hotplug: fd.ch,
		KernelLog: func() ([]disk.KernelLine, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return append([]disk.KernelLine(nil), logLines...), nil
		},
		DeviceTarget: func(name string) (*pipeline.Target, error) {
			for _, d := range fd.disks {
				if d.Name == name {
					d := d
					return &pipeline.Target{Path: d.Path, Name: d.Name, Size: d.Size, Disk: &d, Verdict: disk.Assess(d), Content: d.Content, Parts: d.Partitions}, nil
				}
			}
			return nil, errors.New("gone")
		},
	}
	h := start(t, cfg, nil)
	s := h.waitFor("the waiting state", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "Dock a disk now") })
	if !strings.Contains(s.view, "refused: vdz holds the running system") {
		t.Errorf("the root disk is not shown refused with its reason:\n%s", s.view)
	}
	// Dock: the kernel logs it, sysfs lists it, a uevent arrives.
	logMu.Lock()
	for _, l := range dockLog {
		kl, _ := disk.ParseDmesgLine(l)
		logLines = append(logLines, kl)
	}
	logMu.Unlock()
	fd.set(root, dock)
	t0 := time.Now()
	fd.ch <- disk.Hotplug{Action: "add", Name: "sdz", MajMin: "65:144"}
	s = h.waitFor("the docked disk", 5*time.Second, func(s snapshot) bool { return s.selected() == "sdz" })
	if d := time.Since(t0); d > time.Second {
		t.Errorf("the docked disk took %s to appear (want within a second)", d)
	}
	if !strings.Contains(s.view, "just docked") || strings.Contains(s.view, "Dock a disk now") {
		t.Errorf("the new disk is not highlighted as just docked:\n%s", s.view)
	}
	if !strings.Contains(s.view, "sdz1 LVM2 PV") {
		t.Errorf("the row does not say what is on the disk:\n%s", s.view)
	}
	h.enter()
	s = h.onScreen(scrDetails)
	for _, want := range []string{"[sdz] Attached SCSI disk", "MAXTOR S TM3500630AS", "5QG0ABCD", "usb-storage", "LVM2 PV", "docked while luksdock was running"} {
		if !strings.Contains(s.body, want) {
			t.Errorf("details lack %q:\n%s", want, s.body)
		}
	}
	// Undock while its details are shown: the wizard says so at once.
	fd.set(root)
	fd.ch <- disk.Hotplug{Action: "remove", Name: "sdz"}
	h.waitFor("the undock warning", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "no longer attached") })
	h.esc()
	h.onScreen(scrDisks)
	h.waitFor("the disk to go", 5*time.Second, func(s snapshot) bool {
		return !strings.Contains(s.view, "sdz") && strings.Contains(s.view, "Dock a disk now")
	})
}

func TestCtrlCDuringStepStopsSafely(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "losetup")
	tmp := privateTmp(t)
	img := filepath.Join(t.TempDir(), "stop.img")
	var once sync.Once
	// As soon as the open step starts, the user presses Ctrl+C and answers
	// y. The step in progress (the FUSE mount) finishes; mkfs never starts.
	hook := func(p *probe, msg tea.Msg) {
		if e, ok := msg.(runEventMsg); ok && e.Kind == pipeline.EventStart && e.Step == pipeline.StepOpen {
			once.Do(func() {
				// q asks too; n goes on.
				p.m.Update(tea.KeyPressMsg{Code: 'q', Text: "q"})
				if v := p.view(); !strings.Contains(v, "Stop and quit?") {
					t.Errorf("q during a run did not ask:\n%s", v)
				}
				p.m.Update(tea.KeyPressMsg{Code: 'n', Text: "n"})
				if v := p.view(); strings.Contains(v, "Stop and quit?") || strings.Contains(v, "Stop asked") || p.m.cur != scrProgress {
					t.Errorf("answering n did not go on:\n%s", v)
				}
				p.m.Update(tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl})
				if v := p.view(); !strings.Contains(v, "Stop? ") {
					t.Errorf("Ctrl+C did not ask first:\n%s", v)
				}
				p.m.Update(tea.KeyPressMsg{Code: 'y', Text: "y"})
				if v := p.view(); !strings.Contains(v, "Stop asked for during") {
					t.Errorf("y did not say the run is stopping:\n%s", v)
				}
			})
		}
	}
	h := start(t, imageConfig(img, 128<<20), hook)
	h.toPlan(testPass)
	h.enter()
	h.onScreen(scrConfirm)
	h.typ("stop.img")
	h.enter()
	s := h.waitFor("the error screen", 60*time.Second, func(s snapshot) bool { return s.screen == scrFailed || s.screen == scrDone })
	var e *pipeline.Error
	if s.screen != scrFailed || !errors.As(s.lastErr, &e) {
		t.Fatalf("the run was not stopped: %s\n%s", s.screen, s.view)
	}
	if e.Kind != pipeline.KindInterrupted || e.Step != pipeline.StepMkfs {
		t.Fatalf("stopped as %q at %q (%v), want %q before mkfs", e.Kind, e.Step, e.Err, pipeline.KindInterrupted)
	}
	if s.openPath == "" {
		t.Fatal("the open step did not report where it served the volume")
	}
	for _, want := range []string{"Stopped before Make the ext4 filesystem", "partitioned, LUKS header, no filesystem", "You stopped the run", "prepare it again", "Not started Make the ext4 filesystem (top directory owned by 0:0); Close the volume; Verify it unlocks"} {
		if !strings.Contains(flat(s.body), want) {
			t.Errorf("error screen lacks %q:\n%s", want, s.body)
		}
	}
	if _, err := os.Stat(s.openPath); err == nil {
		t.Errorf("the FUSE volume %s is still there", s.openPath)
	}
	noLeftovers(t, img, tmp)
	// The state it reports is the truth: partition 1 holds a LUKS header.
	testkit.Run(t, "", "cryptsetup", "isLuks", loopPart(t, img))
	h.esc()
	h.onScreen(scrDisks)
}

// TestRealHotplugLoopDevicePrepared uses real discovery: sysfs, kernel
// uevents and the safety policy. A loop device attached while the wizard
// waits is a disk "docked" now: it must appear, be pre-selected as just
// docked, and be prepared through the real pipeline (partition node made
// with BLKPG, userspace engine where device-mapper is missing).
func TestRealHotplugLoopDevicePrepared(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "sfdisk", "losetup")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := disk.WatchHotplug(ctx)
	if err != nil {
		t.Skipf("SKIP: kernel uevents are not available here: %v", err)
	}
	tmp := privateTmp(t)
	img := testkit.SparseFile(t, filepath.Join(t.TempDir(), "dock.img"), 160<<20)
	cfg := Config{
		Scan: disk.Sys{Root: "/"}.Scan, Hotplug: ch, KernelLog: disk.ReadKernelLog,
		PBKDF: testPBKDF,
	}
	h := start(t, cfg, nil)
	h.onScreen(scrDisks)
	h.waitFor("the first scan", 10*time.Second, func(s snapshot) bool { return !strings.Contains(s.view, "Looking for disks") })
	loop := testkit.AttachLoop(t, img)
	t0 := time.Now()
	name := filepath.Base(loop)
	s := h.waitFor(name+" to appear, pre-selected", 5*time.Second, func(s snapshot) bool { return s.selected() == name })
	// Only uevents make it appear: this Config has no periodic rescan.
	t.Logf("%s appeared %s after losetup returned", name, time.Since(t0).Round(time.Millisecond))
	if !strings.Contains(s.view, "just docked") {
		t.Errorf("%s is not highlighted as just docked:\n%s", name, s.view)
	}
	// the selection moved to it (from another loop device here, perhaps):
	// Enter is held back for settle after that
	s = h.enterOn(name)
	if !strings.Contains(s.body, loop) || !strings.Contains(strings.Join(strings.Fields(s.body), " "), "backed by "+img) {
		t.Fatalf("details are not about %s:\n%s", loop, s.body)
	}
	h.enter()
	h.onScreen(scrOptions)
	h.key(tea.KeyDown) // to the partition table
	h.key(tea.KeyLeft) // MBR (GPT, none, MBR)
	h.waitFor("MBR chosen", 5*time.Second, func(s snapshot) bool {
		return s.screen == scrOptions && strings.Contains(s.field("Partition table"), "[MBR]")
	})
	s = h.optionsToPlan(testPass)
	if !strings.Contains(s.body, "label: dos") {
		t.Errorf("the plan does not make an MBR table:\n%s", s.body)
	}
	s = h.confirmAndRun(name, 120*time.Second)
	if s.screen != scrDone || len(s.results) != 1 {
		t.Fatalf("run failed: %v\n%s", s.lastErr, s.body)
	}
	if s.results[0].Target != loop || !s.results[0].FsckClean {
		t.Fatalf("result %+v", s.results[0])
	}
	label := s.results[0].FSLabel
	h.esc()
	h.onScreen(scrDisks)
	if out, err := testkit.Cmd("", nil, "cryptsetup", "isLuks", "--debug", loop+"p1"); err != nil {
		ls, _ := testkit.Cmd("", nil, "sh", "-c", "ls -l /dev/"+name+"* /sys/block/"+name+"/; blkid -p "+loop+"p1")
		t.Errorf("cryptsetup isLuks %sp1: %v\n%s\n%s", loop, err, out, ls)
	}
	if out := testkit.Run(t, "", "sfdisk", "--json", img); !strings.Contains(out, `"label":"dos"`) && !strings.Contains(out, `"label": "dos"`) {
		t.Errorf("not an MBR table:\n%s", out)
	}
	if err := testkit.DetachLoop(loop); err != nil {
		t.Fatalf("the loop device is still busy after the run: %v", err)
	}
	// A busy loop device detaches when its last opener closes it (any
	// program scanning disks may have it open for a moment).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if out, _ := testkit.Cmd("", nil, "losetup", "-j", img); strings.TrimSpace(out) == "" {
			break
		}
	}
	noLeftovers(t, img, tmp)
	checkPreparedImage(t, img, testPass, label)
}

// TestLUKS1AndMBRImage chooses MBR and LUKS1 on the Options screen and
// checks the result with sfdisk and cryptsetup.
func TestLUKS1AndMBRImage(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "sfdisk", "losetup")
	tmp := privateTmp(t)
	img := filepath.Join(t.TempDir(), "old.img")
	h := start(t, imageConfig(img, 100<<20), nil)
	h.toOptions()
	h.key(tea.KeyDown)  // partition table
	h.key(tea.KeyLeft)  // MBR (GPT, none, MBR)
	h.key(tea.KeyDown)  // LUKS version
	h.key(tea.KeyRight) // LUKS1
	s := h.waitFor("MBR and LUKS1", 5*time.Second, func(s snapshot) bool {
		return strings.Contains(s.field("Partition table"), "[MBR]") && strings.Contains(s.field("LUKS version"), "[LUKS1]") && strings.Contains(s.body, "✓ ready")
	})
	s = h.optionsToPlan(testPass)
	if !strings.Contains(s.body, "--type luks1") || !strings.Contains(s.body, "label: dos") {
		t.Errorf("the plan is not LUKS1 on MBR:\n%s", s.body)
	}
	s = h.confirmAndRun("old.img", 120*time.Second)
	if s.screen != scrDone || len(s.results) != 1 || s.results[0].LUKS.Version != 1 {
		t.Fatalf("run: %v\n%s", s.lastErr, s.body)
	}
	noLeftovers(t, img, tmp)
	if out := testkit.Run(t, "", "sfdisk", "--dump", img); !strings.Contains(out, "label: dos") || !strings.Contains(out, "type=83") {
		t.Errorf("not one MBR partition of type 83:\n%s", out)
	}
	checkPrepared(t, img, testPass, "backups01", 1)
}

// TestKernelLogPicksMostRecentDock: with two USB disks attached before the
// wizard started, the one the kernel log says arrived last is highlighted
// and pre-selected.
func TestKernelLogPicksMostRecentDock(t *testing.T) {
	usb := func(name, mm, serial string) disk.Disk {
		return disk.Disk{Name: name, Path: "/dev/" + name, MajMin: mm, Size: 1 << 40, LogicalSector: 512, PhysicalSector: 4096,
			Transport: "uas", Vendor: "WD", Model: "Elements", Serial: serial}
	}
	fd := &fakeDiscovery{}
	fd.set(usb("sdy", "65:128", "OLD1"), usb("sdz", "65:144", "NEW2"))
	var lines []disk.KernelLine
	for _, l := range append([]string{
		"[ 100.000000] scsi 12:0:0:0: Direct-Access     WD       Elements         1021 PQ: 0 ANSI: 6",
		"[ 100.100000] sd 12:0:0:0: [sdy] Attached SCSI disk",
	}, dockLog...) {
		kl, ok := disk.ParseDmesgLine(l)
		if !ok {
			t.Fatalf("fixture line does not parse: %q", l)
		}
		lines = append(lines, kl)
	}
	h := start(t, Config{Scan: fd.scan, KernelLog: func() ([]disk.KernelLine, error) { return lines, nil }}, nil)
	s := h.waitFor("the list", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "sdy") && strings.Contains(s.view, "sdz") })
	if s.selected() != "sdz" {
		t.Fatalf("pre-selected %q, want sdz:\n%s", s.selected(), s.view)
	}
	if !strings.Contains(s.view, "★ last docked") {
		t.Errorf("sdz is not highlighted:\n%s", s.view)
	}
	h.key(tea.KeyUp)
	if s := h.snap(); s.selected() != "sdy" {
		t.Errorf("↑ did not move to sdy:\n%s", s.view)
	}
	h.typ("j")
	if s := h.snap(); s.selected() != "sdz" {
		t.Errorf("j did not move to sdz:\n%s", s.view)
	}
}

// The recovery key: on by default; the plan cannot be reached without
// typing back the groups asked for; a wrong entry is refused; Esc shows
// the key again and goes back; the screen fits 80x24 and 60x15 (with the
// QR code at 80x24, and a note instead at 60x15).
func TestRecoveryKeyMustBeTypedBack(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4")
	for _, sz := range [][2]int{{80, 24}, {60, 15}, {100, 32}} {
		t.Run(fmt.Sprintf("%dx%d", sz[0], sz[1]), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "r.img")
			h := startSized(t, imageConfig(img, 128<<20), sz[0], sz[1], nil)
			h.toOptions()
			h.waitFor("the recovery field", 5*time.Second, func(s snapshot) bool {
				return s.field("Recovery key") != "" && strings.Contains(s.body, "[on]") && strings.Contains(s.body, "a second way in if the passphrase is lost")
			})
			h.enter()
			h.passphrase(testPass)
			s := h.onScreen(scrRecovery)
			g := shownKey(t, s.body)
			qr := strings.Contains(s.view, "▀") || strings.Contains(s.view, "▄")
			if big := sz[0] == 100; big != qr {
				t.Errorf("QR code drawn: %v, want %v:\n%s", qr, big, s.view)
			}
			if !qr && !strings.Contains(flat(s.body), "too small for its QR code") {
				t.Errorf("the screen does not say the QR code does not fit:\n%s", s.body)
			}
			// Enter hides the key and asks for two groups.
			h.enter()
			s = h.waitFor("the groups asked", 5*time.Second, func(s snapshot) bool { return askedRe.MatchString(flat(s.body)) })
			for _, v := range g {
				if strings.Contains(s.view, v) {
					t.Fatalf("the key is still shown while it is asked for:\n%s", s.view)
				}
			}
			m := askedRe.FindStringSubmatch(flat(s.body))
			// A wrong entry (the groups swapped) is refused and stays.
			h.typ(g[m[2]] + "-" + g[m[1]])
			h.enter()
			s = h.waitFor("the refusal", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "that is not groups") })
			if s.screen != scrRecovery {
				t.Fatalf("a wrong entry went on to %s", s.screen)
			}
			// Esc shows the key again (the same key), Esc again goes back.
			h.esc()
			s = h.waitFor("the key again", 5*time.Second, func(s snapshot) bool { return keyGroupRe.MatchString(s.body) })
			if again := shownKey(t, s.body); again["1"] != g["1"] || again["8"] != g["8"] {
				t.Errorf("the key changed")
			}
			h.esc()
			h.onScreen(scrPassphrase)
			h.enter() // the entries are kept: on to the same key
			s = h.onScreen(scrRecovery)
			if again := shownKey(t, s.body); again["1"] != g["1"] {
				t.Errorf("going back and forth changed the key")
			}
			h.enter()
			s = h.waitFor("the groups asked", 5*time.Second, func(s snapshot) bool { return askedRe.MatchString(flat(s.body)) })
			m = askedRe.FindStringSubmatch(flat(s.body))
			h.typ(strings.ToUpper(g[m[1]]) + " " + g[m[2]])
			h.enter()
			s = h.onScreen(scrPlan)
			if !strings.Contains(flat(s.body), "Recovery key: a second keyslot") || !strings.Contains(s.body, "luksAddKey") {
				t.Errorf("the plan does not add the recovery key:\n%s", s.body)
			}
			for _, v := range g {
				if strings.Contains(s.body, v) {
					t.Errorf("the plan shows the key:\n%s", s.body)
				}
			}
		})
	}
}

// With the recovery key off, no key screen and no keyslot in the plan.
func TestRecoveryKeyOff(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "r.img")
	h := start(t, imageConfig(img, 128<<20), nil)
	h.toOptions()
	for range 4 {
		h.key(tea.KeyTab)
	}
	h.waitFor("Recovery key focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› Recovery key") })
	h.key(tea.KeyRight)
	h.waitFor("off", 5*time.Second, func(s snapshot) bool {
		return strings.Contains(s.body, "[off]") && strings.Contains(flat(s.body), "the backup is gone")
	})
	h.enter()
	h.onScreen(scrPassphrase)
	h.typ(testPass)
	h.enter()
	h.typ(testPass)
	h.enter()
	s := h.onScreen(scrPlan)
	if !strings.Contains(flat(s.body), "Recovery key: none") || strings.Contains(s.body, "luksAddKey") {
		t.Errorf("the plan does not say there is no recovery key:\n%s", s.body)
	}
	h.esc()
	h.onScreen(scrPassphrase)
}

// The table choice offers none (LUKS on the whole disk) and explains each
// choice; the Owner field shows what it resolves to, refuses a wrong
// entry, and its value reaches the plan.
func TestTableNoneAndOwner(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4")
	eachSize(t, func(t *testing.T, w, hgt int) {
		img := filepath.Join(t.TempDir(), "t.img")
		h := startSized(t, imageConfig(img, 128<<20), w, hgt, nil)
		h.toOptions()
		h.key(tea.KeyTab) // partition table
		h.key(tea.KeyRight)
		h.waitFor("none chosen", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(s.body, "[none]") && strings.Contains(flat(s.body), "LUKS on the whole disk")
		})
		h.key(tea.KeyRight)
		h.waitFor("MBR explained", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(s.body, "[MBR]") && strings.Contains(flat(s.body), "only through docks with this dock's sector size")
		})
		h.key(tea.KeyRight) // GPT
		h.key(tea.KeyRight) // none
		for range 5 {       // LUKS version, header backup, recovery key, set, owner
			h.key(tea.KeyTab)
		}
		h.waitFor("Owner focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› Owner") })
		h.typ("no-such-user-here")
		h.waitFor("the wrong owner refused", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(flat(s.body), `✗ Owner "no-such-user-here"`)
		})
		h.enter()
		time.Sleep(200 * time.Millisecond)
		if s := h.snap(); s.screen != scrOptions {
			t.Fatalf("Enter with a wrong owner went to %s", s.screen)
		}
		h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})
		h.typ("1234:5678")
		h.waitFor("the owner resolved", 5*time.Second, func(s snapshot) bool {
			return strings.Contains(flat(s.body), "now 1234:5678") && strings.Contains(s.body, "✓ ready")
		})
		s := h.optionsToPlan(testPass)
		if b := flat(s.body); !strings.Contains(b, "owned by 1234:5678") || !strings.Contains(b, "NONE") || strings.Contains(b, "sfdisk") {
			t.Errorf("the plan is not LUKS on the whole image owned by 1234:5678:\n%s", s.body)
		}
	})
}

// A LUKS image the inventory knows is described on Details; the Set field
// refuses a wrong name, and the label suggestion follows the set's
// numbering from the inventory. An unknown LUKS image is said to be one.
func TestKnownDiskAndSet(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "k.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 128<<20); err != nil {
		t.Fatal(err)
	}
	const uuid = "5b0e3c0a-6a3e-4d7c-9a51-0c6c1d2e3f40"
	fmtCmd := exec.Command("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--uuid", uuid, "--subsystem", "offsite", "--key-file", "-", img)
	fmtCmd.Stdin = strings.NewReader("x")
	if out, err := fmtCmd.CombinedOutput(); err != nil {
		t.Fatalf("luksFormat: %v\n%s", err, out)
	}
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprint("known=", known), func(t *testing.T) {
			f := &inventory.File{Disks: []inventory.Record{{LUKSUUID: "00000000-0000-0000-0000-000000000001", Label: "backups02", Set: "offsite", Prepared: time.Now().Add(-48 * time.Hour)}}}
			if known {
				f.Disks = append(f.Disks, inventory.Record{LUKSUUID: uuid, Label: "backups07", Set: "offsite", Prepared: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)})
			}
			cfg := imageConfig(img, 0)
			cfg.Inventory = func() (*inventory.File, error) { return f, nil }
			h := start(t, cfg, nil)
			h.waitFor("the image row", 10*time.Second, func(s snapshot) bool { return s.selected() == "k.img" })
			h.enter()
			s := h.onScreen(scrDetails)
			want := "This is a LUKS disk luksdock does not know (not in its inventory); its LUKS2 subsystem names set offsite"
			if known {
				want = "Known disk: backups07, set offsite, prepared 2026-11-23"
			}
			if !strings.Contains(flat(s.body), want) {
				t.Errorf("details lack %q:\n%s", want, s.body)
			}
			h.walkTo(scrOptions) // a known disk: Actions, Prepare again
			if known {
				// prepared again, it keeps its own label in its own set:
				// its old volume is the one replaced
				h.waitFor("its own label and set proposed", 5*time.Second, func(s snapshot) bool {
					return s.field("Label") == "backups07" && s.field("Set") == "offsite" && strings.Contains(s.body, "✓ ready")
				})
			}
			// table, LUKS version, header backup, recovery key, set
			for range 5 {
				h.key(tea.KeyTab)
			}
			h.waitFor("Set focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› Set") })
			h.typ("off site")
			h.waitFor("the wrong set name refused", 5*time.Second, func(s snapshot) bool {
				return strings.Contains(flat(s.body), "only letters, digits")
			})
			h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})
			h.typ("offsite")
			next, free := "backups03", "backups03"
			if known {
				next, free = "backups07", "backups08"
			}
			h.waitFor("the label of the set's next disk", 5*time.Second, func(s snapshot) bool {
				return s.field("Label") == next && strings.Contains(s.body, "✓ ready")
			})
			// The label of another disk of the set is refused, as by
			// prepare, with the next free one named.
			for range 5 {
				h.tm.Send(tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift})
			}
			h.waitFor("Label focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› Label") })
			h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})
			h.typ("backups02")
			h.enter()
			h.waitFor("the set's label clash refused", 5*time.Second, func(s snapshot) bool {
				return s.screen == scrOptions && strings.Contains(flat(s.view), "two disks of a set must not share a label: label backups02: the inventory already has backups02 in set offsite") &&
					strings.Contains(flat(s.view), "Next free label: "+free)
			})
			h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})
			h.typ(next)
			h.waitFor("the free label ready", 5*time.Second, func(s snapshot) bool {
				return s.field("Label") == next && strings.Contains(s.body, "✓ ready")
			})
			s = h.optionsToPlan(testPass)
			if !strings.Contains(s.body, "--subsystem offsite") {
				t.Errorf("the plan does not store the set:\n%s", s.body)
			}
		})
	}
}

// A degrading or failing disk (recorded smartctl --json output) shows its
// health on Details and needs "yes" typed on an extra screen; a healthy
// one goes straight to Options. The USB dock reports 4096-byte sectors:
// Details warns, and MBR on Options says it is not portable.
func TestUnhealthyDiskNeedsYes(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"smartctl-derived-failing.json", "failing"},
		{"smartctl-derived-degrading.json", "degrading"},
		{"smartctl-qemu-sata-healthy.json", ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("..", "health", "testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			rep, err := health.Parse(out)
			if err != nil {
				t.Fatal(err)
			}
			d := disk.Disk{Name: "sdy", Path: "/dev/sdy", MajMin: "65:128", Size: 1 << 40, LogicalSector: 4096, PhysicalSector: 4096,
				Transport: "usb-storage", Vendor: "WD", Model: "Elements", Serial: "X1",
				USB: &disk.USBInfo{VendorID: "1058", ProductID: "25a2", Port: "2-1", Speed: "5000"}}
			cfg := Config{
				Scan: func() ([]disk.Disk, error) { return []disk.Disk{d}, nil },
				DeviceTarget: func(string) (*pipeline.Target, error) {
					d := d
					return &pipeline.Target{Path: d.Path, Name: d.Name, Size: d.Size, Disk: &d, Verdict: disk.Assess(d), Health: &rep}, nil
				},
			}
			h := start(t, cfg, nil)
			h.waitFor("the disk", 5*time.Second, func(s snapshot) bool { return s.selected() == "sdy" })
			h.enter()
			s := h.onScreen(scrDetails)
			for _, w := range []string{"Health", rep.Summary(), "4096-byte logical", disk.USB4KWarning} {
				if !strings.Contains(flat(s.body), flat(w)) {
					t.Errorf("details lack %q:\n%s", w, s.body)
				}
			}
			h.enter()
			if tc.want == "" {
				h.onScreen(scrOptions)
			} else {
				s = h.onScreen(scrUnhealthy)
				if !strings.Contains(flat(s.body), "not a disk to trust with backups") {
					t.Errorf("no warning:\n%s", s.body)
				}
				h.typ("y")
				h.enter()
				s = h.waitFor("the refusal", 5*time.Second, func(s snapshot) bool {
					return strings.Contains(s.body, `type "yes"`) && strings.Contains(s.body, "✗")
				})
				if s.screen != scrUnhealthy {
					t.Fatalf("a wrong entry went on to %s", s.screen)
				}
				h.esc()
				h.onScreen(scrDetails)
				h.enter()
				h.onScreen(scrUnhealthy)
				h.typ("yes")
				h.enter()
				h.onScreen(scrOptions)
			}
			h.key(tea.KeyTab)
			h.key(tea.KeyLeft) // MBR
			h.waitFor("the MBR warning", 5*time.Second, func(s snapshot) bool {
				return strings.Contains(s.body, "[MBR]") && strings.Contains(flat(s.body), flat(screenWords(pipeline.MBRNotPortable)))
			})
		})
	}
}

// Overwrite first and Read it all back: the surface check alone is
// refused; with both, the plan has the steps, the Progress screen draws a
// bar with the percentage, the amount and the rate from the pipeline's
// progress events, and the disk is done.
func TestEraseAndSurfaceCheckProgress(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "dumpe2fs", "sfdisk", "losetup")
	t.Setenv("LUKSDOCK_STATE_DIR", t.TempDir())
	img := filepath.Join(t.TempDir(), "e.img")
	var mu sync.Mutex
	var shown []string
	hook := func(p *probe, msg tea.Msg) {
		if e, ok := msg.(runEventMsg); ok && e.Kind == pipeline.EventProgress && e.Progress != nil && e.Progress.Fraction > 0 {
			mu.Lock()
			shown = append(shown, p.view())
			mu.Unlock()
		}
	}
	h := start(t, imageConfig(img, 128<<20), hook)
	h.toOptions()
	for range 8 { // to Read it all back
		h.key(tea.KeyTab)
	}
	h.waitFor("Read it all back focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› Read it all back") })
	h.key(tea.KeyRight)
	h.waitFor("the check alone refused", 5*time.Second, func(s snapshot) bool {
		return strings.Contains(flat(s.body), "✗ Read it all back reads back what Overwrite first writes")
	})
	h.tm.Send(tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift})
	h.key(tea.KeyRight)
	h.waitFor("both on", 5*time.Second, func(s snapshot) bool {
		return strings.Contains(s.body, "✓ ready") && strings.Contains(flat(s.body), "hours on a big disk")
	})
	s := h.optionsToPlan(testPass)
	if b := flat(s.body); !strings.Contains(b, "Erase the whole disk") || !strings.Contains(b, "Read the whole disk back") {
		t.Errorf("the plan lacks the erase and the check:\n%s", s.body)
	}
	s = h.confirmAndRun("e.img", 180*time.Second)
	if s.screen != scrDone {
		t.Fatalf("run: %v\n%s", s.lastErr, s.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(shown) == 0 {
		t.Fatal("no progress event while the erase or the check ran")
	}
	v := shown[len(shown)-1]
	if !regexp.MustCompile(`\d+\.\d%`).MatchString(v) || !strings.Contains(v, "▌") || !regexp.MustCompile(`[\d.]+ MiB of [\d.]+ MiB · [\d.]+ MB/s`).MatchString(v) {
		t.Errorf("the progress screen has no bar with percentage and amount:\n%s", v)
	}
}

// An erase stopped part-way: preparing the same image again with the same
// choices, the Plan says it continues the interrupted erase and offers r
// to start over, which makes a plan that does not continue.
func TestPlanOffersResumeAndStartOver(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "sfdisk", "losetup")
	t.Setenv("LUKSDOCK_STATE_DIR", t.TempDir())
	img := filepath.Join(t.TempDir(), "big.img")
	// an existing file: the saved position names it by device and inode
	// (for an image the run itself creates, it records [0 0] and the
	// position is never found again: a pipeline matter, see the report)
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 2<<30); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	var h *harness
	hook := func(p *probe, msg tea.Msg) {
		if e, ok := msg.(runEventMsg); ok && e.Kind == pipeline.EventProgress && e.Step == pipeline.StepErase && e.Progress != nil && e.Progress.Fraction < 1 {
			once.Do(func() {
				go func() {
					h.ctrlC()
					h.typ("y")
				}()
			})
		}
	}
	h = start(t, imageConfig(img, 0), hook)
	h.toOptions()
	for range 7 { // to Overwrite first
		h.key(tea.KeyTab)
	}
	h.waitFor("Overwrite first focused", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.view, "› Overwrite first") })
	h.key(tea.KeyRight)
	h.waitFor("on", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "✓ ready") })
	h.optionsToPlan(testPass)
	h.enter()
	h.onScreen(scrConfirm)
	h.typ("big.img")
	h.enter()
	s := h.waitFor("the end", 180*time.Second, func(s snapshot) bool { return s.screen == scrDone || s.screen == scrFailed })
	if s.screen != scrFailed {
		t.Skipf("SKIP: the erase of 2 GiB ended before the stop took effect (%s); cannot test resuming here", s.screen)
	}
	h.key('n')
	h.onScreen(scrDisks)
	h.enter()
	h.onScreen(scrDetails)
	h.walkTo(scrOptions) // known from its token: Actions, Prepare again
	h.tm.Send(tea.KeyPressMsg{Code: 'u', Mod: tea.ModCtrl})
	h.typ("backups01") // the same label as the interrupted run
	h.waitFor("ready", 5*time.Second, func(s snapshot) bool { return strings.Contains(s.body, "✓ ready") })
	s = h.optionsToPlan(testPass)
	if !strings.Contains(flat(s.body), "An interrupted erase of this disk can be continued") || !strings.Contains(s.view, "r start the erase over") {
		t.Fatalf("the plan does not offer to continue:\n%s", s.body)
	}
	h.typ("r")
	s = h.waitFor("the plan that starts over", 30*time.Second, func(s snapshot) bool {
		return strings.Contains(flat(s.body), "Starting over: the interrupted erase is not continued")
	})
	if strings.Contains(flat(s.body), "Continue the interrupted erase") {
		t.Errorf("the restarted plan still continues:\n%s", s.body)
	}
}

// A disk prepared on another machine (its luksdock token names label, set
// and date) is recognised on Details with an empty inventory, without its
// passphrase.
func TestKnownDiskFromToken(t *testing.T) {
	testkit.NeedTools(t, "cryptsetup")
	img := filepath.Join(t.TempDir(), "k.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	fmtCmd := exec.Command("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
		"--subsystem", "offsite", "--key-file", "-", img)
	fmtCmd.Stdin = strings.NewReader("x")
	if out, err := fmtCmd.CombinedOutput(); err != nil {
		t.Fatalf("luksFormat: %v\n%s", err, out)
	}
	imp := exec.Command("cryptsetup", "token", "import", img)
	imp.Stdin = strings.NewReader(`{"type":"luksdock","keyslots":[],"version":1,"label":"backups09","set":"offsite","prepared":"2026-10-02T08:00:00Z","prepared_on":"elsewhere","recovery_key":true}`)
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("token import: %v\n%s", err, out)
	}
	cfg := imageConfig(img, 0)
	cfg.Inventory = func() (*inventory.File, error) { return &inventory.File{}, nil }
	h := start(t, cfg, nil)
	h.waitFor("the image row", 10*time.Second, func(s snapshot) bool { return s.selected() == "k.img" })
	h.enter()
	s := h.onScreen(scrDetails)
	if want := "Known disk: backups09, set offsite, prepared 2026-10-02 on elsewhere"; !strings.Contains(flat(s.body), want) {
		t.Errorf("details lack %q:\n%s", want, s.body)
	}
}
