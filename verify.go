package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/internal/report"
	"luksdock/internal/secret"
	"luksdock/luks"
	"luksdock/pipeline"
)

// verifyOptions are verify's flags.
type verifyOptions struct {
	device, image            string
	passFile, engine, rkFile string
	asJSON                   bool
	maxUnlock                time.Duration
}

func newVerifyCmd() *cobra.Command {
	vo := verifyOptions{engine: string(pipeline.EngineAuto), maxUnlock: luks.DefaultMaxUnlockTime}
	return command("verify", vo.run, vars{"device": &vo.device, "image": &vo.image, "passphrase-file": &vo.passFile,
		"engine": &vo.engine, "recovery-key-file": &vo.rkFile, "json": &vo.asJSON, "max-unlock-time": &vo.maxUnlock})
}

// run is verify: the passphrase (and recovery key) against the disk,
// through pipeline.VerifyWithRecoveryKey.
func (vo *verifyOptions) run(cmd *cobra.Command) (err error) {
	out := cmd.OutOrStdout()
	ran := false
	defer jsonRefusal(vo.asJSON, &ran, out, &err, pipeline.StepVerify)
	t, err := core.LookupTarget(vo.device, vo.image, "", true)
	if err != nil {
		return err
	}
	pass, rk, err := core.ReadVerifySecrets(vo.passFile, vo.rkFile, cmd.InOrStdin())
	if err != nil {
		return err
	}
	defer secret.Free(pass)
	defer secret.Free(rk)
	ran = true
	ctx := pipeline.WithMaxUnlockTime(context.Background(), vo.maxUnlock)
	_, err = pipeline.VerifyWithRecoveryKey(ctx, t, pass, rk, pipeline.Engine(vo.engine), report.Events(out, vo.asJSON, 1))
	return err
}
