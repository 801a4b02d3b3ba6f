package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Disk is a disk image attached to the guest as USB mass storage.
type Disk struct {
	// ID names the disk: the QEMU block node is ID, the USB device
	// ID-usb and the SCSI disk ID-hd.
	ID string
	// Image is the host file backing the disk (raw format). It outlives
	// undocking; inspect it on the host after the VM has exited.
	Image string
	// Transport is "bot" (usb-bot + scsi-hd, the default), "uas"
	// (usb-uas + scsi-hd) or "storage" (legacy usb-storage, whose SCSI
	// vendor/product are QEMU's own), or "ahci": not a dock at all but a
	// SATA disk (ide-hd on an AHCI controller of its own), which answers
	// ATA commands such as SMART; Product is its model, and it cannot be
	// hot-plugged.
	Transport string
	// Vendor and Product are the SCSI INQUIRY vendor (max 8 chars) and
	// product (max 16 chars); Serial is both the USB iSerial and the SCSI
	// unit serial number.
	Vendor, Product, Serial string
	// Hotplug leaves the disk undocked at boot; dock it with VM.Plug.
	Hotplug bool
	// LogicalBlockSize and PhysicalBlockSize are the sector sizes the dock
	// reports (scsi-hd logical_block_size, physical_block_size; 0: QEMU's
	// default, 512). Many USB-SATA bridges report 4096-byte logical sectors.
	LogicalBlockSize, PhysicalBlockSize int
	// FailReadAt, when positive, makes every read of the 512-byte sector at
	// this byte offset fail with EIO (QEMU's blkdebug between the image and
	// the disk), as a failing disk's unreadable sector does; writes succeed.
	FailReadAt int64
}

func (d Disk) transport() string {
	if d.Transport == "" {
		return "bot"
	}
	return d.Transport
}

// Config describes one guest boot.
type Config struct {
	Guest    *Guest
	Luksdock string // host path of the luksdock binary; "" leaves it out
	// Script is the scenario, a busybox sh script run as root after the
	// modules are loaded, with the helpers of guest/e2e.sh available.
	Script string
	// Files are extra files placed under /e2e/ in the guest (mode 0600).
	Files map[string][]byte
	// Programs are extra host executables installed in the guest as
	// /usr/bin/NAME (mode 0755), e.g. the guestwatch helper.
	Programs map[string]string
	Disks    []Disk
	// Controller is "xhci" (qemu-xhci, default) or "ehci" (usb-ehci).
	Controller string
	MemoryMB   int // default 1024
	// Terminal adds a third serial port (ttyS2 in the guest), reachable
	// through VM.Term, for programs that need a terminal.
	Terminal bool
	// Timeout bounds the whole boot; the VM is killed when it expires.
	Timeout time.Duration
	// Log receives every console and data line as it arrives (optional).
	Log func(string)
	// RootDisk, when set, boots a full system instead of the busybox
	// initramfs: this raw ext4 image is the root filesystem (virtio,
	// /dev/vda), Guest.Initramfs is that system's own initrd (used as it
	// is: Script, Files, Programs and Luksdock do not apply) and
	// KernelArgs are added to the command line.
	RootDisk   string
	KernelArgs string
	// QEMUArgs are added to QEMU's command line as they are (a TPM2:
	// -chardev socket,... -tpmdev emulator,... -device tpm-tis,...).
	QEMUArgs []string
}

// Line is one line of guest output with the host time it arrived.
type Line struct {
	T    time.Time
	Chan string // "console" (ttyS0) or "data" (ttyS1)
	Text string
}

// VM is a running QEMU guest.
type VM struct {
	cfg     Config
	dir     string
	cmd     *exec.Cmd
	data    net.Conn
	term    net.Conn
	qmp     *qmpClient
	started time.Time
	cancel  context.CancelFunc

	mu     sync.Mutex
	lines  []Line
	notify chan struct{} // closed and replaced whenever lines grow
	exited chan struct{}
	runErr error
	stderr bytes.Buffer
}

