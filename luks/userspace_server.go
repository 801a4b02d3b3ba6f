package luks

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
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

	"luksdock/disk"
	"luksdock/internal/secret"
)

// The volume server: the process that holds the volume key of a
// UserspaceVolume and answers its FUSE requests. MountUserspace starts it by
// executing /proc/self/exe with argv[0] set to serverArg0; the init function
// below recognises that and runs the server instead of the program's main.
// It therefore works in any binary that links this package, luksdock and
// the test binaries alike.
//
// Why a separate process: a process must never wait on a FUSE request to a
// mount that it serves itself. When such a process is SIGKILLed, its serving
// threads die first and a thread still waiting on a request they had already
// taken can never be answered; the kernel cannot finish killing the process
// (the wait is uninterruptible once the request is in userspace, and the
// connection is only aborted when the last thread lets go of /dev/fuse).
// luksdock itself reads the volume (verify, tests) and, as root, go-fuse's
// mount-time poll hack opens a file on the new mount. With the server in its
// own process, every request from luksdock or its children is answered by a
// process that is not being killed with them, and the server never touches
// its own mount (as root it mounts /dev/fuse itself and hands go-fuse the
// descriptor, which skips the poll hack).
//
// Protocol, on the server's stdin and stdout (pipes; nothing else is
// inherited but the backing file as fd 3):
//
//	owner → server: one JSON line (serverConfig), then KeyLen raw key bytes
//	server → owner: one JSON line (serverReady): the mountpoint, or an error
//	owner → server: "stats\n"  → one JSON line (UserspaceStats)
//	owner → server: "close\n"  → unmount, wipe the key, fsync; one JSON line
//	                             (serverClosed); the server exits
//	EOF on stdin (the owner died or closed the pipe), SIGTERM, SIGINT or
//	SIGHUP: the mount is detached at once and the connection aborted, so
//	that no process can read or write plaintext any more; the key is wiped,
//	the private directory removed, and the server exits.
//
// The key never appears in argv, the environment or a file. The server runs
// in its own session, so a Ctrl-C or hangup aimed at luksdock's terminal
// does not reach it: luksdock finishes the running step and closes the
// volume itself.
const serverArg0 = "luksdock-userspace-volume"

// serverComm is the server's process name (comm, at most 15 bytes): without
// it ps would show "exe".
const serverComm = "luksdock-volume"

func init() {
	if len(os.Args) == 1 && os.Args[0] == serverArg0 {
		os.Exit(serveVolume(os.Stdin, os.Stdout, os.NewFile(3, "backing")))
	}
}

// serverConfig is the first line the owner sends; the key follows it.
type serverConfig struct {
	DataOff    int64  `json:"data_off"`
	Size       int64  `json:"size"`
	SectorSize int64  `json:"sector_size"`
	IVTweak    uint64 `json:"iv_tweak"`
	KeyLen     int    `json:"key_len"`
	UID        uint32 `json:"uid"`
	GID        uint32 `json:"gid"`
}

// serverReady is the server's answer to the configuration.
type serverReady struct {
	Dir   string `json:"dir,omitempty"` // the private directory (mode 0700)
	Mnt   string `json:"mnt,omitempty"` // the mountpoint inside it
	Error string `json:"error,omitempty"`
}

// serverClosed is the server's answer to "close".
type serverClosed struct {
	Stats UserspaceStats `json:"stats"`
	Error string         `json:"error,omitempty"`
}

// volServer is the volume inside the server process: the data path and the
// FUSE mount.
type volServer struct {
	backing    *os.File
	dataOff    int64 // absolute offset of the segment in backing
	size       int64
	sectorSize int64
	ivTweak    uint64
	key        []byte
	c          *xtsCipher

	dir, mnt string
	server   *fuse.Server
	fuseConn uint32

	rmw  sync.RWMutex // exclusive for read-modify-write of partial sectors and for close
	dead bool         // set under rmw when the key is wiped: all I/O fails with EIO

	readBytes, writtenBytes, zeroedBytes atomic.Int64
	readReqs, writeReqs                  atomic.Int64
	backingRead, backingWritten          atomic.Int64
}

// serveVolume runs the server; its result is the exit status.
func serveVolume(ctl io.Reader, out io.Writer, backing *os.File) int {
	os.WriteFile("/proc/self/comm", []byte(serverComm), 0)
	// The key is in this process's memory: never in a core file (luksdock
	// sets the same limit, which is inherited; a test binary does not).
	unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0})
	// Terminal signals are not ours (own session); a polite kill is handled
	// like the owner's death, below.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	signal.Ignore(syscall.SIGPIPE)

	// The configuration line and the key are read without a buffer: a
	// bufio.Reader would take the key into its heap buffer with the line.
	cfgLine, key, err := readConfig(ctl)
	in := bufio.NewReader(ctl)
	reply := func(x any) {
		b, _ := json.Marshal(x)
		out.Write(append(b, '\n'))
	}
	var v *volServer
	if err == nil {
		v, err = startServer(cfgLine, key, backing)
	}
	secret.Free(key)
	if err != nil {
		reply(serverReady{Error: err.Error()})
		return 1
	}
	reply(serverReady{Dir: v.dir, Mnt: v.mnt})

	cmds := make(chan string)
	go func() {
		defer close(cmds)
		for {
			line, err := in.ReadString('\n')
			if err != nil {
				return
			}
			cmds <- strings.TrimSpace(line)
		}
	}()
	for {
		select {
		case <-sigs:
			v.shutdown(false)
			return 1
		case cmd, ok := <-cmds:
			switch {
			case !ok:
				// The owner is gone: nobody may use the plaintext any more.
				v.shutdown(false)
				return 1
			case cmd == "stats":
				reply(v.stats())
			case cmd == "close":
				err := v.shutdown(true)
				r := serverClosed{Stats: v.stats()}
				if err != nil {
					r.Error = err.Error()
				}
				reply(r)
				if err != nil {
					return 1
				}
				return 0
			}
		}
	}
}

