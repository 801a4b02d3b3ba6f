package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
)

// passwdOptions are passwd's flags.
type passwdOptions struct {
	core.PasswdOptions
	secret  core.SecretFiles
	newFile string
	asJSON  bool
}

func newPasswdCmd() *cobra.Command {
	var po passwdOptions
	o := &po.PasswdOptions
	return command("passwd", printResult(&po.asJSON, po.run, func(w, stderr io.Writer, r *core.KeyChange) { report.KeyChange(w, stderr, r, "passphrase") }),
		selectorVars(&o.Selector, true), secretVars(&po.secret), keyslotVars(&o.PBKDF),
		vars{"new-passphrase-file": &po.newFile, "accept-weak": &o.AcceptWeak, "old-slot": &o.OldSlot, "json": &po.asJSON})
}

func (po *passwdOptions) run(cmd *cobra.Command) (*core.KeyChange, error) {
	o := po.PasswdOptions
	if err := o.Selector.Check(); err != nil {
		return nil, err
	}
	if err := core.ReadPasswdSecrets(&o, po.secret, po.newFile, cmd.InOrStdin()); err != nil {
		return nil, err
	}
	defer clear(o.Old)
	defer clear(o.New)
	return core.Passwd(context.Background(), o)
}
