package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
)

// recoveryKeyOptions are recovery-key's flags.
type recoveryKeyOptions struct {
	core.RecoveryKeyOptions
	passFile        string
	replace, asJSON bool
}

func newRecoveryKeyCmd() *cobra.Command {
	var ro recoveryKeyOptions
	o := &ro.RecoveryKeyOptions
	return command("recovery-key", printResult(&ro.asJSON, ro.run, func(w, stderr io.Writer, r *core.KeyChange) { report.KeyChange(w, stderr, r, "recovery key") }),
		selectorVars(&o.Selector, true), keyslotVars(&o.PBKDF), vars{"replace": &ro.replace,
			"passphrase-file": &ro.passFile, "recovery-key": &o.File, "old-slot": &o.OldSlot, "json": &ro.asJSON})
}

func (ro *recoveryKeyOptions) run(cmd *cobra.Command) (_ *core.KeyChange, err error) {
	o := ro.RecoveryKeyOptions
	if err := core.CheckRecoveryKeyArgs(ro.replace, o); err != nil {
		return nil, err
	}
	if o.Passphrase, err = core.ReadPassphrase(ro.passFile, cmd.InOrStdin()); err != nil {
		return nil, err
	}
	defer clear(o.Passphrase)
	return core.ReplaceRecoveryKey(context.Background(), o)
}
