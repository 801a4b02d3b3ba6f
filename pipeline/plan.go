package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"luksdock/disk"
	"luksdock/fsformat"
	"luksdock/luks"
)

// Options are the choices a run is made with.
type Options struct {
	Label         string
	Table         string // "gpt" (default) or "mbr"
	LUKS1         bool
	Engine        string // "auto" (default), "kernel" or "userspace"
	PBKDF         luks.PBKDF
	HeaderBackup  string // path for cryptsetup luksHeaderBackup; "" for none
	AllowInternal bool   // allow disks not on USB
	// Erase, SurfaceCheck, Restart: see erase.go.
	Erase        bool // write the whole data segment with zeros through the encryption before mkfs
	SurfaceCheck bool // then read it all back and check it decrypts to zeros (needs Erase)
	Restart      bool // start over even if an interrupted erase of this disk could be continued
}

// Plan is a checked, ready-to-run preparation of one target. Building a plan
// writes nothing.
type Plan struct {
	Target    *Target
	Opts      Options
	Engine    string // "kernel" or "userspace", resolved
	EngineWhy string
	Layout    disk.Layout
	Warnings  []string
	Steps     []Step
	// Resume is set when the run continues an interrupted erase of this
	// disk (erase.go); the wizard may offer Opts.Restart instead.
	Resume *Resume
}

// Engines report what this machine can do; replaced in tests.
var (
	deviceMapper = luks.DeviceMapper
	fuseOK       = luks.FUSE
)

// ValidateOptions checks the choices alone, before any target is involved.
func ValidateOptions(o *Options) error {
	if o.Table == "" {
		o.Table = "gpt"
	}
	if o.Engine == "" {
		o.Engine = "auto"
	}
	if err := fsformat.ValidateLabel(o.Label); err != nil {
		return refused("%v", err)
	}
	if o.Table != "gpt" && o.Table != "mbr" {
		return refused("unknown partition table %q (want gpt or mbr)", o.Table)
	}
	switch o.Engine {
	case "auto", "kernel", "userspace":
	default:
		return refused("unknown engine %q (want auto, kernel or userspace)", o.Engine)
	}
	if err := o.PBKDF.Validate(o.LUKS1); err != nil {
		return refused("%v", err)
	}
	if err := validateErase(o); err != nil {
		return err
	}
	if o.HeaderBackup != "" {
		if _, err := os.Lstat(o.HeaderBackup); err == nil {
			return refused("header backup %s already exists; refusing to overwrite it", o.HeaderBackup)
		}
		dir := filepath.Dir(o.HeaderBackup)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return refused("header backup directory %s does not exist", dir)
		}
	}
	return nil
}

// Tools reports a missing cryptsetup or e2fsprogs, with the install command.
var Tools = func() error {
	if err := luks.Available(); err != nil {
		return err
	}
	return fsformat.Available()
}

// NewPlan checks everything that can be checked without writing — the
// options, the tools, the safety policy, the size, the engine — and lays out
// the steps.
func NewPlan(t *Target, o Options) (*Plan, error) {
	if err := ValidateOptions(&o); err != nil {
		return nil, err
	}
	if err := Tools(); err != nil {
		return nil, refused("%v", err)
	}
	p := &Plan{Target: t, Opts: o}
	if !t.Image {
		if len(t.Verdict.Refused) > 0 {
			return nil, refused("%s is refused: %s", t.Path, strings.Join(t.Verdict.Refused, "; "))
		}
		if t.Verdict.Internal && !o.AllowInternal {
			return nil, refused("%s is not on USB (%s); backup disks come through the dock. Pass --allow-internal if you really mean it", t.Path, t.Disk.Transport)
		}
		p.Warnings = append(p.Warnings, t.Verdict.Warnings...)
	} else {
		if t.Create && t.Size > 0 {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s will be created as a sparse file of %s", t.Path, HumanSize(t.Size)))
		}
		if loop := loopUsing(t.fileID); loop != "" {
			return nil, refused("%s is in use by %s; detach it first (losetup -d %s)", t.Path, loop, loop)
		}
		p.Warnings = append(p.Warnings, imageWarnings(t)...)
	}
	if t.Size < MinSize {
		return nil, refused("%s is %s; luksdock needs at least %s", t.Path, HumanSize(t.Size), HumanSize(MinSize))
	}
	var err error
	if p.Layout, err = disk.PlanLayout(o.Table, t.Size, t.logicalSector()); err != nil {
		return nil, refused("%v", err)
	}
	if err := p.chooseEngine(); err != nil {
		return nil, err
	}
	p.Steps = p.layoutSteps()
	p.planErase()
	return p, nil
}

func imageWarnings(t *Target) []string {
	var w []string
	if t.Content.Type == "crypto_LUKS" || t.Content.Label != "" {
		w = append(w, fmt.Sprintf("%s holds %s", t.Name, t.Content))
	}
	for _, p := range t.Parts {
		if p.Content.Type == "crypto_LUKS" || p.Content.Label != "" {
			w = append(w, fmt.Sprintf("partition %d holds %s", p.Number, p.Content))
		}
	}
	return w
}

