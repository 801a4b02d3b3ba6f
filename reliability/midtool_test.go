package reliability

import (
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"luksdock/internal/procwatch"
)

// A "while the tool runs" signal must land while the REAL tool runs and has
// done part of its work: not while a shim that carries the tool's name
// sleeps before starting it, and not before the tool has touched the disk.
// drive() therefore fires a child trigger only when
//
//  1. a descendant's /proc/PID/exe is the real binary, and
//  2. that process has begun its work on the disk: a writer (luks-format's
//     cryptsetup, mkfs.ext4) has written to its target and bytes of the
//     target changed since the tool started; a reader (verify's cryptsetup
//     and e2fsck) has read from the disk.
//
// The tool is slowed to one system call at a time rather than delayed at
// its start: a shim stops itself right before it execs the tool
// (stopShim); the test then traces it (ptrace, PTRACE_SYSCALL), lets it
// exec and run system call by system call, and looks at every read or
// write that returns: which descriptor (/proc/PID/fd), how many bytes. At
// the first one that shows the progress above, the tracer detaches, the
// tool runs on at full speed, and the signal is sent at once.

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

// catchMidTool takes the stopped shim pid (a child of luksdock, pid owner)
// under ptrace, lets it exec the real tool, and steps the tool system call
// by system call until it has made progress (see the top of this file). It
// returns with the tool detached and running, and the evidence; ok is false
// when the tool ended first (why says how). A writer's target is luksdock's
// memfd stand-in when cryptsetup formats one (luks-format of an image
// file), else file;
// it is snapshotted before the exec, so every change counted is the tool's.
func catchMidTool(owner, pid int, real string, writer bool, file string, beforeDetach func()) (ok bool, evidence, why string) {
	runtime.LockOSThread() // every ptrace request must come from the tracer thread
	defer runtime.UnlockOSThread()
	target, what := file, filepath.Base(file)
	// Only cryptsetup writes the stand-in: luksdock may hold another memfd
	// stage at the same time (the key check reads the header through one
	// while mkfs runs).
	if m := memfdStage(owner); writer && m != "" && filepath.Base(real) == "cryptsetup" {
		target, what = m, "luksdock's memfd stand-in that cryptsetup formats"
	}
	var before []uint64
	if writer {
		var err error
		if before, err = chunkHashes(target); err != nil {
			syscall.Kill(pid, syscall.SIGCONT)
			return false, "", fmt.Sprintf("snapshot of %s: %v", target, err)
		}
	}
	if err := unix.PtraceSeize(pid); err != nil {
		syscall.Kill(pid, syscall.SIGCONT)
		return false, "", fmt.Sprintf("ptrace seize: %v", err)
	}
	detached := false
	defer func() {
		if !detached {
			unix.Kill(pid, unix.SIGCONT)
			unix.PtraceDetach(pid)
		}
	}()
	if err := unix.PtraceInterrupt(pid); err != nil {
		return false, "", fmt.Sprintf("ptrace interrupt: %v", err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		return false, "", fmt.Sprintf("waiting for the traced shim: %v (%v)", err, ws)
	}
	unix.PtraceSetOptions(pid, unix.PTRACE_O_TRACESYSGOOD|unix.PTRACE_O_TRACEEXEC)
	unix.Kill(pid, unix.SIGCONT) // end the shim's own stop; it goes on to exec
	execd := false
	var writes, reads, bytesIO int64
	sig := 0
	for {
		if err := unix.PtraceSyscall(pid, sig); err != nil {
			return false, "", fmt.Sprintf("ptrace syscall: %v", err)
		}
		sig = 0
		if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil {
			return false, "", fmt.Sprintf("wait4: %v", err)
		}
		switch {
		case ws.Exited() || ws.Signaled():
			return false, "", fmt.Sprintf("it ended before it was seen at work (exec seen %v, %d writes and %d reads of the disk, %d bytes)", execd, writes, reads, bytesIO)
		case !ws.Stopped():
			continue
		case ws.StopSignal() == unix.SIGTRAP|0x80: // a system call stop
		case ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() == unix.PTRACE_EVENT_EXEC:
			execd = exeOf(pid) == real
			continue
		case ws.TrapCause() == unix.PTRACE_EVENT_STOP:
			continue // group-stop or the interrupt
		default:
			if s := ws.StopSignal(); s != unix.SIGCONT && s != unix.SIGSTOP {
				sig = int(s) // a signal for the tool: deliver it
			}
			continue
		}
		if !execd {
			continue // the shim itself
		}
		nr, fd, ret, exit, ok := syscallStop(pid)
		if !ok || !exit || ret <= 0 {
			continue
		}
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
		if !diskLink(link, file) {
			continue
		}
		switch {
		case writer && writeSyscalls[nr]:
			writes++
			bytesIO += ret
			if n, err := changedChunks(target, before); err == nil && n > 0 {
				evidence = fmt.Sprintf("%d writes to %s returned (%d bytes); %d 64 KiB chunks of %s changed since it started", writes, link, bytesIO, n, what)
			}
		case !writer && readSyscalls[nr]:
			reads++
			bytesIO += ret
			evidence = fmt.Sprintf("%d reads of %s returned %d bytes", reads, link, bytesIO)
		}
		if evidence != "" {
			// The tool is still held here, so the run cannot have gone
			// past it: what must be found alive is found now.
			if beforeDetach != nil {
				beforeDetach()
			}
			// Detach at this system call's exit: the tool runs on.
			if err := unix.PtraceDetach(pid); err != nil {
				return false, "", fmt.Sprintf("ptrace detach: %v", err)
			}
			detached = true
			return exeOf(pid) == real, evidence, ""
		}
	}
}

// The read and write system calls whose results count as the tool's work
// on the disk.
var (
	writeSyscalls = map[uint64]bool{unix.SYS_WRITE: true, unix.SYS_PWRITE64: true, unix.SYS_WRITEV: true, unix.SYS_PWRITEV: true, unix.SYS_PWRITEV2: true}
	readSyscalls  = map[uint64]bool{unix.SYS_READ: true, unix.SYS_PREAD64: true, unix.SYS_READV: true, unix.SYS_PREADV: true, unix.SYS_PREADV2: true}
)

// diskLink says whether a descriptor's link names the disk or the stand-in
// luksdock gives the tool: the image, a loop device or its partition, the
// memfd stand-in, the userspace engine's FUSE volume.
func diskLink(l, file string) bool {
	return file != "" && l == file ||
		strings.HasPrefix(l, "/dev/loop") ||
		strings.HasPrefix(l, "/memfd:luksdock-luks-header") ||
		strings.Contains(l, "/luksdock-fuse-")
}

// childTree lists root's descendants by following /proc/PID/task/*/children
// (procwatch.Children: a few small reads, where a scan of all of /proc
// takes milliseconds on a busy machine and can miss a short-lived tool).
func childTree(root int) []procwatch.Proc {
	var out []procwatch.Proc
	seen := map[int]bool{root: true}
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		for _, pid := range procwatch.Children(queue[0]) {
			if !seen[pid] {
				seen[pid] = true
				out = append(out, procwatch.Proc{PID: pid, PPID: queue[0], Comm: procwatch.Comm(pid)})
				queue = append(queue, pid)
			}
		}
	}
	return out
}
