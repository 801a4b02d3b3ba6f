package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/disk"
	"luksdock/internal/help"
	"luksdock/internal/manpage"
	"luksdock/internal/testkit"
	"luksdock/internal/version"
)

// visibleCommands are the command paths that get a man page, as argv.
func visibleCommands(t *testing.T) [][]string {
	t.Helper()
	root := newRootCmd(strings.NewReader(""), os.Stdout, os.Stderr)
	var paths [][]string
	var visit func(c *cobra.Command)
	visit = func(c *cobra.Command) {
		if c != root && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return
		}
		paths = append(paths, strings.Fields(c.CommandPath())[1:])
		for _, s := range c.Commands() {
			visit(s)
		}
	}
	visit(root)
	return paths
}

// helpFlags parses the flags `--help` lists ("Flags:" and "Global Flags:").
func helpFlags(help string) []string {
	var flags []string
	in := false
	for _, l := range strings.Split(help, "\n") {
		switch {
		case l == "Flags:" || l == "Global Flags:":
			in = true
			continue
		case l == "" || !strings.HasPrefix(l, " "):
			in = false
		}
		if m := helpFlag.FindStringSubmatch(l); in && m != nil {
			flags = append(flags, m[1])
		}
	}
	sort.Strings(flags)
	return flags
}

var helpFlag = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)

