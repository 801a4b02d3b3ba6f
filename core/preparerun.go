package core

import (
	"context"
	"os"

	"luksdock/pipeline"
)

// PassphraseWarning is the warning for a weak passphrase of this prepare
// ("" for none): the wizard's estimate, where a weak passphrase needs a
// tick.
func (p *Prepare) PassphraseWarning(passphrase []byte) string {
	return AssessPassphrase(passphrase, StrengthInputs(p.Plan.Opts.Label, p.Plan.Target.Name)).Warning()
}

// PrepareOutcome is how a prepare run that was not refused ended, for its
// report (internal/report.Prepared).
type PrepareOutcome struct {
	// InventoryPath is where the verified disk was recorded, unless
	// RecordErr says why it was not (the disk is ready all the same).
	InventoryPath string
	RecordErr     error
	// Signal is the stop signal taken during the run (nil: none).
	Signal os.Signal
}

// RunJournaled is a prepare run as the command makes it: Run, then the
// journal's record of how it ended. finished says which stop signal came
// during the run (stop.Context's).
func (p *Prepare) RunJournaled(ctx context.Context, confirm string, passphrase []byte, emit func(pipeline.Event), finished func() os.Signal) (PrepareOutcome, error) {
	res, recErr, err := p.Run(ctx, confirm, passphrase, emit)
	sig := finished()
	JournalRun("prepare", p.Plan.Target.Path, res, err, sig)
	return PrepareOutcome{InventoryPath: p.InventoryPath, RecordErr: recErr, Signal: sig}, err
}
