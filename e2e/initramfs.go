package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// builderVersion is part of the cache key; bump it whenever the layout of
// the base initramfs changes in a way the input list does not capture.
const builderVersion = "luksdock-e2e-initramfs-3"

//go:embed guest/init.sh
var initScript []byte

//go:embed guest/e2e.sh
var guestLib []byte

// guestTools are host programs copied into the guest, each with the shared
// libraries ldd reports for it, at the same path as on the host. The apt
// package that provides each is named so a missing one can be reported.
var guestTools = []struct{ name, pkg string }{
	{"cryptsetup", "cryptsetup-bin"},
	{"mke2fs", "e2fsprogs"},
	{"mkfs.ext4", "e2fsprogs"},
	{"e2fsck", "e2fsprogs"},
	{"fsck.ext4", "e2fsprogs"},
	{"dumpe2fs", "e2fsprogs"},
	{"debugfs", "e2fsprogs"},
	{"tune2fs", "e2fsprogs"},
	{"blkid", "util-linux"},
	{"setpriv", "util-linux"},
	{"wipefs", "util-linux"},
	{"lsblk", "util-linux"},
	{"blockdev", "util-linux"},
	{"losetup", "mount"},
	{"mount", "mount"},
	{"umount", "mount"},
	{"script", "bsdutils"},
	{"sfdisk", "fdisk"},
	{"dmsetup", "dmsetup"},
	{"smartctl", "smartmontools"}, // luksdock's health check (issue 11)
	// what the prepare --dry-run script calls that busybox lacks or does
	// not parse (partx; dd status=progress iflag=count_bytes; cmp --bytes):
	// TestDryRunScriptDevice runs them by path (issue 20)
	{"partx", "util-linux"},
	{"dd", "coreutils"},
	{"cmp", "diffutils"},
}

// guestDataFiles are configuration files the tools read at run time.
var guestDataFiles = []string{"/etc/mke2fs.conf"}

// guestModules are the kernel modules the guest loads at boot, by module
// name. Their dependencies are resolved from modules.dep and loaded first.
// A leading "?" marks a module whose load may fail (CPU-specific
// accelerations that TCG may not offer); the generic fallbacks are listed
// as required.
var guestModules = []string{
	// USB host controllers and mass storage
	"usb-common", "usbcore", "xhci-pci", "ehci-pci",
	"scsi_mod", "sd_mod", "crct10dif_generic", "?crct10dif-pclmul", "crc64_rocksoft_generic",
	"usb-storage", "uas",
	// device-mapper and dm-crypt with AES-XTS
	"dm-mod", "dm-crypt", "xts", "ecb", "?aesni-intel", "sha512_generic",
	"af_alg", "algif_skcipher", "algif_hash",
	// ext4
	"crc32c_generic", "?crc32c-intel", "libcrc32c", "crc16", "mbcache", "jbd2", "ext4",
	// loop devices and FUSE (the userspace engine's data path)
	"loop", "fuse",
	// SATA (AHCI) disks, which answer SMART (the health check's test)
	"libata", "libahci", "ahci",
}

// Guest is a bootable guest: a kernel image and a base initramfs holding
// everything but the luksdock binary and the scenario.
type Guest struct {
	KernelVersion string
	Kernel        string // path of the kernel image (vmlinuz)
	Initramfs     string // path of the cached base initramfs (uncompressed newc cpio)
}

// CacheDir returns the directory the built initramfs is cached in:
// $LUKSDOCK_E2E_CACHE, else $XDG_CACHE_HOME/luksdock-vm, else
// /var/tmp/luksdock-vm.
func CacheDir() string {
	if d := os.Getenv("LUKSDOCK_E2E_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "luksdock-vm")
	}
	return "/var/tmp/luksdock-vm"
}

// FindKernel picks the kernel to boot: $LUKSDOCK_E2E_KERNEL (a version such
// as 6.1.0-56-amd64) if set, else the newest /boot/vmlinuz-* whose modules
// are installed under /lib/modules.
func FindKernel() (version, image string, err error) {
	if v := os.Getenv("LUKSDOCK_E2E_KERNEL"); v != "" {
		img := "/boot/vmlinuz-" + v
		if _, err := os.Stat(img); err != nil {
			return "", "", fmt.Errorf("LUKSDOCK_E2E_KERNEL=%s: %w", v, err)
		}
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err != nil {
			return "", "", fmt.Errorf("LUKSDOCK_E2E_KERNEL=%s: modules not installed: %w", v, err)
		}
		return v, img, nil
	}
	imgs, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Sort(sort.Reverse(sort.StringSlice(imgs)))
	for _, img := range imgs {
		v := strings.TrimPrefix(filepath.Base(img), "vmlinuz-")
		if _, err := os.Stat(filepath.Join("/lib/modules", v, "modules.dep")); err == nil {
			return v, img, nil
		}
	}
	return "", "", errors.New("no /boot/vmlinuz-* with matching /lib/modules/*/modules.dep (apt-get install linux-image-amd64)")
}

