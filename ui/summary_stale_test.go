package ui

import (
	"errors"
	"strings"
	"testing"

	"luksdock/core"
	"luksdock/pipeline"
)

// Found trying the wizard: a disk prepared, then prepared again in the same
// session (Prepare again, with Overwrite first) and stopped by a hang-up
// halfway through the erase; the summary printed on exit still said
// "big.img is a verified backup disk" (the first run's result, its LUKS
// UUID gone) above "The last preparation did not finish". A run that
// wrote to the disk, a new verified result of it, or a retire drops what
// an earlier run verified; a run refused before writing keeps it.
func TestSummaryDropsResultOfDiskPreparedAgain(t *testing.T) {
	const img = "/tmp/x/big.img"
	first := &pipeline.Result{Target: img, FSLabel: "backups02"}
	other := &pipeline.Result{Target: "/tmp/x/other.img", FSLabel: "backups03"}
	newShared := func() *shared {
		c := &shared{target: &pipeline.Target{Path: img}, runTarget: img}
		c.settle(first, nil)
		c.settle(other, nil)
		return c
	}
	verified := func(c *shared) bool {
		return strings.Contains(Summary(c.results, c.runErr), img+" is a verified backup disk")
	}

	c := newShared()
	c.settle(nil, &pipeline.Error{Kind: pipeline.KindInterrupted, State: "partitioned, LUKS header, partly erased, no filesystem: run the same command again to continue", Err: errors.New("interrupted: the erase stopped")})
	if got := Summary(c.results, c.runErr); verified(c) || !strings.Contains(got, "other.img is a verified backup disk") {
		t.Errorf("after a second run on %s stopped halfway, the summary says:\n%s", img, got)
	}

	c = newShared()
	c.settle(nil, &pipeline.Error{Kind: pipeline.KindRefused, State: "unchanged: nothing was written", Err: errors.New("refused")})
	if !verified(c) {
		t.Errorf("a run refused before writing dropped the earlier result:\n%s", Summary(c.results, c.runErr))
	}

	c = newShared()
	second := &pipeline.Result{Target: img, FSLabel: "backups01"}
	c.settle(second, nil)
	if got := Summary(c.results, nil); strings.Count(got, img+" is a verified") != 1 || strings.Contains(got, "backups02") {
		t.Errorf("a disk prepared twice is listed with its first result too:\n%s", got)
	}

	c = newShared()
	s := newRetire(c).(*retireScreen)
	done := s.start()
	s.Update(done(&core.Retired{Target: img}, nil))
	if verified(c) {
		t.Errorf("a retired disk is still called verified:\n%s", Summary(c.results, nil))
	}
}
