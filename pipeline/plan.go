package pipeline

import (
	"fmt"
	"os"
	"strings"

	"luksdock/disk"
	"luksdock/fsformat"
	"luksdock/health"
	"luksdock/luks"
	"luksdock/recovery"
)

// Options are the choices a run is made with.
type Options struct {
	Label         string
	Table         disk.TableType // gpt (default), mbr or none
	LUKS1         bool
	Engine        Engine // EngineAuto (default), EngineKernel or EngineUserspace
	PBKDF         luks.PBKDF
	HeaderBackup  string // path for cryptsetup luksHeaderBackup; "" for none
	AllowInternal bool   // allow disks not on USB
	// AcceptUnhealthy allows a disk whose SMART health is failing or
	// degrading (--accept-unhealthy): a second, explicit confirmation.
	AcceptUnhealthy bool

	// RecoveryKey, when set, is a recovery key (package recovery, printed
	// form) that the recovery-key step adds as a second keyslot, right after
	// luksFormat, and that verify then proves. It is a secret: never
	// printed, never in an event.
	RecoveryKey []byte `json:"-"`
	// RecoveryKeyFile, when set, is where the recovery-key step writes
	// RecoveryKey (a new file, mode 0600) before the disk accepts it, so a
	// keyslot never exists for a key that is nowhere else. Checked by
	// NewPlan with CheckOutputPath; made absolute.
	RecoveryKeyFile string
	// Set is the name of the rotation set the disk belongs to ("offsite"),
	// stored in the LUKS2 subsystem field and in the inventory; "" for none.
	Set string
	// Owner is who owns the filesystem's top directory: "USER" or
	// "UID:GID"; "" for the user behind sudo or pkexec, or root (see
	// ResolveOwner).
	Owner string
	// Erase, SurfaceCheck, Restart: see erase.go.
	Erase        bool // write the whole data segment with zeros through the encryption before mkfs
	SurfaceCheck bool // then read it all back and check it decrypts to zeros (needs Erase)
	Restart      bool // start over even if an interrupted erase of this disk could be continued
}

// Plan is a checked, ready-to-run preparation of one target. Building a plan
// writes nothing, and running it changes nothing in it: what a run learns
// (the partition node, the LUKS sector size and so the mkfs command) is
// reported in its events.
type Plan struct {
	Target    *Target
	Opts      Options
	Engine    Engine // EngineKernel or EngineUserspace, resolved
	EngineWhy string
	Layout    disk.Layout
	Owner     fsformat.Owner // of the filesystem's top directory
	OwnerWhy  string
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
		o.Table = disk.TableGPT
	}
	if o.Engine == "" {
		o.Engine = EngineAuto
	}
	if err := fsformat.ValidateLabel(o.Label); err != nil {
		return refused("%v", err)
	}
	if _, err := disk.ParseTableType(string(o.Table)); err != nil {
		return refused("%v", err)
	}
	switch o.Engine {
	case EngineAuto, EngineKernel, EngineUserspace:
	default:
		return refused("unknown engine %q (want auto, kernel or userspace)", o.Engine)
	}
	if err := o.PBKDF.Validate(o.LUKS1); err != nil {
		return refused("%v", err)
	}
	if err := ValidateSetName(o.Set); err != nil {
		return refused("%v", err)
	}
	if o.Set != "" && o.LUKS1 {
		return refused("--set is kept in the LUKS2 subsystem field; LUKS1 has none")
	}
	if o.RecoveryKeyFile == "-" {
		return refused("--recovery-key needs a file name: the key is never printed on standard output, where logs keep it")
	}
	if o.RecoveryKeyFile != "" && o.RecoveryKey == nil {
		return refused("a recovery key file needs a recovery key")
	}
	if o.RecoveryKey != nil && !recovery.Valid(o.RecoveryKey) {
		return refused("the recovery key is not in its printed form")
	}
	if _, _, err := ResolveOwner(o.Owner, getenv); err != nil {
		return refused("%v", err)
	}
	if err := validateErase(o); err != nil {
		return err
	}
	return nil
}

