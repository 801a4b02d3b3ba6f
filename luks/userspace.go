package luks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
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

// UserspaceVolume is an open LUKS data segment decrypted in-process (the
// "userspace" engine): AES-XTS with plain64 IVs, exactly as dm-crypt does it,
// served through FUSE as one regular file of the segment's size so that
// unmodified tools (mke2fs, e2fsck, dumpe2fs, blkid) can work on it.
//
// Properties of the served file:
//   - reads decrypt whatever is on the backing store (never-written areas
//     read as pseudo-random data, as through dm-crypt);
//   - writes are encrypted and written through to the backing file (no
//     caching in this process; partial sectors are read, modified and
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
// plaintext in its page cache; this package's own buffers are cleared when
// returned to their pool, but plaintext also passes through go-fuse's request
// buffers, which are reused without clearing. Nothing is logged (go-fuse's
// logger is discarded). The volume key is copied in; Close zeroes the copy
// and the expanded key schedules (see xtsCipher.wipe for the one exception
// on CPUs without AES-NI). Memory is not mlocked.
//
// Process death: on Close and on every error path the mount is removed. If
// the process is killed with SIGKILL the kernel aborts the FUSE connection
// as soon as /dev/fuse is closed, so every further access to the file fails
// with ENOTCONN: no plaintext can be read or written any more. (The /dev/fuse
// descriptor is made close-on-exec, so a child such as mke2fs cannot keep a
// dead connection open and hang on it.) The kernel does not remove the
// mountpoint itself, so each mount gets a small watchdog process (/bin/sh in
// its own session, holding only the read end of a pipe): when this process
// dies the pipe closes and the watchdog lazily unmounts and removes the
// private directory. The watchdog knows no key and no data. If the watchdog
// is killed as well, a dead "fuse.luksdock" mount can remain under
// $TMPDIR/luksdock-fuse-*/mnt; CleanupStaleUserspaceMounts removes such
// leftovers. Data written before the kill is in the backing file's page
// cache (encrypted) and reaches the disk as usual, but was not fsynced. A
// private mount namespace is not used because mke2fs and the other tools run
// as child processes in the caller's namespace and must see the file.
type UserspaceVolume struct {
	backing    *os.File
	dataOff    int64 // absolute offset of the segment in backing
	size       int64
	sectorSize int64
	ivTweak    uint64
	key        []byte
	c          *xtsCipher

	dir, mnt, file string
	server         *fuse.Server
	fuseConn       uint32 // minor of the FUSE connection (for abort)
	watchdog       *exec.Cmd
	watchdogW      *os.File

	rmw  sync.RWMutex // exclusive for read-modify-write of partial sectors and for Close
	dead bool         // set by Close under rmw: the key is gone, all I/O fails with EIO

	readBytes, writtenBytes, zeroedBytes atomic.Int64
	readReqs, writeReqs                  atomic.Int64
	backingRead, backingWritten          atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// userspaceFileName is the name of the plaintext file inside the mountpoint.
const userspaceFileName = "volume"

// maxIO is the largest FUSE read/write request and the unit of buffers.
const maxIO = 1 << 20

// MountUserspace serves the decrypted data segment as a regular file through FUSE.
// devPath is the file or block device holding the LUKS device; base is the byte offset of the LUKS device inside it
// (0 for a partition node like /dev/sdi1 or /dev/loop0p1; the partition start, e.g. 1 MiB, for an image file), regionSize the LUKS device's size in bytes.
// key is the volume key (64 bytes for aes-xts 512-bit); the mount keeps its own copy and zeroes it on Close.
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
	devSize, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("userspace engine: size of %s: %w", devPath, err)
	}
	if base+regionSize > devSize {
		f.Close()
		return nil, fmt.Errorf("userspace engine: LUKS device [%d, +%d) extends past the end of %s (%d bytes)", base, regionSize, devPath, devSize)
	}

	v := &UserspaceVolume{
		backing:    f,
		dataOff:    base + seg.Offset,
		size:       size,
		sectorSize: int64(seg.SectorSize),
		ivTweak:    seg.IVTweak,
		key:        append([]byte(nil), key...),
	}
	if v.c, err = newXTSCipher(v.key, seg.SectorSize); err != nil {
		v.abandon()
		return nil, fmt.Errorf("userspace engine: %w", err)
	}
	if err := v.mount(); err != nil {
		v.abandon()
		return nil, fmt.Errorf("userspace engine: %w", err)
	}
	return v, nil
}

