package reliability

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/pipeline"
)

// eraseImgSize: the erase starts with 1 MiB requests (the pacer), so a
// SIGINT at its first progress event lands in the middle of it.
const eraseImgSize = 128 << 20

// progressEvent is a --json event with its progress.
type progressEvent struct {
	Kind     string `json:"event"`
	Step     string `json:"step"`
	Message  string `json:"message"`
	State    string `json:"state"`
	Progress *struct {
		Done     int64   `json:"done"`
		Total    int64   `json:"total"`
		Fraction float64 `json:"fraction"`
		Rate     float64 `json:"rate"`
		ETA      float64 `json:"eta_s"`
		Resumed  int64   `json:"resumed_from"`
		Bad      int64   `json:"bad_sectors"`
	} `json:"progress"`
}

func parseProgressEvents(t *testing.T, out string) []progressEvent {
	t.Helper()
	var evs []progressEvent
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e progressEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("not a JSON event: %q", sc.Text())
		}
		evs = append(evs, e)
	}
	return evs
}

// checkProgress: the progress events of step are monotonic, never more
// than a few a second (besides the first and the last), start at from and,
// when complete, end at exactly 100%.
func checkProgress(t *testing.T, evs []progressEvent, step string, from int64, complete bool) {
	t.Helper()
	var ps []progressEvent
	for _, e := range evs {
		if e.Kind == "progress" && e.Step == step {
			if e.Progress == nil {
				t.Fatalf("a progress event without progress: %+v", e)
			}
			ps = append(ps, e)
		}
	}
	if len(ps) < 2 {
		t.Fatalf("%s: %d progress events, want a first and a last at least", step, len(ps))
	}
	if p := ps[0].Progress; p.Done != from || p.Resumed != from {
		t.Errorf("%s: the first progress event is at %d (resumed from %d), want %d", step, p.Done, p.Resumed, from)
	}
	for i := 1; i < len(ps); i++ {
		a, b := ps[i-1].Progress, ps[i].Progress
		if b.Done < a.Done || b.Fraction < a.Fraction || b.Total != a.Total {
			t.Errorf("%s: progress went from %+v to %+v", step, *a, *b)
		}
		if b.Done > b.Total || b.Rate < 0 || b.ETA < 0 {
			t.Errorf("%s: impossible progress %+v", step, *b)
		}
	}
	last := ps[len(ps)-1].Progress
	if complete && (last.Done != last.Total || last.Fraction != 1) {
		t.Errorf("%s: the last progress event is %+v, want 100%%", step, *last)
	}
	if n := len(ps) - 2; n > 0 {
		t.Logf("%s: %d progress events, last %+v", step, len(ps), *last)
	}
}

