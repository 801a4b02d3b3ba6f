package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"luksdock/core"
	"luksdock/luks"
	"luksdock/pipeline"
)

// targetFlags are --device / --image / --size: prepare and verify take a
// target; the wizard takes --image and --size (it offers the image in its
// disk list).
type targetFlags struct {
	device, image, size string
}

func (tf *targetFlags) add(cmd *cobra.Command, withDevice, withSize bool) {
	if withDevice {
		cmd.Flags().StringVar(&tf.device, "device", "", "the whole disk to use, e.g. /dev/sdi")
	}
	imageHelp := "an image file to use instead of a disk"
	if !withDevice {
		imageHelp += " (the wizard lists it with the disks)"
	}
	cmd.Flags().StringVar(&tf.image, "image", "", imageHelp)
	if withSize {
		cmd.Flags().StringVar(&tf.size, "size", "", "create the image with this size when it does not exist (512M, 64G, 1T)")
	}
}

// size parses --size (0 when not given).
func (tf *targetFlags) sizeBytes() (int64, error) {
	if tf.size == "" {
		return 0, nil
	}
	n, err := pipeline.ParseSize(tf.size)
	if err != nil {
		return 0, usageError{fmt.Errorf("--size: %w", err)}
	}
	return n, nil
}

// addEngineFlag declares --engine (the wizard, prepare and verify take it).
func addEngineFlag(cmd *cobra.Command, engine *string) {
	cmd.Flags().StringVar(engine, "engine", string(pipeline.EngineAuto), "how to open the volume: auto, kernel or userspace")
}

// optionFlags are the choices the wizard and prepare share, declared once:
// --allow-internal, --engine and the PBKDF cost. The wizard hides the
// advanced ones from its --help.
type optionFlags struct {
	allowInternal bool
	engine        string
	pbkdf         luks.PBKDF
}

func (of *optionFlags) add(cmd *cobra.Command, wizard bool) {
	f := cmd.Flags()
	f.BoolVar(&of.allowInternal, "allow-internal", false, "allow a disk that is not on USB (confirm with internal:NAME)")
	addEngineFlag(cmd, &of.engine)
	f.StringVar(&of.pbkdf.Type, "pbkdf", "", "keyslot PBKDF: argon2id, argon2i or pbkdf2 (default: cryptsetup's)")
	f.IntVar(&of.pbkdf.MemoryKiB, "pbkdf-memory", 0, "PBKDF memory cost in KiB (argon2)")
	f.IntVar(&of.pbkdf.Parallel, "pbkdf-parallel", 0, "PBKDF parallel threads (argon2)")
	f.IntVar(&of.pbkdf.ForceIterations, "pbkdf-force-iterations", 0, "PBKDF iterations, skipping cryptsetup's benchmark")
	f.IntVar(&of.pbkdf.IterTimeMS, "iter-time", 0, "PBKDF unlock time in milliseconds for cryptsetup's benchmark")
	if wizard {
		for _, n := range []string{"engine", "pbkdf-parallel", "iter-time"} {
			_ = f.MarkHidden(n)
		}
	}
}

// target looks the target up (core.Lookup). With tidy, dm-crypt mappings
// a killed luksdock left on it are closed first and the target's Notes say
// so (pipeline.Tidied).
func (tf *targetFlags) target(tidy bool) (*pipeline.Target, error) {
	var size int64
	if tf.image != "" && tf.device == "" {
		var err error
		if size, err = tf.sizeBytes(); err != nil {
			return nil, err
		}
	}
	return core.Lookup(tf.device, tf.image, size, tf.size != "", tidy)
}

// addPassphraseFlag declares --passphrase-file (prepare and verify).
func addPassphraseFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVar(path, "passphrase-file", "", "file holding the passphrase on one line, or - for standard input")
}

// readPassphrase reads the passphrase from a file or "-" (standard input).
func readPassphrase(path string, stdin io.Reader) ([]byte, error) {
	if path == "" {
		return nil, usageError{errors.New("--passphrase-file FILE (or - for standard input) is required; passphrases are never taken as arguments")}
	}
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: fmt.Errorf("passphrase file: %w", err)}
		}
		defer f.Close()
		r = f
	}
	p, err := pipeline.ReadPassphrase(r)
	if err != nil {
		return nil, &pipeline.Error{Kind: pipeline.KindRefused, Err: err}
	}
	return p, nil
}
