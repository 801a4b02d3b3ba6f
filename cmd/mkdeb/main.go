// Command mkdeb builds luksdock's Debian package with nFPM (as a library):
//
//	cd cmd/mkdeb && go run . [-out DIR]
//
// It is a Go module of its own (cmd/mkdeb/go.mod, which replaces luksdock
// with ../..), so nFPM and the modules it needs are not in the product's
// go.mod: `go test ./...` at the repository root does not build it, and
// scripts/test runs its test from this directory.
//
// It builds a static luksdock (CGO_ENABLED=0, -trimpath, VCS stamping on),
// asks that binary for its man pages and completion scripts (the hidden
// gen-man and gen-completions commands, so they come from the very command
// tree that is packaged), and writes DIR/luksdock_VERSION_ARCH.deb. The
// package version is the binary's module version (internal/version), so
// `dpkg -l luksdock` and `luksdock --version` agree. scripts/package runs it.
//
// Set DEBFULLNAME and DEBEMAIL for the Maintainer field (Debian's usual
// variables) and SOURCE_DATE_EPOCH for a reproducible build (default: the
// commit's time).
package main

import (
	"bytes"
	"compress/gzip"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"

	"luksdock/internal/version"
)

const description = `Prepare a docked disk as a verified LUKS-encrypted backup disk
 luksdock turns a bare disk in a USB dock into a LUKS2-encrypted, labelled
 offsite backup disk: it finds the disk that was just docked, refuses
 internal and in-use disks, wipes it, makes one partition, formats it with
 cryptsetup, makes an ext4 filesystem with the given label inside, and
 proves the result: an independent LUKS implementation unseals a keyslot,
 cryptsetup unlocks it, and e2fsck is clean.
 .
 It runs as a terminal wizard or non-interactively (luksdock prepare), and
 can verify a prepared disk later (luksdock verify). Without device-mapper
 (and for image files) it encrypts in userspace and serves the volume
 through FUSE, which needs the fuse3 package.`

// lintianOverrides are the lintian tags that do not apply, and why (README,
// "Install", lists them too).
const lintianOverrides = `# luksdock is a Go program linked statically on purpose (CGO_ENABLED=0): it
# runs on any Debian or Ubuntu release without libc concerns. Lintian exempts
# Go binaries only when a Debian source package build-depends on golang-go;
# this package is built by nFPM from the Go module, without one.
luksdock: statically-linked-binary [usr/sbin/luksdock]
# Not uploaded to Debian (no ITP bug to close): built from the repository.
luksdock: initial-upload-closes-no-bugs [usr/share/doc/luksdock/changelog.Debian.gz:1]
`

