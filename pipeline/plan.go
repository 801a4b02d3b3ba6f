package pipeline

import (
	"fmt"
	"os"
	"slices"
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
			return nil, refused("%v", err)
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
	if o.Table == disk.TableMBR && t.logicalSector() == 4096 {
		p.Warnings = append(p.Warnings, MBRNotPortable)
	}
	if p.Owner, p.OwnerWhy, err = ResolveOwner(o.Owner, getenv); err != nil {
		return nil, refused("%v", err)
	}
	if err := p.chooseEngine(); err != nil {
		return nil, err
	}
	p.Steps = p.layoutSteps()
	p.planErase()
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
		return fmt.Sprintf("no partition table: LUKS on the whole disk (%s), found through docks of 512- and 4096-byte sectors", HumanSize(l.Size))
	case disk.TableMBR:
		return fmt.Sprintf("MBR, partition 1 at %d bytes, %s; found only through docks of %d-byte sectors", l.Start, HumanSize(l.Size), p.Target.logicalSector())
	}
	return fmt.Sprintf("GPT valid with 512- and 4096-byte sectors, partition 1 at %d bytes, %s", l.Start, HumanSize(l.Size))
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

// command is step id's shell command, the one a person would type to do the
// same by hand on a kernel with device-mapper, given f. The plan's steps and
// --dry-run's script use the plan's facts; a run reports it with what it
// learnt in each start event.
func (p *Plan) command(id StepID, f cmdFacts) string {
	t, o := p.Target, p.Opts
	img := shq(t.Path)
	switch id {
	case StepPreflight:
		if t.Image {
			if t.Create {
				// luksdock creates the image (O_EXCL) in preflight.
				return fmt.Sprintf("test ! -e %s && truncate -s %d %s", img, t.Size, img)
			}
			return fmt.Sprintf("test -f %s && test -z \"$(losetup --associated %s)\"", img, img)
		}
		return "lsblk --output NAME,SIZE,MODEL,SERIAL,MOUNTPOINTS " + img
	case StepWipe:
		wipe := "wipefs --all"
		for _, pt := range t.Parts {
			if pt.Path != "" {
				wipe += " " + shq(pt.Path)
			}
		}
		return wipe + " " + img
	case StepPartition:
		ss := int64(t.logicalSector())
		if o.Table == disk.TableNone {
			if t.Image {
				return fmt.Sprintf("LOOP=$(losetup --find --show %s) && PART=$LOOP", img)
			}
			return "blockdev --rereadpt " + img
		}
		// the partition as disk.WritePartitionTable writes it
		part := "type=L, name=luksdock"
		if o.Table == disk.TableMBR {
			part = "type=83"
		}
		cmd := fmt.Sprintf("printf 'label: %s\\nstart=%d, size=%d, %s\\n' | sfdisk --quiet %s", o.Table.SfdiskLabel(), p.Layout.Start/ss, p.Layout.Size/ss, part, img)
		if t.Image {
			// The kernel makes the partition node of a loop device
			// attached with --partscan.
			return cmd + fmt.Sprintf(" && LOOP=$(losetup --find --show --partscan %s) && PART=${LOOP}p1 && test -b \"$PART\"", img)
		}
		return cmd + " && partx --update " + img
	case StepFormat:
		a := luks.FormatArgs(f.part, luks.FormatOptions{LUKS1: o.LUKS1, Label: o.Label, Subsystem: o.Set, PBKDF: o.PBKDF})
		if !f.run {
			// By hand the passphrase is typed at cryptsetup's prompt:
			// twice, so a typo does not go unnoticed (--batch-mode alone
			// asks once). luksdock gives it on a pipe, where cryptsetup
			// cannot ask twice.
			a = slices.Insert(a, 2, "--verify-passphrase")
		}
		return "cryptsetup " + strings.Join(a, " ")
	case StepRecoveryKey:
		if f.script {
			return p.recoveryKeyByHand(f)
		}
		// luksdock generates the key, writes its file first, and gives
		// cryptsetup the passphrase on stdin and the key on a pipe (fd 3),
		// at the passphrase keyslot's cost (a run knows it: f.kdf).
		kdf := f.kdf
		if !f.run {
			kdf = o.PBKDF
		}
		return "cryptsetup " + strings.Join(luks.AddKeyArgs(f.part, kdf), " ")
	case StepOpen:
		return fmt.Sprintf("cryptsetup open %s %s", f.part, p.mapperName())
	case StepMkfs:
		return strings.Join(fsformat.MkfsArgs(f.vol, o.Label, f.sector, p.Owner), " ")
	case StepClose:
		return "cryptsetup close " + p.mapperName()
	case StepVerify:
		return fmt.Sprintf("cryptsetup open --readonly %s luksdock-verify && e2fsck -fn /dev/mapper/luksdock-verify && cryptsetup close luksdock-verify", f.part)
	case StepHeaderBackup:
		return fmt.Sprintf("cryptsetup luksHeaderBackup %s --header-backup-file %s", f.part, shq(o.HeaderBackup))
	case StepResume:
		what := "partition and LUKS header"
		if o.Table == disk.TableNone {
			what = "LUKS header on the whole disk"
		}
		return fmt.Sprintf("# keep the %s (UUID %s) the interrupted run made; cryptsetup luksDump --dump-volume-key recovers the volume key", what, p.Resume.LUKSUUID)
	case StepErase:
		// count_bytes: exactly the volume's size, so dd does not fail
		// with "No space left on device" at its end (and stop a set -e
		// script).
		cmd := fmt.Sprintf("dd if=/dev/zero of=%s bs=16M count=$(blockdev --getsize64 %s) iflag=count_bytes oflag=direct status=progress", f.vol, f.vol)
		if f.run && p.Engine == EngineUserspace {
			cmd = "# " + cmd + "  (userspace engine: luksdock encrypts the zeros on every core and writes the ciphertext straight to the data segment)"
		}
		return cmd
	case StepSurfaceCheck:
		return fmt.Sprintf("cmp --bytes=$(blockdev --getsize64 %s) %s /dev/zero", f.vol, f.vol)
	}
	return ""
}

