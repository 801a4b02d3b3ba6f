package ui

import (
	"errors"
	"strings"

	"luksdock/pipeline"
)

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
	// Progress, Stopped: nobody typed a command to run again; the way on
	// is to choose the disk again (its interrupted erase is proposed)
	"run the same command again to continue from there", "choose this disk again with the same choices to continue from there",
	"run the same command again to continue", "choose this disk again with the same choices to continue",
	"run the same command again", "choose this disk again with the same choices",
	"Ctrl+C stops it and the same command continues it", "a stop saves its position, and choosing this disk again with the same choices continues it",
)

// screenWords is the pipeline's message s in the wizard's words.
func screenWords(s string) string { return wizardWords.Replace(s) }

// afterWords are the pipeline's words for what is printed once the wizard
// has ended: the way on is to start the wizard again.
var afterWords = strings.NewReplacer(
	"run the same command again", "run luksdock again and choose this disk with the same choices",
)

// AfterWizard is err (a run the wizard ended with) as luksdock prints it
// once the wizard has ended: its advice says to start the wizard again and
// choose the disk, not to "run the same command" (nobody typed one). It
// wraps err: errors.Is and errors.As see the original. nil stays nil.
func AfterWizard(err error) error {
	if err == nil {
		return nil
	}
	return afterErr{err}
}

type afterErr struct{ err error }

func (e afterErr) Error() string { return afterWords.Replace(e.err.Error()) }
func (e afterErr) Unwrap() error { return e.err }

// As gives the pipeline's error with the disk's state in the same words
// (luksdock prints "disk state: …" from it): a copy, Kind and Err as they
// were, so the exit code is the pipeline's.
func (e afterErr) As(target any) bool {
	pp, ok := target.(**pipeline.Error)
	if !ok {
		return false
	}
	var pe *pipeline.Error
	if !errors.As(e.err, &pe) {
		return false
	}
	c := *pe
	c.State = afterWords.Replace(pe.State)
	*pp = &c
	return true
}
