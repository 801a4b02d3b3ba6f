package ui

import "strings"

// The pipeline speaks to the command line: its refusals and advice name
// flags (--owner, --erase). The wizard's user never saw those flags; each
// is put in the words of the screen where the choice is made.
var wizardWords = strings.NewReplacer(
	// Options: Read it all back and Overwrite first
	"--surface-check reads back what --erase writes: give both", "Read it all back reads back what Overwrite first writes: turn Overwrite first on too, or Read it all back off",
	// Options: Owner
	"give --owner for someone else", "type a user under Owner for someone else",
	"; give --owner", "; type the owner under Owner",
	"--owner ", "Owner ",
	// Options: Set and LUKS version
	"--set is kept in the LUKS2 subsystem field; LUKS1 has none", "Set is kept in the LUKS2 subsystem field and LUKS1 has none: choose LUKS2, or clear Set",
	// Options: Partition table
	"--table mbr", "MBR", "the default --table gpt", "GPT (the default)", "--table none", "none",
	// Plan: continuing an interrupted erase (r starts over there)
	"pass --restart to start over", "press r on the Plan to start over",
	"; --restart starts over", "; r on the Plan starts over",
	"starting over (--restart)", "starting over",
	// Unhealthy: "yes" was typed
	"used because of --accept-unhealthy", "used because you typed yes",
	// Stopped: nobody typed a command to run again
	"run the same command again to continue from there", "prepare this disk again with the same choices to continue from there",
	"run the same command again to continue", "prepare this disk again with the same choices to continue",
	"run the same command again", "prepare this disk again with the same choices",
)

// screenWords is the pipeline's message s in the wizard's words.
func screenWords(s string) string { return wizardWords.Replace(s) }