// readConfig reads the configuration line and the key that follows it
// from ctl, byte by byte up to the line's end (it is short), then the key
// straight into secret memory, which the caller frees.
func readConfig(ctl io.Reader) (line, key []byte, err error) {
	var c [1]byte
	for len(line) < 4096 {
		if _, err := io.ReadFull(ctl, c[:]); err != nil {
			return nil, nil, fmt.Errorf("read configuration: %w", err)
		}
		if c[0] == '\n' {
			break
		}
		line = append(line, c[0])
	}
	var cfg serverConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return nil, nil, fmt.Errorf("configuration: %w", err)
	}
	if cfg.KeyLen != 32 && cfg.KeyLen != 64 {
		return nil, nil, fmt.Errorf("configuration: key length %d", cfg.KeyLen)
	}
	key = secret.New(cfg.KeyLen)
	if _, err := io.ReadFull(ctl, key); err != nil {
		secret.Free(key)
		return nil, nil, fmt.Errorf("read key: %w", err)
	}
	return line, key, nil
}

// startServer mounts the volume with the configuration and key readConfig
// read; the key is copied.
func startServer(line, key []byte, backing *os.File) (*volServer, error) {
	var cfg serverConfig
	if err := json.Unmarshal(line, &cfg); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	v, err := newVolServer(backing, cfg, key)
	if err != nil {
		return nil, err
	}
	if err := v.mount(cfg.UID, cfg.GID); err != nil {
		v.wipe()
		if v.dir != "" {
			os.Remove(v.mnt)
			os.Remove(v.dir)
		}
		return nil, err
	}
	return v, nil
}

// newVolServer sets up the data path on backing; the key is copied.
func newVolServer(backing *os.File, cfg serverConfig, key []byte) (*volServer, error) {
	v := &volServer{
		backing:    backing,
		dataOff:    cfg.DataOff,
		size:       cfg.Size,
		sectorSize: cfg.SectorSize,
		ivTweak:    cfg.IVTweak,
		key:        secret.Clone(key), // the working key
	}
	var err error
	if v.c, err = newXTSCipher(v.key, int(cfg.SectorSize)); err != nil {
		v.wipe()
		return nil, err
	}
	return v, nil
}

func (v *volServer) wipe() {
	secret.Free(v.key)
	if v.c != nil {
		v.c.wipe()
	}
}

func (v *volServer) stats() UserspaceStats {
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

func (v *volServer) mount(uid, gid uint32) error {
	dir, err := os.MkdirTemp("", "luksdock-fuse-")
	if err != nil {
		return err
	}
	v.dir = dir
	v.mnt = filepath.Join(dir, "mnt")
	if err := os.Mkdir(v.mnt, 0o700); err != nil {
		return err
	}

	sec := time.Second
	opts := &fs.Options{
		AttrTimeout:  &sec,
		EntryTimeout: &sec,
		MountOptions: fuse.MountOptions{
			FsName: "luksdock",
			// mounted as fuse.luksdock: disk.VolumeFSType
			Name:                    strings.TrimPrefix(disk.VolumeFSType, "fuse."),
			MaxWrite:                maxIO,
			MaxInflightRequestBytes: 16 * maxIO,
			DisableXAttrs:           true,
			DisableSplice:           true,
			MaxBackground:           16,
			// Nothing go-fuse logs is needed, and the server's stderr is
			// luksdock's terminal.
			Logger: log.New(io.Discard, "", 0),
		},
		UID: uid,
		GID: gid,
	}
	root := &usRoot{vol: v}
	if os.Geteuid() != 0 {
		// Without root, go-fuse mounts through fusermount3 and then opens
		// a file on the new mount (its poll hack) from this process: the
		// one place where the server touches its own mount.
		opts.MountOptions.DirectMount = true
		server, err := fs.Mount(v.mnt, root, opts)
		if err != nil {
			return fmt.Errorf("FUSE mount on %s: %w", v.mnt, err)
		}
		v.server = server
		v.fuseConn = fuseConnOf(v.mnt)
		return nil
	}
	// As root: mount /dev/fuse ourselves and give go-fuse the descriptor
	// ("/dev/fd/N"), so that nothing in this process ever opens or stats a
	// file on its own mount. "/dev/fd/N" is go-fuse's (and libfuse's)
	// syntax for "descriptor N", parsed as a string and never opened: it
	// works on systems without a /dev/fd link, and go-fuse accepts no other
	// spelling (/proc/self/fd/N would be taken for a mountpoint).
	fd, err := mountFuse(v.mnt, maxIO)
	if err != nil {
		return fmt.Errorf("FUSE mount on %s: %w", v.mnt, err)
	}
	server, err := fuse.NewServer(fs.NewNodeFS(root, opts), fmt.Sprintf("/dev/fd/%d", fd), &opts.MountOptions)
	if err != nil {
		unix.Unmount(v.mnt, unix.MNT_DETACH)
		unix.Close(fd)
		return fmt.Errorf("FUSE server on %s: %w", v.mnt, err)
	}
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		unix.Unmount(v.mnt, unix.MNT_DETACH)
		return fmt.Errorf("FUSE mount on %s: %w", v.mnt, err)
	}
	v.server = server
	v.fuseConn = fuseConnOf(v.mnt)
	return nil
}

