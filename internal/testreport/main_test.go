package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const allowText = `
# comment
example.com/m TestAllowed(/.*)? no device-mapper on this host: covered by e2e.TestX
`

// A real `go test -json` run of a small module with a passing, a failing, an
// allowed and an unlisted skipped test: the report must show both skips with
// their reasons, the failure's output, the closing lines and the counts, and
// the run must not be OK.
func TestReportRealGoTest(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: -short: builds and runs a test module")
	}
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.26\n")
	write("m_test.go", `package m

import "testing"

func TestPasses(t *testing.T) {}
func TestFails(t *testing.T) { t.Log("the evidence"); t.Fatal("broken on purpose") }
func TestAllowed(t *testing.T) {
	t.Run("sub", func(t *testing.T) { t.Skip("SKIP: needs device-mapper") })
}
func TestUnlisted(t *testing.T) { t.Skip("SKIP: harness could not start") }
`)
	cmd := exec.Command("go", "test", "-json", "-count=1", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	stream, _ := cmd.Output() // exits 1: TestFails
	if len(stream) == 0 {
		t.Fatal("go test -json printed nothing")
	}
	allow, err := parseAllowList(strings.NewReader(allowText))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	s, err := report(bytes.NewReader(stream), &out, allow)
	if err != nil {
		t.Fatal(err)
	}
	printSummary(&out, s, allow, "skips.allow")
	text := out.String()
	t.Logf("report:\n%s", text)
	if s.OK() {
		t.Error("a run with a failed test and an unlisted skip is OK")
	}
	// TestAllowed (parent) and TestPasses pass; TestAllowed/sub and
	// TestUnlisted skip; TestFails fails.
	if s.Passed != 2 || s.Failed != 1 || s.Skipped != 2 {
		t.Errorf("counts: %d passed, %d failed, %d skipped; want 2, 1, 2", s.Passed, s.Failed, s.Skipped)
	}
	for _, want := range []string{
		"--- SKIP: example.com/m TestAllowed/sub",
		"SKIP: needs device-mapper",
		"allowed: no device-mapper on this host: covered by e2e.TestX",
		"--- SKIP: example.com/m TestUnlisted",
		"SKIP: harness could not start [NOT ON THE ALLOW-LIST]",
		"=== FAILED: example.com/m TestFails",
		"the evidence",
		"broken on purpose",
		"FAIL\texample.com/m",
		"FAIL: 1 skipped test(s) not on the allow-list skips.allow",
		"2 passed, 1 failed, 2 skipped (1 allowed, 1 not allowed)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(text, "=== RUN") {
		t.Error("report shows verbose === RUN lines")
	}
}

func event1(action, pkg, test, output string) string {
	return `{"Action":"` + action + `","Package":"` + pkg + `","Test":"` + test + `","Output":` + quote(output) + "}\n"
}

func quote(s string) string {
	b := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`).Replace(s)
	return `"` + b + `"`
}

// Only allowed skips and passes: OK, and the package's closing line shows.
func TestReportAllowedSkipIsOK(t *testing.T) {
	allow, err := parseAllowList(strings.NewReader(allowText))
	if err != nil {
		t.Fatal(err)
	}
	stream := event1("run", "example.com/m", "TestAllowed", "") +
		event1("output", "example.com/m", "TestAllowed", "    m_test.go:3: SKIP: needs device-mapper\n") +
		event1("skip", "example.com/m", "TestAllowed", "") +
		event1("pass", "example.com/m", "TestPasses", "") +
		event1("output", "example.com/m", "", "PASS\n") +
		event1("output", "example.com/m", "", "ok  \texample.com/m\t0.01s\n") +
		event1("pass", "example.com/m", "", "")
	var out bytes.Buffer
	s, err := report(strings.NewReader(stream), &out, allow)
	if err != nil {
		t.Fatal(err)
	}
	if !s.OK() {
		t.Errorf("run with only allowed skips is not OK:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "ok  \texample.com/m\t0.01s") {
		t.Errorf("closing line missing:\n%s", out.String())
	}
}

// The same skip in another package, or a test whose name only starts like
// an allowed one, is not allowed; a package that never finished fails.
func TestReportNotAllowed(t *testing.T) {
	allow, _ := parseAllowList(strings.NewReader(allowText))
	for name, stream := range map[string]string{
		"other package": event1("skip", "example.com/other", "TestAllowed", "") + event1("pass", "example.com/other", "", ""),
		"prefix only":   event1("skip", "example.com/m", "TestAllowedMore", "") + event1("pass", "example.com/m", "", ""),
		"unfinished":    event1("run", "example.com/m", "TestPasses", "") + event1("output", "example.com/m", "TestPasses", "panic: boom\n"),
	} {
		var out bytes.Buffer
		s, err := report(strings.NewReader(stream), &out, allow)
		if err != nil {
			t.Fatal(err)
		}
		if s.OK() {
			t.Errorf("%s: run is OK:\n%s", name, out.String())
		}
	}
}

func TestParseAllowListNeedsReason(t *testing.T) {
	if _, err := parseAllowList(strings.NewReader("luksdock/disk TestX\n")); err == nil {
		t.Error("an entry without a reason was accepted")
	}
	a, err := parseAllowList(strings.NewReader("luksdock/disk TestX/.* the reason, in words\n"))
	if err != nil || len(a) != 1 || a[0].Reason != "the reason, in words" {
		t.Errorf("got %+v, %v", a, err)
	}
}

// The repository's own allow-list parses, and every entry has a reason
// that names where the case is covered or why it cannot run.
func TestRepoAllowList(t *testing.T) {
	f, err := os.Open("../../scripts/skips.allow")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := parseAllowList(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) == 0 || len(a) > 12 {
		t.Errorf("allow-list has %d entries; it should be short (1-12)", len(a))
	}
}
