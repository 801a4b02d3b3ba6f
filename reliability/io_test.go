package reliability

import (
	"fmt"
	"luksdock/internal/testkit"
	"luksdock/pipeline"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// failedRun checks a run that must fail at a step: a non-zero documented exit
// code, a failed event naming the step, the step named on stderr, no result
// and no "Done".
func failedRun(t *testing.T, d driven, wantCode int) event {
	t.Helper()
	if d.code != wantCode {
		t.Errorf("exit %d, want %d\n%s", d.code, wantCode, d.stderr)
	}
	if d.has("result") {
		t.Errorf("a failed run printed a result event")
	}
	var f event
	for _, e := range d.events {
		if e.Kind == "failed" {
			f = e
		}
	}
	if f.Kind == "" {
		t.Fatalf("no failed event; events: %+v\nstderr: %s", d.events, d.stderr)
	}
	if f.Step == "" || f.Message == "" || f.State == "" {
		t.Errorf("the failed event does not name the step, the error and the state: %+v", f)
	}
	// stderr names the step by its title in the plan, as a person reads it
	// (a refusal in preflight comes before the plan event).
	title := pipeline.StepTitle(pipeline.StepID(f.Step))
	for _, e := range d.events {
		for _, s := range e.Steps {
			if s.ID == f.Step {
				title = s.Title
			}
		}
	}
	if !strings.Contains(d.stderr, "luksdock: "+title+": ") || !strings.Contains(d.stderr, "disk state: ") {
		t.Errorf("stderr does not name the step %q (%q in the plan) and the disk state:\n%s", f.Step, title, d.stderr)
	}
	for _, e := range d.events {
		if e.Kind == "done" && e.Step == f.Step {
			t.Errorf("step %s reported both done and failed", f.Step)
		}
	}
	return f
}

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory until the
// test ends.
func mountTmpfs(t *testing.T, size string, ro bool) string {
	t.Helper()
	dir := t.TempDir()
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			exec.Command("umount", "-l", dir).Run()
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// TestNoSpace puts the image on a tmpfs too small for it, so writes fail
// with ENOSPC in different steps: wipe (zeroing), luks-format (the header
// area), mkfs (through the FUSE volume). Each run must fail with exit 4, name
// the step, print no result, and leave nothing mounted.
func TestNoSpace(t *testing.T) {
	requireEnv(t)
	for _, c := range []struct {
		fs   string
		step string
	}{
		{"2m", "wipe"},
		{"8m", "wipe"},
		{"12m", "luks-format"},
		// The header area (1 MiB + 16 MiB) and the wipe's last MiB take
		// about 18.2 MiB; mkfs with lazy_journal_init writes only its
		// metadata (the whole image then takes about 18.1 MiB of data
		// blocks plus tmpfs's own): 18 MiB fits the first, not the second.
		{"18m", "mkfs"},
	} {
		t.Run(c.fs, func(t *testing.T) {
			t.Parallel()
			dir := mountTmpfs(t, c.fs, false)
			img := filepath.Join(dir, "disk.img")
			pass := passFile(t, []byte(testPass+"\n"))
			tmpdir := t.TempDir()
			d := drive(t, tmpdir, trigger{}, append(prepareArgs(img, pass, "--json"), "--size", "72M")...)
			f := failedRun(t, d, 4)
			if f.Step != c.step {
				t.Errorf("failed at %s, want %s (tmpfs of %s)", f.Step, c.step, c.fs)
			}
			if !strings.Contains(strings.ToLower(f.Message), "no space left on device") {
				t.Errorf("the message does not say the device is full: %q", f.Message)
			}
			noLeftovers(t, tmpdir, img, d.kids)
			if want := pipeline.StateFailedIn(pipeline.StepID(c.step), ""); f.State != want {
				t.Errorf("state %q, want %q", f.State, want)
			}
			t.Logf("tmpfs %s: failed at %s: %s; state %q", c.fs, f.Step, f.Message, f.State)
		})
	}
}

// setRO switches a block device read-only (BLKROSET, as blockdev --setro).
func setRO(t *testing.T, dev string) {
	if out, err := exec.Command("blockdev", "--setro", dev).CombinedOutput(); err != nil {
		t.Errorf("blockdev --setro %s: %v: %s", dev, err, out)
	}
}

// TestReadOnlyLoop switches the target loop device read-only before the run
// and at the start of the wipe, luks-format and mkfs steps.
func TestReadOnlyLoop(t *testing.T) {
	requireEnv(t)
	for _, step := range []string{"", "wipe", "luks-format", "mkfs"} {
		name := "before-run"
		if step != "" {
			name = "at-" + step
		}
		t.Run(name, func(t *testing.T) {
			file := sparseImage(t, t.TempDir(), imgSize)
			withContent(t, file)
			dev := attachLoop(t, file)
			kname := filepath.Base(dev)
			pass := passFile(t, []byte(testPass+"\n"))
			tmpdir := t.TempDir()
			args := []string{"prepare", "--device", dev, "--label", "backups01", "--passphrase-file", pass, "--confirm", kname, "--engine", "userspace", "--json"}
			args = append(args, lowCost...)
			tr := trigger{event: "start", step: step, do: func() { setRO(t, dev) }}
			if step == "" {
				before := testkit.SHA256File(t, file)
				setRO(t, dev)
				d := drive(t, tmpdir, trigger{}, args...)
				f := failedRun(t, d, 3)
				if f.Step != "preflight" {
					t.Errorf("refused at %s, want preflight", f.Step)
				}
				if !strings.Contains(f.Message, "read-only") {
					t.Errorf("the message does not say the disk is read-only: %q", f.Message)
				}
				if testkit.SHA256File(t, file) != before {
					t.Errorf("the read-only disk changed")
				}
				return
			}
			d := drive(t, tmpdir, tr, args...)
			if !d.fired {
				t.Fatalf("the step never started: %v", d.stderr)
			}
			f := failedRun(t, d, 4)
			if stepIndex[f.Step] < stepIndex[step] {
				t.Errorf("failed at %s, before %s where the disk went read-only", f.Step, step)
			}
			if !strings.Contains(f.Message, dev+" is read-only now") {
				t.Errorf("the message does not say the disk became read-only: %q", f.Message)
			}
			noLeftovers(t, tmpdir, "", nil)
			if f.Step == step && f.State != pipeline.StateFailedIn(pipeline.StepID(step), "") {
				t.Errorf("state %q does not say the step may have written part of its changes", f.State)
			}
			t.Logf("read-only at %s: failed at %s: %s; state %q", step, f.Step, f.Message, f.State)
		})
	}
}

// TestTwoAtOnce runs a second luksdock on the target of a first one while
// the first is in its mkfs step (slowed): the second is refused with exit 3
// and writes nothing; the first completes.
func TestTwoAtOnce(t *testing.T) {
	requireEnv(t)
	pass := passFile(t, []byte(testPass+"\n"))
	t.Run("image", func(t *testing.T) {
		t.Parallel()
		img := oldImage(t)
		var second result
		var once sync.Once
		tr := trigger{event: "start", step: "mkfs", slow: "mkfs.ext4"}
		tr.do = func() {
			once.Do(func() { second = luksdock(t, runOpts{}, prepareArgs(img, pass)...) })
		}
		d := drive(t, t.TempDir(), tr, prepareArgs(img, pass, "--json")...)
		if second.code != 3 || !strings.Contains(second.stderr, "lock") {
			t.Errorf("the second luksdock was not refused as locked (want exit 3): %v", second)
		}
		if d.code != 0 || !d.has("result") {
			t.Errorf("the first luksdock did not complete: exit %d\n%s", d.code, d.stderr)
		}
		if ok, why, _ := oracle(t, img, testPass, "backups01"); !ok {
			t.Errorf("the first run's disk: %s", why)
		}
	})
	t.Run("device", func(t *testing.T) {
		t.Parallel()
		file := sparseImage(t, t.TempDir(), imgSize)
		dev := attachLoop(t, file)
		args := []string{"prepare", "--device", dev, "--label", "backups01", "--passphrase-file", pass, "--confirm", filepath.Base(dev), "--engine", "userspace"}
		args = append(args, lowCost...)
		var second, third result
		var once sync.Once
		tr := trigger{event: "start", step: "mkfs", slow: "mkfs.ext4"}
		tr.do = func() {
			once.Do(func() {
				second = luksdock(t, runOpts{}, args...)
				third = luksdock(t, runOpts{}, prepareArgs(file, pass)...)
			})
		}
		d := drive(t, t.TempDir(), tr, append(args, "--json")...)
		if second.code != 3 {
			t.Errorf("a second luksdock on the same device was not refused (want exit 3): %v", second)
		}
		if third.code != 3 || !strings.Contains(third.stderr, "in use by "+dev) {
			t.Errorf("luksdock --image on the file behind the busy loop device was not refused (want exit 3, 'in use by %s'): %v", dev, third)
		}
		if d.code != 0 || !d.has("result") {
			t.Errorf("the first luksdock did not complete: exit %d\n%s", d.code, d.stderr)
		}
	})
	t.Run("create-race", func(t *testing.T) {
		t.Parallel()
		img := filepath.Join(t.TempDir(), "new.img")
		args := append(prepareArgs(img, pass), "--size", "72M")
		var wg sync.WaitGroup
		res := make([]result, 2)
		for i := range res {
			wg.Add(1)
			go func() { defer wg.Done(); res[i] = luksdock(t, runOpts{}, args...) }()
		}
		wg.Wait()
		codes := fmt.Sprint(res[0].code, res[1].code)
		if codes != "0 3" && codes != "3 0" {
			t.Errorf("two luksdocks creating the same image: exits %s, want one 0 and one 3\n%v\n%v", codes, res[0], res[1])
		}
	})
}

// TestIdentityChangedBeforeFirstWrite plans a run, then swaps the target
// for another before the run starts writing (a different file at the same
// path; a loop device re-pointed at another file); the run must refuse
// (exit 3) and neither file may change. Driven through the pipeline API,
// which is where the time between confirmation and the first write lives.
func TestIdentityChangedBeforeFirstWrite(t *testing.T) {
	requireEnv(t)
	identityImage(t)
	identityLoop(t)
}

// waitDetached waits until the loop device has no backing file any more.
func waitDetached(dev string) {
	for i := 0; i < 100; i++ {
		b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "loop/backing_file"))
		if err != nil || len(b) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
