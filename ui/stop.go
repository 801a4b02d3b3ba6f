package ui

import (
	"strings"

	"luksdock/pipeline"
)

// What the stop dialog and the Stopped screen say comes from the
// pipeline's facts: whether the step running stops part way
// (pipeline.StopsPartWay) or runs to its end, and the state it leaves the
// disk in (pipeline.StateAfter, pipeline.StateFailedIn), in the wizard's
// words.

// inWizard puts the pipeline's command-line advice in the wizard's words
// (screenWords): here nobody typed a command to run again.
func inWizard(s string) string { return screenWords(s) }

// runningStep is the step in progress (ok false: between steps).
func (c *shared) runningStep() (sv stepView, last, ok bool) {
	steps := c.steps()
	for i, st := range steps {
		if st.state == "running" {
			return st, i == len(steps)-1, true
		}
	}
	return stepView{}, false, false
}

// stopQuestion is the stop dialog: what stopping now does, and the state
// the disk is left in.
func (c *shared) stopQuestion(quit bool) string {
	q := "Stop? "
	if quit {
		q = "Stop and quit? "
	}
	return q + c.stopWords() + " y = stop, n = go on"
}

// stopWords says what a stop asked for now does.
func (c *shared) stopWords() string {
	sv, last, ok := c.runningStep()
	switch {
	case !ok:
		return "No further step starts; the volume is closed and the disk released."
	case pipeline.StopsPartWay(sv.step.ID):
		return sv.step.Title + " stops where it is within moments and its position is saved; the volume is closed and the disk released. The disk is then: " +
			inWizard(pipeline.StateFailedIn(sv.step.ID, "")) + "."
	case last:
		return sv.step.Title + " is the last step: it runs to its end either way (it cannot be cut off safely). The disk is then: " + pipeline.StateAfter(sv.step.ID) + "."
	}
	return sv.step.Title + " runs to its end first (it cannot be cut off safely), then no further step starts; the volume is closed and the disk released. The disk is then: " +
		inWizard(pipeline.StateAfter(sv.step.ID)) + "."
}

// stoppingWords is what the Progress screen says once the stop was asked
// for during step title.
func (c *shared) stoppingWords(title string) string {
	sv, _, ok := c.runningStep()
	if ok && sv.step.Title == title && pipeline.StopsPartWay(sv.step.ID) {
		return "Stop asked for during " + title + ": it stops where it is and saves its position; then the volume is closed and the disk released."
	}
	return "Stop asked for during " + title + ": it runs to its end, then no further step starts; then the volume is closed and the disk released."
}

// titles are the steps' titles, for people (not their ids).
func titles(steps []pipeline.Step) string {
	var t []string
	for _, s := range steps {
		t = append(t, s.Title)
	}
	return strings.Join(t, "; ")
}
