// Command bench measures `luksdock prepare` on sparse image files of
// 1 GiB, 64 GiB and 1 TiB with a small PBKDF cost, and prints per size the
// wall time of every step, the total, the bytes written (blocks the image
// allocated), the peak RSS of luksdock and its userspace volume server
// together (VmHWM, sampled every 20 ms) and that of the largest process
// among luksdock and all its children (the tools included, from wait4's
// rusage). It also prints
// the userspace engine's AES-XTS throughput beside `openssl speed -evp
// aes-256-xts` measured in the same run, and `prepare --erase
// --surface-check` against dd on the same image (erase.go).
//
// With cryptsetup's default PBKDF (what users run) it prints, side by side
// in one run and as medians of -runs runs, the wall time of `luksdock
// prepare` and of the manual procedure's own steps (cryptsetup luksFormat,
// the KDF of luksOpen as `cryptsetup open --test-passphrase`, `mkfs.ext4 -E
// nodiscard` (it zeroes the journal, as on dm-crypt) on a file of the
// volume's size: this host has no device-mapper), at each of
// -kdf-sizes. And on one header made with argon2id t=4 m=890000 KiB p=2, the
// independent unseal's cost three ways, each in its own process: luksdock's
// own (internal/argon2), luks.go with x/crypto/argon2 (what verify used
// before), and `cryptsetup open --test-passphrase`, with wall, user and
// system time and peak RSS (wait4's rusage). The load average is printed
// before and after: on a shared machine the figures are only as good as it.
//
// And the erase and surface check against dd on one image (-erase SIZE):
// see erase.go.
//
//	go run ./cmd/bench [-sizes 1G,64G,1T] [-kdf-sizes 1G,64G] [-runs 7] [-parts small,default,kdf,erase,xts] [-erase 2G] [-erase-rounds 3] [-dir /var/tmp]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"luksdock/internal/procwatch"
	"luksdock/pipeline"
)

func main() {
	sizes := flag.String("sizes", "1G,64G,1T", "image sizes (small-PBKDF table)")
	kdfSizes := flag.String("kdf-sizes", "1G,64G", "image sizes for default-PBKDF prepare vs the manual steps")
	runs := flag.Int("runs", 7, "runs per measurement of the default-PBKDF and KDF comparisons (medians)")
	parts := flag.String("parts", "small,default,kdf,erase,xts", "what to measure")
	dir := flag.String("dir", "/var/tmp", "where to put the sparse images")
	child := flag.String("child-unseal", "", "internal: unseal HEADER (next argument) with \"ours\" or \"luks.go\", passphrase on stdin")
	eraseSize := flag.String("erase", "2G", "image size for the erase/check throughput against dd (\"\" to skip)")
	eraseRounds := flag.Int("erase-rounds", 3, "erase/check measurements (median)")
	flag.Parse()
	if *child != "" {
		childUnseal(*child, flag.Arg(0))
		return
	}
	tmp, err := os.MkdirTemp(*dir, "luksdock-bench-")
	check(err)
	defer os.RemoveAll(tmp)
	// The luksdock runs measured here record their "bench" disks in an
	// inventory and keep erase positions of their own, in tmp: never in
	// the machine's (/var/lib/luksdock), which they would fill with disks
	// that do not exist. Every luksdock started below inherits this.
	check(os.Setenv("LUKSDOCK_INVENTORY", filepath.Join(tmp, "inventory.json")))
	check(os.Setenv("LUKSDOCK_STATE_DIR", filepath.Join(tmp, "state")))
	bin := filepath.Join(tmp, "luksdock")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	check(build.Run())
	want := map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		want[p] = true
	}
	fmt.Println("load before:", loadavg())
	defer func() { fmt.Println("load after:", loadavg()) }()
	if want["default"] {
		defaultKDF(bin, tmp, strings.Split(*kdfSizes, ","), *runs)
	}
	if want["kdf"] {
		kdfCompare(tmp, *runs)
	}
	if want["small"] {
		small(bin, tmp, *sizes)
	}
	// each part on its own: -parts erase measures the erase alone
	if want["erase"] && *eraseSize != "" {
		eraseBench(bin, tmp, *eraseSize, *eraseRounds)
		fmt.Println()
	}
	if want["xts"] {
		xts(filepath.Join(tmp, "xts"))
	}
}

