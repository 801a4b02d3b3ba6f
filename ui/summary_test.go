package ui

import (
	"errors"
	"regexp"
	"strings"
	"testing"

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
