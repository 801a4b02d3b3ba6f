// Package help holds the long reference text of each command's --help and
// man page: the prose (DESCRIPTION), one file per command (<command>.txt,
// a subcommand joined with a dash: host-enroll.txt), and its exit codes
// (exit-<command>.txt, the paragraph internal/manpage turns into EXIT
// STATUS). The command's file in package main keeps its short help,
// Example and FILES.
package help

import (
	"embed"
	"fmt"
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
