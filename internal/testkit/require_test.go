package testkit

import (
	"flag"
	"fmt"
	"testing"
)

// recTB is a testing.TB whose Skip and Fatalf only record what they were
// given (and do not stop the goroutine), to see what the Need helpers say.
type recTB struct {
	testing.TB
	skipped, failed string
}

func (r *recTB) Helper()          {}
func (r *recTB) Skip(args ...any) { r.skipped = fmt.Sprint(args...) }
func (r *recTB) Fatalf(f string, args ...any) {
	r.failed = fmt.Sprintf(f, args...)
}

// TestNeedToolsSkipsLoudly: a missing tool skips the test with its name,
// the Debian package to install and that scripts/test installs it; tools
// that are there let the test run; under -fuzz the same requirement fails.
func TestNeedToolsSkipsLoudly(t *testing.T) {
	r := &recTB{TB: t}
	NeedTools(r, "sh")
	if r.skipped != "" || r.failed != "" {
		t.Fatalf("sh is installed, yet NeedTools skipped %q / failed %q", r.skipped, r.failed)
	}
	NeedTools(r, "sh", "luksdock-no-such-tool", "mkfs.luksdock-none")
	want := "SKIP: luksdock-no-such-tool, mkfs.luksdock-none not installed (apt-get install luksdock-no-such-tool mkfs.luksdock-none; scripts/test installs it)"
	if r.skipped != want || r.failed != "" {
		t.Fatalf("NeedTools with missing tools skipped %q, failed %q; want the skip %q", r.skipped, r.failed, want)
	}
	if got := DebianPackage("mkfs.ext4"); got != "e2fsprogs" {
		t.Errorf("DebianPackage(mkfs.ext4) = %q", got)
	}

	fuzz := flag.Lookup("test.fuzz")
	old := fuzz.Value.String()
	if err := flag.Set("test.fuzz", "FuzzNothing"); err != nil {
		t.Fatal(err)
	}
	defer flag.Set("test.fuzz", old)
	r = &recTB{TB: t}
	NeedTools(r, "luksdock-no-such-tool")
	if r.skipped != "" || r.failed == "" {
		t.Fatalf("under -fuzz a missing tool skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
}
