package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/health"
	"luksdock/luks"
)

// MinSize is the smallest disk luksdock prepares.
const MinSize = 64 << 20

// Target is the disk or image file a plan will destroy, as it was found
// before anything is written.
type Target struct {
	Image bool   // an image file, not a block device
	Path  string // /dev/sdi, or the image's path
	Name  string // what the confirmation must name: "sdi", or "disk.img"
	Size  int64  // bytes; for an image still to be created, the size to create
	// Create is set when the image does not exist yet and will be created
	// (sparse) after confirmation.
	Create bool

	// Notes say what luksdock tidied up while looking the target up (a
	// dm-crypt mapping a killed luksdock left); runs and verify emit them
	// as info events.
	Notes []string

	Disk     *disk.Disk     // block devices: what discovery knows
	Verdict  disk.Verdict   // block devices: the safety policy's verdict
	Identity disk.Identity  // block devices: captured at selection
	Content  disk.Signature // what is on it now
	// Health is the drive's SMART health (block devices with a drive
	// behind them; nil for images and loop devices).
	Health *health.Report
	Parts  []disk.Partition
	sys    disk.Sys
	fileID fileID // images: which file
}

type fileID struct{ dev, ino uint64 }

// ConfirmWord is what the user must type to let the plan write: the kernel
// name of a USB disk or the file name of an image; "internal:NAME" for a disk
// not on USB (allowed only with --allow-internal), a louder confirmation.
func (t *Target) ConfirmWord() string {
	if !t.Image && t.Verdict.Internal {
		return "internal:" + t.Name
	}
	return t.Name
}

// Destroys lists, for the plan screen, exactly what the run will destroy.
func (t *Target) Destroys() []string {
	var out []string
	if !t.Content.Empty() && t.Content.Table == "" {
		out = append(out, fmt.Sprintf("%s: %s, %s", t.Name, t.Content, disk.SizeString(t.Size)))
	}
	for _, p := range t.Parts {
		out = append(out, fmt.Sprintf("%s: %s, %s", t.PartName(p), p.Content, disk.SizeString(p.Size)))
	}
	if t.Content.Table != "" {
		out = append(out, fmt.Sprintf("%s: %s", t.Name, t.Content.TableString()))
	}
	if len(out) == 0 {
		out = append(out, fmt.Sprintf("%s: no recognised content (%s)", t.Name, disk.SizeString(t.Size)))
	}
	return out
}

// PartName names one of the target's partitions for people: its kernel
// name ("sdi1"), or for an image file, which has no partition nodes,
// "disk.img partition 1".
func (t *Target) PartName(p disk.Partition) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprintf("%s partition %d", t.Name, p.Number)
}

// DeviceTarget looks up a block device for preparation: it must be a whole
// disk. Policy refusals are recorded in Verdict and enforced by NewPlan.
func DeviceTarget(sys disk.Sys, path string) (*Target, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, refused("%s: %v", path, errors.Unwrap(err))
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return nil, refused("%s is not a block device (use --image for an image file)", path)
	}
	name, err := sys.NameOf(path)
	if err != nil {
		return nil, refused("%s: %v", path, err)
	}
	d, err := sys.Disk(name)
	if err != nil {
		if errors.Is(err, disk.ErrPartition) {
			return nil, refused("%s: %v; luksdock prepares whole disks", path, err)
		}
		return nil, refused("%s: %v", path, err)
	}
	id, err := sys.Identity(name)
	if err != nil {
		return nil, refused("%s: reading its identity: %v", path, err)
	}
	return &Target{
		Path: "/dev/" + name, Name: name, Size: d.Size, Disk: &d,
		Verdict: disk.Assess(d), Identity: id, Content: d.Content, Parts: d.Partitions, sys: sys,
		Health: ReadHealth(d),
	}, nil
}

// ReadHealth reads a disk's SMART health for DeviceTarget (read-only
// smartctl commands; see package health).
var ReadHealth = func(d disk.Disk) *health.Report { return health.ForDisk(context.Background(), d) }

// ImageTarget looks up an image file. When it does not exist and size > 0
// it will be created, sparse, after confirmation.
func ImageTarget(path string, size int64) (*Target, error) {
	path = filepath.Clean(path)
	t := &Target{Image: true, Path: path, Name: filepath.Base(path)}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if size <= 0 {
			return nil, refused("%s does not exist; give --size to create it", path)
		}
		if _, err := os.Stat(filepath.Dir(path)); err != nil {
			return nil, refused("cannot create %s: %v", path, errors.Unwrap(err))
		}
		t.Create, t.Size = true, size
		return t, nil
	case err != nil:
		return nil, refused("%s: %v", path, errors.Unwrap(err))
	}
	if st.Mode()&os.ModeSymlink != 0 {
		real, err := os.Stat(path)
		if err != nil {
			return nil, refused("%s is a dangling symlink", path)
		}
		if real.Mode()&os.ModeDevice != 0 {
			return nil, refused("%s is a symlink to a device; use --device for block devices", path)
		}
		st = real
	}
	switch {
	case st.IsDir():
		return nil, refused("%s is a directory, not an image file", path)
	case !st.Mode().IsRegular():
		return nil, refused("%s is not a regular file (%s)", path, st.Mode().Type())
	}
	sys := st.Sys().(*syscall.Stat_t)
	t.fileID = fileID{uint64(sys.Dev), sys.Ino}
	t.Size = st.Size()
	if f, err := os.Open(path); err == nil {
		t.Content, t.Parts, _ = disk.Probe(f, t.Size)
		f.Close()
	}
	return t, nil
}

