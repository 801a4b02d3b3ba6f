package reliability

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/procwatch"
)

// A "while the tool runs" signal must land while the REAL tool runs and has
// done part of its work: not while a shim that carries the tool's name
// sleeps before starting it, and not before the tool has touched the disk.
// drive() therefore fires a child trigger only when
//
//  1. a descendant's /proc/PID/exe is the real binary (realTool), and
//  2. that process has begun its work on the disk: a writer (luks-format's
//     cryptsetup, mkfs.ext4) has changed bytes of its target since it was
//     first seen; a reader (verify's cryptsetup and e2fsck) holds the disk
//     open and has read from it.
//
// To make that window wide on any machine, the tool is throttled once it
// is seen: it is stopped (SIGSTOP) and let run in short slices (SIGCONT
// until its read or write counter in /proc/PID/io moves, at most
// throttleSlice), and the progress is checked between slices, while it is
// stopped. Its start is not delayed; its work, I/O included, is slowed.
// When the progress is there it is continued and the signal is sent at
// once, so the tool is running, with part of its output written, when
// luksdock gets the signal.

// throttleSlice is the longest the throttled tool runs between two checks.
const throttleSlice = 2 * time.Millisecond

// realTool is the resolved path of the binary PATH gives for tool.
func realTool(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Fatalf("%s is not installed: %v", tool, err)
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// exeOf is /proc/PID/exe resolved ("" once the process is gone).
func exeOf(pid int) string {
	s, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return strings.TrimSuffix(s, " (deleted)")
}

// procIO reads one counter of /proc/PID/io (rchar, wchar, ...).
func procIO(pid int, key string) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+": "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// chunkHashes hashes a file in 64 KiB chunks: a cheap snapshot to tell
// later which parts changed.
func chunkHashes(path string) ([]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []uint64
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			h := fnv.New64a()
			h.Write(buf[:n])
			out = append(out, h.Sum64())
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// changedChunks counts the 64 KiB chunks of path that differ from before.
func changedChunks(path string, before []uint64) (int, error) {
	now, err := chunkHashes(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range now {
		if i >= len(before) || now[i] != before[i] {
			n++
		}
	}
	return n, nil
}

// memfdStage finds luksdock's in-memory LUKS stand-in among the open files
// of pid (cryptsetup formats it when the target is an image file).
func memfdStage(pid int) string {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		if l, _ := os.Readlink(fd); strings.HasPrefix(l, "/memfd:luksdock-luks-header") {
			return fd
		}
	}
	return ""
}

// opensDisk says whether pid holds open the disk (or the stand-in luksdock
// gives it): the image or loop device, its partition, the memfd stand-in
// or the userspace engine's FUSE volume.
func opensDisk(pid int, file string) bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		l, _ := os.Readlink(fd)
		switch {
		case file != "" && l == file,
			strings.HasPrefix(l, "/dev/loop"),
			strings.HasPrefix(l, "/memfd:luksdock-luks-header"),
			strings.Contains(l, "/luksdock-fuse-"):
			return true
		}
	}
	return false
}

// stopShim makes a directory holding a script named tool that stops itself
// (SIGSTOP) and then execs the real tool. It adds no delay of its own: it
// hands the test the moment right before the exec, so that the real tool
// can be caught as it starts (catchExec) even when it runs for only a few
// milliseconds. What is signalled is never the shim: see catchMidTool.
func stopShim(t *testing.T, tool string) string {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\nkill -STOP $$\nexec %s \"$@\"\n", realTool(t, tool))
	if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// procState is the state letter of /proc/PID/stat (0 when gone).
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	r := strings.LastIndexByte(s, ')')
	if r < 0 || len(s) < r+3 {
		return 0
	}
	return s[r+2]
}

// catchExec continues a stopped shim and stops it again the moment its exec
// of the real tool has happened (/proc/PID/exe is real), before the tool
// has done its work. It reports whether it got there.
func catchExec(pid int, real string) bool {
	syscall.Kill(pid, syscall.SIGCONT)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		switch exeOf(pid) {
		case real:
			syscall.Kill(pid, syscall.SIGSTOP)
			return true
		case "":
			return false
		}
	}
	return false
}