// segmentBytes reads n bytes of the data segment of v at off (ciphertext).
func segmentBytes(t *testing.T, v testkit.Volume, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(v.Dev.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, v.Dev.Base+v.Seg.Offset+off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEraseInterruptedAndResumed: `prepare --erase --surface-check` is
// stopped with SIGINT at its first erase progress event (and, second case,
// with SIGTERM at its first surface-check progress event); it exits 130
// with the position, and the image shows exactly that: the data segment up
// to the position erased decrypts (golang.org/x/crypto/xts, key from
// cryptsetup) to zeros, the rest is untouched. The same command then continues from there
// (no wipe, partition or luksFormat: same LUKS UUID) and makes a verified
// disk whose every sector was written (no all-zero ciphertext sector left of
// the sparse image) and whose data segment decrypts to zeros except the
// blocks the ext4 filesystem uses (per dumpe2fs); its progress events are
// monotonic and end at 100%.
func TestEraseInterruptedAndResumed(t *testing.T) {
	requireEnv(t)
	for _, c := range []struct {
		step, what string
		sig        syscall.Signal
		table      string
	}{
		{"erase", "erase", syscall.SIGINT, "gpt"},
		{"surface-check", "surface check", syscall.SIGTERM, "gpt"},
		{"erase", "erase", syscall.SIGINT, "none"}, // LUKS on the whole disk
	} {
		t.Run(c.step+"-"+c.sig.String()+"-"+c.table, func(t *testing.T) {
			t.Parallel()
			eraseInterruptedAndResumed(t, c.step, c.what, c.sig, c.table)
		})
	}
}

func eraseInterruptedAndResumed(t *testing.T, step, what string, sig syscall.Signal, table string) {
	dir := t.TempDir()
	img := sparseImage(t, dir, eraseImgSize)
	pass := passFile(t, []byte(testPass+"\n"))
	tmpdir := t.TempDir()
	args := prepareArgs(img, pass, "--erase", "--surface-check", "--json", "--table", table)
	// where the LUKS volume is, found by stock tools (sfdisk) or the whole image
	volume := func() testkit.Device {
		if table == "none" {
			return testkit.Device{Path: img, Size: eraseImgSize}
		}
		part, ok := testkit.Partition1(t, img)
		if !ok {
			t.Fatal("no partition after the interrupted erase")
		}
		return part
	}

	d := drive(t, tmpdir, trigger{event: "progress", step: step, sig: sig}, args...)
	if !d.fired || d.code != 130 {
		t.Fatalf("%v at the first %s progress event: fired %v, exit %d\n%s", sig, step, d.fired, d.code, d.stderr)
	}
	last := d.events[len(d.events)-1]
	m := regexp.MustCompile(`the ` + what + ` stopped at ([0-9.]+ [KMG]?i?B) of`).FindStringSubmatch(last.Message)
	if last.Kind != "failed" || last.Step != step || m == nil || !strings.Contains(last.State, "run the same command again to continue") {
		t.Fatalf("last event %+v, want a failed %s with its position", last, step)
	}
	noLeftovers(t, tmpdir, img, d.kids)
	states, _ := filepath.Glob(filepath.Join(tmpdir, "state", "erase-*.json"))
	if len(states) != 1 {
		t.Fatalf("state files: %v", states)
	}
	var st struct {
		Pos, Total int64
		Phase      string
		UUID       string `json:"luks_uuid"`
	}
	b, _ := os.ReadFile(states[0])
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != step || st.Pos < 0 || st.Pos >= st.Total || pipeline.HumanSize(st.Pos) != m[1] {
		t.Fatalf("saved %s at %d of %d; the message said %s (not stopped within %s)", st.Phase, st.Pos, st.Total, m[1], step)
	}
	if st.Pos == 0 {
		// The signal came with the first progress event, before the first
		// request of the step completed (seen under load): the rerun then
		// continues the step from its start.
		t.Logf("%s stopped before its first request completed: the rerun continues it from 0", step)
	}
	if bytes.Contains(b, []byte(testPass)) {
		t.Fatal("the state file holds the passphrase")
	}
	part := volume()
	v, err := testkit.Unlock(t, part, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if v.Seg.Size != st.Total {
		t.Fatalf("segment %d bytes, the state says %d", v.Seg.Size, st.Total)
	}
	erased := st.Pos // what the interrupted run erased
	if step != "erase" {
		erased = st.Total
	}
	plain := testkit.DecryptXTS(t, v)
	pb, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexFunc(pb[:erased], func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("the erased part [0, %d) does not decrypt to zeros at %d", erased, i)
	}
	if rest := segmentBytes(t, v, erased, st.Total-erased); bytes.ContainsFunc(rest, func(r rune) bool { return r != 0 }) {
		t.Fatalf("ciphertext was written past the reported position %d", erased)
	}
	t.Logf("stopped at %d of %d bytes (%s)", st.Pos, st.Total, last.Message)

	// The same command continues.
	r := luksdock(t, runOpts{tmpdir: tmpdir}, args...)
	if r.code != 0 {
		t.Fatalf("resumed run: %s", r)
	}
	evs := parseProgressEvents(t, r.stdout)
	if i := slices.IndexFunc(evs, func(e progressEvent) bool {
		return e.Kind == "info" && strings.HasPrefix(e.Message, "continuing the interrupted erase of "+img+": the "+what+" stopped at "+m[1])
	}); i < 0 {
		t.Errorf("the resumed run does not say it continues, and from where:\n%s", r.stdout)
	}
	var ran []string
	for _, e := range evs {
		if e.Kind == "done" {
			ran = append(ran, e.Step)
			if e.Step == "erase" && step != "erase" && e.Message != "already erased by the interrupted run" {
				t.Errorf("the resumed run erased again: %q", e.Message)
			}
		}
	}
	if got := strings.Join(ran, " "); got != "preflight resume open erase surface-check mkfs close verify" {
		t.Errorf("steps of the resumed run: %s", got)
	}
	if step == "erase" {
		checkProgress(t, evs, "erase", st.Pos, true)
		checkProgress(t, evs, "surface-check", 0, true)
	} else {
		checkProgress(t, evs, "surface-check", st.Pos, true)
	}
	if states, _ := filepath.Glob(filepath.Join(tmpdir, "state", "erase-*")); len(states) != 0 {
		t.Errorf("state left after the disk was verified: %v", states)
	}
	// Independently: same volume, every sector written, zeros except the filesystem.
	v2, err := testkit.Unlock(t, part, testPass)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v2.Key, v.Key) || v2.Seg != v.Seg {
		t.Fatal("the resumed run made a new LUKS volume")
	}
	used, blocks := testkit.CheckErased(t, v2)
	t.Logf("%d of %d blocks hold filesystem data; every other block decrypts to zeros", used, blocks)
}

// TestSurfaceCheckCatchesAlteredTail: between the erase and the surface
// check (at the erase's done event, through the pipeline API), the image
// past an offset is made to return what a fake-capacity disk returns there:
// the data of the start of the disk (its real size wraps around). The
// check must refuse the disk (ExitVerifyFail), name the first bad byte of
// the disk and the count of bad sectors, and no filesystem is made.
func TestSurfaceCheckCatchesAlteredTail(t *testing.T) {
	requireEnv(t)
	t.Setenv("LUKSDOCK_STATE_DIR", filepath.Join(t.TempDir(), "state"))
	const size = 128 << 20
	img := sparseImage(t, t.TempDir(), size)
	target, err := pipeline.ImageTarget(img, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := apiOpts
	o.Erase, o.SurfaceCheck = true, true
	p, err := pipeline.NewPlan(target, o)
	if err != nil {
		t.Fatal(err)
	}
	const realSize = 80 << 20 // the "real capacity" of the fake disk
	var altered int64
	var evs []pipeline.Event
	_, err = p.Run(context.Background(), filepath.Base(img), []byte(testPass), func(e pipeline.Event) {
		evs = append(evs, e)
		if e.Kind == pipeline.EventDone && e.Step == pipeline.StepErase {
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 1<<20)
			for off := int64(realSize); off < size; off += int64(len(buf)) {
				if _, err := f.ReadAt(buf, off-realSize); err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt(buf, off); err != nil {
					t.Fatal(err)
				}
				altered += int64(len(buf))
			}
		}
	})
	if kind := pipeline.KindOf(err); kind != pipeline.KindNotVerified {
		t.Fatalf("failed as %q (%v), want %q", kind, err, pipeline.KindNotVerified)
	}
	runErr := err
	part, _ := testkit.Partition1(t, img)
	v, err := testkit.Unlock(t, part, testPass)
	if err != nil {
		t.Fatal(err)
	}
	err = runErr
	// Every sector from realSize to the end of the disk, in the data segment, is bad.
	firstBad := int64(realSize)
	end := part.Base + v.Seg.Offset + v.Seg.Size
	want := fmt.Sprintf("%d of %d sectors did not read back as the zeros written (%d wrong data, 0 unreadable); the first at byte %d of the disk",
		(end-firstBad)/int64(v.Seg.SectorSize), v.Seg.Size/int64(v.Seg.SectorSize), (end-firstBad)/int64(v.Seg.SectorSize), firstBad)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q\nwant it to contain %q", err, want)
	}
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Step != pipeline.StepSurfaceCheck || !strings.Contains(pe.State, "surface check FAILED") {
		t.Errorf("error %#v: want the surface-check step and a FAILED state", err)
	}
	for _, e := range evs {
		if e.Kind == pipeline.EventResult || (e.Kind == pipeline.EventStart && e.Step == pipeline.StepMkfs) {
			t.Errorf("the run went on after the failed check: %+v", e)
		}
	}
	var last *pipeline.Advance
	for _, e := range evs {
		if e.Kind == pipeline.EventProgress && e.Step == pipeline.StepSurfaceCheck {
			last = e.Progress
		}
	}
	if last == nil || last.Done != last.Total || last.Bad != (end-firstBad)/int64(v.Seg.SectorSize) {
		t.Errorf("last surface-check progress %+v", last)
	}
	if out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", "TYPE", testkit.DecryptXTS(t, v)).Output(); len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("a refused disk holds a filesystem: %s", out)
	}
	t.Logf("altered %d bytes from byte %d; refused: %v", altered, firstBad, err)
}

// TestEraseFlagsRefused: --surface-check without --erase, and --restart
// without --erase, are usage errors (exit 2) that touch nothing.
func TestEraseFlagsRefused(t *testing.T) {
	requireEnv(t)
	t.Parallel()
	img := sparseImage(t, t.TempDir(), imgSize)
	withContent(t, img)
	before := testkit.SHA256File(t, img)
	pass := passFile(t, []byte(testPass+"\n"))
	for flag, want := range map[string]string{
		"--surface-check": "--surface-check reads back what --erase writes: give both",
		"--restart":       "--restart goes with --erase",
	} {
		r := luksdock(t, runOpts{}, prepareArgs(img, pass, flag)...)
		if r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: %s\nwant exit 2 and %q", flag, r, want)
		}
	}
	if testkit.SHA256File(t, img) != before {
		t.Error("the image changed")
	}
}