// ErrNoQEMU wraps every reason the VM tests cannot run on this machine.
var ErrNoQEMU = errors.New("QEMU guest unavailable")

// QEMUBinary returns the path of qemu-system-x86_64 or an error wrapping
// ErrNoQEMU that names the missing piece.
func QEMUBinary() (string, error) {
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return "", fmt.Errorf("%w: qemu-system-x86_64 not in PATH (apt-get install qemu-system-x86)", ErrNoQEMU)
	}
	return p, nil
}

// Start boots a guest. dir is a scratch directory for the unix sockets and
// the per-boot initrd; its path must be short (a socket path is limited to
// 108 bytes), so prefer a directory directly under /tmp over t.TempDir().
// It returns once the guest's data channel and QMP are connected.
func Start(dir string, cfg Config) (*VM, error) {
	qemu, err := QEMUBinary()
	if err != nil {
		return nil, err
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 3 * time.Minute
	}
	initrd := cfg.Guest.Initramfs
	appendArgs := "console=ttyS0,115200 loglevel=6 panic=-1 rdinit=/init"
	if cfg.RootDisk != "" {
		appendArgs = "console=ttyS0,115200 panic=-1 root=/dev/vda rw " + cfg.KernelArgs
	} else {
		ov, err := overlay(cfg.Luksdock, cfg.Script, cfg.Files, cfg.Programs)
		if err != nil {
			return nil, err
		}
		base, err := os.ReadFile(cfg.Guest.Initramfs)
		if err != nil {
			return nil, err
		}
		initrd = filepath.Join(dir, "initrd.cpio")
		if err := os.WriteFile(initrd, append(base, ov...), 0o600); err != nil {
			return nil, err
		}
	}
	qmpPath := filepath.Join(dir, "qmp.sock")
	dataPath := filepath.Join(dir, "data.sock")
	termPath := filepath.Join(dir, "term.sock")
	if len(qmpPath) > 100 {
		return nil, fmt.Errorf("scratch dir path too long for a unix socket: %s", dir)
	}
	ctrl := "qemu-xhci"
	bus := "usb0.0"
	if cfg.Controller == "ehci" {
		ctrl = "usb-ehci"
	}
	args := []string{
		"-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", strconv.Itoa(cfg.MemoryMB),
		"-nodefaults", "-no-reboot", "-display", "none", "-no-user-config",
		"-kernel", cfg.Guest.Kernel, "-initrd", initrd,
		"-append", appendArgs,
		"-chardev", "stdio,id=con,signal=off", "-serial", "chardev:con",
		"-chardev", "socket,id=data,path=" + dataPath + ",server=on,wait=on", "-serial", "chardev:data",
	}
	if cfg.Terminal {
		args = append(args, "-chardev", "socket,id=term,path="+termPath+",server=on,wait=on", "-serial", "chardev:term")
	}
	if cfg.RootDisk != "" {
		args = append(args, "-drive", "file="+cfg.RootDisk+",if=virtio,format=raw,cache=unsafe")
	}
	args = append(args,
		"-qmp", "unix:"+qmpPath+",server=on,wait=off",
		"-device", ctrl+",id=usb0",
	)
	for _, d := range cfg.Disks {
		args = append(args,
			"-blockdev", "driver=file,node-name="+d.ID+"-file,filename="+d.Image+",cache.direct=off",
		)
		file := d.ID + "-file"
		if d.FailReadAt > 0 {
			// raw-format raises blkdebug's read_aio event on every read, which
			// arms the rule; the rule fails requests covering the sector.
			args = append(args, "-blockdev", fmt.Sprintf("driver=blkdebug,node-name=%s-dbg,image=%s,"+
				"inject-error.0.event=read_aio,inject-error.0.iotype=read,inject-error.0.errno=5,inject-error.0.sector=%d,inject-error.0.once=off",
				d.ID, file, d.FailReadAt/512))
			file = d.ID + "-dbg"
		}
		args = append(args, "-blockdev", "driver=raw,node-name="+d.ID+",file="+file)
		if !d.Hotplug {
			for _, dev := range d.devices(bus) {
				args = append(args, "-device", dev.commandLine())
			}
		}
	}
	args = append(args, cfg.QEMUArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.WaitDelay = 5 * time.Second
	vm := &VM{cfg: cfg, dir: dir, cmd: cmd, cancel: cancel, notify: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = &lockedWriter{mu: &vm.mu, w: &vm.stderr}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stdin = nil
	vm.started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("%w: starting %s: %v", ErrNoQEMU, qemu, err)
	}
	go vm.readLines("console", stdout)
	go func() {
		err := cmd.Wait()
		vm.mu.Lock()
		vm.runErr = err
		vm.mu.Unlock()
		close(vm.exited)
	}()
	vm.data, err = dialRetry(dataPath, vm.exited)
	if err != nil {
		vm.Kill()
		return nil, vm.startErr("data channel", err)
	}
	go vm.readLines("data", vm.data)
	if cfg.Terminal {
		vm.term, err = dialRetry(termPath, vm.exited)
		if err != nil {
			vm.Kill()
			return nil, vm.startErr("terminal channel", err)
		}
	}
	qc, err := dialRetry(qmpPath, vm.exited)
	if err != nil {
		vm.Kill()
		return nil, vm.startErr("QMP", err)
	}
	vm.qmp, err = newQMP(qc)
	if err != nil {
		vm.Kill()
		return nil, vm.startErr("QMP handshake", err)
	}
	return vm, nil
}

func (vm *VM) startErr(what string, err error) error {
	<-vm.exited
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return fmt.Errorf("%w: %s: %v; qemu: %v: %s", ErrNoQEMU, what, err, vm.runErr, strings.TrimSpace(vm.stderr.String()))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func dialRetry(path string, exited <-chan struct{}) (net.Conn, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-exited:
			return nil, errors.New("qemu exited")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, err
		}
	}
}

