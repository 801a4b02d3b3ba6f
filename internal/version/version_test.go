package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

func TestDebian(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                             "1.2.3",
		"v1.2.3-rc.1":                        "1.2.3~rc.1",
		"v0.0.0-20261201034023-65bf4be1a2b3": "0.0.0~git20261201034023.65bf4be1a2b3",
		"v0.0.0-20261201034023-65bf4be1a2b3+dirty":  "0.0.0~git20261201034023.65bf4be1a2b3+dirty",
		"v1.2.4-0.20261201034023-65bf4be1a2b3":      "1.2.4~git20261201034023.65bf4be1a2b3",
		"v1.2.3-rc.1.0.20261201034023-65bf4be1a2b3": "1.2.3~rc.1+git20261201034023.65bf4be1a2b3",
		"(devel)": "0.0.0~devel",
		"":        "0.0.0~devel",
	} {
		if got := (Info{Module: in}).Debian(); got != want {
			t.Errorf("Debian(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDebianOrder checks with dpkg itself that the mapping keeps Go's order.
func TestDebianOrder(t *testing.T) {
	// dpkg compares the Debian versions.
	testkit.NeedTools(t, "dpkg")
	ordered := []string{ // ascending in Go's (semver) order
		"v0.0.0-20261201034023-65bf4be1a2b3",
		"v0.0.0-20261202000000-000000000000",
		"v1.2.3-rc.1",
		"v1.2.3-rc.1.0.20261201034023-65bf4be1a2b3",
		"v1.2.3",
		"v1.2.4-0.20261201034023-65bf4be1a2b3",
		"v1.2.4",
	}
	for i := 1; i < len(ordered); i++ {
		a, b := Info{Module: ordered[i-1]}.Debian(), Info{Module: ordered[i]}.Debian()
		if err := exec.Command("dpkg", "--compare-versions", a, "lt", b).Run(); err != nil {
			t.Errorf("dpkg says %s is not < %s (from %s < %s)", a, b, ordered[i-1], ordered[i])
		}
	}
}

func TestString(t *testing.T) {
	in := FromBuildInfo(&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}})
	if got := in.String(); !strings.HasPrefix(got, "(devel)") || !strings.Contains(got, "without VCS") {
		t.Errorf("devel build: %q", got)
	}
	in = FromBuildInfo(&debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201034023-65bf4be1a2b3+dirty"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "65bf4be1a2b3c4d5e6f708192a3b4c5d6e7f8091"},
		{Key: "vcs.time", Value: "2026-12-01T03:40:23Z"},
		{Key: "vcs.modified", Value: "true"},
	}})
	want := "v0.0.0-20261201034023-65bf4be1a2b3+dirty (revision 65bf4be1a2b3c4d5e6f708192a3b4c5d6e7f8091 with uncommitted changes, 2026-12-01T03:40:23Z)"
	if got := in.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// A test binary carries no module version.
	if got := String(); !strings.HasPrefix(got, Devel) {
		t.Errorf("test binary: %q, want (devel)", got)
	}
}

// TestStamped builds a program that prints String() in a git clone of this
// repository's HEAD, once as `go build -buildvcs=true` (what
// scripts/package does) and once with -buildvcs=false, and checks that the
// revision is (or is not) the one git reports. It builds in a clone because
// Go does not stamp VCS information in a git worktree (.git is a file
// there), which is how this repository is often checked out.
func TestStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED: builds binaries (-short)")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("SKIPPED: not in a git checkout or no git (%v): cannot check VCS stamping", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if out, err := exec.Command("git", "clone", "-q", strings.TrimSpace(string(top)), src).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	head, err := exec.Command("git", "-C", src, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	rev := strings.TrimSpace(string(head))
	for _, vcs := range []string{"true", "false"} {
		bin := filepath.Join(dir, "pv-"+vcs)
		cmd := exec.Command("go", "build", "-buildvcs="+vcs, "-o", bin, "./internal/version/testdata/printversion")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOFLAGS=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build -buildvcs=%s: %v\n%s", vcs, err, out)
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.TrimSpace(string(out))
		t.Logf("-buildvcs=%s: %s", vcs, got)
		if vcs == "true" {
			if !strings.Contains(got, "(revision "+rev+", ") || !strings.HasPrefix(got, "v") {
				t.Errorf("-buildvcs=true: %q does not name revision %s with a module version", got, rev)
			}
			if strings.HasPrefix(got, Devel) {
				t.Errorf("-buildvcs=true: %q is still (devel)", got)
			}
		} else if !strings.HasPrefix(got, Devel+" (no version") {
			t.Errorf("-buildvcs=false: %q, want (devel) and why", got)
		}
	}
}