func main() {
	out := flag.String("out", "dist", "directory for the .deb")
	flag.Parse()
	path, err := build(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

func build(outDir string) (string, error) {
	top, err := moduleRoot()
	if err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "luksdock-mkdeb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)

	// 1. A static binary. -buildvcs=auto overrides a GOFLAGS=-buildvcs=false.
	bin := filepath.Join(work, "luksdock")
	gobuild := exec.Command("go", "build", "-trimpath", "-buildvcs=auto", "-ldflags=-s -w", "-o", bin, ".")
	gobuild.Dir = top
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	gobuild.Stdout, gobuild.Stderr = os.Stderr, os.Stderr
	if err := gobuild.Run(); err != nil {
		return "", fmt.Errorf("go build: %w", err)
	}
	if err := checkStatic(bin); err != nil {
		return "", err
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "", err
	}
	ver := version.FromBuildInfo(bi)
	if ver.Module == version.Devel {
		fmt.Fprintln(os.Stderr, "mkdeb: warning: the binary carries no VCS version (a git worktree, where Go does not stamp one, or no .git): the package is version "+ver.Debian())
	}

	// 2. Man pages and completions, from the binary itself.
	mtime, err := sourceDate(ver)
	if err != nil {
		return "", err
	}
	manDir, compDir := filepath.Join(work, "man"), filepath.Join(work, "completions")
	for _, args := range [][]string{{"gen-man", manDir}, {"gen-completions", compDir}} {
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(mtime.Unix(), 10))
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			return "", fmt.Errorf("luksdock %s: %w", args[0], err)
		}
	}

	var contents files.Contents
	add := func(src, dst string, mode os.FileMode) {
		contents = append(contents, &files.Content{Source: src, Destination: dst, Type: files.TypeFile,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: mtime}})
	}
	gz := func(src, name string) (string, error) { return gzipFile(src, filepath.Join(work, "gz", name)) }

	add(bin, "/usr/sbin/luksdock", 0o755)
	pages, _ := filepath.Glob(filepath.Join(manDir, "*.8"))
	if len(pages) == 0 {
		return "", errors.New("gen-man wrote no man page")
	}
	for _, p := range pages {
		g, err := gz(p, filepath.Base(p)+".gz")
		if err != nil {
			return "", err
		}
		add(g, "/usr/share/man/man8/"+filepath.Base(g), 0o644)
	}
	add(filepath.Join(compDir, "bash/luksdock"), "/usr/share/bash-completion/completions/luksdock", 0o644)
	add(filepath.Join(compDir, "zsh/_luksdock"), "/usr/share/zsh/vendor-completions/_luksdock", 0o644)
	add(filepath.Join(compDir, "fish/luksdock.fish"), "/usr/share/fish/vendor_completions.d/luksdock.fish", 0o644)
	add(filepath.Join(top, "packaging", "80-luksdock.rules"), "/usr/lib/udev/rules.d/80-luksdock.rules", 0o644)
	add(filepath.Join(top, "packaging", "luksdock-dock@.service"), "/usr/lib/systemd/system/luksdock-dock@.service", 0o644)

	doc := "/usr/share/doc/luksdock/"
	readme, err := gz(filepath.Join(top, "README.md"), "README.md.gz")
	if err != nil {
		return "", err
	}
	add(readme, doc+"README.md.gz", 0o644)
	copyright := filepath.Join(work, "copyright")
	if err := writeCopyright(filepath.Join(top, "packaging", "copyright"), bi, copyright); err != nil {
		return "", err
	}
	add(copyright, doc+"copyright", 0o644)

	overrides := filepath.Join(work, "lintian-overrides")
	if err := os.WriteFile(overrides, []byte(lintianOverrides), 0o644); err != nil {
		return "", err
	}
	add(overrides, "/usr/share/lintian/overrides/luksdock", 0o644)

	maint := maintainer()
	debVersion := ver.Debian()
	const release = "1"
	changelog := filepath.Join(work, "changelog.Debian")
	if err := os.WriteFile(changelog, []byte(changelogEntry(debVersion+"-"+release, ver, maint, mtime)), 0o644); err != nil {
		return "", err
	}
	cl, err := gz(changelog, "changelog.Debian.gz")
	if err != nil {
		return "", err
	}
	add(cl, doc+"changelog.Debian.gz", 0o644)

	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          "luksdock",
		Arch:          runtime.GOARCH,
		Platform:      "linux",
		Version:       debVersion,
		VersionSchema: "none", // already a Debian version (version.Info.Debian)
		Release:       release,
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    maint,
		Description:   description,
		MTime:         mtime,
		Overridables: nfpm.Overridables{
			Depends:    []string{"cryptsetup-bin", "e2fsprogs"},
			Recommends: []string{"fuse3"},
			Suggests:   []string{"smartmontools", "libtss2-esys-3.0.2-0", "libtss2-rc0", "libtss2-mu0"},
			Contents:   contents,
		},
	})
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	target := filepath.Join(outDir, pkg.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(target)
		return "", fmt.Errorf("nfpm: %w", err)
	}
	return target, f.Close()
}

// moduleRoot is the directory of the luksdock module this one builds: mkdeb
// is a module of its own (so nFPM and its dependencies stay out of the
// product's go.mod) whose go.mod replaces luksdock with ../.., and
// `go list -m` resolves that replacement to the directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{with .Replace}}{{.Dir}}{{else}}{{.Dir}}{{end}}", "luksdock").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("go list -m luksdock (run mkdeb inside cmd/mkdeb): %w: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("go list -m luksdock: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("the luksdock module is not at %q: %w", dir, err)
	}
	return dir, nil
}

// checkStatic refuses a binary that needs a dynamic loader or libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (has an interpreter); build with CGO_ENABLED=0", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v", path, libs)
	}
	return nil
}

// sourceDate is SOURCE_DATE_EPOCH, else the commit's time, else now.
func sourceDate(v version.Info) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339, v.Time); err == nil {
		return t.UTC(), nil
	}
	return time.Now().UTC().Truncate(time.Second), nil
}

// maintainer is "$DEBFULLNAME <$DEBEMAIL>", or a placeholder at a reserved
// (.invalid) domain that says nobody has been named yet.
func maintainer() string {
	name, mail := os.Getenv("DEBFULLNAME"), os.Getenv("DEBEMAIL")
	if name == "" {
		name = "luksdock maintainers"
	}
	if mail == "" {
		mail = "maintainers@luksdock.invalid"
	}
	return name + " <" + mail + ">"
}

// changelogEntry is the one entry of changelog.Debian.
func changelogEntry(fullVersion string, v version.Info, maint string, t time.Time) string {
	what := "luksdock built from a tree without VCS information."
	if v.Revision != "" {
		what = "luksdock built from revision " + v.Revision + "."
		if v.Modified {
			// two lines: lintian wants a changelog line under 80 columns
			what = "luksdock built from revision " + v.Revision + "\n    with uncommitted changes."
		}
	}
	return fmt.Sprintf("luksdock (%s) unstable; urgency=medium\n\n  * %s\n    See /usr/share/doc/luksdock/README.md.gz for what it does.\n\n -- %s  %s\n",
		fullVersion, what, maint, t.Format(time.RFC1123Z))
}

// gzipFile writes src compressed as `gzip -9n` would (no name, no time).
func gzipFile(src, dst string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if _, err := w.Write(b); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	return dst, os.WriteFile(dst, buf.Bytes(), 0o644)
}