func (vm *VM) readLines(ch string, r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			s = strings.TrimRight(s, "\r\n")
			s = strings.ReplaceAll(s, "\r", "")
			vm.mu.Lock()
			vm.lines = append(vm.lines, Line{T: time.Now(), Chan: ch, Text: s})
			close(vm.notify)
			vm.notify = make(chan struct{})
			vm.mu.Unlock()
			if vm.cfg.Log != nil {
				vm.cfg.Log(fmt.Sprintf("%s| %s", ch[:1], s))
			}
		}
		if err != nil {
			return
		}
	}
}

// Lines returns a copy of every line received so far.
func (vm *VM) Lines() []Line {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Line(nil), vm.lines...)
}

// Transcript returns all guest output so far, each line prefixed with its
// seconds since QEMU started and its channel ("c" console, "d" data), plus
// QEMU's stderr.
func (vm *VM) Transcript() string {
	var b strings.Builder
	for _, l := range vm.Lines() {
		fmt.Fprintf(&b, "%7.3f %s| %s\n", l.T.Sub(vm.started).Seconds(), l.Chan[:1], l.Text)
	}
	vm.mu.Lock()
	if vm.stderr.Len() > 0 {
		fmt.Fprintf(&b, "qemu stderr:\n%s\n", vm.stderr.String())
	}
	vm.mu.Unlock()
	return b.String()
}

