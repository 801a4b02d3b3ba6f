package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/inventory"
	"luksdock/luks"
	"luksdock/pipeline"
)

// DockDir is where a docked disk is mounted for its backup: DockDir/LABEL.
var DockDir = "/run/luksdock/dock"

// DockOptions say which disk was docked and where to report.
type DockOptions struct {
	// Device is the LUKS device: the block device udev named (/dev/sdb1,
	// or /dev/sdb for LUKS on the whole disk), or a region of an image.
	Device luks.Device
	// InvPath is the inventory to record the run in.
	InvPath string
	// Engine: "kernel" (cryptsetup open, device-mapper), "userspace" (the
	// FUSE engine and a loop device), or "" (kernel when device-mapper
	// works).
	Engine string
	// PowerOff powers a USB drive off once it is locked.
	PowerOff bool
	// Log receives what happens, for people (the journal under systemd);
	// the backup command's own output goes there too.
	Log io.Writer
}

// DockResult is what a docking did.
type DockResult struct {
	UUID, Label, Set string
	// Enrolled is false for a disk this host has no key for: nothing ran.
	Enrolled bool
	Command  string // the command file run ("" none configured)
	Run      *inventory.Backup
	Mount    string
}

// ErrInterrupted means the disk went away (or the service was stopped)
// during the run: recorded as interrupted, the mapping removed.
var ErrInterrupted = errors.New("the backup run was interrupted: the disk was undocked or the service stopped")