// writeCopyright writes the Debian copyright file: packaging/copyright
// (luksdock's own), then one paragraph per Go module linked into the
// binary and the Go standard library, with the license file each ships.
func writeCopyright(head string, bi *buildinfo.BuildInfo, dst string) error {
	b, err := os.ReadFile(head)
	if err != nil {
		return err
	}
	var out strings.Builder
	out.Write(bytes.TrimRight(b, "\n"))
	out.WriteString("\n")
	modcache, err := exec.Command("go", "env", "GOMODCACHE", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env: %w", err)
	}
	envs := strings.Split(strings.TrimSpace(string(modcache)), "\n")
	type mod struct{ name, dir string }
	mods := []mod{{"the Go standard library " + bi.GoVersion, envs[1]}}
	deps := bi.Deps
	sort.Slice(deps, func(i, j int) bool { return deps[i].Path < deps[j].Path })
	for _, d := range deps {
		if d.Replace != nil {
			d = d.Replace
		}
		esc, err := escapeModPath(d.Path)
		if err != nil {
			return err
		}
		mods = append(mods, mod{"Go module " + d.Path + " " + d.Version, filepath.Join(envs[0], esc+"@"+d.Version)})
	}
	for _, m := range mods {
		text, name, err := licenseText(m.dir)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		lic := licenseName(text)
		body := indent(text)
		if common := commonLicense(text); common != "" {
			// Debian policy 12.5: refer to the copy every system has, and
			// never copy a full text of one of those.
			ref := "On Debian systems the full text of the " + common + " license is in\n/usr/share/common-licenses/" + common + "."
			if fullText(text) {
				body = indent(ref)
			} else {
				body = indent(text + "\n" + ref)
			}
			if notice, err := os.ReadFile(filepath.Join(m.dir, "NOTICE")); err == nil {
				body += indent("\nThe module's NOTICE file:\n\n" + string(notice))
			}
		}
		fields := strings.Fields(m.name)
		fmt.Fprintf(&out, "\nFiles: *\nComment: %s, statically linked into /usr/sbin/luksdock;\n license from its file %s.\nCopyright: the authors of %s, as stated in the license\nLicense: %s\n%s", m.name, name, fields[len(fields)-2], lic, body)
	}
	return os.WriteFile(dst, []byte(out.String()), 0o644)
}

// commonLicense names the license Debian ships in /usr/share/common-licenses
// that text is or mentions (Apache-2.0, MPL-2.0), or "".
func commonLicense(text string) string {
	t := strings.Join(strings.Fields(text), " ")
	switch {
	case strings.Contains(t, "Apache License") && strings.Contains(t, "Version 2.0"):
		return "Apache-2.0"
	case strings.Contains(t, "Mozilla Public License") && strings.Contains(t, "2.0"):
		return "MPL-2.0"
	}
	return ""
}

// fullText reports whether text is a whole license of that kind (not a
// header that points to it).
func fullText(text string) bool {
	t := strings.Join(strings.Fields(text), " ")
	return strings.Contains(t, "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION") || // Apache-2.0
		strings.Contains(t, "1.1. \"Contributor\"") // MPL-2.0
}

// licenseText finds a module's license file.
func licenseText(dir string) (text, name string, err error) {
	for _, n := range []string{"LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING", "LICENCE", "License"} {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			return string(b), n, nil
		}
	}
	return "", "", fmt.Errorf("no license file in %s", dir)
}

// licenseName is the copyright-format short name for a license text; a
// file that holds several licenses gets them joined with "and".
func licenseName(text string) string {
	t := strings.Join(strings.Fields(text), " ")
	var names []string
	if c := commonLicense(text); c != "" {
		names = append(names, c)
	}
	switch {
	case strings.Contains(t, "Permission is hereby granted, free of charge"):
		names = append(names, "Expat")
	case strings.Contains(t, "Redistribution and use in source and binary forms") && strings.Contains(t, "Neither the name"):
		names = append(names, "BSD-3-clause")
	case strings.Contains(t, "Redistribution and use in source and binary forms"):
		names = append(names, "BSD-2-clause")
	case strings.Contains(t, "Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee"):
		names = append(names, "ISC")
	}
	if len(names) == 0 {
		return "other"
	}
	return strings.Join(names, " and ")
}

// indent formats text as a copyright-format continuation: one space, "."
// for an empty line.
func indent(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(strings.ReplaceAll(text, "\r", ""), "\n"), "\n") {
		l = strings.TrimRight(l, " \t")
		if l == "" {
			b.WriteString(" .\n")
		} else {
			b.WriteString(" " + l + "\n")
		}
	}
	return b.String()
}

// escapeModPath is the module cache's case encoding (golang.org/x/mod's
// module.EscapePath): an upper-case letter becomes "!" and its lower case.
func escapeModPath(p string) (string, error) {
	var b strings.Builder
	for _, r := range p {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('!')
			b.WriteRune(r + ('a' - 'A'))
		} else {
			b.WriteRune(r)
		}
	}
	return b.String(), nil
}
