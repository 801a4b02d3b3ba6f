package luks

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
)

// Segment describes a LUKS data segment as the header gives it.
type Segment struct {
	Offset     int64  // bytes from the start of the LUKS device (e.g. 16 MiB for LUKS2 default, 2 MiB for LUKS1)
	Size       int64  // bytes of encrypted data; 0 = to the end of the device region
	SectorSize int    // 512 or 4096 (encryption data unit)
	IVTweak    uint64 // LUKS2 segments.N.iv_tweak; 0 for LUKS1
	Cipher     string // "aes-xts-plain64" only (others: clear error)
}

// UserspaceStats counts the traffic of a userspace volume.
type UserspaceStats struct {
	ReadBytes    int64 // plaintext bytes returned to readers
	WrittenBytes int64 // plaintext bytes accepted from write requests
	ZeroedBytes  int64 // plaintext bytes zeroed by fallocate(FALLOC_FL_ZERO_RANGE)
	// ReadRequests and WriteRequests count FUSE read and write requests.
	ReadRequests, WriteRequests int64
	// BackingReadBytes and BackingWrittenBytes count ciphertext moved to and
	// from the backing file or device, including the read-modify-write of
	// partially written sectors.
	BackingReadBytes    int64
	BackingWrittenBytes int64
}

// UserspaceVolume is an open LUKS data segment decrypted in userspace (the
// "userspace" engine): AES-XTS with plain64 IVs, exactly as dm-crypt does it,
// served through FUSE as one regular file of the segment's size so that
// unmodified tools (mke2fs, e2fsck, dumpe2fs, blkid) can work on it.
//
// The volume is served by a separate process, the volume server (see
// serverArg0 in userspace_server.go for why and how): MountUserspace starts
// it, hands it the backing file and (over a pipe) the key, and waits until
// the file is there. The calling process makes no copy of the key (it is
// written to the pipe from the caller's own secret memory, which the caller
// frees) and may read and write the file itself.
//
// Properties of the served file:
//   - reads decrypt whatever is on the backing store (never-written areas
//     read as pseudo-random data, as through dm-crypt);
//   - writes are encrypted and written through to the backing file (no
//     caching in the server; partial sectors are read, modified and
//     rewritten under a lock); large requests are encrypted on all cores;
//   - fallocate(FALLOC_FL_ZERO_RANGE) writes encrypted zeros in large
//     parallel chunks (kernels that do not pass ZERO_RANGE to FUSE servers
//     refuse it themselves; mke2fs then falls back to writing zeros, which
//     is correct but sends the zeros through FUSE); plain fallocate within
//     the size is a no-op; hole punching (FALLOC_FL_PUNCH_HOLE, i.e.
//     discard) and the other modes fail with EOPNOTSUPP, because a hole in
//     the ciphertext would not read back as zeros;
//   - the size is fixed: writes past the end fail with ENOSPC, truncation to
//     another size with EPERM;
//   - fsync/fdatasync fsync the backing file.
//
// The mountpoint is a directory inside a private temporary directory (mode
// 0700); the FUSE mount is not allow_other, so only the mounting user sees
// it. The file is opened with FOPEN_DIRECT_IO, so the kernel keeps no
// plaintext in its page cache; the server's own buffers are cleared when
// returned to their pool, but plaintext also passes through go-fuse's request
// buffers, which are reused without clearing. Nothing is logged (go-fuse's
// logger is discarded). The server zeroes the key and the expanded key
// schedules when the volume is closed (see xtsCipher.wipe for the one
// exception on CPUs without AES-NI). The server's working key is secret
// memory (luksdock/internal/secret: locked, out of core dumps); its AES key
// schedules are in the Go heap, wiped at close.
//
// Process death: if the calling process dies (even by SIGKILL), the server
// sees its control pipe close, detaches the mount and aborts the FUSE
// connection at once, so every further access to the file fails with
// ENOTCONN (a mke2fs left running by the dead process stops there), then
// wipes the key, fsyncs and removes the private directory. Data written
// before that is on the backing store. If the server is killed, the kernel
// aborts the connection itself (the server holds the only /dev/fuse
// descriptor) and a dead mount remains: Close removes it, or, if the caller
// is dead too, CleanupStaleUserspaceMounts on a later run. A private mount
// namespace is not used because mke2fs and the other tools run as child
// processes in the caller's namespace and must see the file.
type UserspaceVolume struct {
	dir, mnt, file string
	size           int64

	cmd     *exec.Cmd
	ctl     *os.File      // the server's stdin: commands; closing it ends the volume
	replies *os.File      // the server's stdout
	rd      *bufio.Reader // on replies

	exited  chan struct{} // closed when the server has exited
	waitErr error         // its exit status, once exited is closed

	mu        sync.Mutex // one command at a time
	closed    bool
	final     UserspaceStats
	closeOnce sync.Once
	closeErr  error
}

