// Package help holds the long reference text of each command's --help and
// man page (DESCRIPTION), one file per command (<command>.txt, a subcommand
// joined with a dash: host-enroll.txt). The command's file in package main
// keeps its short help, Example, FILES and exit codes; this is the prose.
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