func (p *Plan) chooseEngine() error {
	dm, dmWhy := deviceMapper()
	fu, fuWhy := fuseOK()
	switch p.Opts.Engine {
	case "kernel":
		if !dm {
			return refused("the kernel engine needs device-mapper: %s (try --engine userspace)", dmWhy)
		}
		p.Engine, p.EngineWhy = "kernel", "requested; "+dmWhy
	case "userspace":
		if !fu {
			return refused("the userspace engine needs FUSE: %s", fuWhy)
		}
		p.Engine, p.EngineWhy = "userspace", "requested"
	default:
		switch {
		case dm && !p.Target.Image:
			p.Engine, p.EngineWhy = "kernel", "block device and "+dmWhy+" (dm-crypt, as cryptsetup open does)"
		case fu && p.Target.Image:
			p.Engine, p.EngineWhy = "userspace", "image file: AES-XTS in luksdock, served to mkfs.ext4 through FUSE"
		case fu:
			p.Engine, p.EngineWhy = "userspace", dmWhy+": AES-XTS in luksdock, served to mkfs.ext4 through FUSE"
		default:
			return refused("neither engine can run here: %s; %s", dmWhy, fuWhy)
		}
	}
	return nil
}

// mapperName is the device-mapper name the kernel engine uses.
func (p *Plan) mapperName() string { return "luksdock-" + p.Opts.Label }

// volumeDisplay is how the plan names the opened volume in commands.
func (p *Plan) volumeDisplay() string { return "/dev/mapper/" + p.mapperName() }

// partDisplay is how the plan names the partition in commands.
func (p *Plan) partDisplay() string {
	if p.Target.Image {
		return "$PART"
	}
	return "/dev/" + disk.PartitionName(p.Target.Name, 1)
}

func (p *Plan) layoutSteps() []Step {
	t, o, part := p.Target, p.Opts, p.partDisplay()
	ss := int64(t.logicalSector())
	sfType := "L"
	if o.Table == "mbr" {
		sfType = "83"
	}
	label := o.Table
	if label == "mbr" {
		label = "dos"
	}
	partCmd := fmt.Sprintf("printf 'label: %s\\nstart=%d, size=%d, type=%s\\n' | sfdisk %s", label, p.Layout.Start/ss, p.Layout.Size/ss, sfType, shq(t.Path))
	if t.Image {
		partCmd += fmt.Sprintf(" && PART=$(losetup --find --show --offset %d --sizelimit %d %s)", p.Layout.Start, p.Layout.Size, shq(t.Path))
	} else {
		partCmd += " && partx --update " + t.Path
	}
	vol := p.volumeDisplay()
	openCmd := fmt.Sprintf("cryptsetup open %s %s", part, p.mapperName())
	closeCmd := "cryptsetup close " + p.mapperName()
	if p.Engine == "userspace" {
		openCmd = "# " + openCmd + "  (userspace engine: luksdock decrypts in-process and serves the volume through FUSE)"
		closeCmd = "# " + closeCmd + "  (userspace engine: unmount the FUSE volume)"
	}
	wipe := "wipefs --all"
	for _, pt := range t.Parts {
		wipe += " " + pt.Path
	}
	wipe += " " + shq(t.Path)
	steps := []Step{
		{ID: StepPreflight, Title: "Check the target", Command: "lsblk --output NAME,SIZE,MODEL,SERIAL,MOUNTPOINTS " + shq(t.Path)},
		{ID: StepWipe, Title: "Wipe old signatures", Command: wipe},
		{ID: StepPartition, Title: fmt.Sprintf("Partition (%s, one partition from 1 MiB)", strings.ToUpper(o.Table)), Command: partCmd},
		{ID: StepFormat, Title: "Format LUKS" + map[bool]string{true: "1", false: "2"}[o.LUKS1], Command: "cryptsetup " + strings.Join(luks.FormatArgs(part, luks.FormatOptions{LUKS1: o.LUKS1, Label: o.Label, PBKDF: o.PBKDF}), " "),
			Slow: "the key derivation function is deliberately slow and memory-hard, so guessing passphrases is expensive"},
		{ID: StepOpen, Title: "Open the encrypted volume", Command: openCmd},
		{ID: StepMkfs, Title: "Make the ext4 filesystem", Command: strings.Join(fsformat.MkfsArgs(vol, o.Label, 0), " "),
			Slow: "writes the journal (up to 1 GiB on large disks) through the encryption"},
		{ID: StepClose, Title: "Close the volume", Command: closeCmd},
		{ID: StepVerify, Title: "Verify it unlocks and fscks clean", Command: fmt.Sprintf("cryptsetup open --readonly %s verify && e2fsck -fn /dev/mapper/verify && cryptsetup close verify", part),
			Slow: "unlocks the keyslot again with an independent implementation (luks.go), which runs the key derivation function"},
	}
	if o.HeaderBackup != "" {
		steps = append(steps, Step{ID: StepHeaderBackup, Title: "Back up the LUKS header", Command: fmt.Sprintf("cryptsetup luksHeaderBackup %s --header-backup-file %s", part, shq(o.HeaderBackup))})
	}
	return steps
}

// Script is the plan as the equivalent shell commands, for --dry-run.
func (p *Plan) Script() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# luksdock plan for %s (%s), engine %s: %s\n", p.Target.Path, HumanSize(p.Target.Size), p.Engine, p.EngineWhy)
	for _, d := range p.Target.Destroys() {
		fmt.Fprintf(&b, "# destroys %s\n", d)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "# warning: %s\n", w)
	}
	if p.Target.Create {
		fmt.Fprintf(&b, "truncate --size %d %s\n", p.Target.Size, shq(p.Target.Path))
	}
	for _, s := range p.Steps {
		fmt.Fprintf(&b, "# %s\n%s\n", s.Title, s.Command)
	}
	return b.String()
}

func shq(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r == '+' || r == '=' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
