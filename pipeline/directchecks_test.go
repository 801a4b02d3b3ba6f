package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
	"luksdock/luks"
)

// TestAddRecoveryKeyCountsKeyslots: the recovery-key step checks that the
// header ends with exactly one keyslot more than it had (the passphrase's,
// then the recovery key's: 2 on a fresh disk). A keyslot nobody asked for,
// added with stock cryptsetup luksAddKey after the step read the header,
// makes the count wrong and the step fails saying which keyslots it found.
// The control, the same image without the stray keyslot, passes with
// keyslots [0 1]: the failure is the stray keyslot's.
func TestAddRecoveryKeyCountsKeyslots(t *testing.T) {
	testkit.NeedTools(t, "cryptsetup")
	kdf := luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}
	ctx := context.Background()
	run := func(t *testing.T, stray bool) error {
		img := testkit.SparseFile(t, filepath.Join(t.TempDir(), "rk.img"), 20<<20)
		pass := []byte("first passphrase")
		if err := luks.Format(ctx, img, pass, bytes.Repeat([]byte{0x3c}, 64), luks.FormatOptions{PBKDF: kdf}); err != nil {
			t.Fatal(err)
		}
		tg, err := ImageTarget(img, 0)
		if err != nil {
			t.Fatal(err)
		}
		part := luks.Device{Path: img}
		info, err := luks.ReadHeaderDevice(part)
		if err != nil || len(info.Keyslots) != 1 {
			t.Fatalf("after luksFormat: keyslots %v, %v", info.Keyslots, err)
		}
		if stray {
			testkit.RunFD3(t, "stray", pass, "cryptsetup", "luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=/proc/self/fd/3", img, "-")
		}
		r := &runner{p: &Plan{Target: tg, Opts: Options{Label: "rk01", RecoveryKey: []byte("recovery key text")}},
			ctx: ctx, work: ctx, emit: func(Event) {}, pass: pass, fileID: tg.fileID, part: part, info: info, slotKDF: kdf}
		_, err = r.addRecoveryKey()
		if err == nil {
			if got := fmt.Sprint(r.info.Keyslots); got != "[0 1]" {
				t.Errorf("keyslots after the recovery key: %s, want [0 1]", got)
			}
			// stock cryptsetup opens keyslot 1 with the recovery key as
			// typed at its prompt
			c := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-slot", "1", img)
			c.Stdin = strings.NewReader("recovery key text\n")
			if out, cerr := c.CombinedOutput(); cerr != nil {
				t.Errorf("cryptsetup open --test-passphrase --key-slot 1 with the recovery key: %v\n%s", cerr, out)
			}
		}
		return err
	}
	t.Run("control", func(t *testing.T) {
		if err := run(t, false); err != nil {
			t.Fatalf("no stray keyslot: %v", err)
		}
	})
	t.Run("stray keyslot", func(t *testing.T) {
		err := run(t, true)
		want := "the header has keyslots [0 1 2] after adding the recovery key, before [0]"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("stray keyslot: %v, want %q", err, want)
		}
	})
}