// logicalSector is the target's logical sector size: the disk's own, 512
// for image files.
func (t *Target) logicalSector() int {
	if t.Disk != nil && t.Disk.LogicalSector > 0 {
		return t.Disk.LogicalSector
	}
	return 512
}

// loopUsing returns the loop device whose backing file is id, if any.
func loopUsing(id fileID) string { return disk.Host.LoopBackedBy(id.dev, id.ino) }

// HumanSize is disk.SizeString, which the rest of luksdock calls; the
// wizard's screens still use this name (to move with their next change).
func HumanSize(n int64) string { return disk.SizeString(n) }

// ParseSize reads sizes like 512M, 64G, 1T, 1.5T (binary units), or plain
// bytes. It refuses 0, negatives, garbage and anything above 1 EiB.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty size")
	}
	mult := int64(1)
	num := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(s), "B"), "I")
	if num != "" {
		switch num[len(num)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		case 'P':
			mult = 1 << 50
		case 'E':
			mult = 1 << 60
		}
		if mult > 1 {
			num = num[:len(num)-1]
		}
	}
	var whole, frac int64
	var fracDiv int64 = 1
	seenDot, digits := false, 0
	for _, c := range num {
		switch {
		case c == '.' && !seenDot:
			seenDot = true
		case c >= '0' && c <= '9':
			digits++
			if digits > 19 {
				return 0, fmt.Errorf("size %q is too large", s)
			}
			if seenDot {
				if fracDiv < 1e9 {
					frac = frac*10 + int64(c-'0')
					fracDiv *= 10
				}
			} else {
				whole = whole*10 + int64(c-'0')
			}
		default:
			return 0, fmt.Errorf("size %q is not a number with an optional K, M, G, T, P or E suffix", s)
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("size %q has no digits", s)
	}
	const limit = 1 << 60
	if whole > limit/mult {
		return 0, fmt.Errorf("size %q is too large (limit 1 EiB)", s)
	}
	n := whole*mult + int64(float64(frac)/float64(fracDiv)*float64(mult))
	if n > limit {
		return 0, fmt.Errorf("size %q is too large (limit 1 EiB)", s)
	}
	if n <= 0 {
		return 0, fmt.Errorf("size %q must be greater than zero", s)
	}
	return n, nil
}

// Tidied closes the dm-crypt mappings that a killed luksdock left on the
// disk (or, with image, the image file) at path, which would otherwise make
// the disk refused ("open dm-crypt mapping") until someone ran cryptsetup
// close by hand, then looks the target up with lookup and adds what it did
// to the target's Notes. It never writes to the target. prepare (not
// --dry-run, which touches nothing), verify and the wizard use it.
func Tidied(path string, image bool, lookup func() (*Target, error)) (*Target, error) {
	notes := tidyStale(path, image)
	t, err := lookup()
	if t != nil {
		t.Notes = append(notes, t.Notes...)
	}
	return t, err
}

func tidyStale(path string, image bool) []string {
	sys := disk.Host
	if image {
		st, err := os.Stat(path)
		if err != nil || !st.Mode().IsRegular() {
			return nil
		}
		s := st.Sys().(*syscall.Stat_t)
		l := loopUsing(fileID{uint64(s.Dev), s.Ino})
		if l == "" {
			return nil
		}
		// The kernel engine maps an image through a loop device.
		return removeStaleMappings(path, []string{filepath.Base(l)})
	}
	name, err := sys.NameOf(path)
	if err != nil {
		return nil
	}
	return removeStaleMappings("/dev/"+name, sys.PartitionNames(name))
}

// removeStaleMappings closes the luksdock-* dm-crypt mappings a killed
// luksdock left on devs (the disk's partitions, or the loop devices on an
// image), so that the disk is not refused for them, and says so. It works
// only while it can take the target's flock
// (which a running luksdock holds for its whole run): a mapping another
// luksdock is about to hold is never touched. A mapping in use is left for
// the safety policy to refuse.
func removeStaleMappings(lockPath string, devs []string) []string {
	if len(devs) == 0 {
		return nil
	}
	f, err := os.Open(lockPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return nil
	}
	removed, err := luks.RemoveStaleMappings(context.Background(), "/", devs)
	var notes []string
	for _, m := range removed {
		notes = append(notes, fmt.Sprintf("closed the dm-crypt mapping %s that a killed luksdock left on %s (nothing was using it)", m, lockPath))
	}
	if err != nil {
		notes = append(notes, "a dm-crypt mapping a killed luksdock left could not be closed: "+err.Error())
	}
	return notes
}