// moduleIndex maps normalized module names to paths relative to the module
// tree, and each path to its dependency paths, as modules.dep lists them.
type moduleIndex struct {
	byName map[string]string
	deps   map[string][]string
}

func normModName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		s = strings.TrimSuffix(s, ext)
	}
	return strings.ReplaceAll(s, "-", "_")
}

func readModuleIndex(moddir string) (*moduleIndex, error) {
	f, err := os.Open(filepath.Join(moddir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	idx := &moduleIndex{byName: map[string]string{}, deps: map[string][]string{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		path, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		idx.byName[normModName(path)] = path
		idx.deps[path] = strings.Fields(rest)
	}
	return idx, sc.Err()
}

// loadOrder returns the module paths to insmod, dependencies first, each
// once. Optional modules that do not exist are dropped; a required one that
// does not exist is an error. Names built into the kernel are fine.
func (idx *moduleIndex) loadOrder(moddir string, names []string) (order []string, optional map[string]bool, err error) {
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(moddir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[normModName(l)] = true
		}
	}
	optional = map[string]bool{}
	seen := map[string]bool{}
	var visit func(p string)
	visit = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		// modules.dep lists the full closure; visiting each dependency's
		// own list first yields a valid load order.
		for _, d := range idx.deps[p] {
			visit(d)
		}
		order = append(order, p)
	}
	for _, n := range names {
		opt := strings.HasPrefix(n, "?")
		n = strings.TrimPrefix(n, "?")
		p, ok := idx.byName[normModName(n)]
		if !ok {
			if builtin[normModName(n)] || opt {
				continue
			}
			return nil, nil, fmt.Errorf("kernel module %s not found in %s/modules.dep", n, moddir)
		}
		if opt && !seen[p] {
			optional[p] = true
		}
		visit(p)
	}
	for _, p := range order {
		if strings.HasSuffix(p, ".xz") || strings.HasSuffix(p, ".zst") || strings.HasSuffix(p, ".gz") {
			return nil, nil, fmt.Errorf("compressed kernel module %s is not supported by the guest's busybox insmod", p)
		}
	}
	return order, optional, nil
}

// lddDeps returns the shared objects (including the dynamic loader) that a
// program needs, as absolute paths, from ldd's output.
func lddDeps(prog string) ([]string, error) {
	out, err := exec.Command("ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	var libs []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	return libs, nil
}

func lookTool(name string) (string, error) {
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

// guestFile is one file of the base initramfs: its path in the guest and
// the host file its contents come from.
type guestFile struct {
	guest, host string
	perm        uint32
}

// baseInputs lists every host file that goes into the base initramfs and
// the module load order; both feed the cache key.
func baseInputs(kver string) (files []guestFile, modList []byte, err error) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, nil, errors.New("busybox not found (apt-get install busybox-static)")
	}
	if out, _ := exec.Command("file", "-L", busybox).Output(); len(out) > 0 && !bytes.Contains(out, []byte("statically linked")) {
		// The file(1) check is advisory; ldd is the fallback test.
		if o, _ := exec.Command("ldd", busybox).CombinedOutput(); !bytes.Contains(o, []byte("not a dynamic executable")) {
			return nil, nil, fmt.Errorf("%s is not statically linked (apt-get install busybox-static)", busybox)
		}
	}
	files = append(files, guestFile{"bin/busybox", busybox, 0o755})
	libs := map[string]bool{}
	var missing []string
	for _, t := range guestTools {
		p, err := lookTool(t.name)
		if err != nil {
			missing = append(missing, t.pkg+" ("+t.name+")")
			continue
		}
		files = append(files, guestFile{strings.TrimPrefix(p, "/"), p, 0o755})
		deps, err := lddDeps(p)
		if err != nil {
			return nil, nil, err
		}
		for _, d := range deps {
			libs[d] = true
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("guest tools missing on the host: %s (apt-get install them)", strings.Join(missing, ", "))
	}
	var libList []string
	for l := range libs {
		libList = append(libList, l)
	}
	sort.Strings(libList)
	for _, l := range libList {
		files = append(files, guestFile{strings.TrimPrefix(l, "/"), l, 0o755})
	}
	for _, f := range guestDataFiles {
		if _, err := os.Stat(f); err == nil {
			files = append(files, guestFile{strings.TrimPrefix(f, "/"), f, 0o644})
		}
	}

	moddir := filepath.Join("/lib/modules", kver)
	idx, err := readModuleIndex(moddir)
	if err != nil {
		return nil, nil, err
	}
	order, optional, err := idx.loadOrder(moddir, guestModules)
	if err != nil {
		return nil, nil, err
	}
	var ml bytes.Buffer
	for _, p := range order {
		if optional[p] {
			ml.WriteString("?")
		}
		ml.WriteString(p + "\n")
		files = append(files, guestFile{"lib/modules/" + kver + "/" + p, filepath.Join(moddir, p), 0o644})
	}
	return files, ml.Bytes(), nil
}

// cacheKey hashes the builder version, the embedded guest scripts, the
// kernel version, the module list and each input file's path, size and
// modification time (a package upgrade changes them).
func cacheKey(kver, kernel string, files []guestFile, modList []byte) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", builderVersion, kver)
	h.Write(initScript)
	h.Write(guestLib)
	h.Write(modList)
	for _, f := range append([]guestFile{{"kernel", kernel, 0}}, files...) {
		st, err := os.Stat(f.host)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %s %d %d\n", f.guest, f.host, st.Size(), st.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// busyboxApplets are linked in /bin so the init script and scenarios find
// them; the real util-linux/e2fsprogs tools in /usr/sbin and /usr/bin come
// first in PATH.
func busyboxApplets() ([]string, error) {
	out, err := exec.Command("busybox", "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	return strings.Fields(string(out)), nil
}

// PrepareGuest finds the kernel and returns the base initramfs for it,
// building it into CacheDir() when no cached copy matches the inputs.
func PrepareGuest() (*Guest, error) {
	kver, kernel, err := FindKernel()
	if err != nil {
		return nil, err
	}
	if f, err := os.Open(kernel); err != nil {
		return nil, fmt.Errorf("kernel image not readable: %w", err)
	} else {
		f.Close()
	}
	files, modList, err := baseInputs(kver)
	if err != nil {
		return nil, err
	}
	key, err := cacheKey(kver, kernel, files, modList)
	if err != nil {
		return nil, err
	}
	dir := CacheDir()
	out := filepath.Join(dir, "initramfs-"+kver+"-"+key+".cpio")
	g := &Guest{KernelVersion: kver, Kernel: kernel, Initramfs: out}
	if _, err := os.Stat(out); err == nil {
		return g, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	applets, err := busyboxApplets()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(p string) {
		var parts []string
		for d := filepath.Dir(p); d != "." && d != "/"; d = filepath.Dir(d) {
			parts = append(parts, d)
		}
		for i := len(parts) - 1; i >= 0; i-- {
			if !dirs[parts[i]] {
				dirs[parts[i]] = true
				c.Dir(parts[i], 0o755)
			}
		}
	}
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc/e2e", "lib", "proc", "sys", "dev", "tmp", "run", "mnt", "root"} {
		mkdirs(d + "/x")
	}
	for _, f := range files {
		data, err := os.ReadFile(f.host)
		if err != nil {
			return nil, err
		}
		mkdirs(f.guest)
		c.File(f.guest, f.perm, data)
	}
	have := map[string]bool{}
	for _, f := range files {
		have[f.guest] = true
	}
	for _, a := range applets {
		if a == "busybox" {
			continue
		}
		if !have["bin/"+a] {
			c.Symlink("bin/"+a, "busybox")
		}
		if !have["sbin/"+a] {
			c.Symlink("sbin/"+a, "../bin/busybox")
		}
	}
	c.File("init", 0o755, initScript)
	c.File("lib/e2e.sh", 0o644, guestLib)
	c.File("etc/e2e/modules", 0o644, modList)
	c.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	c.File("etc/group", 0o644, []byte("root:x:0:\ndisk:x:6:\n"))
	if err := c.Close(); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".initramfs-*")
	if err != nil {
		return nil, err
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	pruneCache(dir, out)
	return g, nil
}

// pruneCache removes cached initramfs files other than keep that are more
// than a day old (older inputs; a day leaves any concurrent run alone).
func pruneCache(dir, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, "initramfs-*.cpio"))
	for _, p := range old {
		if st, err := os.Stat(p); err == nil && p != keep && time.Since(st.ModTime()) > 24*time.Hour {
			os.Remove(p)
		}
	}
}

// overlay builds the per-boot archive appended to the base initramfs: the
// luksdock binary (if any), the scenario script, extra files and extra
// programs (name -> host path, installed as /usr/bin/NAME).
func overlay(luksdock string, script string, extra map[string][]byte, programs map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	c.Dir("e2e", 0o755)
	if luksdock != "" {
		data, err := os.ReadFile(luksdock)
		if err != nil {
			return nil, err
		}
		c.File("usr/bin/luksdock", 0o755, data)
	}
	progs := make([]string, 0, len(programs))
	for n := range programs {
		progs = append(progs, n)
	}
	sort.Strings(progs)
	for _, n := range progs {
		data, err := os.ReadFile(programs[n])
		if err != nil {
			return nil, err
		}
		c.File("usr/bin/"+n, 0o755, data)
	}
	c.File("e2e/scenario.sh", 0o755, []byte(script))
	names := make([]string, 0, len(extra))
	for n := range extra {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c.File("e2e/"+n, 0o600, extra[n])
	}
	if err := c.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