// catchMidTool throttles the real tool pid (a child of luksdock, pid
// owner) until it has made progress and returns with the tool continued
// and the evidence; ok is false when the tool ended first. A writer's
// target is luksdock's memfd stand-in when it has one (luks-format of an
// image file), else file; it is snapshotted at the tool's first stop, so
// every change counted is the tool's own, made while it was throttled.
func catchMidTool(t *testing.T, owner, pid int, writer bool, file string) (ok bool, evidence, why string) {
	if syscall.Kill(pid, syscall.SIGSTOP) != nil {
		return false, "", "it was gone when caught"
	}
	defer syscall.Kill(pid, syscall.SIGCONT)
	waitStopped(pid)
	target, what := file, filepath.Base(file)
	if m := memfdStage(owner); writer && m != "" {
		target, what = m, "luksdock's memfd stand-in that cryptsetup formats"
	}
	var before []uint64
	r0 := int64(-1) // reader: rchar when the disk was first seen open
	if writer {
		var err error
		if before, err = chunkHashes(target); err != nil {
			return false, "", fmt.Sprintf("snapshot of %s: %v", target, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	counter := "rchar"
	if writer {
		counter = "wchar"
	}
	for time.Now().Before(deadline) {
		// One slice: let the tool run until it has made one more
		// read or write call (its counter moves) or throttleSlice has
		// passed, whichever is first, then stop it again. Slices bounded
		// by the tool's own I/O stay short on a loaded machine, where a
		// sleep can last many times what was asked.
		c0, _ := procIO(pid, counter)
		syscall.Kill(pid, syscall.SIGCONT)
		for end := time.Now().Add(throttleSlice); time.Now().Before(end); {
			if c, ok := procIO(pid, counter); !ok || c != c0 {
				break
			}
		}
		if syscall.Kill(pid, syscall.SIGSTOP) != nil || (waitStopped(pid) && !alive(pid)) {
			return false, "", fmt.Sprintf("it ended before it was seen at work (%s: %d bytes, target %s)", counter, c0, what)
		}
		if !writer {
			r, _ := procIO(pid, "rchar")
			switch {
			case !opensDisk(pid, file):
				r0 = -1
			case r0 < 0:
				r0 = r // the disk is open: count the reads from here
			case r-r0 >= 4096:
				return true, fmt.Sprintf("it holds the disk open and has read %d bytes since it was seen to hold it", r-r0), ""
			}
			continue
		}
		if n, err := changedChunks(target, before); err == nil && n > 0 {
			return true, fmt.Sprintf("%d 64 KiB chunks of %s changed since the tool was first seen", n, what), ""
		}
	}
	return false, "", "not seen at work within 30 s"
}

// waitStopped waits (briefly) until pid is in state T, so its counters and
// its writes are settled when they are read. It returns true.
func waitStopped(pid int) bool {
	for i := 0; i < 200; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		s := string(b)
		r := strings.LastIndexByte(s, ')')
		if r < 0 || len(s) < r+3 || s[r+2] == 'T' || s[r+2] == 't' || s[r+2] == 'Z' {
			return true
		}
		time.Sleep(50 * time.Microsecond)
	}
	return true
}

// childTree lists root's descendants by following /proc/PID/task/*/children
// (a few small reads, where a scan of all of /proc takes milliseconds on a
// busy machine and can miss a short-lived tool).
func childTree(root int) []procwatch.Proc {
	var out []procwatch.Proc
	seen := map[int]bool{root: true}
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", queue[0]))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			for _, w := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(w)
				if err != nil || seen[pid] {
					continue
				}
				seen[pid] = true
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				out = append(out, procwatch.Proc{PID: pid, PPID: queue[0], Comm: strings.TrimSuffix(string(comm), "\n")})
				queue = append(queue, pid)
			}
		}
	}
	return out
}
