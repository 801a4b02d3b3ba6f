package main

import (
	"context"
	"io"
	"os"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
	"luksdock/pipeline"
)

// openOptions are open's flags.
type openOptions struct {
	core.OpenOptions
	secret core.SecretFiles
	engine string
	asJSON bool
}

func newOpenCmd() *cobra.Command {
	oo := openOptions{engine: string(pipeline.EngineAuto)}
	o := &oo.OpenOptions
	return command("open", printResult(&oo.asJSON, oo.run, func(w, _ io.Writer, r *core.Opened) { report.Opened(w, r) }), selectorVars(&o.Selector, true), secretVars(&oo.secret),
		vars{"mountpoint": &o.Mountpoint, "read-only": &o.ReadOnly, "engine": &oo.engine, "json": &oo.asJSON})
}

func (oo *openOptions) run(cmd *cobra.Command) (_ *core.Opened, err error) {
	o := oo.OpenOptions
	if err := o.Selector.Check(); err != nil {
		return nil, err
	}
	if o.Secret, o.SecretIsRecoveryKey, err = oo.secret.Read(cmd.InOrStdin()); err != nil {
		return nil, err
	}
	defer clear(o.Secret)
	if o.User, err = core.MountUser(os.Getenv); err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
	}
	o.Engine = pipeline.Engine(oo.engine)
	return core.Open(context.Background(), o)
}
