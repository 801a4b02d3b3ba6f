package luks

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/procwatch"
	"luksdock/internal/testkit"
)

// Benchmarks of the userspace engine (issue 2, "Performance"). Run with
//
//	scripts/bench-userspace.sh
//
// or directly:
//
//	go test -run '^$' -bench 'XTSvsOpenSSL|UserspaceMkfs' -benchtime 1x ./luks/
//
// BenchmarkUserspaceMkfs needs root, /dev/fuse, cryptsetup and mkfs.ext4 and
// creates sparse images of 1 GiB, 64 GiB and 1 TiB in $TMPDIR (a few MiB to
// ~1.1 GiB actually allocated each; removed afterwards).

// BenchmarkXTSvsOpenSSL measures this package's AES-256-XTS on one core and
// on all cores (1 MiB requests, 4096-byte sectors) and reports
// `openssl speed -evp aes-256-xts` (16 KiB blocks, one process and one per
// core) measured in the same run. Each figure is the best of several short
// runs because the machine may be shared.
func BenchmarkXTSvsOpenSSL(b *testing.B) {
	key := make([]byte, 64)
	rand.Read(key)
	c, err := newXTSCipher(key, 4096)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	big := make([]byte, 16<<20)
	// The machine may be shared: every figure is the best of several short
	// windows, for this package and for openssl alike.
	measure := func(bytes int, f func()) float64 {
		best := 0.0
		for range 5 {
			start := time.Now()
			n := 0
			for time.Since(start) < 300*time.Millisecond {
				f()
				n += bytes
			}
			best = max(best, float64(n)/time.Since(start).Seconds()/1e6)
		}
		return best
	}
	for b.Loop() {
		one := measure(len(buf), func() { c.cryptUnits(buf, buf, 0, false) })
		all := measure(len(buf), func() { c.cryptParallel(buf, buf, 0, false) })
		dec := measure(len(buf), func() { c.cryptParallel(buf, buf, 0, true) })
		// 16 MiB per call: a helper's wake-up latency no longer matters.
		allBig := measure(len(big), func() { c.cryptParallel(big, big, 0, false) })
		b.ReportMetric(one, "MB/s-1core")
		b.ReportMetric(all, "MB/s-allcores")
		b.ReportMetric(dec, "MB/s-decrypt-allcores")
		b.ReportMetric(allBig, "MB/s-allcores-16MiB")
		ossl1, err1 := opensslSpeed(1)
		osslN, errN := opensslSpeed(runtime.GOMAXPROCS(0))
		if err1 == nil && errN == nil {
			b.ReportMetric(ossl1, "MB/s-openssl-1core")
			b.ReportMetric(osslN, "MB/s-openssl-allcores")
		}
		load, _ := os.ReadFile("/proc/loadavg")
		fmt.Printf("aes-256-xts encrypt, MB/s (10^6 B/s), best of 5: luksdock 1 core %.0f, %d cores %.0f (decrypt %.0f; 16 MiB calls %.0f); "+
			"openssl speed -evp aes-256-xts 1 core %.0f, -multi %d %.0f; kernels: AES-NI %v, VAES %v; load %s\n",
			one, runtime.GOMAXPROCS(0), all, dec, allBig, ossl1, runtime.GOMAXPROCS(0), osslN, useXTSAsm, useVAES,
			strings.Join(strings.Fields(string(load))[:3], " "))
		if err1 != nil || errN != nil {
			fmt.Printf("openssl speed failed: %v %v\n", err1, errN)
		}
	}
}

// opensslSpeed runs `openssl speed -evp aes-256-xts` on 16 KiB blocks with
// the given number of processes three times for one second and returns the
// best total in MB/s.
func opensslSpeed(procs int) (float64, error) {
	args := []string{"speed", "-elapsed", "-seconds", "1", "-bytes", "16384", "-evp", "aes-256-xts"}
	if procs > 1 {
		args = append([]string{"speed", "-multi", strconv.Itoa(procs)}, args[1:]...)
	}
	best := 0.0
	for range 3 {
		out, err := exec.Command("openssl", args...).Output()
		if err != nil {
			return 0, err
		}
		// Last line: "AES-256-XTS   6429263.64k" (1000s of bytes per second).
		m := regexp.MustCompile(`(?mi)^\s*(?:evp\s+)?aes-256-xts\s+([0-9.]+)k\s*$`).FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("cannot parse openssl speed output: %q", out)
		}
		k, _ := strconv.ParseFloat(string(m[1]), 64)
		best = max(best, k/1000)
	}
	return best, nil
}

