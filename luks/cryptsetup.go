// Package luks formats, opens, closes and inspects LUKS volumes.
//
// Formatting, opening with device-mapper, closing and header backups use the
// real cryptsetup binary, exactly as a sysadmin would by hand. Secrets never
// travel in argv, the environment or a file on disk: the passphrase goes to
// cryptsetup on standard input (--key-file=-) and a volume key on an extra
// pipe (--volume-key-file=/proc/self/fd/3: /proc, not the /dev/fd link that
// udev or systemd make and that busybox rescue systems and containers may
// lack). Reading headers and unlocking a keyslot
// for verification use github.com/anatol/luks.go, an implementation
// independent of cryptsetup. The userspace data path (userspace.go) serves a
// decrypted data segment to e2fsprogs on machines without device-mapper.
package luks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/secret"
)

// Cipher and KeyBytes are what luksdock formats with: aes-xts-plain64 with a
// 512-bit key (two AES-256 keys), cryptsetup's own default.
const (
	Cipher   = "aes-xts-plain64"
	KeyBytes = 64
)

// PBKDF holds the keyslot cost flags. Zero values are left out so that
// cryptsetup's own benchmarked defaults apply, which is what production wants.
type PBKDF struct {
	Type            string // argon2id, argon2i or pbkdf2
	MemoryKiB       int    // --pbkdf-memory
	Parallel        int    // --pbkdf-parallel
	ForceIterations int    // --pbkdf-force-iterations
	IterTimeMS      int    // --iter-time
}

// Validate reports flag values cryptsetup would reject, before anything runs.
func (p PBKDF) Validate(luks1 bool) error {
	switch p.Type {
	case "", "argon2id", "argon2i", "pbkdf2":
	default:
		return fmt.Errorf("unknown PBKDF %q (want argon2id, argon2i or pbkdf2)", p.Type)
	}
	if luks1 && p.Type != "" && p.Type != "pbkdf2" {
		return fmt.Errorf("LUKS1 supports only pbkdf2, not %s", p.Type)
	}
	if p.MemoryKiB < 0 || p.Parallel < 0 || p.ForceIterations < 0 || p.IterTimeMS < 0 {
		return errors.New("PBKDF costs must not be negative")
	}
	if p.ForceIterations > 0 && p.IterTimeMS > 0 {
		return errors.New("--pbkdf-force-iterations and --iter-time exclude each other")
	}
	return nil
}

// Args returns the cryptsetup flags for the non-zero fields.
func (p PBKDF) Args() []string {
	var a []string
	if p.Type != "" {
		a = append(a, "--pbkdf", p.Type)
	}
	if p.MemoryKiB > 0 {
		a = append(a, "--pbkdf-memory", strconv.Itoa(p.MemoryKiB))
	}
	if p.Parallel > 0 {
		a = append(a, "--pbkdf-parallel", strconv.Itoa(p.Parallel))
	}
	if p.ForceIterations > 0 {
		a = append(a, "--pbkdf-force-iterations", strconv.Itoa(p.ForceIterations))
	}
	if p.IterTimeMS > 0 {
		a = append(a, "--iter-time", strconv.Itoa(p.IterTimeMS))
	}
	return a
}

// FormatOptions are the choices luksFormat takes.
type FormatOptions struct {
	LUKS1 bool
	Label string // LUKS2 label (LUKS1 has none)
	// Subsystem is the LUKS2 subsystem field (LUKS1 has none): luksdock
	// stores the rotation set's name there (prepare --set).
	Subsystem string
	PBKDF     PBKDF
}

// FormatArgs is the cryptsetup luksFormat argument list (without secrets;
// those go over pipes), shared by Format and the dry-run/plan display.
func FormatArgs(dev string, o FormatOptions) []string {
	a := []string{"luksFormat", "--batch-mode"}
	if o.LUKS1 {
		a = append(a, "--type", "luks1")
	} else {
		a = append(a, "--type", "luks2")
		if o.Label != "" {
			a = append(a, "--label", o.Label)
		}
		if o.Subsystem != "" {
			a = append(a, "--subsystem", o.Subsystem)
		}
	}
	a = append(a, "--cipher", Cipher, "--key-size", strconv.Itoa(KeyBytes*8))
	a = append(a, o.PBKDF.Args()...)
	return append(a, dev)
}