// manSections renders a man page with man(1) (man-db and groff, not this
// code) and splits it into its sections.
func manSections(t *testing.T, page string) map[string]string {
	t.Helper()
	cmd := exec.Command("man", "--warnings", "-l", page)
	cmd.Env = append(os.Environ(), "MANWIDTH=200", "MAN_KEEP_FORMATTING=0", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("man -l %s: %v\n%s", page, err, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Errorf("man --warnings on %s:\n%s", filepath.Base(page), s)
	}
	text := regexp.MustCompile(".\b").ReplaceAllString(string(out), "") // overstrike, if any
	secs := map[string]string{}
	cur := ""
	for _, l := range strings.Split(text, "\n") {
		if l != "" && l[0] >= 'A' && l[0] <= 'Z' && strings.ToUpper(l) == l {
			cur = l
			continue
		}
		secs[cur] += l + "\n"
	}
	return secs
}

var manFlag = regexp.MustCompile(`(?m)^\s{7}(?:-\w, )?--([a-z0-9][a-z0-9-]*)`)

// TestHelpAndManAgree generates the man pages the package ships and checks
// that every command's page lists exactly the flags its --help lists, and
// has the sections a sysadmin looks for.
func TestHelpAndManAgree(t *testing.T) {
	testkit.NeedTools(t, "man") // renders the man pages to compare them
	dir := t.TempDir()
	if code, _, errs := cli(t, "", "gen-man", dir); code != 0 {
		t.Fatalf("gen-man: exit %d: %s", code, errs)
	}
	var want []string
	for _, path := range visibleCommands(t) {
		name := strings.Join(append([]string{"luksdock"}, path...), "-") + ".8"
		want = append(want, name)
		t.Run(name, func(t *testing.T) {
			code, help, errs := cli(t, "", append(path, "--help")...)
			if code != 0 {
				t.Fatalf("--help: exit %d: %s", code, errs)
			}
			hf := helpFlags(help)
			// a group of commands (host) has only --help of its own
			if len(hf) < 2 && !strings.Contains(help, "Available Commands:") {
				t.Fatalf("parsed only %v from --help:\n%s", hf, help)
			}
			secs := manSections(t, filepath.Join(dir, name))
			var mf []string
			for _, m := range manFlag.FindAllStringSubmatch(secs["OPTIONS"], -1) {
				mf = append(mf, m[1])
			}
			sort.Strings(mf)
			if !slices.Equal(hf, mf) {
				t.Errorf("flags differ\n--help: %v\nman:    %v\nOPTIONS:\n%s", hf, mf, secs["OPTIONS"])
			}
			for _, s := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES", "EXAMPLES"} {
				if strings.TrimSpace(secs[s]) == "" {
					t.Errorf("section %s is missing or empty; sections: %v", s, slices.Sorted(mapsKeys(secs)))
				}
			}
			if strings.Contains(secs["DESCRIPTION"], "Exit codes:") {
				t.Errorf("the exit codes are still in DESCRIPTION (they belong in EXIT STATUS)")
			}
			for _, code := range []int{0, 2, 130} { // every command has these
				if !regexp.MustCompile(`(?m)^\s+` + regexpQuoteInt(code) + `\s`).MatchString(secs["EXIT STATUS"]) {
					t.Errorf("EXIT STATUS does not list %d as an item:\n%s", code, secs["EXIT STATUS"])
				}
			}
			if _, own, ok := strings.Cut(help, "Exit codes:\n"); ok { // each command's own codes
				own, _, _ = strings.Cut(own, "\n\n")
				for code := range manpage.ExitCodes(own) {
					if !regexp.MustCompile(`(?m)^\s+` + regexpQuoteInt(code) + `\s`).MatchString(secs["EXIT STATUS"]) {
						t.Errorf("EXIT STATUS does not list %d:\n%s", code, secs["EXIT STATUS"])
					}
				}
			}
			// The examples are --help's.
			if ex := strings.Fields(strings.SplitN(help, "Examples:\n", 2)[len(strings.SplitN(help, "Examples:\n", 2))-1]); len(ex) == 0 || !strings.Contains(secs["EXAMPLES"], "luksdock") {
				t.Errorf("EXAMPLES:\n%s", secs["EXAMPLES"])
			}
		})
	}
	got, _ := filepath.Glob(filepath.Join(dir, "*"))
	for i := range got {
		got[i] = filepath.Base(got[i])
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("man pages: %v, want one per visible command: %v", got, want)
	}
	for _, w := range []string{"luksdock.8", "luksdock-list.8", "luksdock-prepare.8", "luksdock-verify.8"} {
		if !slices.Contains(got, w) {
			t.Errorf("no %s", w)
		}
	}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func regexpQuoteInt(n int) string { return regexp.QuoteMeta(itoa(n)) }

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestExitCodesDocs: the exit-code table of docs/usage.md and --help's are
// the same codes with the same first words.
func TestExitCodesDocs(t *testing.T) {
	readme, err := os.ReadFile("docs/usage.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "## Exit codes\n")
	if !ok {
		t.Fatal("docs/usage.md has no '## Exit codes' section")
	}
	row := regexp.MustCompile(`(?m)^\| (\d+) \| (.*) \|$`)
	readmeCodes := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(strings.SplitN(strings.TrimLeft(table, "\n"), "\n\n", 2)[0], -1) {
		readmeCodes[m[1]] = true
	}
	helpCodes := map[string]bool{}
	for c := range manpage.ExitCodes(help.ExitCodes("luksdock") + help.ExitCodes("interrupted")) {
		helpCodes[itoa(c)] = true
	}
	if len(helpCodes) < 6 || len(readmeCodes) != len(helpCodes) {
		t.Fatalf("docs/usage.md codes %v, --help codes %v", readmeCodes, helpCodes)
	}
	for c := range helpCodes {
		if !readmeCodes[c] {
			t.Errorf("--help lists exit code %s, docs/usage.md does not", c)
		}
	}
}

// TestVersion: --version prints the build info's version; a test binary
// has none, so it must say (devel) and why.
func TestVersion(t *testing.T) {
	for _, arg := range []string{"--version", "-v"} {
		code, out, errs := cli(t, "", arg)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", arg, code, errs)
		}
		if want := "luksdock " + version.String() + "\n"; out != want {
			t.Errorf("%s printed %q, want %q", arg, out, want)
		}
		if !strings.HasPrefix(out, "luksdock (devel) (no version") {
			t.Errorf("%s in a test binary: %q", arg, out)
		}
	}
}

// TestDeviceCompletion: --device completes with exactly the disks `luksdock
// list` shows for the same sysfs (prepare: only those list marks ok, under
// the same --allow-internal), checked on every sysfs fixture.
func TestDeviceCompletion(t *testing.T) {
	roots, _ := filepath.Glob(filepath.Join("testdata", "sysfs", "*"))
	n := 0
	for _, root := range roots {
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			continue
		}
		for _, allow := range []bool{false, true} {
			args := []string{"--json", "--sysroot", root}
			if allow {
				args = append(args, "--allow-internal")
			}
			out, errs, code := listRun(t, args...)
			if code != 0 {
				t.Fatalf("list %v: exit %d %s", args, code, errs)
			}
			var entries []core.ListEntry
			if err := json.Unmarshal([]byte(out), &entries); err != nil {
				t.Fatal(err)
			}
			var all, ok []string
			for _, e := range entries {
				all = append(all, e.Path)
				if e.OK {
					ok = append(ok, e.Path)
				}
			}
			paths := func(c []string) []string {
				var p []string
				for _, s := range c {
					p = append(p, strings.SplitN(s, "\t", 2)[0])
				}
				return p
			}
			sys := disk.Sys{Root: root}
			if got := paths(core.DeviceCompletions(sys, false, allow)); !slices.Equal(got, all) {
				t.Errorf("%s: verify --device completes %v, list shows %v", root, got, all)
			}
			if got := paths(core.DeviceCompletions(sys, true, allow)); !slices.Equal(got, ok) {
				t.Errorf("%s allow-internal=%v: prepare --device completes %v, list marks ok %v", root, allow, got, ok)
			}
			n += len(all) + len(ok)
		}
	}
	if n == 0 {
		t.Fatal("no fixture disk at all: the test proves nothing")
	}
}