// userspaceFileName is the name of the plaintext file inside the mountpoint.
const userspaceFileName = "volume"

// maxIO is the largest FUSE read/write request and the unit of buffers.
const maxIO = 1 << 20

// serverStartTimeout bounds the wait for the server's mount; serverCloseTimeout
// the wait for its close, which includes fsyncing the backing store.
const (
	serverStartTimeout = 30 * time.Second
	serverCloseTimeout = 5 * time.Minute
)

// MountUserspace serves the decrypted data segment as a regular file through FUSE.
// devPath is the file or block device holding the LUKS device; base is the byte offset of the LUKS device inside it
// (0 for a partition node like /dev/sdi1 or /dev/loop0p1; the partition start, e.g. 1 MiB, for an image file), regionSize the LUKS device's size in bytes.
// key is the volume key (64 bytes for aes-xts 512-bit); it is handed to the volume server, which zeroes its copy on Close.
func MountUserspace(devPath string, base, regionSize int64, seg Segment, key []byte) (*UserspaceVolume, error) {
	if seg.Cipher != "aes-xts-plain64" {
		return nil, fmt.Errorf("userspace engine: cipher %q is not supported (only aes-xts-plain64)", seg.Cipher)
	}
	if seg.SectorSize != 512 && seg.SectorSize != 4096 && seg.SectorSize != 1024 && seg.SectorSize != 2048 {
		return nil, fmt.Errorf("userspace engine: unsupported encryption sector size %d", seg.SectorSize)
	}
	if len(key) != 64 && len(key) != 32 {
		return nil, fmt.Errorf("userspace engine: aes-xts-plain64 needs a 32- or 64-byte volume key, got %d bytes", len(key))
	}
	if base < 0 || regionSize <= 0 || seg.Offset < 0 || seg.Size < 0 {
		return nil, fmt.Errorf("userspace engine: negative offset or size (base %d, region %d, segment offset %d, size %d)", base, regionSize, seg.Offset, seg.Size)
	}
	if seg.Offset%512 != 0 {
		return nil, fmt.Errorf("userspace engine: segment offset %d is not a multiple of 512", seg.Offset)
	}
	size := seg.Size
	if size == 0 {
		size = regionSize - seg.Offset
	}
	if size <= 0 || seg.Offset+size > regionSize {
		return nil, fmt.Errorf("userspace engine: segment [%d, +%d) does not fit in the %d-byte LUKS device", seg.Offset, size, regionSize)
	}
	if size%int64(seg.SectorSize) != 0 {
		return nil, fmt.Errorf("userspace engine: segment size %d is not a multiple of the sector size %d", size, seg.SectorSize)
	}

	f, err := os.OpenFile(devPath, os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("userspace engine: %w", err)
	}
	defer f.Close() // the server has its own descriptor
	devSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("userspace engine: size of %s: %w", devPath, err)
	}
	if base+regionSize > devSize {
		return nil, fmt.Errorf("userspace engine: LUKS device [%d, +%d) extends past the end of %s (%d bytes)", base, regionSize, devPath, devSize)
	}
	v, err := startVolumeServer(f, serverConfig{
		DataOff:    base + seg.Offset,
		Size:       size,
		SectorSize: int64(seg.SectorSize),
		IVTweak:    seg.IVTweak,
		KeyLen:     len(key),
		UID:        uint32(os.Getuid()),
		GID:        uint32(os.Getgid()),
	}, key)
	if err != nil {
		return nil, fmt.Errorf("userspace engine: %w", err)
	}
	v.size = size
	return v, nil
}

