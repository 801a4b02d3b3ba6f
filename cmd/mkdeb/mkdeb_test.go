package main

import (
	"bufio"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
	"luksdock/internal/version"
)

// TestDeb builds the package as scripts/package does and checks it with
// Debian's own tools: dpkg-deb (fields and file list), lintian (no error or
// warning that is not overridden with its reason), and then installs it with
// dpkg into a fresh Debian root made by mmdebstrap and, chrooted there, runs
// `luksdock --version`, `man -w`, the bash completion through
// bash-completion's loader, and a `prepare` of an image file whose result is
// then checked from outside with cryptsetup, x/crypto/xts and e2fsck.
func TestDeb(t *testing.T) {
	// go builds, dpkg-deb reads the .deb, lintian checks it against Debian
	// policy.
	testkit.NeedTools(t, "go", "dpkg-deb", "lintian")
	out := t.TempDir()
	t0 := time.Now()
	deb, err := build(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s in %s", filepath.Base(deb), time.Since(t0).Round(time.Second))

	// The binary inside, and the version it reports.
	x := filepath.Join(t.TempDir(), "x")
	run(t, "dpkg-deb", "-x", deb, x)
	bin := filepath.Join(x, "usr/sbin/luksdock")
	if err := checkStatic(bin); err != nil {
		t.Error(err)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if s := bi.Settings; !hasSetting(s, "CGO_ENABLED", "0") || !hasSetting(s, "-trimpath", "true") {
		t.Errorf("binary not built with CGO_ENABLED=0 -trimpath: %v", s)
	}
	ver := version.FromBuildInfo(bi)
	wantVersion := ver.Debian() + "-1"
	gotVer := strings.TrimSpace(run(t, bin, "--version"))
	if gotVer != "luksdock "+ver.String() {
		t.Errorf("--version: %q, build info says %q", gotVer, ver.String())
	}

	// dpkg-deb --info: the control fields.
	info := run(t, "dpkg-deb", "--info", deb)
	arch := strings.TrimSpace(run(t, "dpkg", "--print-architecture"))
	for field, want := range map[string]string{
		"Package":      "luksdock",
		"Version":      wantVersion,
		"Architecture": arch,
		"Section":      "admin",
		"Priority":     "optional",
		"Depends":      "cryptsetup-bin, e2fsprogs",
		"Recommends":   "fuse3",
		"Suggests":     "smartmontools, libtss2-esys-3.0.2-0, libtss2-rc0, libtss2-mu0",
	} {
		m := regexp.MustCompile(`(?m)^ ` + field + `: (.*)$`).FindStringSubmatch(info)
		if m == nil || m[1] != want {
			t.Errorf("control field %s = %v, want %q", field, m, want)
		}
	}
	if filepath.Base(deb) != "luksdock_"+wantVersion+"_"+arch+".deb" {
		t.Errorf("file name %s, want luksdock_%s_%s.deb", filepath.Base(deb), wantVersion, arch)
	}

	// dpkg-deb --contents: what goes where, owned by root.
	contents := run(t, "dpkg-deb", "--contents", deb)
	for path, mode := range map[string]string{
		"./usr/sbin/luksdock":                                 "-rwxr-xr-x",
		"./usr/share/man/man8/luksdock.8.gz":                  "-rw-r--r--",
		"./usr/share/man/man8/luksdock-list.8.gz":             "-rw-r--r--",
		"./usr/share/man/man8/luksdock-prepare.8.gz":          "-rw-r--r--",
		"./usr/share/man/man8/luksdock-verify.8.gz":           "-rw-r--r--",
		"./usr/share/bash-completion/completions/luksdock":    "-rw-r--r--",
		"./usr/share/zsh/vendor-completions/_luksdock":        "-rw-r--r--",
		"./usr/share/fish/vendor_completions.d/luksdock.fish": "-rw-r--r--",
		"./usr/share/doc/luksdock/README.md.gz":               "-rw-r--r--",
		"./usr/share/doc/luksdock/copyright":                  "-rw-r--r--",
		"./usr/share/doc/luksdock/changelog.Debian.gz":        "-rw-r--r--",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(mode) + ` root/root .* ` + regexp.QuoteMeta(path) + `$`).MatchString(contents) {
			t.Errorf("%s (%s root/root) is not in the package:\n%s", path, mode, contents)
		}
	}
	if strings.Contains(contents, "luksdock-completion") || strings.Contains(contents, "gen-man") {
		t.Errorf("hidden commands got man pages:\n%s", contents)
	}

	// The copyright file: luksdock's own license (MIT, the repository's
	// LICENSE, which Debian calls Expat), then every module linked in, by
	// its build info.
	cr, err := os.ReadFile(filepath.Join(x, "usr/share/doc/luksdock/copyright"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	lic, err := os.ReadFile(filepath.Join(top, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	title, rest, _ := strings.Cut(string(lic), "\n\n")
	holder, terms, _ := strings.Cut(rest, "\n\n")
	if title != "MIT License" || holder != "Copyright (c) 2026 the luksdock authors" {
		t.Errorf("LICENSE starts %q / %q, want the MIT License of the luksdock authors", title, holder)
	}
	own := "\nFiles: *\nCopyright: 2026 the luksdock authors\nLicense: Expat\n" + indent(terms)
	if !strings.Contains(string(cr), own) {
		t.Errorf("copyright has no paragraph for luksdock's own code under LICENSE's terms; want:\n%s", own)
	}
	for _, d := range bi.Deps {
		if !strings.Contains(string(cr), "Go module "+d.Path+" "+d.Version+",") {
			t.Errorf("copyright has no paragraph for the linked module %s %s", d.Path, d.Version)
		}
	}

	// lintian: no error or warning (the overrides carry their reasons).
	cmd := exec.Command("lintian", "--info", "--pedantic", "--fail-on", "error,warning", deb)
	b, err := cmd.CombinedOutput()
	t.Logf("lintian --pedantic:\n%s", b)
	if err != nil {
		t.Errorf("lintian: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			t.Errorf("lintian: %s", l)
		}
	}

	if testing.Short() {
		t.Skip("SKIPPED with -short: installing into a Debian root")
	}
	if os.Getenv("LUKSDOCK_PKGTEST_CHROOT") == "0" {
		t.Skip("SKIPPED: LUKSDOCK_PKGTEST_CHROOT=0: the package was not installed into a Debian root")
	}
	// Installing into a Debian root: chroot, mounts.
	testkit.NeedRoot(t, "mmdebstrap", "unshare", "chroot", "tar")
	root := debianRoot(t)
	deb2 := filepath.Join(root, "tmp", "luksdock.deb")
	run(t, "cp", deb, deb2)

	// Install: dpkg checks the Depends against the root's packages.
	t.Log(inRoot(t, root, "dpkg -i /tmp/luksdock.deb"))
	st := inRoot(t, root, "dpkg-query -W -f '${Status} ${Version}' luksdock")
	if st != "install ok installed "+wantVersion {
		t.Errorf("dpkg-query: %q", st)
	}
	if got := inRoot(t, root, "luksdock --version"); got != gotVer {
		t.Errorf("installed luksdock --version: %q, want %q", got, gotVer)
	}
	for _, page := range []string{"luksdock", "luksdock-prepare", "luksdock-verify", "luksdock-list"} {
		if got := inRoot(t, root, "man -w "+page); got != "/usr/share/man/man8/"+page+".8.gz" {
			t.Errorf("man -w %s: %q", page, got)
		}
	}
	page := inRoot(t, root, "MANWIDTH=100 man luksdock-prepare 2>&1 | col -b")
	for _, s := range []string{"EXIT STATUS", "FILES", "EXAMPLES", "--pbkdf-force-iterations"} {
		if !strings.Contains(page, s) {
			t.Errorf("man luksdock-prepare has no %q:\n%s", s, page)
		}
	}
	// bash-completion loads the installed script on demand, by command name.
	comp := inRoot(t, root, `bash -c 'source /usr/share/bash-completion/bash_completion
_completion_loader luksdock
COMP_WORDS=(luksdock prepare --engine ""); COMP_CWORD=3; COMP_LINE="luksdock prepare --engine "; COMP_POINT=${#COMP_LINE}
__start_luksdock; printf "%s\n" "${COMPREPLY[@]}"'`)
	if comp != "auto\nkernel\nuserspace" {
		t.Errorf("bash completion of --engine in the Debian root: %q", comp)
	}

	// prepare an image file; the userspace engine serves it through /dev/fuse.
	const pass = "correct horse battery staple"
	if err := os.WriteFile(filepath.Join(root, "tmp", "pass"), []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	events := inRoot(t, root, "luksdock prepare --image /tmp/disk.img --size 64M --label pkgtest --passphrase-file /tmp/pass --confirm disk.img --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json")
	var first, last map[string]any
	sc := bufio.NewScanner(strings.NewReader(events))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("prepare --json line %q: %v", sc.Text(), err)
		}
		if first == nil {
			first = e
		}
		last = e
	}
	if first["event"] != "plan" || first["version"] != ver.String() {
		t.Errorf("first event: %v, want plan with version %q", first, ver.String())
	}
	res, _ := last["result"].(map[string]any)
	if last["event"] != "result" || res["fsck_clean"] != true || res["version"] != ver.String() {
		t.Errorf("last event %v, want a clean result with version %q", last, ver.String())
	}
	t.Log(inRoot(t, root, "luksdock verify --image /tmp/disk.img --passphrase-file /tmp/pass"))

	// Independently: cryptsetup reads the header and unseals the key,
	// x/crypto/xts decrypts, e2fsck and dumpe2fs judge the filesystem.
	img := filepath.Join(root, "tmp", "disk.img")
	dev, ok := testkit.Partition1(t, img)
	if !ok {
		t.Fatalf("%s has no partition", img)
	}
	vol, err := testkit.Unlock(t, dev, pass)
	if err != nil {
		t.Fatal(err)
	}
	plain := testkit.DecryptXTS(t, vol)
	if out, err := exec.Command("e2fsck", "-fn", plain).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	if out := run(t, "dumpe2fs", "-h", plain); !regexp.MustCompile(`(?m)^Filesystem volume name:\s+pkgtest$`).MatchString(out) {
		t.Errorf("dumpe2fs: no label pkgtest:\n%s", out)
	}
}

func hasSetting(s []debug.BuildSetting, k, v string) bool {
	for _, x := range s {
		if x.Key == k && x.Value == v {
			return true
		}
	}
	return false
}

// run runs a command and returns its standard output; it fails the test
// with standard error when the command fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// mountsScript mounts what a chrooted luksdock needs, in a private mount
// namespace (unshare), so every mount ends with the command, whatever
// happens to the test: /proc, /dev (for /dev/fuse and /dev/urandom), /sys.
const mountsScript = `set -e
R=$1; shift
mount -t proc proc "$R/proc"
mount --bind /dev "$R/dev"
mount --bind /sys "$R/sys"
exec chroot "$R" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM=dumb /bin/sh -c "$1"`

// inRoot runs a shell command chrooted into root and returns its standard
// output without the trailing newline.
func inRoot(t *testing.T, root, script string) string {
	t.Helper()
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", mountsScript, "sh", root, script)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("in the Debian root: %s: %v\n%s%s", script, err, out, stderr.String())
	}
	return strings.TrimRight(string(out), "\n")
}

// rootPackages are installed into the test's Debian root beside minbase:
// the package's Depends and Recommends, and what the test runs there.
var rootPackages = []string{"cryptsetup-bin", "e2fsprogs", "fuse3", "man-db", "bash-completion"}

// debianRoot unpacks a fresh Debian root (minbase of this host's release
// and rootPackages) into a new directory and returns it. The root is made
// with mmdebstrap from Debian's mirror once a day and kept as a tarball in
// /var/tmp/luksdock-pkgtest, keyed by date, release and package list.
func debianRoot(t *testing.T) string {
	t.Helper()
	suite := "bookworm" // this host's release when it is Debian
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		kv := map[string]string{}
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				kv[k] = strings.Trim(v, `"`)
			}
		}
		if kv["ID"] == "debian" && kv["VERSION_CODENAME"] != "" {
			suite = kv["VERSION_CODENAME"]
		}
	}
	h := sha256.Sum256([]byte(suite + " minbase " + strings.Join(rootPackages, ",")))
	cache := "/var/tmp/luksdock-pkgtest"
	prefix := suite + "-" + hex.EncodeToString(h[:6]) + "-"
	tarball := filepath.Join(cache, prefix+time.Now().UTC().Format("20060102")+".tar")
	if _, err := os.Stat(tarball); err != nil {
		if err := os.MkdirAll(cache, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(cache, prefix+"*.tar"))
		tmp := tarball + fmt.Sprintf(".%d.tmp", os.Getpid())
		t0 := time.Now()
		cmd := exec.Command("mmdebstrap", "--quiet", "--format=tar", "--variant=minbase", "--include="+strings.Join(rootPackages, ","), suite, tmp)
		if out, err := cmd.CombinedOutput(); err != nil {
			os.Remove(tmp)
			t.Fatalf("mmdebstrap %s: %v\n%s", suite, err, out)
		}
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
		for _, o := range old {
			os.Remove(o) // yesterday's
		}
		t.Logf("made the Debian root %s with mmdebstrap in %s", tarball, time.Since(t0).Round(time.Second))
	} else {
		t.Logf("using the cached Debian root %s", tarball)
	}
	// Not t.TempDir: the root is removed only when nothing is mounted below
	// it (the mounts live in unshare's namespace, but a removal must never
	// follow a bind mount of /dev).
	root, err := os.MkdirTemp("/var/tmp", "luksdock-debroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if m := mountsBelow(root); len(m) > 0 {
			t.Errorf("NOT removing %s: still mounted below it: %v", root, m)
			return
		}
		os.RemoveAll(root)
	})
	run(t, "tar", "-C", root, "--numeric-owner", "-xpf", tarball)
	return root
}

// mountsBelow lists the mount points at or below dir in this namespace.
func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"cannot read /proc/self/mountinfo: " + err.Error()}
	}
	var m []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			m = append(m, f[4])
		}
	}
	return m
}