// getenv reads the environment (SUDO_UID...); replaced in tests.
var getenv = os.Getenv

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
	// Before the policy's verdict, which refuses a disk that is mounted at
	// all: this names the actual mistake.
	if o.RecoveryKeyFile != "" {
		abs, err := CheckOutputPath(t.Path, "recovery key file", o.RecoveryKeyFile)
		if err != nil {
			return nil, refused("%v", err)
		}
		o.RecoveryKeyFile = abs
	}
	p := &Plan{Target: t, Opts: o}
	if o.HeaderBackup != "" {
		abs, err := CheckHeaderBackupPath(t.Path, o.HeaderBackup)
		if err != nil {
			return nil, refused("%v", err)
		}
		p.Opts.HeaderBackup = abs
	}
	if !t.Image {
		if err := t.Verdict.Check(t.Path, o.AllowInternal); err != nil {
			return nil, refused("%w", err)
		}
		p.Warnings = append(p.Warnings, t.Verdict.Warnings...)
		if h := t.Health; h != nil {
			if h.Bad() && !o.AcceptUnhealthy {
				return nil, refused("%s is not a disk to trust with backups: %s. If you really mean to use it, pass --accept-unhealthy", t.Path, h.Summary())
			}
			if h.Bad() {
				p.Warnings = append(p.Warnings, fmt.Sprintf("UNHEALTHY DISK, used because of --accept-unhealthy: %s", h.Summary()))
			} else if h.Verdict == health.Unknown {
				p.Warnings = append(p.Warnings, h.Why)
			}
		}
	} else {
		if t.Create && t.Size > 0 {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s will be created as a sparse file of %s", t.Path, disk.SizeString(t.Size)))
		}
		if loop := loopUsing(t.fileID); loop != "" {
			return nil, refusedInUse(t.Path, loop)
		}
		p.Warnings = append(p.Warnings, imageWarnings(t)...)
	}
	if t.Size < MinSize {
		reason := disk.Reason{Text: fmt.Sprintf("it is %s; luksdock needs at least %s", disk.SizeString(t.Size), disk.SizeString(MinSize)), Fix: fixTooSmall(t)}
		return nil, refused("%w", &disk.RefusedError{Path: t.Path, Reasons: []disk.Reason{reason}})
	}
	var err error
	if p.Layout, err = disk.PlanLayout(o.Table, t.Size, t.logicalSector()); err != nil {
		return nil, refused("%v", err)
	}
	if o.Table == disk.TableMBR && t.logicalSector() == 4096 {
		p.Warnings = append(p.Warnings, MBRNotPortable)
	}
	if p.Owner, p.OwnerWhy, err = ResolveOwner(o.Owner, getenv); err != nil {
		return nil, refused("%v", err)
	}
	if err := p.chooseEngine(); err != nil {
		return nil, err
	}
	p.planErase()
	p.Steps = p.planSteps()
	return p, nil
}

// MBRNotPortable is the warning for --table mbr through a dock that reports
// 4096-byte logical sectors.
const MBRNotPortable = "--table mbr through a dock that reports 4096-byte logical sectors: the MBR counts 4096-byte sectors, " +
	"so a dock or computer that presents the disk with 512-byte sectors will not find the partition and the backup will not unlock there; " +
	"use the default --table gpt (readable with both sector sizes) or --table none"

// SectorsLine says which sector sizes the target reports, for the plan.
func (t *Target) SectorsLine() string {
	if t.Disk == nil {
		return "image file: read as 512-byte sectors (a portable layout reads the same with 4096)"
	}
	return fmt.Sprintf("the dock reports %d-byte logical, %d-byte physical sectors", t.Disk.LogicalSector, t.Disk.PhysicalSector)
}

// LayoutLine says where LUKS goes and through which docks it will be found.
func (p *Plan) LayoutLine() string {
	l := p.Layout
	switch l.Table {
	case disk.TableNone:
		return fmt.Sprintf("no partition table: LUKS on the whole disk (%s), found through docks of 512- and 4096-byte sectors", disk.SizeString(l.Size))
	case disk.TableMBR:
		return fmt.Sprintf("MBR, partition 1 at %d bytes, %s; found only through docks of %d-byte sectors", l.Start, disk.SizeString(l.Size), p.Target.logicalSector())
	}
	return fmt.Sprintf("GPT valid with 512- and 4096-byte sectors, partition 1 at %d bytes, %s", l.Start, disk.SizeString(l.Size))
}

