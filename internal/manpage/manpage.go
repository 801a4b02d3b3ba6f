// Package manpage writes luksdock's man pages (section 8) and shell
// completion scripts from its cobra command tree, so a new flag or command
// reaches them without anyone writing it twice. Each command's exit-code
// paragraph (in its Long help) becomes EXIT STATUS, SetFiles its FILES.
package manpage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"luksdock/internal/version"
)

// GenCompletions writes DIR/bash/luksdock, DIR/zsh/_luksdock and
// DIR/fish/luksdock.fish (the names their shells load on demand).
func GenCompletions(root *cobra.Command, dir string) error {
	for _, g := range []struct {
		path string
		gen  func(io.Writer) error
	}{
		{"bash/luksdock", func(w io.Writer) error { return root.GenBashCompletionV2(w, true) }},
		{"zsh/_luksdock", root.GenZshCompletion},
		{"fish/luksdock.fish", func(w io.Writer) error { return root.GenFishCompletion(w, true) }},
	} {
		var b bytes.Buffer
		if err := g.gen(&b); err != nil {
			return err
		}
		p := filepath.Join(dir, g.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// manDate is the man pages' date: SOURCE_DATE_EPOCH (reproducible builds),
// else the commit's time from the build info, else now.
func manDate() (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, version.Get().Time); err == nil {
		return t.UTC(), nil
	}
	return time.Now().UTC(), nil
}

// GenTree writes DIR/luksdock.8, DIR/luksdock-prepare.8, ... for every
// visible command. cobra/doc renders NAME, SYNOPSIS, DESCRIPTION (the
// command's Long help), OPTIONS (its flags, as --help lists them) and
// EXAMPLES; EXIT STATUS and FILES are added here.
func GenTree(root *cobra.Command, dir string) error {
	date, err := manDate()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root.InitDefaultVersionFlag() // cobra adds --version only to the command it runs
	var errs []error
	var gen func(c *cobra.Command)
	gen = func(c *cobra.Command) {
		if c != root && (!c.IsAvailableCommand() || c.IsAdditionalHelpTopicCommand()) {
			return // nor its subcommands (completion bash, ...)
		}
		for _, s := range c.Commands() {
			gen(s)
		}
		page, err := Page(c, date)
		if err != nil {
			errs = append(errs, err)
			return
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".8"
		errs = append(errs, os.WriteFile(filepath.Join(dir, name), page, 0o644))
	}
	gen(root)
	return errors.Join(errs...)
}

// exitParagraph matches the exit-code paragraph of a Long help text.
var exitParagraph = regexp.MustCompile(`(?s)(?:^|\n\n)(Exit (?:codes|status):.*?)(?:\n\n|$)`)

// manFilesKey is the annotation that holds a command's FILES section
// (SetFiles).
const manFilesKey = "luksdock-man-files"

// SetFiles gives command c the FILES section of its man page: each entry
// a path and what luksdock does with it.
func SetFiles(c *cobra.Command, files [][2]string) {
	var b strings.Builder
	for _, f := range files {
		b.WriteString(f[0] + "\t" + f[1] + "\n")
	}
	if c.Annotations == nil {
		c.Annotations = map[string]string{}
	}
	c.Annotations[manFilesKey] = b.String()
}

// files is command c's FILES section, as SetFiles gave it.
func files(c *cobra.Command) [][2]string {
	var out [][2]string
	for _, l := range strings.Split(strings.TrimSuffix(c.Annotations[manFilesKey], "\n"), "\n") {
		if path, what, ok := strings.Cut(l, "\t"); ok {
			out = append(out, [2]string{path, what})
		}
	}
	return out
}

// Page renders one command's page.
func Page(c *cobra.Command, date time.Time) ([]byte, error) {
	// The exit codes are part of --help's Long text; in the man page they
	// are the EXIT STATUS section.
	long := c.Long
	exit := ""
	if m := exitParagraph.FindStringSubmatchIndex(long); m != nil {
		exit = long[m[2]:m[3]]
		long = strings.TrimSpace(long[:m[0]] + "\n\n" + long[m[1]:])
	}
	saved := c.Long
	c.Long = long
	defer func() { c.Long = saved }()

	var b bytes.Buffer
	err := doc.GenMan(c, &doc.GenManHeader{
		Section: "8",
		Date:    &date,
		Source:  "luksdock " + version.Get().Module,
		Manual:  "System Administration",
	}, &b)
	if err != nil {
		return nil, err
	}
	page := b.String()
	page = strings.Replace(page, "\n.SH EXAMPLE\n", "\n.SH EXAMPLES\n", 1)
	// The tools luksdock drives, after cobra's list of related commands.
	if i := strings.Index(page, "\n.SH SEE ALSO\n"); i >= 0 {
		end := strings.Index(page[i+len("\n.SH SEE ALSO\n"):], "\n") + i + len("\n.SH SEE ALSO\n")
		page = page[:end] + ", \\fBcryptsetup\\fP(8), \\fBmkfs.ext4\\fP(8), \\fBe2fsck\\fP(8)" + page[end:]
	}
	// cobra/doc sets each option as a paragraph with a tab before its
	// text; a tagged paragraph reads like every other man page.
	page = optionPara.ReplaceAllStringFunc(page, func(m string) string {
		sm := optionPara.FindStringSubmatch(m)
		return ".TP\n" + strings.ReplaceAll(sm[1]+sm[2], "-", `\-`) + "\n" + sm[3] + "\n"
	})

	var extra strings.Builder
	extra.WriteString(".SH EXIT STATUS\n")
	extra.WriteString(exitStatusRoff(exit))
	extra.WriteString(".SH FILES\n")
	for _, f := range files(c) {
		fmt.Fprintf(&extra, ".TP\n\\fI%s\\fR\n%s\n", roffEscape(f[0]), roffEscape(f[1]))
	}
	// man-pages(7) order: ... OPTIONS, EXIT STATUS, FILES, EXAMPLES, SEE ALSO.
	at := len(page)
	for _, sec := range []string{".SH EXAMPLES\n", ".SH SEE ALSO\n"} {
		if i := strings.Index(page, sec); i >= 0 && i < at {
			at = i
		}
	}
	page = page[:at] + extra.String() + page[at:]
	return []byte(page), nil
}

// optionPara is one option as cobra/doc renders it: the flag in bold, its
// default, then a tab and the usage text.
var optionPara = regexp.MustCompile(`(?m)^(?:\.PP\n)?(\\fB-[^\n]*?\\fP)([^\n]*)\n\t([^\n]*)\n`)

// exitLine is one "  N    meaning" line of an exit-code paragraph.
var exitLine = regexp.MustCompile(`^\s{1,4}(\d+)\s+(.*)$`)

// exitItem starts one "N meaning" item of a one-sentence exit status.
var exitItem = regexp.MustCompile(`(?:^|, )(\d+) `)

// exitStatusRoff renders an exit-code paragraph: a table as a
// tagged list, any other text (list's one sentence) as it is.
func exitStatusRoff(text string) string {
	lines := strings.Split(text, "\n")
	var b strings.Builder
	table := false
	for _, l := range lines[1:] {
		if m := exitLine.FindStringSubmatch(l); m != nil {
			fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", m[1], roffEscape(m[2]))
			table = true
		} else if table && strings.TrimSpace(l) != "" {
			fmt.Fprintf(&b, "%s\n", roffEscape(strings.TrimSpace(l)))
		}
	}
	if table {
		return b.String()
	}
	// One sentence: "Exit status: 0 success, 2 usage error, ... 130 interrupted."
	body := strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimPrefix(text, "Exit status:"), "Exit codes:")), " ")
	body = strings.TrimSuffix(body, ".")
	idx := exitItem.FindAllStringSubmatchIndex(body, -1)
	if len(idx) == 0 || idx[0][0] != 0 {
		return roffEscape(body) + "\n"
	}
	for i, m := range idx {
		end := len(body)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", body[m[2]:m[3]], roffEscape(body[m[1]:end]))
	}
	return b.String()
}

// ExitCodes parses an exit-code paragraph into code -> meaning (one line each).
func ExitCodes(text string) map[int]string {
	codes := map[int]string{}
	last := -1
	for _, l := range strings.Split(text, "\n") {
		if m := exitLine.FindStringSubmatch(l); m != nil {
			last, _ = strconv.Atoi(m[1])
			codes[last] = m[2]
		} else if last >= 0 && strings.TrimSpace(l) != "" {
			codes[last] += " " + strings.TrimSpace(l)
		}
	}
	return codes
}

// roffEscape makes text safe as roff input: backslashes, and a leading dot
// or quote that would start a request.
func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
