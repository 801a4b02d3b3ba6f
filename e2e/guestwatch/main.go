// Command guestwatch is a helper for the QEMU end-to-end guest (e2e/),
// built statically on the host and copied into the guest next to luksdock.
// The guest has only busybox sh, which cannot sample /proc every few
// milliseconds or watch directories with inotify; this does both.
//
//	guestwatch watch -out REPORT [-dirs /tmp,/run] [-every 2ms] -- CMD ARGS...
//
// runs CMD (standard input, output and error inherited) and, until it
// exits, samples the argv (/proc/PID/cmdline), environment
// (/proc/PID/environ), comm and executable of CMD and every descendant every
// -every, runs `dmsetup table` (and, separately recorded,
// `dmsetup table --showkeys`) every -dm-every, and watches -dirs and every
// directory below them with inotify, reading each file created or written
// there when it is closed (and, through a descriptor opened at its
// creation, once more when CMD has exited). It writes what it saw as JSON
// to REPORT (a path outside the watched directories) and exits with CMD's
// exit status. It judges nothing: the Go test scans the report for secrets.
//
//	guestwatch memwatch -out REPORT -shims DIR -pass FILE -vk-dev DEV [-rk FILE] -- CMD ARGS...
//
// reads CMD's memory at fixed points and searches it for the secrets: see
// memwatch.go.
//
//	guestwatch excl DEV...
//
// opens each block device with O_EXCL, as a new luksdock or mkfs would, and
// prints "free DEV" or "busy DEV: ERROR"; it exits 1 if any is busy.
//
//	guestwatch killat -out REPORT (-event start|done -step STEP | -child REGEX [-exe REGEX [-progress write|read -disk DISK]]) [-after DUR] -- CMD ARGS...
//
// runs CMD (a luksdock run with --json; standard input and error
// inherited), copies its standard output line by line to its own, and sends
// CMD a SIGKILL the moment the trigger fires: -event/-step when the JSON
// event line {"event":EVENT,"step":STEP} arrives (before the line is passed
// on), -child when a descendant of CMD has a command line (arguments joined
// by spaces) matching REGEX (polled every millisecond); with -exe only a
// descendant whose /proc/PID/exe is named by that regexp counts (the real
// tool, not a shim script that carries its command line), and with
// -progress only once it has begun its work on -disk (write: the disk's
// written-sectors counter grew since the tool was seen; read: the tool holds
// the disk open and has read 4 KiB since). -after waits that
// long after the trigger before killing. At the kill it records whether CMD
// was still running (not a zombie), its descendants and the device-mapper
// mappings (/sys/block/dm-*/dm/name, no exec); after CMD has exited, how long
// each of those descendants lived on (they are orphaned, not killed), for at
// most -orphans. The JSON report holds every event line with whether it was
// read before the kill, and CMD's exit status (128+signal). It judges
// nothing; it exits 0 unless it could not run CMD or write the report.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/procwatch"
)

// Report is what one watched run exposed. The e2e test decodes it with the
// same field names.
type Report struct {
	Command  []string `json:"command"`
	ExitCode int      `json:"exit_code"`
	Samples  int      `json:"samples"`
	// Procs are the distinct (exe, cmdline, environ) of CMD and its
	// descendants, in the order first seen.
	Procs []Proc `json:"procs"`
	// Files are the files and directories created in the watched
	// directories, in the order created, with the contents of each file as
	// it was when last closed after writing.
	Files []File `json:"files"`
	// DMTable are the distinct outputs of `dmsetup table`;
	// DMTableShowKeys those of `dmsetup table --showkeys`.
	DMTable         []string `json:"dm_table"`
	DMTableShowKeys []string `json:"dm_table_showkeys"`
	DMRuns          int      `json:"dm_runs"`
	// CoreLimit is CMD's "Max core file size" line of /proc/PID/limits.
	CoreLimit string `json:"core_limit"`
	// Watched are the directories watched with inotify.
	Watched []string `json:"watched"`
}