// CommandFor is the backup command configured for a disk: the executable
// ConfigDir/run/label-LABEL, else ConfigDir/run/set-SET ("" for none).
func CommandFor(label, set string) string {
	for _, name := range []string{"label-" + label, "set-" + set} {
		if strings.HasSuffix(name, "-") || strings.ContainsAny(name, "/\x00") {
			continue
		}
		p := filepath.Join(ConfigDir(), "run", name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Dock is the backup run on a docked disk (the luksdock-dock@ service): a
// disk this host holds no key for is left alone. Otherwise it wipes a
// keyslot this host was told to forget, unlocks the disk with the host key,
// checks the filesystem (e2fsck -p), mounts it at DockDir/LABEL, merges the
// disk's own history into the inventory, runs the command configured for
// its label or set with LUKSDOCK_MOUNT, LUKSDOCK_LABEL, LUKSDOCK_SET and
// LUKSDOCK_UUID in its environment, records the outcome, duration, bytes
// written and free space (in the disk's history file and the inventory),
// unmounts, locks and (PowerOff) powers the drive off. A cancelled ctx or
// a disk that vanished is recorded as interrupted in the inventory and
// nothing but the mount and the mapping is touched.
func Dock(ctx context.Context, o DockOptions) (*DockResult, error) {
	logf := func(format string, a ...any) { fmt.Fprintf(o.Log, format+"\n", a...) }
	info, err := luks.ReadHeaderDevice(o.Device)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Device.Path, err)
	}
	res := &DockResult{UUID: info.UUID, Label: info.Label, Set: info.Subsystem}
	if PendingForget(info.UUID) {
		msg, err := ApplyForget(ctx, o.Device)
		if err != nil {
			logf("luksdock: disk %s: forgetting this host's keyslot failed: %v", info.UUID, err)
		} else {
			logf("luksdock: disk %s: %s", info.UUID, msg)
		}
	}
	kf := KeyFile(info.UUID)
	method := HostMethod(info.UUID)
	if method == "" {
		logf("luksdock: disk %s is not enrolled on this host; left to the desktop", info.UUID)
		return res, nil
	}
	res.Enrolled = true
	meta, merr := luks.ReadMetadataDevice(o.Device)
	if merr == nil {
		res.Label, res.Set = meta.Label, meta.Set
	}
	now := time.Now()
	_ = inventory.Update(o.InvPath, func(f *inventory.File) error {
		if !f.Seen(info.UUID, o.Device.Path, now) {
			m := meta
			if merr != nil {
				m = luks.Metadata{Label: res.Label, Set: res.Set}
			}
			f.Put(RecordFromToken(info.UUID, m, o.Device.Path, now))
		}
		return nil
	})
	logf("luksdock: disk %s (%s) docked as %s", res.Label, info.UUID, o.Device.Path)

	key := unlockKey{keyFile: kf}
	if method == MethodTPM2 {
		key = unlockKey{tpm2: true}
	}
	engine, err := engineFor(pipeline.Engine(o.Engine), key)
	if err != nil {
		return res, recordFailure(o, res, now, "unlock", err)
	}
	v, err := unlockVolume(ctx, dockDisk(o.Device, info), engine, key, "luksdock-dock-"+strings.ToLower(info.UUID)[:8])
	if err != nil {
		return res, recordFailure(o, res, now, "unlock", err)
	}
	logf("luksdock: unlocked with %s", key)
	closed := false
	defer func() {
		if !closed {
			_ = v.close(context.WithoutCancel(ctx), true)
		}
	}()
	if code, out := fsck(v.dev); code >= 4 {
		return res, recordFailure(o, res, now, "e2fsck", fmt.Errorf("e2fsck -p exit %d: %s", code, strings.TrimSpace(out)))
	} else if code != 0 {
		logf("luksdock: e2fsck -p repaired the filesystem (exit %d): %s", code, strings.TrimSpace(out))
	} else {
		logf("luksdock: e2fsck -p: clean")
	}
	mnt, err := dockMountpoint(res.Label, info.UUID)
	if err == nil {
		err = v.mount(mnt, true, false)
	}
	if err != nil {
		return res, recordFailure(o, res, now, "mount", err)
	}
	res.Mount = mnt
	if err := MergeHistory(o.InvPath, info.UUID, mnt); err != nil {
		logf("luksdock: %v", err)
	}
	host, _ := os.Hostname()
	run := inventory.NewRun(host, now)
	run.Outcome = inventory.OutcomeOK
	res.Command = CommandFor(res.Label, res.Set)
	written0 := lifetimeWrites(v.dev)
	t0 := time.Now()
	if res.Command == "" {
		run.Detail = "no backup command configured (" + filepath.Join(ConfigDir(), "run", "label-"+res.Label) + " or set-" + res.Set + ")"
		logf("luksdock: %s", run.Detail)
	} else {
		logf("luksdock: running %s on %s", res.Command, mnt)
		if err := runCommand(ctx, res.Command, mnt, res, o.Log); err != nil {
			run.Outcome, run.Detail = inventory.OutcomeFailed, err.Error()
		}
	}
	unix.Sync()
	run.Seconds = time.Since(t0).Round(10 * time.Millisecond).Seconds()
	if w := lifetimeWrites(v.dev); w >= written0 && written0 >= 0 {
		run.Bytes = w - written0
	}
	closed = true // finishRun closes the volume
	return res, finishRun(ctx, o, v, res, info.UUID, run, mnt, logf)
}

// finishRun ends a dock run whose command has returned: an interrupted run
// (cancelled, or the disk is gone) is recorded and its volume torn down
// with nothing else touched; otherwise the run goes into the disk's
// history and the inventory, the volume is closed and the drive powered
// off, and the person is told.
func finishRun(ctx context.Context, o DockOptions, v *volume, res *DockResult, uuid string, run inventory.Backup, mnt string, logf func(string, ...any)) error {
	if ctx.Err() != nil || !present(o.Device.Path) {
		run.Outcome, run.Detail = inventory.OutcomeInterrupted, "the disk was undocked or the service stopped during the run"
		res.Run = &run
		v.close(context.WithoutCancel(ctx), true)
		record(o, uuid, run, 0, 0)
		logf("luksdock: %s: INTERRUPTED after %.0f s; mapping removed, nothing else touched; the next docking checks the filesystem first", res.Label, run.Seconds)
		notify(fmt.Sprintf("luksdock: backup to %s interrupted", res.Label), "The disk was undocked during the run. Dock it again to finish.")
		return ErrInterrupted
	}
	size, free := fsSpace(mnt)
	run.FreeLeft = free
	if err := AppendHistory(mnt, run); err != nil {
		logf("luksdock: writing the disk's history: %v", err)
	}
	res.Run = &run
	record(o, uuid, run, size, free)
	locked := "locked"
	if err := v.close(context.WithoutCancel(ctx), false); err != nil {
		logf("luksdock: locking: %v", err)
		locked = "NOT locked: " + err.Error()
	}
	what := fmt.Sprintf("%s: backup %s in %.0f s, %s written, %s free; %s", res.Label, run.Outcome, run.Seconds, disk.SizeString(run.Bytes), disk.SizeString(free), locked)
	if o.PowerOff && v.mnt == "" && v.mapping == "" && v.holderPID == 0 {
		did, usb, err := powerOffUSB(o.Device.Path)
		switch {
		case err != nil:
			what += "; not powered off: " + err.Error()
		case usb:
			logf("luksdock: %s", did)
			what += "; powered off; it can be undocked"
		}
	}
	logf("luksdock: %s", what)
	notify("luksdock: "+res.Label+" "+run.Outcome, what)
	if run.Outcome != inventory.OutcomeOK {
		return fmt.Errorf("the backup command failed: %s", run.Detail)
	}
	return nil
}

// recordFailure records a run that failed before the command and returns err.
func recordFailure(o DockOptions, res *DockResult, start time.Time, step string, err error) error {
	host, _ := os.Hostname()
	run := inventory.NewRun(host, start)
	run.Outcome, run.Seconds, run.Detail = inventory.OutcomeFailed, time.Since(start).Round(10*time.Millisecond).Seconds(), step+": "+err.Error()
	if !present(o.Device.Path) {
		run.Outcome = inventory.OutcomeInterrupted
		err = fmt.Errorf("%w (%s: %v)", ErrInterrupted, step, err)
	}
	res.Run = &run
	record(o, res.UUID, run, 0, 0)
	fmt.Fprintf(o.Log, "luksdock: %s: backup %s at %s: %v\n", res.Label, run.Outcome, step, err)
	notify("luksdock: "+res.Label+" "+run.Outcome, step+": "+err.Error())
	var usage *UsageError
	if errors.Is(err, ErrInterrupted) || errors.As(err, &usage) {
		return err
	}
	// A failed run, whatever failed (a wrong key, a refused engine):
	// exit 4, as dock's exit codes say.
	return &pipeline.Error{Kind: pipeline.KindStep, Err: err}
}

func record(o DockOptions, uuid string, run inventory.Backup, size, free int64) {
	err := inventory.Update(o.InvPath, func(f *inventory.File) error {
		r := f.Find(uuid)
		if r == nil {
			return nil
		}
		r.AddBackups(run)
		if size > 0 {
			r.FSSize, r.FSFree = size, free
		}
		return nil
	})
	if err != nil {
		fmt.Fprintf(o.Log, "luksdock: recording the run in the inventory: %v\n", err)
	}
}

// present says whether the device node and its kernel device still exist.
func present(path string) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return false
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return true
	}
	_, err := os.Stat(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))))
	return err == nil
}

