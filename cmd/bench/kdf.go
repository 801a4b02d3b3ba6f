package main

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	lukslib "github.com/anatol/luks.go"

	"luksdock/luks"
	"luksdock/pipeline"
)

const benchPass = "benchmark passphrase"

// measured is one process run: wall time and wait4's rusage.
type measured struct {
	wall, user, sys time.Duration
	maxRSS          int64 // bytes
}

func runMeasured(stdin string, name string, args ...string) measured {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	out, err := cmd.Output()
	wall := time.Since(t0)
	if err != nil {
		check(fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return measured{wall: wall, user: time.Duration(ru.Utime.Nano()), sys: time.Duration(ru.Stime.Nano()), maxRSS: ru.Maxrss * 1024}
}

// median is the middle value (the upper one of an even count; zero for
// none).
func median[T cmp.Ordered](ds []T) T {
	var zero T
	if len(ds) == 0 {
		return zero
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianM(ms []measured) measured {
	var w, u, sy []time.Duration
	var rss int64
	for _, m := range ms {
		w, u, sy = append(w, m.wall), append(u, m.user), append(sy, m.sys)
		rss = max(rss, m.maxRSS)
	}
	return measured{wall: median(w), user: median(u), sys: median(sy), maxRSS: rss}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ") + fmt.Sprintf(" (%d CPUs)", numCPU())
}

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "\nprocessor") + map[bool]int{true: 1}[strings.HasPrefix(string(b), "processor")]
}

// defaultKDF compares `luksdock prepare` with cryptsetup's default PBKDF to
// the manual procedure's own steps, alternating the two runs by run.
func defaultKDF(bin, tmp string, sizes []string, runs int) {
	fmt.Printf("default PBKDF: luksdock prepare vs the manual steps (luksFormat + open --test-passphrase + mkfs.ext4), median of %d (in turns, each first every other run), load %s\n", runs, loadavg())
	fmt.Printf("%-6s %10s %10s %7s   %s\n", "size", "prepare", "manual", "ratio", "manual: luksFormat / KDF of open / mkfs; prepare: verify step, peak RSS luksdock+server, largest process; CPU (user+sys) prepare vs manual")
	for _, sz := range sizes {
		n, err := pipeline.ParseSize(sz)
		check(err)
		var prep, man, fm, km, mm, ver []time.Duration
		var own, largest int64
		var prepCPU, manCPU []time.Duration
		var kdfParams []string
		runPrepare := func() {
			img := filepath.Join(tmp, "default-"+sz+".img")
			cmd := exec.Command(bin, "prepare", "--image", img, "--size", sz, "--label", "bench", "--passphrase-file", "-", "--confirm", filepath.Base(img), "--json")
			freshInventory(cmd, tmp)
			cmd.Stdin = strings.NewReader(benchPass + "\n")
			var outb strings.Builder
			cmd.Stdout, cmd.Stderr = &outb, os.Stderr
			t0 := time.Now()
			check(cmd.Start())
			stop := make(chan struct{})
			hwm := make(chan int64)
			go sampleHWM(cmd.Process.Pid, stop, hwm)
			err := cmd.Wait()
			prep = append(prep, time.Since(t0))
			close(stop)
			own = max(own, <-hwm)
			check(err)
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			largest = max(largest, ru.Maxrss*1024)
			prepCPU = append(prepCPU, time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
			out := outb.String()
			for _, l := range strings.Split(out, "\n") {
				if strings.Contains(l, `"event":"done"`) && strings.Contains(l, `"step":"verify"`) {
					var ms int64
					if i := strings.Index(l, `"elapsed_ms":`); i >= 0 {
						fmt.Sscan(l[i+len(`"elapsed_ms":`):], &ms)
					}
					ver = append(ver, time.Duration(ms)*time.Millisecond)
				}
			}
			os.Remove(img)
		}
		runManual := func() {
			// The manual steps on the same machine: the LUKS device is the
			// partition's size (image minus 1 MiB in front, 1 MiB GPT tail
			// rounded away), the volume that minus the 16 MiB header.
			dev := filepath.Join(tmp, "manual-"+sz+".img")
			vol := filepath.Join(tmp, "manual-"+sz+".vol")
			check(os.WriteFile(dev, nil, 0o600))
			check(os.Truncate(dev, n-2<<20))
			check(os.WriteFile(vol, nil, 0o600))
			check(os.Truncate(vol, n-2<<20-16<<20))
			f := runMeasured(benchPass, "cryptsetup", "luksFormat", "--batch-mode", "--key-file=-", dev)
			k := runMeasured(benchPass, "cryptsetup", "open", "--test-passphrase", "--key-file=-", dev)
			if dump, err := exec.Command("cryptsetup", "luksDump", dev).Output(); err == nil {
				kdfParams = append(kdfParams, pbkdfOf(string(dump)))
			}
			// -E nodiscard: on a file mke2fs would punch holes and, since
			// they read as zeros, skip zeroing the journal, which it cannot
			// on dm-crypt (discards are off by default): the person's mkfs
			// on /dev/mapper/NAME writes its journal.
			m := runMeasured("", "mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-L", "bench", vol)
			man = append(man, f.wall+k.wall+m.wall)
			manCPU = append(manCPU, f.user+f.sys+k.user+k.sys+m.user+m.sys)
			fm, km, mm = append(fm, f.wall), append(km, k.wall), append(mm, m.wall)
			os.Remove(dev)
			os.Remove(vol)
		}
		// In turns, each first every other run: what one leaves behind
		// (memory to reclaim, a warm page cache) weighs on both alike.
		for i := 0; i < runs; i++ {
			if i%2 == 0 {
				runPrepare()
				runManual()
			} else {
				runManual()
				runPrepare()
			}
		}
		p, mn := median(prep), median(man)
		fmt.Printf("%-6s %9.2fs %9.2fs %6.2fx   manual %.2f / %.2f / %.2f s; prepare: verify %.2f s, %s, %s; CPU %.2f s vs %.2f s\n", pipeline.HumanSize(n), p.Seconds(), mn.Seconds(), p.Seconds()/mn.Seconds(),
			median(fm).Seconds(), median(km).Seconds(), median(mm).Seconds(), median(ver).Seconds(), pipeline.HumanSize(own), pipeline.HumanSize(largest),
			median(prepCPU).Seconds(), median(manCPU).Seconds())
		fmt.Printf("       the PBKDF luksFormat chose in the manual runs: %s\n", strings.Join(kdfParams, "; "))
	}
	fmt.Println()
}

// pbkdfOf is keyslot 0's PBKDF as luksDump prints it, on one line.
func pbkdfOf(dump string) string {
	var f []string
	for _, l := range strings.Split(dump, "\n") {
		l = strings.TrimSpace(l)
		for _, k := range []string{"PBKDF:", "Time cost:", "Memory:", "Threads:", "Iterations:"} {
			if strings.HasPrefix(l, k) {
				f = append(f, strings.Join(strings.Fields(l), " "))
			}
		}
		if len(f) > 0 && strings.HasPrefix(l, "Salt:") {
			break
		}
	}
	return strings.Join(f, ", ")
}

// kdfCompare unseals one argon2id t=4 m=890000 p=2 header three ways.
func kdfCompare(tmp string, runs int) {
	hdr := filepath.Join(tmp, "kdf-header.img")
	check(os.WriteFile(hdr, nil, 0o600))
	check(os.Truncate(hdr, 20<<20))
	runMeasured(benchPass, "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "argon2id", "--pbkdf-force-iterations", "4",
		"--pbkdf-memory", "890000", "--pbkdf-parallel", "2", "--key-file=-", hdr)
	self, err := os.Executable()
	check(err)
	fmt.Printf("unseal of one keyslot, argon2id t=4 m=890000 KiB p=2, median of %d (each its own process), load %s\n", runs, loadavg())
	fmt.Printf("%-44s %8s %8s %8s %10s %8s %8s\n", "", "wall", "user", "sys", "peak RSS", "wall/cs", "CPU/cs")
	var ours, old, cs []measured
	for i := 0; i < runs; i++ {
		cs = append(cs, runMeasured(benchPass, "cryptsetup", "open", "--test-passphrase", "--key-file=-", hdr))
		ours = append(ours, runMeasured(benchPass, self, "-child-unseal", "ours", hdr))
		old = append(old, runMeasured(benchPass, self, "-child-unseal", "luks.go", hdr))
	}
	c := medianM(cs)
	for _, r := range []struct {
		name string
		m    measured
	}{
		{"luksdock's own (internal/argon2)", medianM(ours)},
		{"luks.go + x/crypto/argon2 (before)", medianM(old)},
		{"cryptsetup open --test-passphrase", c},
	} {
		fmt.Printf("%-44s %7.2fs %7.2fs %7.2fs %10s %7.2fx %7.2fx\n", r.name, r.m.wall.Seconds(), r.m.user.Seconds(), r.m.sys.Seconds(), pipeline.HumanSize(r.m.maxRSS),
			r.m.wall.Seconds()/c.wall.Seconds(), (r.m.user+r.m.sys).Seconds()/(c.user+c.sys).Seconds())
	}
	fmt.Println()
}

// childUnseal is the -child-unseal mode: one unseal in this process.
func childUnseal(how, hdr string) {
	pass := []byte(benchPass)
	switch how {
	case "ours":
		_, key, err := luks.UnsealKey(luks.Device{Path: hdr}, pass)
		check(err)
		if key == nil {
			check(fmt.Errorf("no key from luksdock's own code"))
		}
	case "luks.go":
		d, err := lukslib.Open(hdr)
		check(err)
		defer d.Close()
		_, err = d.UnsealVolume(0, pass)
		check(err)
	default:
		check(fmt.Errorf("-child-unseal %q", how))
	}
}
