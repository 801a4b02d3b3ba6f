package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/report"
	"luksdock/pipeline"
)

// TestTextProgress: without a terminal, prepare prints a progress line at
// each new tenth (no carriage returns), with percent, bytes, rate and ETA,
// and the bad-sector count when there is one.
func TestTextProgress(t *testing.T) {
	var b bytes.Buffer
	emit := report.TextEvents(&b, 3)
	emit(pipeline.Event{Kind: pipeline.EventStart, Step: pipeline.StepSurfaceCheck, Message: "Read the whole disk back"})
	const total = 1000 << 20
	for done := int64(0); done <= total; done += 25 << 20 {
		p := &pipeline.Advance{Done: done, Total: total, Fraction: float64(done) / total, Rate: 150e6, ETA: float64(total-done) / 150e6}
		if done > total/2 {
			p.Bad = 3
		}
		emit(pipeline.Event{Kind: pipeline.EventProgress, Step: pipeline.StepSurfaceCheck, Progress: p})
	}
	out := b.String()
	if strings.Contains(out, "\r") {
		t.Errorf("carriage returns without a terminal:\n%q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 12 { // the start line, 0%, 10%, ..., 100%
		t.Errorf("%d lines, want 12:\n%s", len(lines), out)
	}
	for _, want := range []string{"  0.0%  0 B of 1000.0 MiB, 150 MB/s, 7s left", " 50.0%  500.0 MiB of 1000.0 MiB, 150 MB/s, 3s left", "100.0%  1000.0 MiB of 1000.0 MiB, 150 MB/s, 3 BAD sectors"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestTextProgressTerminal: on a terminal (a pseudo-terminal here) the
// progress is one line rewritten in place with carriage returns, ended by
// a newline before the next step's output.
func TestTextProgressTerminal(t *testing.T) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("SKIPPED: no pseudo-terminals here: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()
	// raw output: no \n -> \r\n translation
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	tio.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS, tio); err != nil {
		t.Fatal(err)
	}
	emit := report.TextEvents(slave, 2)
	for _, done := range []int64{0, 50, 100} {
		emit(pipeline.Event{Kind: pipeline.EventProgress, Step: pipeline.StepErase, Progress: &pipeline.Advance{Done: done << 20, Total: 100 << 20, Fraction: float64(done) / 100}})
	}
	emit(pipeline.Event{Kind: pipeline.EventDone, Step: pipeline.StepErase, Message: "wrote"})
	buf := make([]byte, 4096)
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := ""
	for !strings.Contains(got, "wrote") {
		k, err := master.Read(buf)
		if err != nil {
			t.Fatalf("reading the terminal: %v (so far %q)", err, got)
		}
		got += string(buf[:k])
	}
	if strings.Count(got, "\r") != 3 || strings.Count(got, "\n") != 2 || !strings.Contains(got, "\r      100.0%  100.0 MiB of 100.0 MiB") || !strings.Contains(got, " \n      done in") {
		t.Errorf("terminal output %q: want three in-place updates, then a newline before the done line", got)
	}
}