// Proc is one distinct process image seen.
type Proc struct {
	PID     int    `json:"pid"`
	PPID    int    `json:"ppid"`
	Comm    string `json:"comm"`
	Exe     string `json:"exe"`
	Cmdline []byte `json:"cmdline"`
	Environ []byte `json:"environ"`
}

// File is one file or directory created in a watched directory.
type File struct {
	Path string `json:"path"`
	Dir  bool   `json:"dir"`
	// Read is true when the contents were read (at each close after
	// writing and when CMD has exited, through a descriptor opened when the
	// file was created, so a file removed right away is read too); Unread
	// names why not (gone before it could be opened, too large...).
	Read     bool   `json:"read"`
	Unread   string `json:"unread,omitempty"`
	Contents []byte `json:"contents,omitempty"`
	// Exists is whether the path still existed when CMD had exited.
	Exists bool `json:"exists"`
}

// maxContents bounds what is kept of one file.
const maxContents = 4 << 20

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "watch":
		os.Exit(watchCmd(os.Args[2:]))
	case "excl":
		os.Exit(exclCmd(os.Args[2:]))
	case "killat":
		os.Exit(killatCmd(os.Args[2:]))
	case "pauseat":
		os.Exit(pauseatCmd(os.Args[2:]))
	case "memwatch":
		os.Exit(memwatchCmd(os.Args[2:]))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: guestwatch watch -out REPORT [-dirs D,D] [-every 2ms] [-dm-every 100ms] -- CMD ARGS... | guestwatch excl DEV... |\n"+
		"       guestwatch killat -out REPORT (-event start|done -step STEP | -child REGEX [-exe REGEX [-progress write|read -disk DISK]]) [-after DUR] [-orphans DUR] [-pause-event E -pause-step S -pause-file F] -- CMD ARGS... |\n"+
		"       guestwatch pauseat -event start|done -step STEP -pidfile FILE -- CMD ARGS... |\n"+
		"       guestwatch memwatch -out REPORT -shims DIR -pass FILE -vk-dev DEV [-rk FILE] -- CMD ARGS...")
	os.Exit(2)
}

func exclCmd(devs []string) int {
	rc := 0
	for _, d := range devs {
		fd, err := unix.Open(d, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
		if err != nil {
			fmt.Printf("busy %s: %v\n", d, err)
			rc = 1
			continue
		}
		unix.Close(fd)
		fmt.Printf("free %s\n", d)
	}
	return rc
}

type watcher struct {
	mu     sync.Mutex
	rep    Report
	seen   map[string]bool
	dmSeen map[string]bool
	files  map[string]int   // path -> index in rep.Files (latest creation)
	fds    map[int]*os.File // index in rep.Files -> the file, opened when it was created

	ifd  int
	dirs map[int32]string
}

func watchCmd(args []string) int {
	fs := flag.NewFlagSet("watch", flag.ExitOnError)
	out := fs.String("out", "", "write the JSON report here")
	dirs := fs.String("dirs", "/tmp,/run", "comma-separated directories to watch (recursively)")
	every := fs.Duration("every", 2*time.Millisecond, "/proc sampling interval")
	dmEvery := fs.Duration("dm-every", 100*time.Millisecond, "dmsetup table interval")
	fs.Parse(args)
	cmdArgs := fs.Args()
	if *out == "" || len(cmdArgs) == 0 {
		usage()
	}
	w := &watcher{seen: map[string]bool{}, dmSeen: map[string]bool{}, files: map[string]int{}, fds: map[int]*os.File{}, dirs: map[int32]string{}}
	w.rep.Command = cmdArgs
	ifd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: inotify: %v\n", err)
		return 125
	}
	w.ifd = ifd
	for _, d := range strings.Split(*dirs, ",") {
		if d == "" {
			continue
		}
		filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				w.addWatch(p)
			}
			return nil
		})
	}

	cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: %v\n", err)
		return 127
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // /proc and inotify
		defer wg.Done()
		for {
			select {
			case <-done:
				w.poll()
				return
			default:
			}
			w.sample(pid)
			w.poll()
			time.Sleep(*every)
		}
	}()
	go func() { // device-mapper tables
		defer wg.Done()
		t := time.NewTicker(*dmEvery)
		defer t.Stop()
		for {
			w.dmsetup()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	wg.Wait()
	w.rep.ExitCode = 0
	if err != nil {
		w.rep.ExitCode = -1
		if ee, ok := err.(*exec.ExitError); ok {
			w.rep.ExitCode = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				w.rep.ExitCode = 128 + int(ws.Signal())
			}
		}
	}
	for i := range w.rep.Files {
		if f := w.fds[i]; f != nil { // its last contents, even if it is gone
			w.readInto(&w.rep.Files[i], f)
			f.Close()
		}
		_, err := os.Lstat(w.rep.Files[i].Path)
		w.rep.Files[i].Exists = err == nil
	}
	b, err := json.Marshal(&w.rep)
	if err == nil {
		err = os.WriteFile(*out, b, 0o600)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: writing the report: %v\n", err)
		return 125
	}
	return w.rep.ExitCode
}

