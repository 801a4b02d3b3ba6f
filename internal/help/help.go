// Package help holds each command's static text: what its --help and man
// page say, so that a command's Go file says only which variable each flag
// sets and what it runs. Per command (a subcommand joined with a dash:
// host-enroll), all embedded:
//
//   - NAME.txt, the long help (DESCRIPTION), exactly as --help prints it;
//   - exit-NAME.txt, its exit codes (the paragraph internal/manpage turns
//     into EXIT STATUS);
//   - cmd-NAME.txt, the rest: a head of "key: value" lines (use, short;
//     exit: the exit-*.txt files appended to the long help, in order;
//     example or files: another command whose section is used instead of
//     one of its own), then "-- example --", "-- files --" (a path, then
//     on the next line, after a tab, what luksdock does with it) and
//     "-- flags --" (a flag's name, a tab, its help) sections.
//
// flags.txt is the help of the flags several commands share. Command makes
// the cobra command from these texts, Bind its flags. See "Add a command"
// in docs/contributing.md.
package help

import (
	"embed"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"luksdock/internal/manpage"
)

//go:embed *.txt
var texts embed.FS

// Text is the long help of command name, exactly as written in name.txt. A
// missing file is a programming error caught by every test that builds the
// command tree.
func Text(name string) string {
	b, err := texts.ReadFile(name + ".txt")
	if err != nil {
		panic(fmt.Sprintf("help: no text for %q: %v", name, err))
	}
	return string(b)
}

// ExitCodes is the "Exit codes:" paragraph of command name (exit-name.txt),
// appended to its long help.
func ExitCodes(name string) string { return Text("exit-" + name) }

// Command is command name's skeleton: its Use, Short, Long (name.txt and
// the exit codes), Example and man-page FILES, from cmd-name.txt. The
// caller adds its flags, Args and RunE.
func Command(name string) *cobra.Command {
	head, sections := parse(name)
	long := Text(name)
	for _, e := range strings.Fields(head["exit"]) {
		long += ExitCodes(e)
	}
	cmd := &cobra.Command{Use: head["use"], Short: head["short"], Long: long, Example: section(name, head, sections, "example"),
		Annotations: map[string]string{nameKey: name}}
	var files [][2]string
	for _, l := range strings.Split(section(name, head, sections, "files"), "\n") {
		if what, ok := strings.CutPrefix(l, "\t"); ok && len(files) > 0 {
			files[len(files)-1][1] = what
		} else if l != "" {
			files = append(files, [2]string{l, ""})
		}
	}
	if files != nil {
		manpage.SetFiles(cmd, files)
	}
	return cmd
}

// sectionOf is section which of cmd-name.txt ("" for no name).
func sectionOf(name, which string) string {
	if name == "" {
		return ""
	}
	head, sections := parse(name)
	return section(name, head, sections, which)
}

// section is the section of cmd-name.txt, or, when its head names another
// command for it ("files: host"), that command's.
func section(name string, head, sections map[string]string, which string) string {
	if other := head[which]; other != "" {
		_, s := parse(other)
		return s[which]
	}
	return sections[which]
}

// parse splits cmd-name.txt into its "key: value" head and its "-- name --"
// sections (without the newline that ends each).
func parse(name string) (head, sections map[string]string) {
	text := Text("cmd-" + name)
	head, sections = map[string]string{}, map[string]string{}
	cur := ""
	for _, l := range strings.SplitAfter(text, "\n") {
		if s, ok := strings.CutPrefix(l, "-- "); ok && strings.HasSuffix(s, " --\n") {
			cur = strings.TrimSuffix(s, " --\n")
			sections[cur] = ""
		} else if cur != "" {
			sections[cur] += l
		} else if k, v, ok := strings.Cut(strings.TrimSuffix(l, "\n"), ": "); ok {
			head[k] = v
		}
	}
	for k, v := range sections {
		sections[k] = strings.TrimSuffix(v, "\n")
	}
	return head, sections
}