// abandon releases everything after a failed MountUserspace.
func (v *UserspaceVolume) abandon() {
	unmounted := true
	if v.server != nil {
		unmounted = v.unmount() == nil
	}
	v.rmw.Lock()
	v.dead = true
	v.wipe()
	v.rmw.Unlock()
	v.backing.Close()
	if unmounted {
		if v.dir != "" {
			os.Remove(v.mnt)
			os.Remove(v.dir)
		}
		v.stopWatchdog()
	}
}

func (v *UserspaceVolume) wipe() {
	clear(v.key)
	if v.c != nil {
		v.c.wipe()
	}
}

func (v *UserspaceVolume) mount() error {
	dir, err := os.MkdirTemp("", "luksdock-fuse-")
	if err != nil {
		return err
	}
	v.dir = dir
	v.mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(v.mnt, 0o700); err != nil {
		return err
	}
	v.file = filepath.Join(v.mnt, userspaceFileName)

	root := &usRoot{vol: v}
	sec := time.Second
	opts := &fs.Options{
		AttrTimeout:  &sec,
		EntryTimeout: &sec,
		MountOptions: fuse.MountOptions{
			FsName:                  "luksdock",
			Name:                    "luksdock",
			MaxWrite:                maxIO,
			MaxInflightRequestBytes: 16 * maxIO,
			DirectMount:             true,
			DisableXAttrs:           true,
			DisableSplice:           true,
			MaxBackground:           16,
			// go-fuse would otherwise print diagnostics on stderr, which
			// garbles the terminal UI; nothing it logs is needed here.
			Logger: log.New(io.Discard, "", 0),
		},
		UID: uint32(os.Getuid()),
		GID: uint32(os.Getgid()),
	}
	server, err := fs.Mount(v.mnt, root, opts)
	if err != nil {
		return fmt.Errorf("FUSE mount on %s: %w", v.mnt, err)
	}
	v.server = server
	// go-fuse's direct mount opens /dev/fuse without O_CLOEXEC. Children
	// (mke2fs, the watchdog) must not inherit it: a child holding the fd
	// would keep a dead connection open and hang on its own I/O after this
	// process died.
	cloexecFuseFDs()
	var st unix.Stat_t
	if err := unix.Stat(v.mnt, &st); err == nil {
		v.fuseConn = unix.Minor(st.Dev)
	}
	if err := v.startWatchdog(); err != nil {
		return fmt.Errorf("start unmount watchdog: %w", err)
	}
	return nil
}

// cloexecFuseFDs sets close-on-exec on every open /dev/fuse descriptor.
func cloexecFuseFDs() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		var fd int
		if _, err := fmt.Sscanf(e.Name(), "%d", &fd); err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			unix.CloseOnExec(fd)
		}
	}
}

// watchdogScript waits for its stdin to close. "done" means the mount was
// already cleaned up; anything else (EOF because the owner died) makes it
// lazily unmount and remove the private directory.
const watchdogScript = `read -r state
[ "$state" = done ] && exit 0
umount -l "$1" 2>/dev/null || fusermount3 -u -z "$1" 2>/dev/null || fusermount -u -z "$1" 2>/dev/null
rmdir "$1" "$2" 2>/dev/null
exit 0`