func (w *watcher) addWatch(dir string) {
	wd, err := unix.InotifyAddWatch(w.ifd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE)
	if err == nil {
		w.dirs[int32(wd)] = dir
		w.rep.Watched = append(w.rep.Watched, dir)
	}
}

// poll handles the pending inotify events.
func (w *watcher) poll() {
	procwatch.ReadEvents(w.ifd, func(ev procwatch.Event) {
		dir, name := w.dirs[ev.Wd], ev.Name
		if dir == "" || name == "" {
			return
		}
		p := filepath.Join(dir, name)
		w.mu.Lock()
		switch {
		case ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			isDir := ev.Mask&unix.IN_ISDIR != 0
			w.rep.Files = append(w.rep.Files, File{Path: p, Dir: isDir, Unread: "never closed after writing while watched"})
			i := len(w.rep.Files) - 1
			w.files[p] = i
			if isDir {
				w.addWatch(p)
			} else if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
				// Held open from its creation, so what is written
				// into it can be read even after it is removed.
				if f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0); err == nil {
					w.fds[i] = f
				}
			}
		case ev.Mask&unix.IN_CLOSE_WRITE != 0:
			i, ok := w.files[p]
			if !ok { // written, not created, during the run
				w.rep.Files = append(w.rep.Files, File{Path: p})
				i = len(w.rep.Files) - 1
				w.files[p] = i
			}
			f := &w.rep.Files[i]
			if fd := w.fds[i]; fd != nil {
				w.readInto(f, fd)
				break
			}
			st, err := os.Lstat(p)
			switch {
			case err != nil:
				f.Unread = "gone before it could be read: " + err.Error()
			case !st.Mode().IsRegular():
				f.Unread = "not a regular file: " + st.Mode().String()
			default:
				if fd, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0); err == nil {
					w.readInto(f, fd)
					fd.Close()
				} else {
					f.Unread = err.Error()
				}
			}
		}
		w.mu.Unlock()
	})
}

// readInto reads the whole of fd into f (from offset 0).
func (w *watcher) readInto(f *File, fd *os.File) {
	st, err := fd.Stat()
	if err != nil {
		f.Unread = err.Error()
		return
	}
	if st.Size() > maxContents {
		f.Unread = "larger than " + strconv.Itoa(maxContents) + " bytes: " + strconv.FormatInt(st.Size(), 10)
		return
	}
	b := make([]byte, st.Size())
	n, err := fd.ReadAt(b, 0)
	if err != nil && n < len(b) {
		f.Unread = err.Error()
		return
	}
	f.Read, f.Unread, f.Contents = true, "", b[:n]
}

type proc struct{ pid, ppid int }

