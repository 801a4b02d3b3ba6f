// Command testreport reads the event stream of `go test -json` on standard
// input and prints a run a person can read: the output of every failed test,
// every skipped test with its reason, each package's closing line (`ok`,
// `FAIL`, build errors) and a summary (`N passed, N failed, N skipped`).
//
// It fails (exit 1) when a test failed, a package failed or did not finish,
// or a test was skipped without a matching entry in the allow-list (-allow
// FILE). Each allow-list line is
//
//	PACKAGE TEST-REGEXP REASON...
//
// PACKAGE is the import path (luksdock/disk), TEST-REGEXP must match the
// whole test name (subtests included: TestX/case), REASON is required and
// says why the skip is acceptable and where the case is covered instead.
// Blank lines and lines starting with # are ignored.
//
// scripts/test runs it as: go test -json ... | go run ./internal/testreport -allow scripts/skips.allow
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time        time.Time
	Action      string
	Package     string
	Test        string
	Elapsed     float64
	Output      string
	ImportPath  string // build-output / build-fail
	FailedBuild string
}

// allowEntry is one line of the allow-list.
type allowEntry struct {
	Package string
	Test    *regexp.Regexp
	Pattern string
	Reason  string
	Line    int
	used    int
}

// parseAllowList reads the allow-list format described in the package doc.
func parseAllowList(r io.Reader) ([]*allowEntry, error) {
	var out []*allowEntry
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("allow-list line %d: want PACKAGE TEST-REGEXP REASON, got %q", n, line)
		}
		re, err := regexp.Compile("^(?:" + f[1] + ")$")
		if err != nil {
			return nil, fmt.Errorf("allow-list line %d: %v", n, err)
		}
		rest := strings.TrimSpace(strings.TrimPrefix(line, f[0]))
		reason := strings.TrimSpace(strings.TrimPrefix(rest, f[1]))
		out = append(out, &allowEntry{Package: f[0], Test: re, Pattern: f[1], Reason: reason, Line: n})
	}
	return out, sc.Err()
}

// testState is what the report knows about one test.
type testState struct {
	pkg, name string
	output    []string
	result    string // pass, fail, skip, "" (never ended)
	elapsed   float64
}

// skip is a skipped test and its verdict.
type skip struct {
	Package, Test, Reason string
	Allowed               *allowEntry
}

// summary is the outcome of a run.
type summary struct {
	Passed, Failed, Skipped int
	Skips                   []skip
	FailedTests             []string
	FailedPackages          []string
	Unfinished              []string // packages with no final pass/fail (crash, killed)
}

// OK says whether the run is green: nothing failed and every skip allowed.
func (s *summary) OK() bool {
	if s.Failed > 0 || len(s.FailedPackages) > 0 || len(s.Unfinished) > 0 {
		return false
	}
	for _, k := range s.Skips {
		if k.Allowed == nil {
			return false
		}
	}
	return true
}

// report consumes the event stream, writes the readable run to w and
// returns the summary.
func report(in io.Reader, w io.Writer, allow []*allowEntry) (*summary, error) {
	tests := map[string]*testState{}
	pkgDone := map[string]bool{}
	var pkgOrder []string
	seenPkg := map[string]bool{}
	s := &summary{}
	key := func(p, t string) string { return p + "\x00" + t }

	dec := json.NewDecoder(in)
	for {
		var e event
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			// Not JSON (go test printed something itself, e.g. a
			// build error before -json took over): pass it on.
			rest, _ := io.ReadAll(io.MultiReader(dec.Buffered(), in))
			fmt.Fprintf(w, "%s", rest)
			return s, fmt.Errorf("go test output is not a -json event stream: %v", err)
		}
		switch e.Action {
		case "build-output":
			fmt.Fprint(w, e.Output)
			continue
		case "build-fail":
			continue
		}
		if e.Package == "" {
			continue
		}
		if !seenPkg[e.Package] {
			seenPkg[e.Package] = true
			pkgOrder = append(pkgOrder, e.Package)
		}
		if e.Test == "" {
			switch e.Action {
			case "output":
				// Package-level lines: keep the closing lines and
				// anything that is not the bare PASS/FAIL marker or a
				// verbose-mode line.
				if shownPackageLine(e.Output) {
					fmt.Fprint(w, e.Output)
				}
			case "pass", "skip":
				pkgDone[e.Package] = true
			case "fail":
				pkgDone[e.Package] = true
				s.FailedPackages = append(s.FailedPackages, e.Package)
			}
			continue
		}
		ts := tests[key(e.Package, e.Test)]
		if ts == nil {
			ts = &testState{pkg: e.Package, name: e.Test}
			tests[key(e.Package, e.Test)] = ts
		}
		switch e.Action {
		case "output":
			ts.output = append(ts.output, e.Output)
		case "pass":
			ts.result, ts.elapsed = "pass", e.Elapsed
			s.Passed++
			ts.output = nil
		case "skip":
			ts.result, ts.elapsed = "skip", e.Elapsed
			s.Skipped++
			k := skip{Package: e.Package, Test: e.Test, Reason: skipReason(ts.output)}
			for _, a := range allow {
				if a.Package == e.Package && a.Test.MatchString(e.Test) {
					k.Allowed = a
					a.used++
					break
				}
			}
			s.Skips = append(s.Skips, k)
			verdict := "NOT ON THE ALLOW-LIST"
			if k.Allowed != nil {
				verdict = "allowed: " + k.Allowed.Reason
			}
			fmt.Fprintf(w, "--- SKIP: %s %s: %s [%s]\n", e.Package, e.Test, k.Reason, verdict)
			ts.output = nil
		case "fail":
			ts.result, ts.elapsed = "fail", e.Elapsed
			s.Failed++
			s.FailedTests = append(s.FailedTests, e.Package+" "+e.Test)
			fmt.Fprintf(w, "=== FAILED: %s %s (%.2fs)\n", e.Package, e.Test, e.Elapsed)
			for _, l := range ts.output {
				if shownPackageLine(l) {
					fmt.Fprint(w, l)
				}
			}
			ts.output = nil
		}
	}
	for _, p := range pkgOrder {
		if !pkgDone[p] {
			s.Unfinished = append(s.Unfinished, p)
		}
	}
	// A test that started and never ended (binary crashed or was killed):
	// show what it printed, it is part of the failure.
	var hung []*testState
	for _, ts := range tests {
		if ts.result == "" {
			hung = append(hung, ts)
		}
	}
	sort.Slice(hung, func(i, j int) bool { return hung[i].pkg+hung[i].name < hung[j].pkg+hung[j].name })
	for _, ts := range hung {
		fmt.Fprintf(w, "=== DID NOT FINISH: %s %s\n", ts.pkg, ts.name)
		for _, l := range ts.output {
			fmt.Fprint(w, l)
		}
	}
	return s, nil
}

