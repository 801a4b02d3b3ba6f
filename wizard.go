package main

import (
	"github.com/spf13/cobra"

	"luksdock/ui"
)

// wizardOptions are the root command's flags, used when it starts the
// wizard: --image/--size and the options it shares with prepare, declared
// once (targetFlags, optionFlags).
type wizardOptions struct {
	target targetFlags
	opts   optionFlags
	json   bool
}

func (wo *wizardOptions) vars() []vars {
	return []vars{wo.target.vars(false), wo.opts.vars(), {"json": &wo.json}}
}

// run starts the interactive wizard (ui.Run): it draws on the terminal and
// prints its summary (or JSON lines) on standard output when it ends.
func (wo *wizardOptions) run(cmd *cobra.Command) error {
	return ui.Run(ui.RunOptions{AllowInternal: wo.opts.allowInternal, Engine: wo.opts.engine, PBKDF: wo.opts.pbkdf,
		Image: wo.target.image, Size: wo.target.size, JSON: wo.json, Out: cmd.OutOrStdout(), Err: cmd.ErrOrStderr()})
}
