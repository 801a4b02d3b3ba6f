package reliability

import "golang.org/x/sys/unix"

// syscallStop reads a traced process's registers at a system call stop:
// the call's number, its first argument (the descriptor for read and
// write calls), its result, and whether this is the stop at its exit.
func syscallStop(pid int) (nr uint64, fd int, ret int64, exit, ok bool) {
	var r unix.PtraceRegs
	if unix.PtraceGetRegs(pid, &r) != nil {
		return 0, 0, 0, false, false
	}
	// At the entry stop the kernel has set rax to -ENOSYS.
	return r.Orig_rax, int(r.Rdi), int64(r.Rax), int64(r.Rax) != -int64(unix.ENOSYS), true
}
