package pipeline

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// damagedImage makes a 64 MiB image with a GPT of two partitions (sfdisk),
// then zeros the primary GPT header, and the backup header too unless
// keepBackup: what a kill while writing the table, or a damaged disk, leaves.
func damagedImage(t *testing.T, keepBackup bool) string {
	t.Helper()
	testkit.NeedTools(t, "sfdisk") // the fixture is made with it
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", img)
	cmd.Stdin = strings.NewReader("label: gpt\nsize=16MiB, name=\"photos\"\nsize=8MiB, type=swap\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zero := make([]byte, 512)
	if _, err := f.WriteAt(zero, 512); err != nil {
		t.Fatal(err)
	}
	if !keepBackup {
		if _, err := f.WriteAt(zero, 64<<20-512); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// The plan of a disk holding a protective MBR without a GPT says so (not
// "no recognised content"), and asks for the same confirmation as any disk.
func TestDestroysProtectiveMBR(t *testing.T) {
	for _, c := range []struct {
		name       string
		keepBackup bool
		want       []string
	}{
		{"no GPT header", false, []string{
			"disk.img: GPT protective MBR, but no valid GPT header (damaged or half-written partition table)",
		}},
		{"backup header valid", true, []string{
			"disk.img partition 1: empty, 16.0 MiB",
			"disk.img partition 2: empty, 8.0 MiB",
			"disk.img: GPT partition table (primary header is missing; recoverable from the backup header at the end of the disk)",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := damagedImage(t, c.keepBackup)
			tg, err := ImageTarget(img, 0)
			if err != nil {
				t.Fatal(err)
			}
			if tg.Content.Empty() {
				t.Errorf("content %+v is empty", tg.Content)
			}
			if got := tg.Destroys(); !reflect.DeepEqual(got, c.want) {
				t.Errorf("Destroys() =\n  %q\nwant\n  %q", got, c.want)
			}
			if tg.ConfirmWord() != "disk.img" {
				t.Errorf("confirm word %q, want disk.img", tg.ConfirmWord())
			}
			p, err := NewPlan(tg, Options{Label: "backups01"})
			if err != nil {
				t.Fatal(err)
			}
			s := p.Script()
			if !strings.Contains(s, "# destroys "+c.want[len(c.want)-1]+"\n") || strings.Contains(s, "no recognised content") {
				t.Errorf("dry-run script:\n%s", s)
			}
		})
	}
}