// Format runs cryptsetup luksFormat on dev with the given volume key and a
// keyslot for passphrase. Both secrets are passed over pipes.
func Format(ctx context.Context, dev string, passphrase, volumeKey []byte, o FormatOptions) error {
	if len(volumeKey) != KeyBytes {
		return fmt.Errorf("volume key must be %d bytes", KeyBytes)
	}
	args := FormatArgs(dev, o)
	args = append(args[:len(args)-1], "--key-file=-", "--volume-key-file=/proc/self/fd/3", dev)
	_, err := run(ctx, args, passphrase, volumeKey)
	return err
}

// OpenWithKey activates dev as /dev/mapper/name with the volume key (no KDF
// run), through device-mapper. cryptsetup runs under a mapping guard (see
// guardArg0) that removes the mapping if luksdock dies before HoldMapping.
func OpenWithKey(ctx context.Context, dev, name string, volumeKey []byte) error {
	return openGuarded(ctx, name, []string{"open", "--type", "luks", "--volume-key-file=/proc/self/fd/3", dev, name}, nil, volumeKey)
}

// OpenReadOnly activates dev read-only with the passphrase, through
// device-mapper: cryptsetup's own check that the passphrase unlocks it. As
// with OpenWithKey, a mapping guard covers the time until HoldMapping.
func OpenReadOnly(ctx context.Context, dev, name string, passphrase []byte) error {
	if err := refuseHostile(dev); err != nil {
		return err
	}
	return openGuarded(ctx, name, []string{"open", "--type", "luks", "--readonly", "--key-file=-", dev, name}, passphrase, nil)
}

// OpenReadOnlyWithKey activates dev read-only with the volume key (no KDF
// run; cryptsetup checks the key against the header's digest), under a
// mapping guard as OpenWithKey.
func OpenReadOnlyWithKey(ctx context.Context, dev, name string, volumeKey []byte) error {
	return openGuarded(ctx, name, []string{"open", "--type", "luks", "--readonly", "--volume-key-file=/proc/self/fd/3", dev, name}, nil, volumeKey)
}

// Close removes the mapping name. A mapping that does not exist is not an error.
func Close(ctx context.Context, name string) error {
	if _, err := os.Stat("/dev/mapper/" + name); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return runClose(ctx, name)
}

// runClose runs cryptsetup close with args (the mapping name, and
// --deferred or --cancel-deferred). It is not killed when luksdock dies
// (outliveLuksdock): it derives no key and only tidies up, and killed with
// luksdock it would leave the mapping behind
// (e2e.TestSIGKILLKernelEngine/inside-late/in-close-cryptsetup).
func runClose(ctx context.Context, args ...string) error {
	var out bytes.Buffer
	_, err := runTool(ctx, append([]string{"close"}, args...), nil, nil, &out, nil, outliveLuksdock)
	return err
}

// TestPassphrase asks cryptsetup whether passphrase opens a keyslot of dev,
// without device-mapper.
func TestPassphrase(ctx context.Context, dev string, passphrase []byte) error {
	if err := refuseHostile(dev); err != nil {
		return err
	}
	_, err := run(ctx, []string{"open", "--test-passphrase", "--key-file=-", dev}, passphrase, nil)
	return err
}