// BenchmarkUserspaceMkfs formats sparse images with LUKS2 at 1 MiB
// (cryptsetup, pbkdf2 with 1000 iterations) and runs
// `mkfs.ext4 -q -E nodiscard -L backups01` and `e2fsck -fn` through the
// userspace engine.
// Reported per size: wall time of luksFormat, mount, mkfs, e2fsck and Close, bytes
// written to the backing file (counted by the engine and by st_blocks of the
// image), peak RSS of this process during mount+mkfs+e2fsck+close (VmHWM after
// resetting it), of the volume server (its VmHWM before Close) and of mke2fs.
func BenchmarkUserspaceMkfs(b *testing.B) {
	testkit.NeedRoot(b, "cryptsetup", "mkfs.ext4") // the FUSE mount
	for _, sz := range []struct {
		name string
		size int64
	}{{"1GiB", 1 << 30}, {"64GiB", 64 << 30}, {"1TiB", 1 << 40}} {
		b.Run(sz.name, func(b *testing.B) {
			for b.Loop() {
				r := benchMkfs(b, sz.size)
				b.ReportMetric(r.mkfs.Seconds(), "s-mkfs")
				b.ReportMetric(r.total.Seconds(), "s-total")
				b.ReportMetric(float64(r.stats.BackingWrittenBytes)/(1<<20), "MiB-written-engine")
				b.ReportMetric(float64(r.allocated)/(1<<20), "MiB-allocated-image")
				b.ReportMetric(float64(r.selfHWM)/(1<<20), "MiB-peakRSS-self")
				b.ReportMetric(float64(r.serverHWM)/(1<<20), "MiB-peakRSS-server")
				b.ReportMetric(float64(r.mkfsRSS)/(1<<20), "MiB-peakRSS-mke2fs")
				b.ReportMetric(r.fsck.Seconds(), "s-e2fsck")
				fmt.Printf("%-6s luksFormat %5.2fs  mount %5.3fs  mkfs.ext4 %5.2fs  e2fsck -fn %5.2fs  close %5.2fs  total %5.2fs | written: engine %7.1f MiB (zeroed %6.1f MiB via ZERO_RANGE), image st_blocks %7.1f MiB | peak RSS: caller %5.1f MiB, volume server %5.1f MiB, mke2fs %5.1f MiB\n",
					sz.name, r.format.Seconds(), r.mount.Seconds(), r.mkfs.Seconds(), r.fsck.Seconds(), r.close.Seconds(), r.total.Seconds(),
					float64(r.stats.BackingWrittenBytes)/(1<<20), float64(r.stats.ZeroedBytes)/(1<<20),
					float64(r.allocated)/(1<<20), float64(r.selfHWM)/(1<<20), float64(r.serverHWM)/(1<<20), float64(r.mkfsRSS)/(1<<20))
			}
		})
	}
}

type benchResult struct {
	format, mount, mkfs, fsck, close, total time.Duration
	stats                                   UserspaceStats
	allocated                               int64
	selfHWM, serverHWM, mkfsRSS             int64
}

func benchMkfs(b *testing.B, size int64) benchResult {
	var r benchResult
	dir := b.TempDir()
	image := testkit.SparseFile(b, filepath.Join(dir, "disk.img"), size)
	key := make([]byte, 64)
	rand.Read(key)
	const base = 1 << 20
	region := size - base
	start := time.Now()

	// luksFormat directly on the region through a loop device with an
	// offset would need losetup; format a sparse region file and copy its
	// header area instead (what the test helpers do).
	regionFile := testkit.SparseFile(b, filepath.Join(dir, "region.img"), region)
	if out, err := usRunErr(usPass, key, "cryptsetup", "luksFormat", "-q", "--type", "luks2", "--label", "backups01",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", "--volume-key-file", "/proc/self/fd/3", regionFile); err != nil {
		b.Fatalf("luksFormat: %v\n%s", err, out)
	}
	seg := usSegment(b, regionFile)
	src, _ := os.Open(regionFile)
	hdr := make([]byte, seg.Offset)
	if _, err := src.ReadAt(hdr, 0); err != nil {
		b.Fatal(err)
	}
	src.Close()
	os.Remove(regionFile)
	dst, _ := os.OpenFile(image, os.O_RDWR, 0)
	if _, err := dst.WriteAt(hdr, base); err != nil {
		b.Fatal(err)
	}
	dst.Sync()
	dst.Close()
	r.format = time.Since(start)
	allocBefore := benchAllocated(b, image)

	resetHWM()
	t := time.Now()
	v, err := MountUserspace(image, base, region, seg, key)
	if err != nil {
		b.Fatal(err)
	}
	r.mount = time.Since(t)
	t = time.Now()
	cmd := exec.Command("mkfs.ext4", "-q", "-E", "nodiscard", "-L", "backups01", v.Path())
	out, err := cmd.CombinedOutput()
	r.mkfs = time.Since(t)
	if err != nil {
		v.Close()
		b.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.mkfsRSS = ru.Maxrss * 1024
	}
	t = time.Now()
	fsck := exec.Command("e2fsck", "-fn", v.Path())
	out, err = fsck.CombinedOutput()
	r.fsck = time.Since(t)
	if err != nil {
		v.Close()
		b.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	r.stats = v.Stats()
	r.serverHWM = procwatch.PeakRSS(v.serverPid())
	t = time.Now()
	if err := v.Close(); err != nil {
		b.Fatal(err)
	}
	r.close = time.Since(t)
	r.selfHWM = readHWM()
	r.total = time.Since(start)
	r.allocated = benchAllocated(b, image) - allocBefore
	return r
}

func benchAllocated(b *testing.B, path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		b.Fatal(err)
	}
	return st.Blocks * 512
}

// resetHWM returns freed Go heap to the kernel (so memory kept from earlier
// tests or steps does not count) and resets this process's peak RSS (VmHWM)
// via /proc/self/clear_refs.
func resetHWM() {
	debug.FreeOSMemory()
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// readHWM returns VmHWM of this process in bytes.
func readHWM() int64 { return procwatch.PeakRSS(os.Getpid()) }
