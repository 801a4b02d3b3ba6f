package ui

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"luksdock/internal/report"
	"luksdock/luks"
	"luksdock/pipeline"
)

// Defect 8: what the wizard prints when it ends is for people.
func TestSummaryForPeople(t *testing.T) {
	r := &pipeline.Result{Target: "/dev/sdz", Partition: "/dev/sdz1", FSLabel: "offsite07", LUKS: luks.Info{Version: 2, Cipher: "aes-xts-plain64", UUID: "0b8e4c8a-1d55-4f6f-a88a-df9b7cc52333", DataSize: 1 << 30}, HeaderBackup: "/root/h.bak"}
	got := Summary([]*pipeline.Result{r}, nil)
	for _, want := range []string{`/dev/sdz is a verified backup disk, labelled "offsite07".`, "UUID 0b8e4c8a-1d55-4f6f-a88a-df9b7cc52333", "Header backup: /root/h.bak", "cryptsetup open /dev/sdz1 offsite07"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "{") {
		t.Errorf("summary looks like JSON:\n%s", got)
	}
	got = Summary(nil, &pipeline.Error{Kind: pipeline.KindInterrupted, Err: errors.New("interrupted before this step")})
	if !regexp.MustCompile(`did not finish: .*interrupted`).MatchString(got) {
		t.Errorf("summary of a stopped run:\n%s", got)
	}
	if got := Summary(nil, nil); got != "No disk was prepared.\n" {
		t.Errorf("summary of nothing: %q", got)
	}
}

// A new user's defect: after the wizard, a stopped erase said "run the
// same command again", but nobody typed a command: what is printed says to
// run luksdock again and choose the disk, and the error is still the
// pipeline's (its exit code comes from it).
func TestAfterWizardSaysHowToContinue(t *testing.T) {
	pe := &pipeline.Error{Kind: pipeline.KindInterrupted, Err: errors.New("interrupted: the erase stopped at 1 GiB of 2 GiB (50%); the volume is closed and the disk released; run the same command again to continue from there (the position is saved in /x)")}
	for _, got := range []string{Summary(nil, pe), AfterWizard(pe).Error()} {
		if strings.Contains(got, "same command") || !strings.Contains(got, "run luksdock again and choose this disk with the same choices to continue from there") {
			t.Errorf("after the wizard: %q", got)
		}
	}
	var back *pipeline.Error
	if !errors.As(AfterWizard(pe), &back) || back.Kind != pe.Kind || back.Err != pe.Err {
		t.Error("AfterWizard hides the pipeline's error")
	}
	// the disk state printed after it ("luksdock: disk state: …") too
	pe.State = "partitioned, LUKS header, partly erased, no filesystem: run the same command again to continue (erase stopped at 1 GiB of 2 GiB, 50%)"
	var out strings.Builder
	report.Failure(&out, AfterWizard(pe))
	if got := out.String(); strings.Contains(got, "same command") || !strings.Contains(got, "disk state: partitioned, LUKS header, partly erased, no filesystem: run luksdock again and choose this disk with the same choices to continue") {
		t.Errorf("after the wizard, the disk state says:\n%s", got)
	}
	if AfterWizard(nil) != nil {
		t.Error("AfterWizard(nil) is not nil")
	}
}