// DumpVolumeKey recovers the volume key with the passphrase through
// cryptsetup. The key is read from cryptsetup's standard output pipe and never
// touches a file: the printout goes straight from the pipe into secret
// memory of a fixed size (luksdock/internal/secret; no growing buffer that
// would leave copies behind) and is decoded from there into the key, which
// is secret memory too: the caller frees it with secret.Free.
func DumpVolumeKey(ctx context.Context, dev string, passphrase []byte) ([]byte, error) {
	if err := refuseHostile(dev); err != nil {
		return nil, err
	}
	out := secret.New(dumpMax)
	defer secret.Free(out)
	n, err := runSecretOut(ctx, []string{"luksDump", "--batch-mode", "--dump-volume-key", "--key-file=-", dev}, passphrase, out)
	if err != nil {
		return nil, err
	}
	// The hex digits of the "MK dump:" lines (16 bytes a line, the
	// continuation lines indented), counted first, then decoded in place
	// at the start of out, then copied into a key of the right size.
	text := out[:n]
	digits := 0
	in := false
	for line := range bytes.Lines(text) {
		if i := bytes.Index(line, []byte("MK dump:")); i >= 0 {
			in = true
			line = line[i+len("MK dump:"):]
		} else if in && (len(bytes.TrimRight(line, "\n")) == 0 || (line[0] != '\t' && line[0] != ' ')) {
			break
		}
		if !in {
			continue
		}
		for _, c := range line {
			if c == ' ' || c == '\t' || c == '\n' {
				continue
			}
			if _, ok := fromHex(c); !ok {
				return nil, errors.New("cryptsetup luksDump printed something other than hex digits as the volume key")
			}
			text[digits] = c // digits <= the index of c: compacts in place
			digits++
		}
	}
	if digits == 0 || digits%2 != 0 {
		return nil, errors.New("cryptsetup luksDump printed no volume key")
	}
	key := secret.New(digits / 2)
	for i := range key {
		hi, _ := fromHex(text[2*i])
		lo, _ := fromHex(text[2*i+1])
		key[i] = hi<<4 | lo
	}
	return key, nil
}

// dumpMax bounds what DumpVolumeKey reads of cryptsetup's printout (about
// 400 bytes for a 512-bit key).
const dumpMax = 8 << 10

func fromHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// HeaderBackup writes dev's LUKS header to path with mode 0600, refusing to
// overwrite an existing file. cryptsetup writes into a private 0700 directory
// beside path; the result is linked into place, which fails if path appeared
// meanwhile, so nothing is ever overwritten.
func HeaderBackup(ctx context.Context, dev, path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("header backup %s already exists; refusing to overwrite it", path)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".luksdock-header-")
	if err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "header")
	if _, err := run(ctx, []string{"luksHeaderBackup", "--batch-mode", dev, "--header-backup-file", tmp}, nil, nil); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	return nil
}

// Available reports whether cryptsetup can be found, with the install hint.
func Available() error {
	if _, err := exec.LookPath("cryptsetup"); err != nil {
		return errors.New("cryptsetup not found: install it with `apt-get install cryptsetup-bin` (Debian/Ubuntu) or `dnf install cryptsetup`")
	}
	return nil
}

// Error is a failed cryptsetup run: the command (no secrets are ever in it),
// its exit status and its own message.
type Error struct {
	Args   []string
	Code   int
	Stderr string
}

func (e *Error) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = fmt.Sprintf("exit status %d", e.Code)
	}
	return fmt.Sprintf("cryptsetup %s: %s", e.Args[0], msg)
}

// run executes cryptsetup with stdin (the passphrase, if any) and fd 3 (the
// volume key, if any) as pipes. It returns stdout.
func run(ctx context.Context, args []string, stdin, fd3 []byte) ([]byte, error) {
	var out bytes.Buffer
	_, err := runTool(ctx, args, stdin, fd3, &out, nil)
	return out.Bytes(), err
}

// runSecretOut is run for a command that prints a secret: its standard
// output is read from the pipe straight into out (secret memory), never
// into a growing buffer; it returns how many bytes came. More than fits
// is an error.
func runSecretOut(ctx context.Context, args []string, stdin, out []byte) (int, error) {
	return runTool(ctx, args, stdin, nil, nil, out)
}

// runOption changes how runTool runs cryptsetup.
type runOption int

const (
	// outliveLuksdock: the tool is not killed when luksdock dies (no
	// Pdeathsig); a cancelled context still kills it. Only for a command
	// that tidies up and must finish (runClose says why).
	outliveLuksdock runOption = iota + 1
)

