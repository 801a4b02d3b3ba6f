// Package version tells which luksdock this is: the module version and the
// VCS revision the Go toolchain stamped into the binary (runtime/debug build
// info). `luksdock --version`, the --json outputs and the .deb's version all
// read it from here, so a bug report quotes what was really built.
//
// A `go build` in a git checkout (with VCS stamping on: -buildvcs=true or
// auto) stamps a pseudo-version such as v0.0.0-20261201034023-65bf4be1a2b3
// and vcs.revision; `go install luksdock@v1.2.3` stamps v1.2.3. A build
// without VCS information (-buildvcs=false, a source tarball, `go test`)
// reports the module version "(devel)" and no revision.
package version

import (
	"regexp"
	"runtime/debug"
	"strings"
)

// Devel is the module version Go reports for a build that carries no version.
const Devel = "(devel)"

// Info is what the build info says about this binary.
type Info struct {
	// Module is the main module's version: a tag (v1.2.3), a pseudo-version
	// (v0.0.0-20261201034023-65bf4be1a2b3, +dirty when built from a changed
	// tree), or Devel.
	Module string `json:"module"`
	// Revision is vcs.revision (the commit), empty when not stamped.
	Revision string `json:"revision,omitempty"`
	// Time is vcs.time, the commit's time (RFC 3339), empty when not stamped.
	Time string `json:"time,omitempty"`
	// Modified is vcs.modified: the tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Go is the toolchain that built the binary.
	Go string `json:"go,omitempty"`
}

// Get reads the running binary's build info.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Module: Devel}
	}
	return FromBuildInfo(bi)
}

// FromBuildInfo extracts Info from build info, for example one read from
// another binary with debug/buildinfo.ReadFile (the .deb builder does).
func FromBuildInfo(bi *debug.BuildInfo) Info {
	in := Info{Module: bi.Main.Version, Go: bi.GoVersion}
	if in.Module == "" {
		in.Module = Devel
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is the one-line version: "v1.2.3", "v0.0.0-...-65bf4be1a2b3
// (revision 65bf4be1a2b3..., 2026-12-01T03:40:23Z)", or "(devel)" with
// whatever revision is known. It is what `luksdock --version` prints after
// the program name and what the --json outputs carry as "version".
func String() string { return Get().String() }

// String formats in as described for the package-level String.
func (in Info) String() string {
	s := in.Module
	var extra []string
	if in.Revision != "" {
		r := "revision " + in.Revision
		if in.Modified {
			r += " with uncommitted changes"
		}
		extra = append(extra, r)
	}
	if in.Time != "" {
		extra = append(extra, in.Time)
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, ", ") + ")"
	} else if in.Module == Devel {
		s += " (no version or revision stamped: built without VCS information)"
	}
	return s
}

// Debian maps the module version to a Debian package version (upstream part,
// no revision), keeping Go's order: v1.2.3 -> 1.2.3; v1.2.3-rc.1 ->
// 1.2.3~rc.1; the pseudo-versions v0.0.0-20261201034023-65bf4be1a2b3 ->
// 0.0.0~git20261201034023.65bf4be1a2b3, v1.2.4-0.2026...-rev ->
// 1.2.4~git2026....rev, v1.2.3-rc.1.0.2026...-rev -> 1.2.3~rc.1+git2026....rev;
// a "+dirty" suffix stays; (devel) -> 0.0.0~devel.
func (in Info) Debian() string {
	v := in.Module
	if v == "" || v == Devel {
		return "0.0.0~devel"
	}
	v = strings.TrimPrefix(v, "v")
	dirty := ""
	if i := strings.Index(v, "+"); i >= 0 {
		v, dirty = v[:i], v[i:]
	}
	if m := pseudoPre.FindStringSubmatch(v); m != nil {
		return m[1] + "~" + m[2] + "+git" + m[3] + "." + m[4] + dirty
	}
	if m := pseudo.FindStringSubmatch(v); m != nil {
		return m[1] + "~git" + m[2] + "." + m[3] + dirty
	}
	base, pre, _ := strings.Cut(v, "-")
	if pre != "" {
		base += "~" + strings.ReplaceAll(pre, "-", ".")
	}
	return base + dirty
}

var (
	pseudo    = regexp.MustCompile(`^(\d+\.\d+\.\d+)-(?:0\.)?(\d{14})-([0-9a-f]{12})$`)
	pseudoPre = regexp.MustCompile(`^(\d+\.\d+\.\d+)-(.+)\.0\.(\d{14})-([0-9a-f]{12})$`)
)