func (v *UserspaceVolume) startWatchdog() error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "luksdock-unmount-watchdog", v.mnt, v.dir)
	cmd.Stdin = r
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return err
	}
	r.Close()
	v.watchdog, v.watchdogW = cmd, w
	return nil
}

func (v *UserspaceVolume) stopWatchdog() {
	if v.watchdogW == nil {
		return
	}
	io.WriteString(v.watchdogW, "done\n")
	v.watchdogW.Close()
	v.watchdog.Wait()
	v.watchdogW, v.watchdog = nil, nil
}

// unmount removes the FUSE mount: a normal unmount, and if the file is still
// busy a lazy (detached) unmount followed by a bounded wait for the last user;
// if that wait runs out, the FUSE connection is aborted so the serving
// goroutines stop and the key can be wiped.
func (v *UserspaceVolume) unmount() error {
	err := v.server.Unmount()
	if err == nil {
		return nil
	}
	lazyErr := unix.Unmount(v.mnt, unix.MNT_DETACH)
	if lazyErr != nil {
		if out, ferr := exec.Command("fusermount3", "-u", "-z", v.mnt).CombinedOutput(); ferr != nil {
			lazyErr = fmt.Errorf("%v; fusermount3: %v: %s", lazyErr, ferr, strings.TrimSpace(string(out)))
		} else {
			lazyErr = nil
		}
	}
	done := make(chan struct{})
	go func() { v.server.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		if v.fuseConn != 0 {
			abortFuseConn(v.fuseConn)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("unmount %s: %v; the mount is still busy", v.mnt, err)
		}
	}
	if lazyErr != nil {
		return fmt.Errorf("unmount %s: %v; lazy unmount: %v", v.mnt, err, lazyErr)
	}
	return nil
}

// abortFuseConn aborts a FUSE connection through fusectl (mounting fusectl
// on /sys/fs/fuse/connections first if it is not mounted, which needs root):
// pending and future requests fail with ENOTCONN and the serving goroutines
// exit.
func abortFuseConn(conn uint32) error {
	const ctl = "/sys/fs/fuse/connections"
	abort := fmt.Sprintf("%s/%d/abort", ctl, conn)
	if _, err := os.Stat(abort); err != nil {
		if err := unix.Mount("fusectl", ctl, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	return os.WriteFile(abort, []byte("1"), 0)
}

// Path returns the plaintext file to hand to mke2fs/e2fsck. It lives inside
// a private temporary mountpoint (mode 0700) and exists until Close.
func (v *UserspaceVolume) Path() string { return v.file }

// Size returns the size of the plaintext file in bytes (the data segment).
func (v *UserspaceVolume) Size() int64 { return v.size }

// Stats returns the traffic counters so far.
func (v *UserspaceVolume) Stats() UserspaceStats {
	return UserspaceStats{
		ReadBytes:           v.readBytes.Load(),
		WrittenBytes:        v.writtenBytes.Load(),
		ZeroedBytes:         v.zeroedBytes.Load(),
		ReadRequests:        v.readReqs.Load(),
		WriteRequests:       v.writeReqs.Load(),
		BackingReadBytes:    v.backingRead.Load(),
		BackingWrittenBytes: v.backingWritten.Load(),
	}
}

// Close unmounts the file (lazily if it is still busy, aborting the FUSE
// connection if it stays busy for 2 s), zeroes the key copy, fsyncs and
// closes the backing file and removes the mountpoint and its private
// directory. It is idempotent: later calls return the first call's result.
// Should the unmount fail even so, Close returns the error, every further
// request on the file fails with EIO, and the watchdog stays armed to remove
// the mount when this process exits.
func (v *UserspaceVolume) Close() error {
	v.closeOnce.Do(func() {
		var errs []error
		unmountErr := v.unmount()
		if unmountErr != nil {
			errs = append(errs, unmountErr)
		}
		// If the unmount failed the server may still get requests: from now
		// on they fail with EIO instead of using a wiped key.
		v.rmw.Lock()
		v.dead = true
		v.wipe()
		v.rmw.Unlock()
		if err := v.backing.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("fsync %s: %w", v.backing.Name(), err))
		}
		if err := v.backing.Close(); err != nil {
			errs = append(errs, err)
		}
		if unmountErr == nil {
			if err := os.Remove(v.mnt); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			if err := os.Remove(v.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			v.stopWatchdog()
		}
		// else: the watchdog stays armed and removes the mount when this
		// process exits.
		if len(errs) > 0 {
			v.closeErr = fmt.Errorf("userspace engine: close: %w", errors.Join(errs...))
		}
	})
	return v.closeErr
}

// CleanupStaleUserspaceMounts lazily unmounts dead luksdock FUSE mounts (left
// behind when a luksdock process and its watchdog were both killed) and
// removes their private directories. Mounts whose server is alive are left
// alone. It returns the mountpoints it removed.
func CleanupStaleUserspaceMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var stale []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// mountinfo: id parent major:minor root mountpoint opts... - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || len(fields) < 5 || fields[sep+1] != "fuse.luksdock" {
			continue
		}
		mnt := unescapeMountinfo(fields[4])
		// statfs always reaches the FUSE server (stat may be answered from
		// the attribute cache); a dead server gives ENOTCONN.
		var sfs unix.Statfs_t
		if err := unix.Statfs(mnt, &sfs); !errors.Is(err, syscall.ENOTCONN) {
			continue
		}
		stale = append(stale, mnt)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
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