// runTool runs cryptsetup. The secrets (stdin, fd3) are written from where
// they lie straight into pipes, which hold far more than a passphrase or
// key, before the child reads them: no copy is made on the way (os/exec's
// copying goroutine is not used). Standard output goes to out, or, when
// secretOut is not nil, into secretOut (see runSecretOut).
func runTool(ctx context.Context, args []string, stdin, fd3 []byte, out *bytes.Buffer, secretOut []byte, opts ...runOption) (int, error) {
	cmd := exec.CommandContext(ctx, "cryptsetup", args...)
	cmd.Env = cleanEnv()
	// A process group of its own: a terminal's Ctrl-C goes to luksdock,
	// which lets the step finish, not to cryptsetup halfway through it.
	// Yet it never outlives luksdock: the kernel kills it when luksdock
	// dies (Pdeathsig; a stopped verify left a key derivation computing),
	// unless the caller says it must finish (outliveLuksdock), and a
	// cancelled context kills its whole group.
	deathsig := syscall.SIGKILL
	if slices.Contains(opts, outliveLuksdock) {
		deathsig = 0
	}
	ownGroup(cmd, deathsig)
	var toClose []*os.File
	defer func() {
		for _, f := range toClose {
			f.Close()
		}
	}()
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			toClose = append(toClose, r, w)
		}
		return r, w, err
	}
	var inW, fd3W, outR *os.File
	if stdin != nil {
		r, w, err := pipe()
		if err != nil {
			return 0, err
		}
		cmd.Stdin, inW = r, w
	}
	if fd3 != nil {
		r, w, err := pipe()
		if err != nil {
			return 0, err
		}
		cmd.ExtraFiles, fd3W = []*os.File{r}, w
	}
	if secretOut != nil {
		r, w, err := pipe()
		if err != nil {
			return 0, err
		}
		cmd.Stdout, outR = w, r
	} else {
		cmd.Stdout = out
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("cryptsetup: %w", err)
	}
	// The parent's copies of the child's ends: closed now, so the pipes
	// end when the child ends.
	for _, f := range toClose {
		if f != inW && f != fd3W && f != outR {
			f.Close()
		}
	}
	toClose = []*os.File{outR}
	for _, w := range []struct {
		f *os.File
		b []byte
	}{{inW, stdin}, {fd3W, fd3}} {
		if w.f != nil {
			// A passphrase or key fits in any pipe buffer: the write
			// cannot block. A child that died already makes it fail,
			// and Wait says why.
			w.f.Write(w.b)
			w.f.Close()
		}
	}
	n := 0
	var overflow bool
	if outR != nil {
		for {
			if n == len(secretOut) {
				// Full: drain the rest over the same buffer's end, and
				// refuse the result.
				overflow = true
				n = max(len(secretOut)-512, 0)
			}
			m, err := outR.Read(secretOut[n:])
			n += m
			if err != nil {
				break
			}
		}
	}
	err := cmd.Wait()
	if err == nil && overflow {
		err = fmt.Errorf("cryptsetup %s printed more than the %d bytes expected", args[0], len(secretOut))
	}
	if err != nil {
		code := exitStatus(err)
		if ctx.Err() != nil {
			return n, fmt.Errorf("cryptsetup %s: %w", args[0], ctx.Err())
		}
		if !errors.As(err, new(*exec.ExitError)) {
			return n, err
		}
		stdout := ""
		if out != nil {
			stdout = out.String()
		}
		return n, cryptsetupError(args, code, stdout, errb.String())
	}
	return n, nil
}

// cryptsetupError is the error of a cryptsetup run that exited with code.
func cryptsetupError(args []string, code int, stdout, stderr string) error {
	msg := stderr
	if strings.TrimSpace(msg) == "" && args[0] != "luksDump" {
		msg = stdout // cryptsetup prints some failures on stdout
	}
	return &Error{Args: args, Code: code, Stderr: msg}
}

// cleanEnv is the environment for child tools: the process's own minus
// anything locale-dependent, so messages are parseable. Secrets are never in
// the environment to begin with.
func cleanEnv() []string {
	env := []string{"LC_ALL=C"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PATH=") {
			env = append(env, kv)
		}
	}
	if len(env) == 1 {
		env = append(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	}
	return env
}