// WaitLine waits until a line on channel ch ("" for any) matching re has
// arrived, searching from line index from; it returns the line and its
// index. It fails when the VM exits or timeout passes first.
func (vm *VM) WaitLine(ch string, re *regexp.Regexp, from int, timeout time.Duration) (Line, int, error) {
	deadline := time.After(timeout)
	for {
		vm.mu.Lock()
		for i := from; i < len(vm.lines); i++ {
			l := vm.lines[i]
			if (ch == "" || l.Chan == ch) && re.MatchString(l.Text) {
				vm.mu.Unlock()
				return l, i, nil
			}
		}
		from = len(vm.lines)
		notify := vm.notify
		vm.mu.Unlock()
		select {
		case <-notify:
		case <-vm.exited:
			// Drain output that raced the exit.
			time.Sleep(100 * time.Millisecond)
			vm.mu.Lock()
			for i := from; i < len(vm.lines); i++ {
				l := vm.lines[i]
				if (ch == "" || l.Chan == ch) && re.MatchString(l.Text) {
					vm.mu.Unlock()
					return l, i, nil
				}
			}
			vm.mu.Unlock()
			return Line{}, -1, fmt.Errorf("guest exited before a line matching %q", re)
		case <-deadline:
			return Line{}, -1, fmt.Errorf("timed out after %v waiting for a line matching %q", timeout, re)
		}
	}
}

// WaitMark waits for the data-channel marker "@@E2E NAME ..." and returns
// the words after NAME (NAME may itself be several words).
func (vm *VM) WaitMark(name string, timeout time.Duration) ([]string, Line, error) {
	re := regexp.MustCompile(`^@@E2E ` + regexp.QuoteMeta(name) + `( |$)`)
	l, _, err := vm.WaitLine("data", re, 0, timeout)
	if err != nil {
		return nil, l, err
	}
	return strings.Fields(l.Text)[1+len(strings.Fields(name)):], l, nil
}

// Blob returns the contents a scenario sent with `emit NAME FILE`, waiting
// up to timeout for the block to be complete.
func (vm *VM) Blob(name string, timeout time.Duration) ([]byte, error) {
	_, begin, err := vm.WaitLine("data", regexp.MustCompile(`^@@E2E blob-begin `+regexp.QuoteMeta(name)+`$`), 0, timeout)
	if err != nil {
		return nil, err
	}
	_, end, err := vm.WaitLine("data", regexp.MustCompile(`^@@E2E blob-end `+regexp.QuoteMeta(name)+`$`), begin, timeout)
	if err != nil {
		return nil, err
	}
	var b64 strings.Builder
	for _, l := range vm.Lines()[begin+1 : end] {
		if l.Chan == "data" {
			b64.WriteString(strings.TrimSpace(l.Text))
		}
	}
	return base64.StdEncoding.DecodeString(b64.String())
}

// Send writes a line to the scenario's standard input (see host_wait).
func (vm *VM) Send(line string) error {
	_, err := io.WriteString(vm.data, line+"\n")
	return err
}

// Term returns the connection to the guest's ttyS2 (Config.Terminal).
func (vm *VM) Term() net.Conn { return vm.term }

// Wait waits for the scenario's exit marker and for QEMU to exit, and
// returns the scenario's exit status.
func (vm *VM) Wait(timeout time.Duration) (int, error) {
	l, _, err := vm.WaitLine("data", regexp.MustCompile(`^@@E2E exit [0-9]+$`), 0, timeout)
	if err != nil {
		return -1, err
	}
	rc, _ := strconv.Atoi(strings.Fields(l.Text)[2])
	select {
	case <-vm.exited:
	case <-time.After(30 * time.Second):
		vm.Kill()
		return rc, errors.New("guest reported its exit but QEMU did not stop within 30s")
	}
	return rc, nil
}

// Kill stops QEMU (if still running) and releases its resources.
func (vm *VM) Kill() {
	vm.cancel()
	<-vm.exited
	if vm.data != nil {
		vm.data.Close()
	}
	if vm.term != nil {
		vm.term.Close()
	}
	if vm.qmp != nil {
		vm.qmp.close()
	}
}

// Elapsed returns the time since QEMU was started.
func (vm *VM) Elapsed() time.Duration { return time.Since(vm.started) }
