package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/disk"
	"luksdock/luks"
	"luksdock/pipeline"
)

// eraseBench measures `prepare --erase --surface-check` (userspace engine)
// on an image of size bytes, written in full beforehand as a disk has no
// holes, and, in the same run on the same image, dd's throughput: writing
// zeros to and reading back the opened volume (the FUSE file the userspace
// engine serves, as `dd if=/dev/zero of=VOLUME bs=4M oflag=direct
// conv=fsync` and, the image evicted from the page cache first, `dd
// if=VOLUME of=/dev/null bs=4M iflag=direct`), and writing and reading the
// raw data segment of the image without encryption (the disk's own speed,
// an upper bound for any engine). The erase's figure includes its flush and
// the check reads with O_DIRECT, so each is compared with a dd that goes to
// the disk too. It prints the load
// average with the figures: on a shared machine they are noisy.
func eraseBench(bin, tmp, size string, rounds int) {
	n, err := pipeline.ParseSize(size)
	check(err)
	img := filepath.Join(tmp, "erase-"+size+".img")
	defer os.Remove(img)
	const pass = "benchmark passphrase"
	uptime, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("erase/check, %s image, userspace engine (load average before: %s)\n", pipeline.HumanSize(n), strings.TrimSpace(string(uptime)))
	type fig struct{ erase, check, ddw, ddr, raww, rawr []float64 }
	var f fig
	for round := 0; round < rounds; round++ {
		os.Remove(img)
		// A disk has no holes: the image is written in full first, so the
		// erase and dd both write over allocated blocks, as on a disk.
		fillImage(img, n)
		cmd := exec.Command(bin, "prepare", "--image", img, "--label", "bench", "--passphrase-file", "-",
			"--confirm", filepath.Base(img), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--erase", "--surface-check", "--json")
		cmd.Env = append(os.Environ(), "LUKSDOCK_STATE_DIR="+filepath.Join(tmp, "state"))
		freshInventory(cmd, tmp)
		cmd.Stdin = strings.NewReader(pass + "\n")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		check(cmd.Run())
		var seg int64
		elapsed := map[pipeline.StepID]time.Duration{}
		sc := bufio.NewScanner(&out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e struct {
				Event     pipeline.EventKind `json:"event"`
				Step      pipeline.StepID    `json:"step"`
				ElapsedMS int64              `json:"elapsed_ms"`
				Progress  *pipeline.Advance  `json:"progress"`
			}
			check(json.Unmarshal(sc.Bytes(), &e))
			if e.Event == pipeline.EventDone {
				elapsed[e.Step] = time.Duration(e.ElapsedMS) * time.Millisecond
			}
			if e.Progress != nil {
				seg = e.Progress.Total
			}
		}
		f.erase = append(f.erase, float64(seg)/elapsed[pipeline.StepErase].Seconds())
		f.check = append(f.check, float64(seg)/elapsed[pipeline.StepSurfaceCheck].Seconds())

		// The same volume, opened the way the userspace engine opens it.
		fh, err := os.Open(img)
		check(err)
		_, parts, err := disk.Probe(fh, n)
		fh.Close()
		check(err)
		part := luks.Device{Path: img, Base: parts[0].Start, Size: parts[0].Size}
		info, err := luks.ReadHeaderDevice(part)
		check(err)
		key, err := luks.DumpVolumeKeyDevice(context.Background(), part, []byte(pass))
		check(err)
		os.Setenv("TMPDIR", tmp) // the mount in a directory of the bench's own
		vol, err := luks.MountUserspace(img, part.Base, part.Size, info.Segment(), key)
		clear(key)
		check(err)
		// conv=fsync: the erase's figure includes its flush to the disk,
		// so dd's does too (the volume server writes the image through the
		// page cache and flushes it on fsync).
		f.ddw = append(f.ddw, dd("if=/dev/zero", "of="+vol.Path(), "bs=4M", "oflag=direct", "conv=notrunc,fsync", fmt.Sprintf("count=%d", info.DataSize), "iflag=count_bytes"))
		// The volume server reads the image through the page cache, which
		// the write just filled: evicted first, so dd reads the disk, as
		// the surface check (O_DIRECT) does.
		evict(img)
		f.ddr = append(f.ddr, dd("if="+vol.Path(), "of=/dev/null", "bs=4M", "iflag=direct"))
		check(vol.Close())
		// The raw data segment, no encryption: the disk's speed.
		off := part.Base + info.DataOffset
		f.raww = append(f.raww, dd("if=/dev/zero", "of="+img, "bs=4M", "oflag=direct,seek_bytes", fmt.Sprintf("seek=%d", off), "conv=notrunc,fsync", fmt.Sprintf("count=%d", info.DataSize), "iflag=count_bytes"))
		f.rawr = append(f.rawr, dd("if="+img, "of=/dev/null", "bs=4M", "iflag=direct,skip_bytes,count_bytes", fmt.Sprintf("skip=%d", off), fmt.Sprintf("count=%d", info.DataSize)))
	}
	uptime, _ = os.ReadFile("/proc/loadavg")
	med := func(x []float64) float64 { return median(x) / 1e6 }
	fmt.Printf("  %-58s %8s\n", "write (median of "+strconv.Itoa(rounds)+", MB/s)", "")
	fmt.Printf("  %-58s %8.0f\n", "luksdock --erase (userspace: encrypt on all cores, direct)", med(f.erase))
	fmt.Printf("  %-58s %8.0f   luksdock/dd %.2fx\n", "dd if=/dev/zero of=VOLUME bs=4M oflag=direct conv=fsync (FUSE)", med(f.ddw), median(f.erase)/median(f.ddw))
	fmt.Printf("  %-58s %8.0f   luksdock/raw %.2fx\n", "dd of the raw data segment, no encryption, conv=fsync (disk)", med(f.raww), median(f.erase)/median(f.raww))
	fmt.Printf("  %-58s\n", "read")
	fmt.Printf("  %-58s %8.0f\n", "luksdock --surface-check (userspace: decrypt on all cores)", med(f.check))
	fmt.Printf("  %-58s %8.0f   luksdock/dd %.2fx\n", "dd if=VOLUME of=/dev/null bs=4M iflag=direct (FUSE, evicted)", med(f.ddr), median(f.check)/median(f.ddr))
	fmt.Printf("  %-58s %8.0f   luksdock/raw %.2fx\n", "dd of the raw data segment, no decryption (disk speed)", med(f.rawr), median(f.check)/median(f.rawr))
	fmt.Printf("  (load average after: %s)\n", strings.TrimSpace(string(uptime)))
}

// fillImage makes path a file of n bytes written in full (zeros), flushed
// and evicted from the page cache.
func fillImage(path string, n int64) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	check(err)
	buf := make([]byte, 16<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		_, err := f.WriteAt(buf[:min(int64(len(buf)), n-off)], off)
		check(err)
	}
	check(f.Sync())
	check(f.Close())
	evict(path)
}

// evict drops path's pages from the page cache (they are clean: flushed).
func evict(path string) {
	f, err := os.Open(path)
	check(err)
	defer f.Close()
	check(f.Sync())
	check(unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED))
}

// dd runs dd with args and returns its throughput in bytes per second.
func dd(args ...string) float64 { return ddOnce(args) }

// ddOnce runs dd once and parses its summary line.
func ddOnce(args []string) float64 {
	out, err := exec.Command("dd", args...).CombinedOutput()
	if err != nil {
		check(fmt.Errorf("dd %v: %v: %s", args, err, out))
	}
	m := regexp.MustCompile(`(\d+) bytes .* copied, ([0-9.e+-]+) s`).FindSubmatch(out)
	if m == nil {
		check(fmt.Errorf("dd %v: no summary in %q", args, out))
	}
	b, _ := strconv.ParseFloat(string(m[1]), 64)
	s, _ := strconv.ParseFloat(string(m[2]), 64)
	return b / s
}