func imageWarnings(t *Target) []string {
	var w []string
	if t.Content.Type == disk.SigLUKS || t.Content.Label != "" {
		w = append(w, fmt.Sprintf("%s holds %s", t.Name, t.Content))
	}
	for _, p := range t.Parts {
		if p.Content.Type == disk.SigLUKS || p.Content.Label != "" {
			w = append(w, fmt.Sprintf("partition %d holds %s", p.Number, p.Content))
		}
	}
	return w
}

func (p *Plan) chooseEngine() error {
	dm, dmWhy := deviceMapper()
	fu, fuWhy := fuseOK()
	switch p.Opts.Engine {
	case EngineKernel:
		if !dm {
			return refused("the kernel engine needs device-mapper: %s (try --engine userspace)", dmWhy)
		}
		p.Engine, p.EngineWhy = EngineKernel, "requested; "+dmWhy
	case EngineUserspace:
		if !fu {
			return refused("the userspace engine needs FUSE: %s", fuWhy)
		}
		p.Engine, p.EngineWhy = EngineUserspace, "requested"
	default:
		switch {
		case dm && !p.Target.Image:
			p.Engine, p.EngineWhy = EngineKernel, "block device and "+dmWhy+" (dm-crypt, as cryptsetup open does)"
		case fu && p.Target.Image:
			p.Engine, p.EngineWhy = EngineUserspace, "image file: AES-XTS in luksdock, served to mkfs.ext4 through FUSE"
		case fu:
			p.Engine, p.EngineWhy = EngineUserspace, dmWhy+": AES-XTS in luksdock, served to mkfs.ext4 through FUSE"
		default:
			return refused("neither engine can run here: %s; %s", dmWhy, fuWhy)
		}
	}
	return nil
}

// mapperName is the device-mapper name the kernel engine uses.
func (p *Plan) mapperName() string { return "luksdock-" + p.Opts.Label }

// cmdFacts are what a step's command depends on beyond the plan: the
// partition and the opened volume as a shell command names them, and the
// LUKS sector size once luksFormat has chosen it (0 before).
type cmdFacts struct {
	part, vol string
	sector    int
	// run: the command a run reports it runs (secrets on pipes), not the
	// by-hand one of the plan and the --dry-run script.
	run bool
	// script: the --dry-run script's command, which does by hand what
	// luksdock does itself (generating the recovery key).
	script bool
	// kdf is the key derivation cost the recovery key's keyslot gets: the
	// passphrase keyslot's, read from the header after luksFormat.
	kdf luks.PBKDF
}

// planFacts are the facts before the run: an image's partition is the
// loop device the script attaches ("$PART"); a disk's is its first
// partition node, or with no table the disk itself.
func (p *Plan) planFacts() cmdFacts {
	f := cmdFacts{part: `"$PART"`, vol: "/dev/mapper/" + p.mapperName()}
	if !p.Target.Image && p.Layout.Table == disk.TableNone {
		f.part = shq(p.Target.Path)
	} else if !p.Target.Image {
		f.part = "/dev/" + disk.PartitionName(p.Target.Name, 1)
	}
	return f
}

// kdfOfSlot0 is a shell command substitution that prints the luksAddKey
// flags for the key derivation cost of keyslot 0 of $PART as luksDump shows
// it: LUKS2 (keyslot "  0:" under "Keyslots:") "PBKDF: argon2id", "Time cost: 4", "Memory: 262144", "Threads: 4"
// (pbkdf2: "Iterations: N"), LUKS1 "Iterations: N" under "Key Slot 0".
const kdfOfSlot0 = `$(cryptsetup luksDump %s | awk '/^Keyslots:/{k=1;next} k&&/^  0: /||/^Key Slot 0: ENABLED/{s=1;next} s&&(/^  [0-9]+: /||/^Key Slot /||/^[A-Z]/){exit} ` +
	`s&&$1=="PBKDF:"{printf "--pbkdf %%s ",$2} s&&$1=="Iterations:"{printf "--pbkdf-force-iterations %%s ",$2} s&&$1=="Time"&&$2=="cost:"{printf "--pbkdf-force-iterations %%s ",$3} ` +
	`s&&$1=="Memory:"{printf "--pbkdf-memory %%s ",$2} s&&$1=="Threads:"{printf "--pbkdf-parallel %%s ",$2}')`

