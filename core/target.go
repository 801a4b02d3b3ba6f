package core

import (
	"errors"

	"luksdock/disk"
	"luksdock/pipeline"
)

// ErrTargetChoice is a target given wrongly (none, or two): a usage error.
type ErrTargetChoice struct{ Err error }

func (e ErrTargetChoice) Error() string { return e.Err.Error() }

// System is the running machine's sysfs and /proc, read by discovery.
var System = disk.Host

// DeviceTarget looks a disk up by its path (/dev/sdi). With tidy, dm-crypt
// mappings a killed luksdock left on it are closed first and the target's
// Notes say so (pipeline.Tidied).
func DeviceTarget(path string, tidy bool) (*pipeline.Target, error) {
	lookup := func() (*pipeline.Target, error) { return pipeline.DeviceTarget(System, path) }
	if !tidy {
		return lookup()
	}
	return pipeline.Tidied(path, false, lookup)
}

// ImageTarget looks an image file up (size: create it with this size when
// it does not exist; 0 otherwise). With tidy, what a killed luksdock left on
// it is cleaned up first.
func ImageTarget(path string, size int64, tidy bool) (*pipeline.Target, error) {
	lookup := func() (*pipeline.Target, error) { return pipeline.ImageTarget(path, size) }
	if !tidy {
		return lookup()
	}
	return pipeline.Tidied(path, true, lookup)
}

// Lookup is the target of a command: a device or an image, exactly one.
// size goes with an image only.
func Lookup(device, image string, size int64, sizeGiven, tidy bool) (*pipeline.Target, error) {
	if err := CheckTargetChoice(device, image, sizeGiven); err != nil {
		return nil, err
	}
	if device != "" {
		return DeviceTarget(device, tidy)
	}
	return ImageTarget(image, size, tidy)
}

// CheckTargetChoice refuses a target given wrongly (ErrTargetChoice): none,
// both a device and an image, or a size for a device (CheckSizeChoice).
func CheckTargetChoice(device, image string, sizeGiven bool) error {
	switch {
	case device != "" && image != "":
		return ErrTargetChoice{Err: errors.New("give either --device or --image, not both")}
	case device == "" && image == "":
		return ErrTargetChoice{Err: errors.New("give --device /dev/sdX or --image PATH")}
	}
	return CheckSizeChoice(image, sizeGiven)
}

// CheckSizeChoice refuses a size (--size) without an image (ErrTargetChoice):
// it is the size of the image file luksdock creates, for prepare
// (CheckTargetChoice) and the wizard (ui.Run) alike.
func CheckSizeChoice(image string, sizeGiven bool) error {
	if sizeGiven && image == "" {
		return ErrTargetChoice{Err: errors.New("--size goes with --image only")}
	}
	return nil
}
