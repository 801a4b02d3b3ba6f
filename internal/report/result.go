package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"luksdock/pipeline"
)

// JSONResult prints v as one JSON line (--json), or, for a failure, a
// "failed" event as prepare and verify print it.
func JSONResult(w io.Writer, step pipeline.StepID, v any, err error) {
	if err != nil {
		JSONRefusal(w, err, step)
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

// JSONIndented prints v as indented JSON (list, inventory, host status).
func JSONIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Warnf prints a warning on w (standard error).
func Warnf(w io.Writer, format string, a ...any) {
	fmt.Fprintf(w, "luksdock: warning: "+format+"\n", a...)
}

// dash is a table cell for an empty value.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Failure is how a command that failed says so on stderr: the error, and
// the disk's state when the pipeline reported it.
func Failure(stderr io.Writer, err error) {
	fmt.Fprintf(stderr, "luksdock: %v\n", err)
	var pe *pipeline.Error
	if errors.As(err, &pe) && pe.State != "" {
		fmt.Fprintf(stderr, "luksdock: disk state: %s\n", pe.State)
	}
}