// TestVerifyRefusesGPTKernelIgnores: Verify's own check that Linux would
// read the partition table when the disk is docked. luksdock's writer makes
// the disk (a full in-process prepare of an image, small KDF cost); then the
// primary GPT header (byte 512) or the protective MBR (sector 0) is zeroed.
// sfdisk (stock) shows each damage: the first table it reads only from the
// backup header, the second not at all. Verify must fail with
// KindNotVerified and say the kernel will not read the table; the
// undamaged image verifies, found with 512- and 4096-byte sectors.
func TestVerifyRefusesGPTKernelIgnores(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk")
	testkit.NeedFUSE(t)
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "g.img")
	pass := []byte("a passphrase for g")
	tg, err := ImageTarget(img, 80<<20)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(tg, Options{Label: "g01", Engine: EngineUserspace, PBKDF: luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(ctx, tg.ConfirmWord(), pass, nil); err != nil {
		t.Fatalf("prepare: %v", err)
	}
	good, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	verify := func(t *testing.T) (*Result, error) {
		t.Helper()
		vt, err := ImageTarget(img, 0)
		if err != nil {
			t.Fatal(err)
		}
		return Verify(ctx, vt, pass, EngineUserspace, nil)
	}
	for _, tc := range []struct {
		name     string
		off, n   int
		sfdiskOK bool
		sfdisk   string
	}{
		{"primary GPT header zeroed", 512, 512, true, "primary GPT table is corrupt"},
		{"protective MBR zeroed", 0, 512, false, "does not contain a recognized partition table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			clear(b[tc.off : tc.off+tc.n])
			if err := os.WriteFile(img, b, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("sfdisk", "--dump", img).CombinedOutput()
			if (err == nil) != tc.sfdiskOK || !strings.Contains(string(out), tc.sfdisk) {
				t.Fatalf("sfdisk --dump: %v, want ok=%v and %q:\n%s", err, tc.sfdiskOK, tc.sfdisk, out)
			}
			res, err := verify(t)
			var pe *Error
			if res != nil || !errors.As(err, &pe) || pe.Kind != KindNotVerified || !strings.Contains(err.Error(), "the kernel will not read this partition table") {
				t.Errorf("verify: %+v, %v; want KindNotVerified saying the kernel will not read this partition table", res, err)
			}
		})
	}
	if err := os.WriteFile(img, good, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := verify(t)
	if err != nil || fmt.Sprint(res.SectorViews) != "[512 4096]" {
		t.Fatalf("undamaged image: %+v, %v; want verified with sector views [512 4096]", res, err)
	}
}

// TestRunVerifyRequiresBothSectorViews: the run's verify step checks that
// the volume is found by a kernel reading the disk with 512- and with
// 4096-byte sectors (a GPT layout must be portable). The run is real (an
// image, luksdock's writer, small KDF cost); when the close step is done and
// before verify starts, the 4096-byte view's primary GPT header (byte 4096)
// is zeroed. The disk still unlocks and fscks clean through the 512-byte
// view, so only this check can refuse it: the run fails at verify with
// "the layout is not portable", and stock sfdisk on a loop device of
// 4096-byte sectors confirms that view has lost its table.
func TestRunVerifyRequiresBothSectorViews(t *testing.T) {
	testkit.NeedRoot(t)
	testkit.NeedTools(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk")
	testkit.NeedFUSE(t)
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "v.img")
	tg, err := ImageTarget(img, 80<<20)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(tg, Options{Label: "v01", Engine: EngineUserspace, PBKDF: luks.PBKDF{Type: "pbkdf2", ForceIterations: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	damaged := false
	emit := func(e Event) {
		if e.Kind == EventDone && e.Step == StepClose {
			f, err := os.OpenFile(img, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			_, err = f.WriteAt(make([]byte, 512), 4096)
			f.Close()
			damaged = err == nil
		}
	}
	res, err := p.Run(ctx, tg.ConfirmWord(), []byte("a passphrase for v"), emit)
	var pe *Error
	if !damaged || res != nil || !errors.As(err, &pe) || pe.Step != StepVerify || !strings.Contains(err.Error(), "the layout is not portable") {
		t.Fatalf("damaged %v; run: %+v, %v; want a failure at verify saying the layout is not portable", damaged, res, err)
	}
	if !strings.Contains(err.Error(), "4096-byte sectors: nothing") {
		t.Errorf("the message does not say what a 4096-byte dock finds: %v", err)
	}
	testkit.NeedLoop(t)
	dev := testkit.AttachLoop(t, img, "--sector-size", "4096")
	if out, err := exec.Command("sfdisk", "--dump", dev).CombinedOutput(); err == nil && !strings.Contains(string(out), "corrupt") {
		t.Errorf("sfdisk reads the 4096-byte view's table unharmed:\n%s", out)
	}
}
