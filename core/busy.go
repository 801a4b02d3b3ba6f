package core

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Proc is a process that uses a mounted filesystem: what close names when
// it refuses.
type Proc struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
	// Uses says how, with one example path: "cwd /media/alice/backups01",
	// "open file /media/alice/backups01/x.tar", "mapped .../lib.so", "root".
	Uses string `json:"uses"`
}

func (p Proc) String() string { return fmt.Sprintf("pid %d (%s): %s", p.PID, p.Comm, p.Uses) }

// BusyError is close's refusal: files are open on the filesystem.
type BusyError struct {
	Mountpoint string
	Procs      []Proc
}

func (e *BusyError) Error() string {
	var s []string
	for _, p := range e.Procs {
		s = append(s, p.String())
	}
	return fmt.Sprintf("%s is in use, so it was not closed; end or leave these first: %s", e.Mountpoint, strings.Join(s, "; "))
}

// Users lists the processes that use the filesystem mounted at mnt: an
// open file descriptor, the working directory, the root directory or a
// memory-mapped file on it (scanning /proc/*/fd, cwd, root and maps, as
// fuser -m does). The calling process is left out.
func Users(mnt string) []Proc {
	mnt = filepath.Clean(mnt)
	under := func(p string) bool {
		p = strings.TrimSuffix(p, " (deleted)")
		return p == mnt || strings.HasPrefix(p, mnt+"/")
	}
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		dir := "/proc/" + e.Name()
		use := ""
		for _, l := range []string{"cwd", "root"} {
			if t, err := os.Readlink(dir + "/" + l); err == nil && under(t) && use == "" {
				use = l + " " + t
				if l == "root" {
					use = "root directory " + t
				}
			}
		}
		if use == "" {
			fds, _ := os.ReadDir(dir + "/fd")
			for _, fd := range fds {
				if t, err := os.Readlink(dir + "/fd/" + fd.Name()); err == nil && under(t) {
					use = "open file " + strings.TrimSuffix(t, " (deleted)")
					break
				}
			}
		}
		if use == "" {
			if b, err := os.ReadFile(dir + "/maps"); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if i := strings.Index(line, " /"); i >= 0 && under(strings.TrimSpace(line[i:])) {
						use = "mapped file " + strings.TrimSpace(line[i:])
						break
					}
				}
			}
		}
		if use == "" {
			continue
		}
		comm, _ := os.ReadFile(dir + "/comm")
		out = append(out, Proc{PID: pid, Comm: strings.TrimSpace(string(comm)), Uses: use})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}