// TestCompletionScripts generates the scripts the package installs and runs
// the bash one in bash against the built binary: the flag values and the
// subcommands complete.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := cli(t, "", "gen-completions", dir); code != 0 {
		t.Fatalf("gen-completions: exit %d: %s", code, errs)
	}
	for _, f := range []string{"bash/luksdock", "zsh/_luksdock", "fish/luksdock.fish"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.Contains(string(b), "luksdock") {
			t.Errorf("%s: %v", f, err)
		}
	}
	const bashCompletion = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(bashCompletion); err != nil {
		t.Skipf("SKIPPED: running the bash script needs the bash-completion package (scripts/test installs it; the packaging test runs it in a Debian root): %v", err)
	}
	bin := testkit.Luksdock(t)
	complete := func(words ...string) []string {
		script := `source ` + bashCompletion + `; source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; __start_luksdock; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", append([]string{"-c", script, "bash", filepath.Join(dir, "bash/luksdock")}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
		var stderr strings.Builder
		cmd.Stderr = &stderr // bash's compopt complains outside a real completion
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bash completion of %q: %v\n%s%s", words, err, out, stderr.String())
		}
		return strings.Fields(string(out))
	}
	if got := complete("luksdock", "prepare", "--engine", ""); !slices.Equal(got, []string{"auto", "kernel", "userspace"}) {
		t.Errorf("--engine completes %v", got)
	}
	if got := complete("luksdock", "ver"); !slices.Equal(got, []string{"verify"}) {
		t.Errorf("'ver' completes %v", got)
	}
	if got := complete("luksdock", "gen-"); len(got) != 0 {
		t.Errorf("hidden commands complete: %v", got)
	}
}

func TestChoices(t *testing.T) {
	for usage, want := range map[string][]string{
		"how to open the volume: auto, kernel or userspace":                  {"auto", "kernel", "userspace"},
		"partition table: gpt or mbr":                                        {"gpt", "mbr"},
		"partition table: gpt, mbr or none (none: LUKS on the whole disk)":   {"gpt", "mbr", "none"},
		"keyslot PBKDF: argon2id, argon2i or pbkdf2 (default: cryptsetup's)": {"argon2id", "argon2i", "pbkdf2"},
		"owner of the filesystem root: USER or UID:GID":                      nil,
		"the whole disk to use, e.g. /dev/sdi":                               nil,
		"file holding the passphrase on one line, or - for standard input":   nil,
	} {
		if got := manpage.Choices(usage); !slices.Equal(got, want) {
			t.Errorf("Choices(%q) = %q, want %q", usage, got, want)
		}
	}
}

// TestFlagValueCompletion: through cobra's completion entry point (what the
// shell scripts call), --engine, --table and --pbkdf complete their values.
func TestFlagValueCompletion(t *testing.T) {
	for flag, want := range map[string][]string{
		"--engine": {"auto", "kernel", "userspace"},
		"--table":  {"gpt", "mbr"},
		"--pbkdf":  {"argon2id", "argon2i", "pbkdf2"},
	} {
		code, out, errs := cli(t, "", "__complete", "prepare", flag, "")
		if code != 0 {
			t.Fatalf("__complete: exit %d %s", code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := lines[:len(lines)-1] // the last line is the directive
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("prepare %s completes %q, want %q among them", flag, got, w)
			}
		}
	}
}