func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &n); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// --- data path ---

var usBufPool = sync.Pool{New: func() any { b := make([]byte, maxIO+2*4096); return &b }}

func getBuf(n int) (*[]byte, []byte) {
	if n <= maxIO+2*4096 {
		p := usBufPool.Get().(*[]byte)
		return p, (*p)[:n]
	}
	b := make([]byte, n)
	return nil, b
}

func putBuf(p *[]byte, b []byte) {
	clear(b) // plaintext or ciphertext: do not leave plaintext in pooled memory
	if p != nil {
		usBufPool.Put(p)
	}
}

// iv returns the plain64 IV of the sector starting at segment byte off.
func (v *UserspaceVolume) iv(off int64) uint64 { return uint64(off/512) + v.ivTweak }

// readPlain reads and decrypts [off, off+len(dst)), which must be sector aligned.
func (v *UserspaceVolume) readPlain(dst []byte, off int64) error {
	n, err := v.backing.ReadAt(dst, v.dataOff+off)
	v.backingRead.Add(int64(n))
	if err != nil {
		return err
	}
	v.c.cryptParallel(dst, dst, v.iv(off), true)
	return nil
}

// writePlain encrypts src into scratch and writes it at sector-aligned off.
func (v *UserspaceVolume) writePlain(src, scratch []byte, off int64) error {
	v.c.cryptParallel(scratch[:len(src)], src, v.iv(off), false)
	n, err := v.backing.WriteAt(scratch[:len(src)], v.dataOff+off)
	v.backingWritten.Add(int64(n))
	return err
}

func (v *UserspaceVolume) read(dest []byte, off int64) (int, error) {
	if off >= v.size || len(dest) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(dest)), v.size)
	ss := v.sectorSize
	a := off / ss * ss
	b := (end + ss - 1) / ss * ss
	v.rmw.RLock()
	defer v.rmw.RUnlock()
	if v.dead {
		return 0, syscall.EIO
	}
	if a == off && b == end {
		if err := v.readPlain(dest[:end-off], off); err != nil {
			return 0, err
		}
	} else {
		p, buf := getBuf(int(b - a))
		defer putBuf(p, buf)
		if err := v.readPlain(buf, a); err != nil {
			return 0, err
		}
		copy(dest, buf[off-a:end-a])
	}
	v.readBytes.Add(end - off)
	return int(end - off), nil
}

