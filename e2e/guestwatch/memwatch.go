package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"luksdock/internal/procmem"
	"luksdock/recovery"
)

//	guestwatch memwatch -out REPORT -shims DIR -pass FILE -vk-dev DEV [-rk FILE] -- CMD ARGS...
//
// runs CMD (standard input, output and error inherited) under ptrace
// (internal/procmem.RunTraced) and reads its memory, as
// reliability.TestSecretsInMemory does on the host: each time a descendant
// running a shim from -shims (a script that stops itself before it execs
// the real tool) is stopped, the memory of CMD and of any volume server
// below it, then the shim is continued; and once more at CMD's exit stop.
// When CMD has exited it recovers the volume key with stock `cryptsetup
// luksDump --dump-volume-key` on -vk-dev (the passphrase from -pass on
// standard input), reads the recovery key from -rk, and searches every
// snapshot for every form of the three (procmem.Forms). The JSON report
// lists, per snapshot, where each copy lies and whether that memory is
// locked, and VmLck. It judges nothing.

// MemReport is memwatch's report.
type MemReport struct {
	Command   []string      `json:"command"`
	ExitCode  int           `json:"exit_code"`
	KeyBytes  int           `json:"key_bytes"` // of the volume key recovered afterwards
	RK        bool          `json:"rk"`        // a recovery key was searched for
	Snapshots []MemSnapshot `json:"snapshots"`
	Error     string        `json:"error,omitempty"`
}

// MemSnapshot is one process's memory at one point.
type MemSnapshot struct {
	Point     string        `json:"point"` // "TOOL running" or "exit"
	Who       string        `json:"who"`   // "luksdock" or "volume server"
	PID       int           `json:"pid"`
	VmLck     string        `json:"vm_lck"`
	VmLckKB   int           `json:"vm_lck_kb"`
	ReadBytes int64         `json:"read_bytes"`
	Hits      []procmem.Hit `json:"hits"`
	Error     string        `json:"error,omitempty"`
}

func memwatchCmd(args []string) int {
	fs := flag.NewFlagSet("memwatch", flag.ExitOnError)
	out := fs.String("out", "", "write the JSON report here")
	shims := fs.String("shims", "", "directory of the stopping shims")
	passFile := fs.String("pass", "", "file holding the passphrase (first line)")
	vkDev := fs.String("vk-dev", "", "the LUKS device, to recover the volume key from afterwards")
	rkFile := fs.String("rk", "", "the recovery key file, read afterwards")
	fs.Parse(args)
	cmdArgs := fs.Args()
	if *out == "" || *shims == "" || *passFile == "" || *vkDev == "" || len(cmdArgs) == 0 {
		usage()
	}
	rep := MemReport{Command: cmdArgs, ExitCode: -1}
	type snap struct {
		point, who string
		pid        int
		s          *procmem.Snapshot
		err        error
	}
	var snaps []snap
	take := func(point, who string, pid int) {
		s, err := procmem.Read(pid)
		snaps = append(snaps, snap{point, who, pid, s, err})
	}
	path, err := exec.LookPath(cmdArgs[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: %v\n", err)
		return 125
	}
	var runErr error
	rep.ExitCode, runErr = procmem.RunTracedStops(path, cmdArgs,
		&os.ProcAttr{Env: os.Environ(), Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}}, *shims,
		nil,
		func(tool string, pid int) {
			take(tool+" running", "luksdock", pid)
			for _, v := range procmem.VolumeServers(pid) {
				take(tool+" running", "volume server", v)
			}
		},
		func(tid int) { take("exit", "luksdock", tid) })
	if runErr != nil {
		rep.Error = runErr.Error()
	}

	pass, err := os.ReadFile(*passFile)
	if err != nil {
		rep.Error = err.Error()
	}
	pass, _, _ = bytes.Cut(pass, []byte("\n"))
	var rk []byte
	if *rkFile != "" {
		if rk, err = recovery.ReadFile(*rkFile, nil); err != nil {
			rep.Error = fmt.Sprintf("recovery key file: %v", err)
		}
		rep.RK = rk != nil
	}
	cmd := exec.Command("cryptsetup", "luksDump", "--batch-mode", "--dump-volume-key", "--key-file=-", *vkDev)
	cmd.Stdin = bytes.NewReader(pass)
	dump, err := cmd.Output()
	if err != nil {
		rep.Error = fmt.Sprintf("cryptsetup luksDump --dump-volume-key: %v", err)
	}
	var hexKey []byte
	in := false
	for _, l := range strings.Split(string(dump), "\n") {
		if i := strings.Index(l, "MK dump:"); i >= 0 {
			in, l = true, l[i+len("MK dump:"):]
		} else if in && !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, " ") {
			break
		}
		if in {
			hexKey = append(hexKey, strings.Join(strings.Fields(l), "")...)
		}
	}
	key, _ := hex.DecodeString(string(hexKey))
	rep.KeyBytes = len(key)
	forms := procmem.Forms(pass, rk, key)
	for _, s := range snaps {
		m := MemSnapshot{Point: s.point, Who: s.who, PID: s.pid}
		if s.err != nil {
			m.Error = s.err.Error()
		} else {
			m.VmLck, m.VmLckKB, m.ReadBytes = s.s.VmLck, s.s.VmLckKB(), s.s.Size
			m.Hits = s.s.Find(forms)
		}
		rep.Snapshots = append(rep.Snapshots, m)
	}
	b, _ := json.Marshal(rep)
	if err := os.WriteFile(*out, b, 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "guestwatch: %v\n", err)
		return 125
	}
	if rep.ExitCode < 0 {
		return 125
	}
	return rep.ExitCode
}