// recoveryKeyByHand is the recovery-key step of the --dry-run script: what
// luksdock does, in sh. The key (recovery.Generate's form: 32 bytes from
// /dev/urandom, each 4 bits one of the modhex letters, 8 groups of 8 joined
// by dashes) is made in a shell variable, written to the key file (a new
// file, mode 0600, the same lines as recovery.WriteFile) before the disk
// gets a keyslot for it; cryptsetup luksAddKey then reads it from the key
// file's last line (--new-keyfile-offset/--new-keyfile-size: without its
// newline, so that what is typed at the prompt opens the disk), asks for
// the passphrase at its prompt, and seals the keyslot at keyslot 0's cost.
// No --key-file=-: at a terminal cryptsetup prompts either way, but from a
// pipe a key file "-" is read to its end (newlines included), so the
// passphrase lines fed to the script for its later prompts made it "No key
// available with this passphrase"; without it, one line, as luksFormat and
// open read.
func (p *Plan) recoveryKeyByHand(f cmdFacts) string {
	o := p.Opts
	file := shq(o.RecoveryKeyFile)
	gen := `RK=$(od -An -v -tx1 -N32 /dev/urandom | tr -d ' \n' | tr 0-9a-f ` + recovery.Alphabet + ` | sed 's/.\{8\}/&-/g;s/-$//')` +
		fmt.Sprintf(` && test ${#RK} -eq %d`, recovery.Len)
	var write string
	if o.RecoveryKeyFile != "" {
		write = fmt.Sprintf(` && (umask 077 && set -C && printf '%%s\n# for the disk labelled %%s, LUKS UUID %%s\n%%s\n' %s %s "$(cryptsetup luksUUID %s)" "$RK" > %s)`,
			shq(strings.TrimSuffix(recovery.FileHeader, "\n")), shq(o.Label), f.part, file)
	} else {
		// the wizard shows the key on the screen; by hand, the terminal
		write = ` && printf 'recovery key (write it down): %s\n' "$RK" > /dev/tty`
	}
	kdf := fmt.Sprintf(`KDF=`+kdfOfSlot0+` && test -n "$KDF"`, f.part)
	add := "cryptsetup luksAddKey --batch-mode $KDF"
	if o.RecoveryKeyFile != "" {
		add += fmt.Sprintf(` --new-keyfile-offset $(($(wc -c < %s) - %d)) --new-keyfile-size %d %s %s`, file, recovery.Len+1, recovery.Len, f.part, file)
	} else {
		add = `printf %s "$RK" | ` + add + fmt.Sprintf(` %s /proc/self/fd/3 3<&0 </dev/tty`, f.part)
	}
	return gen + write + " && " + kdf + " && " + add + " && RK="
}

// SetOwnerLine is the plan's set and the owner of the filesystem's top
// directory, with why, for the run's first notes (the --dry-run script
// has a line for each).
func (p *Plan) SetOwnerLine() string {
	return fmt.Sprintf("set: %s; owner of the filesystem's top directory: %s (%s)", p.setName(), p.Owner, p.OwnerWhy)
}

// setName is the plan's rotation set, "none" without one.
func (p *Plan) setName() string {
	if p.Opts.Set == "" {
		return "none"
	}
	return p.Opts.Set
}