// startVolumeServer runs the volume server on backing and waits for its mount.
func startVolumeServer(backing *os.File, cfg serverConfig, key []byte) (*UserspaceVolume, error) {
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		ctlR.Close()
		ctlW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{serverArg0},
		Env:        serverEnv(),
		Dir:        "/",
		Stdin:      ctlR,
		Stdout:     repW,
		Stderr:     os.Stderr, // only the Go runtime writes there (a crash)
		ExtraFiles: []*os.File{backing},
		// Its own session: a Ctrl-C or hangup aimed at luksdock's terminal
		// must not end the volume under a step that is finishing.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	ctlR.Close()
	repW.Close()
	if err != nil {
		ctlW.Close()
		repR.Close()
		return nil, fmt.Errorf("start the volume server: %w", err)
	}
	v := &UserspaceVolume{cmd: cmd, ctl: ctlW, replies: repR, rd: bufio.NewReader(repR), exited: make(chan struct{})}
	go func() { v.waitErr = cmd.Wait(); close(v.exited) }()
	fail := func(err error) (*UserspaceVolume, error) {
		v.ctl.Close()
		v.kill()
		v.replies.Close()
		return nil, err
	}
	msg, err := json.Marshal(cfg)
	if err != nil {
		return fail(err)
	}
	// The key goes from where the caller keeps it straight into the pipe,
	// after the configuration line (a pipe holds both without blocking).
	_, err = ctlW.Write(append(msg, '\n'))
	if err == nil {
		_, err = ctlW.Write(key)
	}
	if err != nil {
		return fail(fmt.Errorf("volume server: %w", err))
	}
	var ready serverReady
	if err := v.readReply(&ready, serverStartTimeout); err != nil {
		return fail(err)
	}
	if ready.Error != "" {
		return fail(errors.New(ready.Error))
	}
	v.dir, v.mnt = ready.Dir, ready.Mnt
	v.file = filepath.Join(v.mnt, userspaceFileName)
	return v, nil
}

// serverEnv is the volume server's environment: only what it needs.
func serverEnv() []string {
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, k := range []string{"TMPDIR", "GORACE"} {
		if x, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+x)
		}
	}
	return env
}

// readReply reads one JSON line from the server within d.
func (v *UserspaceVolume) readReply(x any, d time.Duration) error {
	v.replies.SetReadDeadline(time.Now().Add(d))
	line, err := v.rd.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("volume server: no answer in %v", d)
		}
		return fmt.Errorf("volume server ended unexpectedly (%v)", v.exitStatus(err))
	}
	if err := json.Unmarshal(line, x); err != nil {
		return fmt.Errorf("volume server: bad answer %q: %w", line, err)
	}
	return nil
}

// exitStatus describes why the server stopped answering.
func (v *UserspaceVolume) exitStatus(readErr error) string {
	select {
	case <-v.exited:
		if v.waitErr == nil {
			return "exit status 0"
		}
		return v.waitErr.Error()
	case <-time.After(time.Second):
		return readErr.Error()
	}
}

// kill ends the server and reaps it.
func (v *UserspaceVolume) kill() {
	v.cmd.Process.Kill()
	<-v.exited
}

// serverPid is the volume server's process id.
func (v *UserspaceVolume) serverPid() int { return v.cmd.Process.Pid }

// Path returns the plaintext file to hand to mke2fs/e2fsck. It lives inside
// a private temporary mountpoint (mode 0700) and exists until Close.
func (v *UserspaceVolume) Path() string { return v.file }

// Size returns the size of the plaintext file in bytes (the data segment).
func (v *UserspaceVolume) Size() int64 { return v.size }

// Stats returns the traffic counters so far (after Close: the final ones).
// If the server cannot be asked, it returns zero counts.
func (v *UserspaceVolume) Stats() UserspaceStats {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return v.final
	}
	var s UserspaceStats
	if _, err := io.WriteString(v.ctl, "stats\n"); err != nil {
		return s
	}
	v.readReply(&s, serverStartTimeout)
	return s
}

