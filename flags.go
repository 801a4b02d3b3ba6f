package main

// The flags several commands share, declared once (their help is in
// internal/help/flags.txt, or the command's own text where it differs).

import (
	"io"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/help"
	"luksdock/internal/report"
	"luksdock/luks"
	"luksdock/pipeline"
)

// vars name the variable each flag of a command sets (help.Bind).
type vars = help.Vars

// targetFlags are --device / --image / --size: prepare takes a target; the
// wizard takes --image and --size (it offers the image in its disk list).
type targetFlags struct {
	device, image, size string
}

func (tf *targetFlags) vars(withDevice bool) vars {
	v := vars{"image": &tf.image, "size": &tf.size}
	if withDevice {
		v["device"] = &tf.device
	}
	return v
}

// optionFlags are the choices the wizard and prepare share: --allow-internal,
// --engine and the PBKDF cost (the wizard hides the advanced ones).
type optionFlags struct {
	allowInternal bool
	engine        string
	pbkdf         luks.PBKDF
}

func (of *optionFlags) vars() vars {
	of.engine = string(pipeline.EngineAuto)
	v := keyslotVars(&of.pbkdf)
	v["allow-internal"], v["engine"], v["pbkdf-parallel"] = &of.allowInternal, &of.engine, &of.pbkdf.Parallel
	return v
}

// keyslotVars are the PBKDF cost flags of a new keyslot.
func keyslotVars(p *luks.PBKDF) vars {
	return vars{"pbkdf": &p.Type, "pbkdf-memory": &p.MemoryKiB, "pbkdf-force-iterations": &p.ForceIterations, "iter-time": &p.IterTimeMS}
}

// selectorVars are --device, --image and (withLabel) --label.
func selectorVars(s *core.Selector, withLabel bool) vars {
	v := vars{"device": &s.Device, "image": &s.Image}
	if withLabel {
		v["label"] = &s.Label
	}
	return v
}

// secretVars are --passphrase-file and --recovery-key-file: exactly one
// names the secret that unlocks the disk (core.SecretFiles).
func secretVars(sf *core.SecretFiles) vars {
	return vars{"passphrase-file": &sf.Passphrase, "recovery-key-file": &sf.RecoveryKey}
}

// printResult is the run of a command that has one result: run's result
// printed with --json (*asJSON) as one JSON line (a failure as a "failed"
// event of the command's step, as prepare prints it), else, when it
// succeeded, as text.
func printResult[T any](asJSON *bool, run func(*cobra.Command) (*T, error), text func(out, stderr io.Writer, res *T)) func(*cobra.Command) error {
	return func(cmd *cobra.Command) error {
		res, err := run(cmd)
		if *asJSON {
			report.JSONResult(cmd.OutOrStdout(), pipeline.StepID(cmd.Name()), res, err)
		} else if err == nil {
			text(cmd.OutOrStdout(), cmd.ErrOrStderr(), res)
		}
		return err
	}
}

// jsonRefusal, deferred by a command that prints JSON events (prepare,
// verify), prints *err as a "failed" event of step when the command
// returned it before its run started (!*ran): a refusal.
func jsonRefusal(asJSON bool, ran *bool, out io.Writer, err *error, step pipeline.StepID) {
	if asJSON && !*ran {
		report.JSONRefusal(out, *err, step)
	}
}