// small prints the small-PBKDF table: each step's time, the bytes written
// and the peak RSS of `luksdock prepare` at each of sizes.
func small(bin, tmp, sizes string) {
	fmt.Printf("%-6s %-11s", "size", "engine")
	steps := []pipeline.StepID{pipeline.StepWipe, pipeline.StepPartition, pipeline.StepFormat, pipeline.StepOpen, pipeline.StepMkfs, pipeline.StepClose, pipeline.StepVerify}
	for _, s := range steps {
		fmt.Printf(" %11s", s)
	}
	fmt.Printf(" %8s %12s %12s %12s\n", "total", "written", "RSS+server", "largest RSS")
	for _, sz := range strings.Split(sizes, ",") {
		if sz == "" {
			continue
		}
		n, err := pipeline.ParseSize(sz)
		check(err)
		img := filepath.Join(tmp, "bench-"+sz+".img")
		cmd := exec.Command(bin, "prepare", "--image", img, "--size", sz, "--label", "bench", "--passphrase-file", "-",
			"--confirm", filepath.Base(img), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--json")
		freshInventory(cmd, tmp)
		cmd.Stdin = strings.NewReader("benchmark passphrase\n")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		t0 := time.Now()
		check(cmd.Start())
		stop := make(chan struct{})
		hwm := make(chan int64)
		go sampleHWM(cmd.Process.Pid, stop, hwm)
		err = cmd.Wait()
		total := time.Since(t0)
		close(stop)
		both := <-hwm
		check(err)
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		var st syscall.Stat_t
		check(syscall.Stat(img, &st))
		elapsed, engine := map[pipeline.StepID]time.Duration{}, ""
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			var e struct {
				Event     pipeline.EventKind `json:"event"`
				Step      pipeline.StepID    `json:"step"`
				Engine    string             `json:"engine"`
				ElapsedMS int64              `json:"elapsed_ms"`
			}
			check(json.Unmarshal(sc.Bytes(), &e))
			if e.Event == pipeline.EventDone {
				elapsed[e.Step] = time.Duration(e.ElapsedMS) * time.Millisecond
			}
			if e.Engine != "" {
				engine = e.Engine
			}
		}
		fmt.Printf("%-6s %-11s", pipeline.HumanSize(n), engine)
		for _, s := range steps {
			fmt.Printf(" %10.2fs", elapsed[s].Seconds())
		}
		fmt.Printf(" %7.2fs %12s %12s %12s\n", total.Seconds(), pipeline.HumanSize(st.Blocks*512), pipeline.HumanSize(both), pipeline.HumanSize(ru.Maxrss*1024))
		os.Remove(img)
	}
	fmt.Println()
}

// sampleHWM samples the peak RSS (VmHWM) of luksdock (pid) and of its
// volume servers (children named luksdock-volume) until stop is closed, then
// sends luksdock's peak plus the largest server's.
func sampleHWM(pid int, stop <-chan struct{}, out chan<- int64) {
	// Cheap by design: the manual runs it is compared with have no sampler
	// beside them, so it reads luksdock's status and its children (a few
	// small /proc files), never the whole process table, every 20 ms.
	var self, server int64
	serverPID := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		self = max(self, procwatch.PeakRSS(pid))
		if serverPID == 0 || procwatch.Comm(serverPID) != "luksdock-volume" {
			serverPID = 0
			for _, c := range procwatch.Children(pid) {
				if procwatch.Comm(c) == "luksdock-volume" {
					serverPID = c
				}
			}
		}
		if serverPID != 0 {
			server = max(server, procwatch.PeakRSS(serverPID))
		}
		select {
		case <-stop:
			out <- self + server
			return
		case <-tick.C:
		}
	}
}

// xts prints the userspace engine's encryption throughput (the luks
// package's benchmark) beside openssl's in the same run.
func xts(dir string) {
	os.MkdirAll(dir, 0o700)
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", "XTS", "-benchtime", "2x", "./luks")
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Printf("luks XTS benchmark failed: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Benchmark") {
			fmt.Println("luksdock:", line)
		}
	}
	ssl, err := exec.Command("openssl", "speed", "-evp", "aes-256-xts", "-seconds", "2", "-bytes", "16384").CombinedOutput()
	if err != nil {
		fmt.Printf("openssl speed: %v\n", err)
		return
	}
	re := regexp.MustCompile(`(?mi)^aes-256-xts\s+(\S+)k`)
	if m := re.FindSubmatch(ssl); m != nil {
		var kps float64
		fmt.Sscan(string(m[1]), &kps)
		fmt.Printf("openssl speed -evp aes-256-xts (16 KiB blocks, one core): %.2f GB/s\n", kps*1000/1e9)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// freshInventory gives one measured `luksdock prepare` an inventory of its
// own, empty: each measurement is a first prepare of a new disk, as every
// other run of the same measurement is (the inventory does not grow from
// run to run), and the label "bench" of an earlier run is not another disk
// of this one's (prepare warned "label bench: the inventory already has
// bench" on every repeated run).
func freshInventory(cmd *exec.Cmd, tmp string) {
	dir, err := os.MkdirTemp(tmp, "inventory-")
	check(err)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "LUKSDOCK_INVENTORY="+filepath.Join(dir, "inventory.json"))
}