// Script is the plan as a shell script for --dry-run: run by hand (as root,
// on a kernel with device-mapper) it does what luksdock does, asking for the
// passphrase at cryptsetup's prompts. luksdock's own checks (identity,
// exclusive open, verification with luks.go) are not in it.
func (p *Plan) Script() string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString("# left out (luksdock's own safety checks, not commands a person types): the identity re-check before each destructive step, the exclusive open and lock of the target, " +
		"the saved position that lets an interrupted erase continue, and the second unlock of each keyslot with luksdock's own LUKS code\n")
	fmt.Fprintf(&b, "# luksdock plan for %s (%s); luksdock would use the %s engine: %s\n", p.Target.Path, disk.SizeString(p.Target.Size), p.Engine, p.EngineWhy)
	fmt.Fprintf(&b, "# sectors: %s\n", p.Target.SectorsLine())
	fmt.Fprintf(&b, "# layout: %s\n", p.LayoutLine())
	fmt.Fprintf(&b, "# set: %s\n", p.setName())
	fmt.Fprintf(&b, "# owner of the filesystem's top directory: %s (%s)\n", p.Owner, p.OwnerWhy)
	if p.Engine == EngineUserspace {
		b.WriteString("# (the userspace engine decrypts in luksdock and serves the volume through FUSE;\n#  by hand, cryptsetup open does the same with dm-crypt, as below)\n")
	}
	for _, d := range p.Target.Destroys() {
		fmt.Fprintf(&b, "# destroys %s\n", d)
	}
	if h := p.Target.Health; h != nil && h.Verdict != health.Unknown {
		fmt.Fprintf(&b, "# health (smartctl -d %s): %s; drive %s, serial %s\n", h.DeviceType, h.Summary(), h.Model, h.Serial)
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&b, "# warning: %s\n", w)
	}
	b.WriteString("set -eu\n")
	if p.Target.Image {
		// set -e stops at the first failure: without this the loop device
		// (and a mapping on it) would stay behind.
		fmt.Fprintf(&b, "# On a failure: close what is open on the image and detach its loop device\n"+
			"MAPPER=%s\n"+
			"trap 'rc=$?; if [ $rc -ne 0 ] && [ -n \"${LOOP:-}\" ]; then cryptsetup close luksdock-verify 2>/dev/null || true; cryptsetup close \"$MAPPER\" 2>/dev/null || true; losetup --detach \"$LOOP\" || true; fi; exit $rc' EXIT\n",
			shq(p.mapperName()))
	}
	f := p.planFacts()
	f.script = true
	for _, s := range p.Steps {
		cmd := p.command(s.ID, f)
		if strings.Contains(cmd, "&&") {
			// set -e does not stop at a failure inside an && list
			cmd += " || exit 1"
		}
		fmt.Fprintf(&b, "\n# %s\n", s.Title)
		if n := p.scriptNote(s.ID); n != "" {
			fmt.Fprintf(&b, "# %s\n", n)
		}
		fmt.Fprintf(&b, "%s\n", cmd)
	}
	if p.Target.Image {
		b.WriteString("\n# Release the image\nlosetup --detach \"$LOOP\"\n")
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

// ValidateSetName checks a rotation set's name: at most 48 bytes (the LUKS2
// subsystem field), letters, digits, '.', '_' and '-' only, so it reads the
// same in luksDump, blkid and a shell. "" (no set) is valid.
func ValidateSetName(name string) error {
	if len(name) > 47 {
		return fmt.Errorf("set name %q is %d bytes; the LUKS2 subsystem field holds at most 47", name, len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("set name %q: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("set name %q must not start with '-'", name)
	}
	return nil
}

// fixTooSmall is what to do about a target smaller than MinSize: a larger
// disk, or for an image file a larger file (prepare destroys what is on
// it anyway).
// refusedInUse refuses an image file a loop device is attached to, with
// the fix, as a disk's reasons are (the --json failed event carries it).
func refusedInUse(path, loop string) error {
	reason := disk.Reason{Text: "in use by " + loop, Fix: "detach the loop device (losetup -d " + loop + ")."}
	return refused("%w", &disk.RefusedError{Path: path, Reasons: []disk.Reason{reason}})
}

func fixTooSmall(t *Target) string {
	if !t.Image {
		return "use a larger disk."
	}
	return fmt.Sprintf("grow the file (truncate -s %dM %s), or give a new image path with --size %dM or more.", MinSize>>20, t.Path, MinSize>>20)
}