// Close unmounts the file (lazily if it is still busy, aborting the FUSE
// connection if it stays busy for 2 s), has the server zero the key, fsync
// and close the backing store and remove the mountpoint and its private
// directory, and waits for the server to exit. It is idempotent: later calls
// return the first call's result. If the server has died or does not
// answer, Close kills it, detaches a mount it left, removes the private
// directory and returns an error.
func (v *UserspaceVolume) Close() error {
	v.closeOnce.Do(func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		v.closed = true
		var r serverClosed
		_, err := io.WriteString(v.ctl, "close\n")
		if err != nil {
			err = fmt.Errorf("volume server ended unexpectedly (%s)", v.exitStatus(err))
		} else {
			err = v.readReply(&r, serverCloseTimeout)
		}
		v.ctl.Close()
		if err != nil {
			v.kill()
			v.replies.Close()
			// The server is gone: its mount (if any) is dead. Detach it.
			if uerr := unix.Unmount(v.mnt, unix.MNT_DETACH); uerr != nil && !errors.Is(uerr, syscall.EINVAL) && !errors.Is(uerr, syscall.ENOENT) {
				err = fmt.Errorf("%w; detach %s: %v", err, v.mnt, uerr)
			}
			os.Remove(v.mnt)
			os.Remove(v.dir)
			v.closeErr = fmt.Errorf("userspace engine: close: %w", err)
			return
		}
		v.final = r.Stats
		select {
		case <-v.exited:
		case <-time.After(10 * time.Second):
			v.kill()
		}
		v.replies.Close()
		switch {
		case r.Error != "":
			v.closeErr = fmt.Errorf("userspace engine: close: %s", r.Error)
		case v.waitErr != nil:
			v.closeErr = fmt.Errorf("userspace engine: close: volume server: %w", v.waitErr)
		}
	})
	return v.closeErr
}

// CleanupStaleUserspaceMounts lazily unmounts dead luksdock FUSE mounts (left
// behind when a luksdock process and its volume server were both killed) and
// removes their private directories. Mounts whose server is alive are left
// alone. It returns the mountpoints it removed. It also removes private
// directories in $TMPDIR that such a kill left empty (killed while closing),
// once they are a minute old.
func CleanupStaleUserspaceMounts() ([]string, error) {
	var stale []string
	for _, m := range disk.Host.MountInfo() {
		if m.FSType != disk.VolumeFSType {
			continue
		}
		// statfs always reaches the FUSE server (stat may be answered from
		// the attribute cache); a dead server gives ENOTCONN.
		var sfs unix.Statfs_t
		if err := unix.Statfs(m.MountPoint, &sfs); !errors.Is(err, syscall.ENOTCONN) {
			continue
		}
		stale = append(stale, m.MountPoint)
	}
	removeEmptyPrivateDirs(time.Minute)
	var removed []string
	var errs []error
	for _, mnt := range stale {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mnt, err))
			continue
		}
		os.Remove(mnt)
		if parent := filepath.Dir(mnt); strings.HasPrefix(filepath.Base(parent), "luksdock-fuse-") {
			os.Remove(parent)
		}
		removed = append(removed, mnt)
	}
	return removed, errors.Join(errs...)
}

// removeEmptyPrivateDirs removes $TMPDIR/luksdock-fuse-* directories that
// are empty or hold only an empty "mnt", last changed more than age ago (a
// server making its directory mounts within milliseconds). rmdir removes
// nothing but empty directories and fails on a mountpoint, so a live volume
// is never touched.
func removeEmptyPrivateDirs(age time.Duration) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "luksdock-fuse-*"))
	for _, d := range dirs {
		st, err := os.Lstat(d)
		if err != nil || !st.IsDir() || time.Since(st.ModTime()) < age {
			continue
		}
		ents, err := os.ReadDir(d)
		if err != nil || len(ents) > 1 || len(ents) == 1 && (ents[0].Name() != "mnt" || !ents[0].IsDir()) {
			continue
		}
		if len(ents) == 1 {
			if st, err := os.Lstat(filepath.Join(d, "mnt")); err != nil || time.Since(st.ModTime()) < age || os.Remove(filepath.Join(d, "mnt")) != nil {
				continue
			}
		}
		os.Remove(d)
	}
}
