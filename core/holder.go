package core

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/internal/secret"
	"luksdock/luks"
)

// The volume holder: with the userspace engine, the decrypted volume is a
// file served through FUSE by a volume server (luks.MountUserspace), which
// ends its volume as soon as the process that started it closes its control
// pipe, i.e. exits. luksdock open returns once the disk is mounted, so it
// cannot be that process. It starts a holder instead: /proc/self/exe again,
// with argv[0] set to holderArg0, in a session of its own (a hangup or Ctrl-C
// on the terminal open ran in does not reach it). The holder starts the
// volume server, tells open the plaintext file, and then waits, doing
// nothing, until SIGTERM or SIGINT (luksdock close sends SIGTERM once it has
// unmounted the filesystem). Then it unmounts what is still mounted from its
// volume (a clean unmount only: a busy filesystem keeps the holder serving),
// waits until the loop device on the file is gone and closes the volume
// (the server wipes the key and fsyncs the backing store).
//
// Protocol, on the holder's stdin and stdout (pipes):
//
//	open → holder: one JSON line (holderConfig), then KeyLen raw key bytes
//	holder → open: one JSON line (holderReady): the plaintext file, or an error
//	open → holder: "commit\n" once the mount is recorded for luksdock close
//
// A holder whose open ends (killed, or failed) before it committed sees its
// standard input close and releases the volume by itself, as on SIGTERM:
// nothing would ever tell close about it.
//
// The key is in no argv, environment or file; the holder keeps no copy of
// it once the server has it. If the holder is killed with SIGKILL the
// server sees its control pipe close and detaches the volume at once: the
// mounted filesystem then fails every access (EIO) instead of writing
// anywhere, and the disk's ext4 journal covers what was in flight.
const holderArg0 = "luksdock-volume-holder"

func init() {
	if len(os.Args) == 1 && os.Args[0] == holderArg0 {
		os.Exit(holdVolume(os.Stdin, os.Stdout))
	}
}

type holderConfig struct {
	// Lock is the whole disk or image, held with a shared flock while the
	// volume is open: prepare (which takes it exclusively) refuses it.
	Lock    string       `json:"lock"`
	Path    string       `json:"path"`
	Base    int64        `json:"base"`
	Size    int64        `json:"size"`
	Segment luks.Segment `json:"segment"`
	KeyLen  int          `json:"key_len"`
}

type holderReady struct {
	File  string `json:"file,omitempty"`
	Error string `json:"error,omitempty"`
}

// holdVolume is the holder's main.
func holdVolume(in io.Reader, out io.Writer) int {
	// Signals first: a close that comes while the volume is starting
	// still finds it closed properly.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
	reply := func(r holderReady) { _ = json.NewEncoder(out).Encode(r) }
	// The configuration line byte by byte, then the key straight into
	// secret memory: a bufio.Reader would take the key into its heap
	// buffer along with the line.
	var line []byte
	var c [1]byte
	for len(line) < 1<<16 {
		if _, err := io.ReadFull(in, c[:]); err != nil {
			reply(holderReady{Error: "holder: no configuration"})
			return 1
		}
		if c[0] == '\n' {
			break
		}
		line = append(line, c[0])
	}
	var cfg holderConfig
	if err := json.Unmarshal(line, &cfg); err != nil || cfg.KeyLen <= 0 || cfg.KeyLen > 128 {
		reply(holderReady{Error: "holder: bad configuration"})
		return 1
	}
	key := secret.New(cfg.KeyLen)
	defer secret.Free(key)
	if _, err := io.ReadFull(in, key); err != nil {
		reply(holderReady{Error: "holder: no key"})
		return 1
	}
	lock, err := os.Open(cfg.Lock)
	if err == nil {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	}
	if err != nil {
		reply(holderReady{Error: fmt.Sprintf("%s is locked by a luksdock that is preparing it (%v)", cfg.Lock, err)})
		return 1
	}
	defer lock.Close()
	v, err := luks.MountUserspace(cfg.Path, cfg.Base, cfg.Size, cfg.Segment, key)
	secret.Free(key)
	if err != nil {
		reply(holderReady{Error: err.Error()})
		return 1
	}
	reply(holderReady{File: v.Path()})
	if c, ok := out.(io.Closer); ok {
		c.Close()
	}
	abandoned := make(chan struct{})
	go func() {
		var b [7]byte
		if n, _ := io.ReadFull(in, b[:]); string(b[:n]) != "commit\n" {
			close(abandoned)
		}
	}()
	for released := false; !released; {
		select {
		case <-sigs:
			// Still mounted and busy: keep serving; the next SIGTERM tries again.
			released = releaseFile(v.Path())
		case <-abandoned:
			// open ended before it recorded the mount: release it (the
			// mount is seconds old and no one was told of it), trying
			// again while something still holds it.
			for !releaseFile(v.Path()) {
				time.Sleep(time.Second)
			}
			released = true
		}
	}
	if err := v.Close(); err != nil {
		return 1
	}
	return 0
}