func (p *Plan) layoutSteps() []Step {
	o, f := p.Opts, p.planFacts()
	luksV := "2"
	if o.LUKS1 {
		luksV = "1"
	}
	steps := []Step{
		{ID: StepPreflight, Title: "Check the target"},
		{ID: StepWipe, Title: "Wipe old signatures"},
		{ID: StepPartition, Title: partTitle(o.Table)},
		{ID: StepFormat, Title: "Format LUKS" + luksV,
			Slow: "the key derivation function is deliberately slow and memory-hard, so guessing passphrases is expensive"},
		{ID: StepOpen, Title: "Open the encrypted volume"},
		{ID: StepMkfs, Title: "Make the ext4 filesystem (top directory owned by " + p.Owner.String() + ")",
			Slow: "writes the journal (up to 1 GiB on large disks) through the encryption"},
		{ID: StepClose, Title: "Close the volume"},
		{ID: StepVerify, Title: "Verify it unlocks and fscks clean",
			Slow: "unlocks the keyslot with luksdock's own LUKS code and with cryptsetup, each running the key derivation function (started early: during open and mkfs)"},
	}
	if o.RecoveryKey != nil {
		// Right after luksFormat, so verify proves it with the passphrase.
		rk := Step{ID: StepRecoveryKey, Title: "Add the recovery key (a second keyslot)",
			Slow: "adding a keyslot runs the key derivation function twice: to unlock with the passphrase and to seal the new slot"}
		i := slices.IndexFunc(steps, func(s Step) bool { return s.ID == StepFormat })
		steps = slices.Insert(steps, i+1, rk)
	}
	if o.HeaderBackup != "" {
		steps = append(steps, Step{ID: StepHeaderBackup, Title: "Back up the LUKS header"})
	}
	for i := range steps {
		steps[i].Command = p.command(steps[i].ID, f)
	}
	return steps
}

func partTitle(t disk.TableType) string {
	switch t {
	case disk.TableNone:
		return "No partition table (LUKS on the whole disk)"
	case disk.TableMBR:
		return "Partition (MBR, one partition from 1 MiB)"
	}
	return "Partition (GPT for 512- and 4096-byte sectors, one partition from 1 MiB)"
}

// scriptNote is what a person running the --dry-run script by hand should
// know about a step that its one-line command cannot say.
func (p *Plan) scriptNote(id StepID) string {
	o := p.Opts
	switch {
	case id == StepPartition && o.Table == disk.TableGPT:
		return fmt.Sprintf("luksdock writes one GPT valid with 512- and 4096-byte sectors; this sfdisk equivalent is valid with %d-byte sectors only", p.Target.logicalSector())
	case id == StepPartition && o.Table == disk.TableNone:
		return "no partition table: LUKS goes directly on the whole disk"
	case id == StepRecoveryKey:
		n := "luksdock generates the recovery key"
		if o.RecoveryKeyFile != "" {
			n += ", writes it to " + o.RecoveryKeyFile + " (a new file, mode 0600, synced) before the disk accepts it,"
		}
		return n + " and gives cryptsetup the passphrase on stdin and the key on a pipe (fd 3); " +
			"by hand: 256 random bits as 8 groups of 8 modhex letters, the key file written first, the keyslot sealed at the passphrase keyslot's cost read from the header"
	case id == StepFormat:
		return "luksdock gives cryptsetup the passphrase on a pipe; by hand it asks for it twice (--verify-passphrase), so a typo does not go unnoticed"
	}
	return ""
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
	add := "cryptsetup luksAddKey --batch-mode --key-file=- $KDF"
	if o.RecoveryKeyFile != "" {
		add += fmt.Sprintf(` --new-keyfile-offset $(($(wc -c < %s) - %d)) --new-keyfile-size %d %s %s`, file, recovery.Len+1, recovery.Len, f.part, file)
	} else {
		add = `printf %s "$RK" | ` + add + fmt.Sprintf(` %s /proc/self/fd/3 3<&0 </dev/tty`, f.part)
	}
	return gen + write + " && " + kdf + " && " + add + " && RK="
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
	fmt.Fprintf(&b, "# luksdock plan for %s (%s); luksdock would use the %s engine: %s\n", p.Target.Path, HumanSize(p.Target.Size), p.Engine, p.EngineWhy)
	fmt.Fprintf(&b, "# sectors: %s\n", p.Target.SectorsLine())
	fmt.Fprintf(&b, "# layout: %s\n", p.LayoutLine())
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