// Mapping is a device-mapper mapping luksdock opened, held open by luksdock
// and marked for deferred removal (cryptsetup close --deferred): the kernel
// removes it by itself as soon as luksdock and the tools it ran have closed
// it, so not even SIGKILL leaves it behind. Kernels without deferred removal
// get a plain cryptsetup close from Close.
//
// Path is the kernel's own node, /dev/dm-N: without udev, libdevmapper
// deletes /dev/mapper/NAME as soon as removal is requested, deferred or not,
// while /dev/dm-N lives exactly as long as the device.
type Mapping struct {
	Name     string
	Path     string
	sys      string // /sys/dev/block/MAJ:MIN, present while the device exists
	hold     *os.File
	deferred bool
}

// HoldMapping takes hold of the open mapping name and marks it for deferred
// removal. If the mark fails the mapping still works; Close removes it. It
// ends the mapping guard OpenWithKey or OpenReadOnly started.
func HoldMapping(ctx context.Context, name string) (*Mapping, error) {
	defer releaseGuard(name)
	m := &Mapping{Name: name, Path: "/dev/mapper/" + name}
	var st unix.Stat_t
	if err := unix.Stat(m.Path, &st); err != nil {
		return m, fmt.Errorf("%s: %w", m.Path, err)
	}
	mm := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	m.sys = "/sys/dev/block/" + mm
	if target, err := os.Readlink(m.sys); err == nil {
		if node := "/dev/" + filepath.Base(target); exists(node) {
			m.Path = node
		}
	}
	f, err := os.Open(m.Path)
	if err != nil {
		return m, fmt.Errorf("opening %s: %w", m.Path, err)
	}
	m.hold = f
	m.deferred = runClose(ctx, "--deferred", name) == nil
	return m, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// Close lets go of the mapping and makes sure it is gone: with deferred
// removal the kernel removes it once the last user closes it; otherwise, or
// if it lingers, cryptsetup close removes it.
func (m *Mapping) Close(ctx context.Context) error {
	if m == nil {
		return nil
	}
	if m.hold != nil {
		m.hold.Close()
		m.hold = nil
	}
	if m.deferred {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if !exists(m.sys) {
				return nil
			}
		}
		// Still there: someone else holds it. Cancel the deferral and close
		// it the ordinary way, which says who is busy.
		_ = runClose(ctx, "--cancel-deferred", m.Name)
	}
	if m.sys != "" && !exists(m.sys) {
		return nil
	}
	return runClose(ctx, m.Name)
}

// AddKeyArgs is the cryptsetup luksAddKey argument list that adds a keyslot
// for a new key: the existing passphrase on standard input (--key-file=-),
// the new key on file descriptor 3, named /proc/self/fd/3 (inside
// cryptsetup, /proc/self is cryptsetup). Shared by AddKey and the plan
// display.
func AddKeyArgs(dev string, pbkdf PBKDF) []string {
	a := []string{"luksAddKey", "--batch-mode", "--key-file=-"}
	a = append(a, pbkdf.Args()...)
	return append(a, dev, "/proc/self/fd/3")
}

// AddKey adds a keyslot for newKey to dev, unlocking it with passphrase.
// Both secrets travel on pipes, never in argv, the environment or a file.
// cryptsetup reads a key file to its end without stripping anything, so
// the keyslot holds exactly newKey: what is typed at its prompt.
func AddKey(ctx context.Context, dev string, passphrase, newKey []byte, pbkdf PBKDF) error {
	if len(newKey) == 0 {
		return errors.New("the new key is empty")
	}
	if err := refuseHostile(dev); err != nil {
		return err
	}
	_, err := run(ctx, AddKeyArgs(dev, pbkdf), passphrase, newKey)
	return err
}

// ownGroup starts cmd in a process group of its own (a terminal's Ctrl-C
// reaches luksdock, not the tool), sends it deathsig when luksdock dies (0:
// none), and kills the whole group when cmd's context is cancelled.
func ownGroup(cmd *exec.Cmd, deathsig syscall.Signal) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathsig}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// exitStatus is the exit status of a command that ended with err, -1 when
// it has none (not started, or killed by a signal).
func exitStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
