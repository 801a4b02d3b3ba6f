package luks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// The mapping guard closes the window between `cryptsetup open` making a
// dm-crypt mapping and luksdock holding it with deferred removal
// (HoldMapping). If luksdock were SIGKILLed in that window, an orphaned
// cryptsetup would still make the mapping, or would have made it, and
// nothing would remove it. So luksdock runs `cryptsetup open` through a
// guard: /proc/self/exe re-executed as guardArg0 (the init function below
// runs it instead of main), in a process group of its own like every tool.
// The guard runs cryptsetup with luksdock's descriptors (the passphrase on
// stdin, the key on fd 3: it reads neither), reports its exit status, and
// then waits on a control pipe: "done" (luksdock holds the mapping, or
// there is none) ends it; end of file (luksdock died) makes it run
// `cryptsetup close --deferred NAME`, which removes the mapping as soon as
// nobody uses it.
//
// Descriptors of the guard: 0 stdin, 1 stdout, 2 stderr, 3 key (or
// /dev/null), 4 control (read), 5 status (write).
const guardArg0 = "luksdock-mapping-guard"

// guardComm is the guard's process name (comm) instead of "exe".
const guardComm = "luksdock-guard"

func init() {
	if len(os.Args) >= 3 && os.Args[0] == guardArg0 {
		os.Exit(runGuard(os.Args[1], os.Args[2:]))
	}
}

// runGuard is the guard process: it runs argv (cryptsetup open ... name).
func runGuard(name string, argv []string) int {
	os.WriteFile("/proc/self/comm", []byte(guardComm), 0)
	key, ctl, status := os.NewFile(3, "key"), os.NewFile(4, "control"), os.NewFile(5, "status")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{key}
	code := 0
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else {
			fmt.Fprintln(os.Stderr, err)
			code = 127
		}
	}
	// luksdock reads stdout and stderr to their end: let go of them.
	key.Close()
	os.Stdin.Close()
	os.Stdout.Close()
	os.Stderr.Close()
	fmt.Fprintf(status, "%d\n", code)
	status.Close()
	line, _ := bufio.NewReader(ctl).ReadString('\n')
	if strings.TrimSpace(line) == "done" {
		return 0
	}
	// luksdock died before it held the mapping (if cryptsetup made none,
	// this only fails).
	exec.Command("cryptsetup", "close", "--deferred", name).Run()
	return 0
}

// guard is a running guard process and the write end of its control pipe.
type guard struct {
	cmd *exec.Cmd
	ctl *os.File
}

// release ends the guard: there is no mapping to remove, or luksdock holds it.
func (g guard) release() {
	io.WriteString(g.ctl, "done\n")
	g.ctl.Close()
	g.cmd.Wait()
}

// guards are the guard processes whose mapping luksdock does not hold yet,
// by mapping name.
var guards = struct {
	sync.Mutex
	m map[string]guard
}{m: map[string]guard{}}

// openGuarded runs `cryptsetup args...` (an open that makes mapping name)
// through a guard process; stdin and fd3 are given to cryptsetup as run
// gives them. On success the guard stays until releaseGuard(name), which
// HoldMapping calls once it holds the mapping.
func openGuarded(ctx context.Context, name string, args []string, stdin, fd3 []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("cryptsetup %s: %w", args[0], err)
	}
	var toClose []*os.File
	defer func() {
		for _, f := range toClose {
			f.Close()
		}
	}()
	// feed makes a pipe holding b (at most a few hundred bytes: it fits in
	// the pipe buffer) and returns its read end; nil b gives /dev/null.
	feed := func(b []byte) (*os.File, error) {
		if b == nil {
			f, err := os.Open(os.DevNull)
			toClose = append(toClose, f)
			return f, err
		}
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		toClose = append(toClose, r)
		_, err = w.Write(b)
		w.Close()
		return r, err
	}
	in, err := feed(stdin)
	if err != nil {
		return err
	}
	key, err := feed(fd3)
	if err != nil {
		return err
	}
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err == nil {
			toClose = append(toClose, r, w)
		}
		return r, w, err
	}
	outR, outW, err := pipe()
	if err != nil {
		return err
	}
	errR, errW, err := pipe()
	if err != nil {
		return err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return err
	}
	toClose = append(toClose, ctlR)
	stR, stW, err := pipe()
	if err != nil {
		ctlW.Close()
		return err
	}
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        append([]string{guardArg0, name, "cryptsetup"}, args...),
		Env:         cleanEnv(),
		Stdin:       in,
		Stdout:      outW,
		Stderr:      errW,
		ExtraFiles:  []*os.File{key, ctlR, stW},
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
	}
	if err := cmd.Start(); err != nil {
		ctlW.Close()
		return fmt.Errorf("cryptsetup: start the mapping guard: %w", err)
	}
	// Only the guard holds the child ends now.
	outW.Close()
	errW.Close()
	stW.Close()
	var out, errb bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { io.Copy(&out, outR); wg.Done() }()
	go func() { io.Copy(&errb, errR); wg.Done() }()
	st, _ := io.ReadAll(stR)
	wg.Wait()
	code, perr := strconv.Atoi(strings.TrimSpace(string(st)))
	if perr != nil {
		ctlW.Close()
		cmd.Wait()
		return fmt.Errorf("cryptsetup %s: the mapping guard ended without a status", args[0])
	}
	g := guard{cmd, ctlW}
	if code != 0 {
		g.release()
		return cryptsetupError(args, code, out.String(), errb.String())
	}
	guards.Lock()
	guards.m[name] = g
	guards.Unlock()
	return nil
}

// releaseGuard ends the guard of mapping name (if any): luksdock holds the
// mapping now, or has closed it.
func releaseGuard(name string) {
	guards.Lock()
	g, ok := guards.m[name]
	delete(guards.m, name)
	guards.Unlock()
	if ok {
		g.release()
	}
}