// releaseFile unmounts the filesystems mounted from loop devices on file
// (a clean unmount; never lazy) and waits until those loop devices are
// gone. It reports whether nothing uses file any more.
func releaseFile(file string) bool {
	loops := disk.Host.LoopsBackedBy(file)
	mounts := (disk.Sys{Root: "/"}).MountInfo()
	for _, l := range loops {
		mm := devNumOf(l)
		for _, m := range mounts {
			if m.MajMin == mm {
				unix.Sync()
				if err := unix.Unmount(m.MountPoint, 0); err != nil {
					return false
				}
			}
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(disk.Host.LoopsBackedBy(file)) == 0 {
			return true
		}
	}
	// A loop device that nobody mounts but that stays bound (not
	// autoclear, or held open by someone): detach it, as the file is
	// about to go.
	for _, l := range disk.Host.LoopsBackedBy(file) {
		if f, err := os.Open(l); err == nil {
			_ = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
			f.Close()
		}
	}
	return true
}

// devNumOf is a block device node's "MAJ:MIN".
func devNumOf(node string) string {
	var st unix.Stat_t
	if unix.Stat(node, &st) != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
}

// startHolder starts a holder for the LUKS device d with the volume key
// and returns its pid and the plaintext file it serves.
// holder is a started volume holder, not yet committed.
type holder struct {
	pid  int
	file string
	in   *os.File // the holder's standard input: "commit", or closed
}

// commit tells the holder that open recorded its mount: it now serves until
// luksdock close stops it.
func (h *holder) commit() error {
	_, err := h.in.Write([]byte("commit\n"))
	h.in.Close()
	return err
}

// abandon closes the holder's standard input without committing: it
// releases the volume by itself (stopHolder waits for that).
func (h *holder) abandon() { h.in.Close() }

func startHolder(lock string, d luks.Device, seg luks.Segment, key []byte) (h *holder, err error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, k := range []string{"TMPDIR", "GORACE"} {
		if x, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+x)
		}
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe", Args: []string{holderArg0}, Env: env, Dir: "/",
		Stdin: inR, Stdout: outW, Stderr: null,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	defer outR.Close()
	if err != nil {
		inW.Close()
		return nil, fmt.Errorf("start the volume holder: %w", err)
	}
	// Reap it if it exits while luksdock open still runs; after open
	// returns, init does.
	go cmd.Wait()
	size := d.Size
	if size == 0 {
		// The rest of the image or block device (a block device's
		// stat size is 0: its end is found by seeking).
		if f, err := os.Open(d.Path); err == nil {
			end, _ := f.Seek(0, io.SeekEnd)
			f.Close()
			size = end - d.Base
		}
	}
	msg, _ := json.Marshal(holderConfig{Lock: lock, Path: d.Path, Base: d.Base, Size: size, Segment: seg, KeyLen: len(key)})
	// the key straight from where the caller keeps it into the pipe
	_, err = inW.Write(append(msg, '\n'))
	if err == nil {
		_, err = inW.Write(key)
	}
	if err != nil {
		inW.Close()
		cmd.Process.Kill()
		return nil, fmt.Errorf("volume holder: %w", err)
	}
	outR.SetReadDeadline(time.Now().Add(60 * time.Second))
	line, err := bufio.NewReader(outR).ReadBytes('\n')
	var r holderReady
	if err == nil {
		err = json.Unmarshal(line, &r)
	}
	if err == nil && r.Error != "" {
		err = errors.New(r.Error)
	}
	if err != nil {
		inW.Close()
		cmd.Process.Kill()
		return nil, fmt.Errorf("volume holder: %w", err)
	}
	return &holder{pid: cmd.Process.Pid, file: r.File, in: inW}, nil
}

// isHolder reports whether pid is a running volume holder.
func isHolder(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.TrimRight(string(b), "\x00") == holderArg0
}

// stopHolder sends the holder SIGTERM and waits up to d for it to exit.
func stopHolder(pid int, d time.Duration) error {
	if !isHolder(pid) {
		return nil
	}
	if err := unix.Kill(pid, unix.SIGTERM); err != nil {
		return err
	}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if !isHolder(pid) || isZombie(pid) {
			return nil
		}
	}
	return fmt.Errorf("the volume holder (pid %d) did not stop within %s", pid, d)
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
