package core

import (
	"errors"
	"fmt"

	"luksdock/luks"
	"luksdock/pipeline"
)

// ParseImageSize parses --size: an image's size (512M, 64G, 1T); 0 when
// not given. A size that does not parse is a usage error.
func ParseImageSize(size string) (int64, error) {
	if size == "" {
		return 0, nil
	}
	n, err := pipeline.ParseSize(size)
	if err != nil {
		return 0, &UsageError{fmt.Errorf("--size: %w", err)}
	}
	return n, nil
}

// LookupTarget is Lookup with --size as given ("": none).
func LookupTarget(device, image, size string, tidy bool) (*pipeline.Target, error) {
	var n int64
	if image != "" && device == "" {
		var err error
		if n, err = ParseImageSize(size); err != nil {
			return nil, err
		}
	}
	return Lookup(device, image, n, size != "", tidy)
}

// CheckPrepareArgs refuses what is wrong with prepare's flags alone (a
// usage error: exit 2): the target first (CheckTargetChoice), then the
// label and the options that go together, then a missing --confirm (a
// --dry-run needs none).
func CheckPrepareArgs(device, image, size string, o pipeline.Options, confirm string, dryRun bool) error {
	if err := CheckTargetChoice(device, image, size != ""); err != nil {
		return err
	}
	switch {
	case o.Label == "":
		return &UsageError{errors.New("--label is required")}
	case o.SurfaceCheck && !o.Erase:
		return &UsageError{errors.New("--surface-check reads back what --erase writes: give both")}
	case o.Restart && !o.Erase:
		return &UsageError{errors.New("--restart goes with --erase")}
	case confirm == "" && !dryRun:
		return &UsageError{errors.New("--confirm NAME is required: the kernel name of the disk (sdi) or the image's file name")}
	}
	return nil
}

// DockDevice is the disk `luksdock dock` runs on: its argument (the docked
// LUKS device, as the luksdock-dock@ service names it) or --image, exactly
// one.
func DockDevice(args []string, image string) (luks.Device, error) {
	switch {
	case len(args) == 1 && image != "":
		return luks.Device{}, &UsageError{errors.New("give DEVICE or --image, not both")}
	case len(args) == 1:
		return luks.Device{Path: args[0]}, nil
	case image != "":
		ld, err := FindLUKS(Selector{Image: image})
		if err != nil {
			return luks.Device{}, err
		}
		return ld.LUKS, nil
	}
	return luks.Device{}, &UsageError{errors.New("give the docked LUKS device (/dev/sdb1) or --image PATH")}
}

// CheckRetireArgs refuses retire's flags given wrongly (a usage error):
// the disk by --device or --image, exactly one, and --confirm.
func CheckRetireArgs(o RetireOptions) error {
	if (o.Device == "") == (o.Image == "") {
		return &UsageError{errors.New("give --device /dev/sdX or --image PATH")}
	}
	if o.Confirm == "" {
		return &UsageError{errors.New("--confirm NAME is required: the kernel name of the disk (sdi) or the image's file name")}
	}
	return nil
}

// CheckRecoveryKeyArgs refuses recovery-key's flags given wrongly (a usage
// error): --replace (its only action), the disk (Selector.Check), the new
// key's file.
func CheckRecoveryKeyArgs(replace bool, o RecoveryKeyOptions) error {
	if !replace {
		return &UsageError{errors.New("--replace is required (recovery-key --replace is the only action)")}
	}
	if err := o.Selector.Check(); err != nil {
		return err
	}
	if o.File == "" {
		return &UsageError{errors.New("--recovery-key NEWFILE is required: where to write the new key")}
	}
	return nil
}
