package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// addWizardFlags registers the wizard's flags on the root command.
func addWizardFlags(*cobra.Command) {}

// runWizard starts the interactive wizard.
func runWizard(*cobra.Command) error {
	return usageError{errors.New("the wizard is not available in this build; use 'luksdock prepare' (see --help)")}
}