// descendants returns root and every process below it, following
// /proc/PID/task/TID/children (a few small reads per sample, so the sampler
// keeps up under TCG); without that file (CONFIG_PROC_CHILDREN) it scans the
// ppid of every process.
func descendants(root int) []proc {
	if _, err := os.Stat("/proc/" + strconv.Itoa(root) + "/task/" + strconv.Itoa(root) + "/children"); os.IsNotExist(err) {
		return descendantsByScan(root)
	}
	out := []proc{{pid: root}}
	for i := 0; i < len(out); i++ {
		for _, c := range procwatch.Children(out[i].pid) {
			out = append(out, proc{pid: c, ppid: out[i].pid})
		}
	}
	return out
}

func descendantsByScan(root int) []proc {
	out := []proc{{pid: root}}
	for _, p := range procwatch.Descendants(procwatch.Scan(), root) {
		out = append(out, proc{pid: p.PID, ppid: p.PPID})
	}
	return out
}

func (w *watcher) sample(root int) {
	ps := descendants(root)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rep.Samples++
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", root)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max core file size") {
				w.rep.CoreLimit = strings.Join(strings.Fields(l), " ")
			}
		}
	}
	for _, p := range ps {
		dir := "/proc/" + strconv.Itoa(p.pid) + "/"
		c, cerr := os.ReadFile(dir + "cmdline")
		e, eerr := os.ReadFile(dir + "environ")
		if cerr != nil && eerr != nil {
			continue // gone
		}
		exe, _ := os.Readlink(dir + "exe")
		comm, _ := os.ReadFile(dir + "comm")
		key := exe + "\x01" + string(c) + "\x01" + string(e)
		if w.seen[key] {
			continue
		}
		w.seen[key] = true
		w.rep.Procs = append(w.rep.Procs, Proc{PID: p.pid, PPID: p.ppid, Comm: strings.TrimSpace(string(comm)), Exe: exe, Cmdline: c, Environ: e})
	}
}

func (w *watcher) dmsetup() {
	plain, err1 := exec.Command("dmsetup", "table").CombinedOutput()
	keys, err2 := exec.Command("dmsetup", "table", "--showkeys").CombinedOutput()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rep.DMRuns++
	if err1 == nil && !w.dmSeen["p"+string(plain)] {
		w.dmSeen["p"+string(plain)] = true
		w.rep.DMTable = append(w.rep.DMTable, string(plain))
	}
	if err2 == nil && !w.dmSeen["k"+string(keys)] {
		w.dmSeen["k"+string(keys)] = true
		w.rep.DMTableShowKeys = append(w.rep.DMTableShowKeys, string(keys))
	}
}

// startPiped starts CMD with this helper's standard input and error and its
// standard output on a pipe. rc is the exit status to return when it could
// not be started (0 when it was).
func startPiped(args []string) (cmd *exec.Cmd, stdout io.ReadCloser, rc int) {
	cmd = exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stderr = os.Stdin, os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: %v\n", err)
		return nil, nil, 125
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: %v\n", err)
		return nil, nil, 127
	}
	return cmd, stdout, 0
}

// exitStatus is the exit status of a command whose Wait returned err: its
// exit code, 128+N for a signal N, -1 when it is not known.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return -1
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}

// lineEvent is what the helpers read of one of luksdock's --json lines.
type lineEvent struct {
	Event string `json:"event"`
	Step  string `json:"step"`
	State string `json:"state"`
}

// forwardEvents passes r (CMD's standard output) on to this helper's
// standard output line by line, calling fn with each line and its event
// (Event "" when the line is not one) before the line is passed on, so
// that what fn does follows the line as closely as it can.
func forwardEvents(r io.Reader, fn func(line []byte, e lineEvent)) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var e lineEvent
			if json.Unmarshal(line, &e) != nil {
				e = lineEvent{}
			}
			fn(line, e)
			os.Stdout.Write(line)
		}
		if err != nil {
			if err != io.EOF {
				fmt.Fprintf(os.Stderr, "guestwatch: reading the output: %v\n", err)
			}
			return
		}
	}
}