// dockDisk is the docked LUKS device as open's machinery takes it: the
// partition (or whole disk) udev named, or the LUKS range of an image.
func dockDisk(d luks.Device, info luks.Info) *LUKSDisk {
	return &LUKSDisk{Path: d.Path, Name: filepath.Base(d.Path), Image: !d.Direct(), LUKS: d, Info: info}
}

// e2fsckProg is the e2fsck dock runs (a test runs a stand-in).
var e2fsckProg = "e2fsck"

// fsck runs e2fsck -p (preen: fix what is safe without asking). It runs
// to its end (a stop request takes effect after it), in a process group of
// its own, and dies with luksdock (Pdeathsig), as every tool luksdock
// starts does.
func fsck(dev string) (int, string) {
	cmd := exec.Command(e2fsckProg, "-p", dev)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		return 8, err.Error()
	}
	return 0, string(out)
}

// dockMountpoint is where a docked disk is mounted: DockDir/LABEL, or
// DockDir/LABEL-UUID8 when that is taken (an empty directory left by an
// earlier run is used again).
func dockMountpoint(label, uuid string) (string, error) {
	if err := os.MkdirAll(DockDir, 0o755); err != nil {
		return "", err
	}
	name := label
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		name = strings.ToLower(uuid)
	}
	var err error
	for _, mnt := range []string{filepath.Join(DockDir, name), filepath.Join(DockDir, name+"-"+strings.ToLower(uuid)[:8])} {
		if _, err = usableDir(mnt); err == nil {
			return mnt, nil
		}
	}
	return "", err
}

// lifetimeWrites is ext4's count of bytes written to the filesystem on dev
// (/sys/fs/ext4/NAME/lifetime_write_kbytes); -1 when unknown.
func lifetimeWrites(dev string) int64 {
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return -1
	}
	b, err := os.ReadFile(filepath.Join("/sys/fs/ext4", filepath.Base(real), "lifetime_write_kbytes"))
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n * 1024
}

// runCommand runs the backup command in its own process group, with the
// disk's mount point, label, set and LUKS UUID in its environment (and no
// secret: the host key is not in it). A cancelled ctx stops the group
// (SIGTERM, then SIGKILL after 5 s); were luksdock itself to die, the
// command gets SIGTERM (Pdeathsig: only the command's own process; the
// dock unit's cgroup ends the rest).
func runCommand(ctx context.Context, path, mnt string, res *DockResult, log io.Writer) error {
	cmd := exec.Command(path)
	cmd.Dir = mnt
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "LANG=C.UTF-8",
		"LUKSDOCK_MOUNT=" + mnt, "LUKSDOCK_LABEL=" + res.Label, "LUKSDOCK_SET=" + res.Set, "LUKSDOCK_UUID=" + res.UUID,
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
			return <-done
		}
	}
}

// notify tells the people logged in on a desktop, best effort: notify-send
// as each user with a session bus in /run/user. The journal has it anyway.
func notify(summary, body string) {
	ns, err := exec.LookPath("notify-send")
	if err != nil {
		return
	}
	ents, _ := os.ReadDir("/run/user")
	for _, e := range ents {
		uid, err := strconv.Atoi(e.Name())
		if err != nil || uid == 0 {
			continue
		}
		bus := filepath.Join("/run/user", e.Name(), "bus")
		if _, err := os.Stat(bus); err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		u, err := user.LookupId(e.Name())
		if err != nil {
			cancel()
			continue
		}
		cmd := exec.CommandContext(ctx, "setpriv", "--reuid="+u.Uid, "--regid="+u.Gid, "--clear-groups", ns, "--app-name=luksdock", summary, body)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "DBUS_SESSION_BUS_ADDRESS=unix:path=" + bus, "XDG_RUNTIME_DIR=/run/user/" + e.Name()}
		_ = cmd.Run()
		cancel()
	}
}