// modify applies fn to the plaintext of [off, end) and writes it back
// encrypted; partial sectors at either edge are read first. fn receives the
// sector-aligned plaintext buffer and the offset of off inside it.
func (v *UserspaceVolume) write(data []byte, off int64) (int, error) {
	if off >= v.size {
		return 0, syscall.ENOSPC
	}
	end := min(off+int64(len(data)), v.size)
	data = data[:end-off]
	ss := v.sectorSize
	a := off / ss * ss
	b := (end + ss - 1) / ss * ss
	if a == off && b == end {
		v.rmw.RLock()
		defer v.rmw.RUnlock()
		if v.dead {
			return 0, syscall.EIO
		}
		p, scratch := getBuf(len(data))
		defer putBuf(p, scratch)
		if err := v.writePlain(data, scratch, off); err != nil {
			return 0, err
		}
	} else {
		v.rmw.Lock()
		defer v.rmw.Unlock()
		if v.dead {
			return 0, syscall.EIO
		}
		p, buf := getBuf(int(b - a))
		defer putBuf(p, buf)
		if err := v.readSectorsFor(buf, a, b, off, end); err != nil {
			return 0, err
		}
		copy(buf[off-a:], data)
		if err := v.writePlain(buf, buf, a); err != nil {
			return 0, err
		}
	}
	v.writtenBytes.Add(int64(len(data)))
	return len(data), nil
}

// readSectorsFor fills buf (plaintext of [a,b)) with the current content of
// the first and last sector when [off,end) does not cover them completely.
func (v *UserspaceVolume) readSectorsFor(buf []byte, a, b, off, end int64) error {
	ss := v.sectorSize
	if off != a {
		if err := v.readPlain(buf[:ss], a); err != nil {
			return err
		}
	}
	if end != b && (b-ss != a || off == a) {
		if err := v.readPlain(buf[b-ss-a:], b-ss); err != nil {
			return err
		}
	}
	return nil
}

// zeroRange makes [off, off+length) read back as zeros by writing encrypted
// zeros, in parallel chunks for large ranges.
func (v *UserspaceVolume) zeroRange(off, length int64) error {
	if off >= v.size || length <= 0 {
		if off > v.size {
			return syscall.ENOSPC
		}
		return nil
	}
	end := min(off+length, v.size)
	ss := v.sectorSize
	a := (off + ss - 1) / ss * ss // first whole sector
	b := end / ss * ss            // end of last whole sector
	if a >= b {
		// inside a single sector (or two partial ones)
		_, err := v.write(make([]byte, end-off), off)
		v.writtenBytes.Add(-(end - off))
		v.zeroedBytes.Add(end - off)
		return err
	}
	if off < a {
		if _, err := v.write(make([]byte, a-off), off); err != nil {
			return err
		}
		v.writtenBytes.Add(-(a - off))
	}
	if end > b {
		if _, err := v.write(make([]byte, end-b), b); err != nil {
			return err
		}
		v.writtenBytes.Add(-(end - b))
	}
	v.rmw.RLock()
	defer v.rmw.RUnlock()
	if v.dead {
		return syscall.EIO
	}
	const chunk = maxIO
	var next atomic.Int64
	next.Store(a)
	workers := runtime.GOMAXPROCS(0)
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			p, buf := getBuf(chunk)
			defer putBuf(p, buf)
			for {
				s := next.Add(chunk) - chunk
				if s >= b {
					errc <- nil
					return
				}
				n := min(int64(chunk), b-s)
				z := buf[:n]
				clear(z)
				v.c.cryptUnits(z, z, v.iv(s), false)
				m, err := v.backing.WriteAt(z, v.dataOff+s)
				v.backingWritten.Add(int64(m))
				if err != nil {
					next.Store(b) // stop the others
					errc <- err
					return
				}
			}
		}()
	}
	var errs []error
	for w := 0; w < workers; w++ {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	v.zeroedBytes.Add(end - off)
	return errors.Join(errs...)
}

