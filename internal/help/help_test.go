package help

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestCommand: a command's skeleton is its text files put together: the
// long help with the exit codes it names, and the example and FILES of
// the command its head names for them.
func TestCommand(t *testing.T) {
	host, status := Command("host"), Command("host-status")
	if status.Use != "status" || status.Short == "" {
		t.Errorf("host status: Use %q, Short %q", status.Use, status.Short)
	}
	if want := Text("host-status") + ExitCodes("host"); status.Long != want {
		t.Errorf("host status Long:\n%s\nwant:\n%s", status.Long, want)
	}
	if status.Example == "" || status.Example != host.Example || strings.HasSuffix(status.Example, "\n") {
		t.Errorf("host status Example %q, host's %q", status.Example, host.Example)
	}
	if f := status.Annotations["luksdock-man-files"]; f == "" || f != host.Annotations["luksdock-man-files"] {
		t.Errorf("host status FILES %q, host's %q", f, host.Annotations["luksdock-man-files"])
	}
	if want := Text("prepare") + ExitCodes("prepare") + ExitCodes("interrupted"); Command("prepare").Long != want {
		t.Errorf("prepare's Long lacks its exit codes")
	}
}

// TestBind: a flag gets its command's own help, else the shared one, with
// its marks applied; a variable's value is the default.
func TestBind(t *testing.T) {
	var o struct {
		device, image, label, mountpoint, engine, pass, rk string
		readOnly, asJSON                                   bool
	}
	o.engine = "auto"
	cmd := Command("open")
	Bind(cmd, Vars{"device": &o.device, "image": &o.image, "label": &o.label, "mountpoint": &o.mountpoint,
		"engine": &o.engine, "passphrase-file": &o.pass, "recovery-key-file": &o.rk, "read-only": &o.readOnly, "json": &o.asJSON})
	f := cmd.Flags()
	if u := f.Lookup("device").Usage; u != "the whole disk, e.g. /dev/sdi" {
		t.Errorf("--device (flags.txt): %q", u)
	}
	if u := f.Lookup("passphrase-file").Usage; !strings.HasPrefix(u, "unlock with: ") {
		t.Errorf("--passphrase-file (its own): %q", u)
	}
	if fl := f.Lookup("mountpoint"); strings.HasPrefix(fl.Usage, "[") || fl.Annotations["cobra_annotation_bash_completion_subdirs_in_dir"] == nil {
		t.Errorf("--mountpoint [dir]: usage %q, annotations %v", fl.Usage, fl.Annotations)
	}
	if d := f.Lookup("engine").DefValue; d != "auto" {
		t.Errorf("--engine default %q", d)
	}
	defer func() {
		if recover() == nil {
			t.Error("binding open without --json's variable: no panic for its help line left unbound")
		}
	}()
	Bind(Command("open"), Vars{"device": &o.device})
}

// TestOptionalInt: a **int flag is nil until given, then the number given;
// --help shows it as an int with no default.
func TestOptionalInt(t *testing.T) {
	var slot *int
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.Var(optionalInt{&slot}, "old-slot", "the keyslot")
	if slot != nil {
		t.Fatal("set before parsing")
	}
	if u := fs.FlagUsages(); !strings.Contains(u, "--old-slot int   the keyslot\n") {
		t.Errorf("usage %q", u)
	}
	if err := fs.Parse([]string{"--old-slot", "0x10"}); err != nil || slot == nil || *slot != 16 {
		t.Errorf("--old-slot 0x10: %v, %v", err, slot)
	}
	if err := fs.Parse([]string{"--old-slot", "x"}); err == nil {
		t.Error("--old-slot x: no error")
	}
}