// shownPackageLine says whether a package-level output line belongs in the
// readable run: the closing `ok`/`FAIL`/`?` lines, coverage, panics and
// anything else the binary printed outside a test; not the bare PASS/FAIL
// marker that precedes the closing line.
func shownPackageLine(l string) bool {
	t := strings.TrimRight(l, "\n")
	switch {
	case t == "PASS", t == "FAIL", t == "":
		return false
	case strings.HasPrefix(t, "=== RUN"), strings.HasPrefix(t, "=== PAUSE"), strings.HasPrefix(t, "=== CONT"), strings.HasPrefix(t, "=== NAME"):
		return false
	}
	return true
}

// skipReason is what a skipped test printed (its t.Skip message and any
// log lines before it), without the framework's own lines.
func skipReason(output []string) string {
	var parts []string
	for _, l := range output {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		parts = append(parts, t)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, " | ")
}

// printSummary writes the closing block: unlisted skips, failures and the
// counts line, last so that it is what a CI log shows at its end.
func printSummary(w io.Writer, s *summary, allow []*allowEntry, allowFile string) {
	fmt.Fprintln(w)
	var bad []skip
	for _, k := range s.Skips {
		if k.Allowed == nil {
			bad = append(bad, k)
		}
	}
	if len(s.Skips) > 0 {
		fmt.Fprintf(w, "==> %d skipped:\n", len(s.Skips))
		for _, k := range s.Skips {
			v := "NOT ALLOWED (not in " + allowFile + ")"
			if k.Allowed != nil {
				v = fmt.Sprintf("allowed (%s:%d): %s", allowFile, k.Allowed.Line, k.Allowed.Reason)
			}
			fmt.Fprintf(w, "    %s %s: %s\n        %s\n", k.Package, k.Test, k.Reason, v)
		}
	}
	for _, a := range allow {
		if a.used == 0 {
			fmt.Fprintf(w, "note: allow-list entry %s:%d (%s %s) matched no skip in this run\n", allowFile, a.Line, a.Package, a.Pattern)
		}
	}
	if len(s.FailedTests) > 0 {
		fmt.Fprintf(w, "==> failed tests:\n")
		for _, f := range s.FailedTests {
			fmt.Fprintf(w, "    %s\n", f)
		}
	}
	for _, p := range s.FailedPackages {
		fmt.Fprintf(w, "FAIL %s\n", p)
	}
	for _, p := range s.Unfinished {
		fmt.Fprintf(w, "FAIL %s (no result: the test binary did not finish)\n", p)
	}
	if len(bad) > 0 {
		fmt.Fprintf(w, "FAIL: %d skipped test(s) not on the allow-list %s\n", len(bad), allowFile)
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped (%d allowed, %d not allowed)\n",
		s.Passed, s.Failed, s.Skipped, s.Skipped-len(bad), len(bad))
}

func main() {
	allowFile := flag.String("allow", "", "allow-list of skips (PACKAGE TEST-REGEXP REASON per line)")
	flag.Parse()
	var allow []*allowEntry
	if *allowFile != "" {
		f, err := os.Open(*allowFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
		allow, err = parseAllowList(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
	}
	out := bufio.NewWriter(os.Stdout)
	s, err := report(os.Stdin, flushWriter{out}, allow)
	printSummary(out, s, allow, *allowFile)
	out.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if !s.OK() {
		os.Exit(1)
	}
}

// flushWriter flushes after every write, so a long run shows progress.
type flushWriter struct{ b *bufio.Writer }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.b.Write(p)
	if err == nil {
		err = f.b.Flush()
	}
	return n, err
}