// mountFuse opens /dev/fuse (close-on-exec) and mounts it on dir as
// fuse.luksdock (disk.VolumeFSType), as fusermount would; it returns the
// descriptor. Root only.
func mountFuse(dir string, maxRead int) (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,max_read=%d", fd, os.Geteuid(), os.Getegid(), maxRead)
	if err := unix.Mount("luksdock", dir, disk.VolumeFSType, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// fuseConnOf finds the FUSE connection number (the minor of the mount's
// device) of the mount at dir in /proc/self/mountinfo, without touching the
// mount itself. 0 if not found.
func fuseConnOf(dir string) uint32 {
	for _, m := range disk.Host.MountInfo() {
		if m.MountPoint != dir {
			continue
		}
		var maj, minor uint32
		if _, err := fmt.Sscanf(m.MajMin, "%d:%d", &maj, &minor); err == nil {
			return minor
		}
	}
	return 0
}

// shutdown ends the volume. orderly (the owner asked): unmount, and if the
// file is still busy detach the mount and give its last user 2 s before the
// connection is aborted. Otherwise (the owner died, or a signal): detach and
// abort at once. Then the key is wiped, the backing file fsynced and
// closed, and the private directory removed (when the mount is gone).
func (v *volServer) shutdown(orderly bool) error {
	var errs []error
	unmountErr := v.unmount(orderly)
	if unmountErr != nil {
		errs = append(errs, unmountErr)
	}
	// Requests still arriving (the mount could not be removed) fail with EIO
	// instead of using a wiped key.
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
	}
	return errors.Join(errs...)
}

func (v *volServer) unmount(orderly bool) error {
	var err error
	if orderly {
		if err = unix.Unmount(v.mnt, 0); err == nil {
			return v.waitServer(5 * time.Second)
		}
	}
	lazyErr := unix.Unmount(v.mnt, unix.MNT_DETACH)
	if lazyErr != nil {
		if out, ferr := exec.Command("fusermount3", "-u", "-z", v.mnt).CombinedOutput(); ferr != nil {
			lazyErr = fmt.Errorf("%v; fusermount3: %v: %s", lazyErr, ferr, strings.TrimSpace(string(out)))
		} else {
			lazyErr = nil
		}
	}
	if orderly && v.waitServer(2*time.Second) == nil {
		return lazyErr
	}
	if v.fuseConn != 0 {
		abortFuseConn(v.fuseConn)
	}
	if werr := v.waitServer(5 * time.Second); werr != nil {
		return fmt.Errorf("unmount %s: %v; %v", v.mnt, err, werr)
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

// waitServer waits up to d for the serving loops to end.
func (v *volServer) waitServer(d time.Duration) error {
	done := make(chan struct{})
	go func() { v.server.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		return errors.New("the mount is still busy")
	}
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
func (v *volServer) iv(off int64) uint64 { return uint64(off/512) + v.ivTweak }

// readPlain reads and decrypts [off, off+len(dst)), which must be sector aligned.
func (v *volServer) readPlain(dst []byte, off int64) error {
	n, err := v.backing.ReadAt(dst, v.dataOff+off)
	v.backingRead.Add(int64(n))
	if err != nil {
		return err
	}
	v.c.cryptParallel(dst, dst, v.iv(off), true)
	return nil
}

// writePlain encrypts src into scratch and writes it at sector-aligned off.
func (v *volServer) writePlain(src, scratch []byte, off int64) error {
	v.c.cryptParallel(scratch[:len(src)], src, v.iv(off), false)
	n, err := v.backing.WriteAt(scratch[:len(src)], v.dataOff+off)
	v.backingWritten.Add(int64(n))
	return err
}

func (v *volServer) read(dest []byte, off int64) (int, error) {
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
func (v *volServer) write(data []byte, off int64) (int, error) {
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
func (v *volServer) readSectorsFor(buf []byte, a, b, off, end int64) error {
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
func (v *volServer) zeroRange(off, length int64) error {
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
	vol *volServer
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
	vol *volServer
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