// --- FUSE nodes ---

// usRoot is the mountpoint directory; it holds the single file.
type usRoot struct {
	fs.Inode
	vol *UserspaceVolume
}

var _ = (fs.NodeOnAdder)((*usRoot)(nil))
var _ = (fs.NodeGetattrer)((*usRoot)(nil))

func (r *usRoot) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, &usFile{vol: r.vol}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild(userspaceFileName, ch, false)
}

func (r *usRoot) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o700
	out.Nlink = 2
	return 0
}

// usFile is the plaintext view of the data segment.
type usFile struct {
	fs.Inode
	vol *UserspaceVolume
}

var (
	_ = (fs.NodeGetattrer)((*usFile)(nil))
	_ = (fs.NodeSetattrer)((*usFile)(nil))
	_ = (fs.NodeOpener)((*usFile)(nil))
	_ = (fs.NodeReader)((*usFile)(nil))
	_ = (fs.NodeWriter)((*usFile)(nil))
	_ = (fs.NodeFsyncer)((*usFile)(nil))
	_ = (fs.NodeFlusher)((*usFile)(nil))
	_ = (fs.NodeAllocater)((*usFile)(nil))
	_ = (fs.NodeStatfser)((*usFile)(nil))
)

func (f *usFile) attr(out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | 0o600
	out.Nlink = 1
	out.Size = uint64(f.vol.size)
	out.Blocks = uint64(f.vol.size / 512)
	out.Blksize = uint32(max(4096, f.vol.sectorSize))
}

func (f *usFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.attr(&out.Attr)
	return 0
}

func (f *usFile) Setattr(ctx context.Context, fh fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if sz, ok := in.GetSize(); ok && sz != uint64(f.vol.size) {
		return syscall.EPERM
	}
	// mode, owner and times are fixed; accept and ignore such changes.
	f.attr(&out.Attr)
	return 0
}

func (f *usFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EPERM
	}
	// Direct I/O: every read and write reaches this process unchanged (up to
	// MaxWrite), and no plaintext is kept in the kernel page cache.
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func toErrno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return syscall.EIO
	}
	return syscall.EIO
}

func (f *usFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.vol.readReqs.Add(1)
	n, err := f.vol.read(dest, off)
	if err != nil {
		return nil, toErrno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (f *usFile) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	f.vol.writeReqs.Add(1)
	n, err := f.vol.write(data, off)
	if err != nil {
		return 0, toErrno(err)
	}
	return uint32(n), 0
}

func (f *usFile) Fsync(ctx context.Context, fh fs.FileHandle, flags uint32) syscall.Errno {
	var err error
	if flags&1 != 0 { // FUSE_FSYNC_FDATASYNC
		err = unix.Fdatasync(int(f.vol.backing.Fd()))
	} else {
		err = f.vol.backing.Sync()
	}
	return toErrno(err)
}

func (f *usFile) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno { return 0 }

func (f *usFile) Allocate(ctx context.Context, fh fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	const keepSize = unix.FALLOC_FL_KEEP_SIZE
	switch {
	case mode&^keepSize == 0:
		// Reserve space: the whole segment already exists.
		if off+size > uint64(f.vol.size) && mode&keepSize == 0 {
			return syscall.ENOSPC
		}
		return 0
	case mode&^keepSize == unix.FALLOC_FL_ZERO_RANGE:
		if off+size > uint64(f.vol.size) && mode&keepSize == 0 {
			return syscall.ENOSPC
		}
		return toErrno(f.vol.zeroRange(int64(off), int64(size)))
	default:
		// FALLOC_FL_PUNCH_HOLE (discard), COLLAPSE/INSERT_RANGE, UNSHARE.
		return syscall.EOPNOTSUPP
	}
}

func (f *usFile) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = uint64(f.vol.size / 4096)
	out.NameLen = 255
	return 0
}
