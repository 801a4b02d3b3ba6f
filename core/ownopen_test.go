package core

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/disk"
)

// The open of a disk's own LUKS volume, on the dm-crypt fixture tree of the
// disk package (testdata/sysfs/dm-crypt: USB disk sde, LUKS2 on the whole
// disk, dm-0 a dm-crypt mapping over it), scanned by the real discovery
// with its mapping renamed and mounted as each case needs. The kernel path
// itself (a real mapping in a guest, closed from the wizard) is
// e2e.TestWizardClosesKernelOpen.
const fixtureUUID = "1f3c5a2b-7d9e-4f60-a1b2-c3d4e5f60718"

// dmFixture copies the dm-crypt fixture, names its mapping name (with
// dm UUID dmUUID), adds mountinfo lines, and returns the scanned sde.
func dmFixture(t *testing.T, name, dmUUID string, mountinfo ...string) (disk.Sys, disk.Disk) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if out, err := exec.Command("cp", "-a", filepath.Join("..", "testdata", "sysfs", "dm-crypt"), root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	dm := filepath.Join(root, "sys", "devices", "virtual", "block", "dm-0", "dm")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dm, "name"), name+"\n")
	write(filepath.Join(dm, "uuid"), dmUUID+"\n")
	mi := filepath.Join(root, "proc", "self", "mountinfo")
	b, err := os.ReadFile(mi)
	if err != nil {
		t.Fatal(err)
	}
	write(mi, string(b)+strings.Join(mountinfo, "\n")+"\n")
	if name == "" {
		// no mapping: nothing holds sde
		if err := os.Remove(filepath.Join(root, "sys", "block", "sde", "holders", "dm-0")); err != nil {
			t.Fatal(err)
		}
	}
	sys := disk.Sys{Root: root}
	ds, err := sys.Scan()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.Name == "sde" {
			return sys, d
		}
	}
	t.Fatalf("no sde in the fixture: %+v", ds)
	return sys, disk.Disk{}
}

func crypt(name string) string {
	return "CRYPT-LUKS2-" + strings.ReplaceAll(fixtureUUID, "-", "") + "-" + name
}

func mountLine(mnt string) string {
	return "60 26 253:0 / " + mnt + " rw,nosuid,nodev,relatime shared:300 - ext4 /dev/mapper/x rw"
}

func TestOpenOnly(t *testing.T) {
	own := MappingName(fixtureUUID)
	mnt := "/media/alice/backups01"
	for _, c := range []struct {
		name      string
		mapping   string
		dmUUID    string
		mounts    []string
		recs      []*openRecord
		want      bool
		wantMnt   string
		recorded  bool
		wantWhyNo string
	}{
		{name: "luks-UUID mounted (luksdock open)", mapping: own, dmUUID: crypt(own), mounts: []string{mountLine(mnt)},
			recs: []*openRecord{{Opened: Opened{LUKSUUID: fixtureUUID, Mountpoint: mnt}, Mapping: own}}, want: true, wantMnt: mnt, recorded: true},
		{name: "luks-UUID mounted, no record (the desktop's)", mapping: own, dmUUID: crypt(own), mounts: []string{mountLine(mnt)}, want: true, wantMnt: mnt},
		{name: "luks-UUID unlocked only", mapping: own, dmUUID: crypt(own), want: true},
		{name: "a name luksdock open recorded", mapping: "byhand", dmUUID: crypt("byhand"), mounts: []string{mountLine("/mnt/h")},
			recs: []*openRecord{{Opened: Opened{LUKSUUID: fixtureUUID, Mountpoint: "/mnt/h"}, Mapping: "byhand"}}, want: true, wantMnt: "/mnt/h", recorded: true},
		{name: "a name opened by hand, no record", mapping: "byhand", dmUUID: crypt("byhand"), mounts: []string{mountLine("/mnt/h")}},
		{name: "a preparation's mapping", mapping: "luksdock-backups01", dmUUID: crypt("luksdock-backups01")},
		{name: "a backup run's mapping", mapping: "luksdock-dock-1f3c5a2b", dmUUID: crypt("luksdock-dock-1f3c5a2b"), mounts: []string{mountLine("/run/luksdock/dock/backups01")}},
		{name: "luks-UUID of another volume", mapping: own, dmUUID: "CRYPT-LUKS2-00000000000000000000000000000000-" + own},
		{name: "not dm-crypt", mapping: own, dmUUID: "LVM-abc"},
		{name: "mounted twice", mapping: own, dmUUID: crypt(own), mounts: []string{mountLine(mnt), mountLine("/mnt/again")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sys, d := dmFixture(t, c.mapping, c.dmUUID, c.mounts...)
			o := openOnly(sys, d, c.recs)
			if (o != nil) != c.want {
				t.Fatalf("openOnly = %+v, want open %v (disk holders %v, mounts %v, in use %v)", o, c.want, d.Holders, d.Mounts, d.InUse)
			}
			v, ao := assessOpen(sys, d, c.recs, false)
			if !c.want {
				if ao != nil || v.OK(false) {
					t.Errorf("assessOpen = %+v, %+v: want refused as by disk.Assess", v, ao)
				}
				return
			}
			if o.Mountpoint != c.wantMnt || o.Mapping != c.mapping || o.Device != "/dev/sde" || o.LUKSUUID != fixtureUUID || o.Recorded != c.recorded {
				t.Errorf("openOnly = %+v", o)
			}
			if ao == nil || !v.OK(false) {
				t.Errorf("assessOpen = %+v, %+v: want offered (the open set aside)", v, ao)
			}
			// the policy itself still refuses it: preparing reads disk.Assess
			if disk.Assess(d).OK(true) {
				t.Error("disk.Assess offers an open disk")
			}
		})
	}
}

// A disk whose open is not its only use stays refused: a swap file on the
// mounted volume, and the same disk read-only (another refusal) keeps every
// reason.
func TestOpenOnlyOtherUses(t *testing.T) {
	own := MappingName(fixtureUUID)
	sys, d := dmFixture(t, own, crypt(own), mountLine("/media/a/b"))
	if o := openOnly(sys, d, nil); o == nil {
		t.Fatal("the plain open is not recognised")
	}
	d2 := d
	d2.InUse = append(append([]disk.Reason(nil), d.InUse...), disk.Reason{Text: "loop3 is backed by the file /media/a/b/x.img on it"})
	if o := openOnly(sys, d2, nil); o != nil {
		t.Errorf("a loop device on a file in it: openOnly = %+v", o)
	}
	d3 := d
	d3.Mounts = append(append([]string(nil), d.Mounts...), "swap file /media/a/b/swap")
	d3.InUse = append(append([]disk.Reason(nil), d.InUse...), disk.Reason{Text: "dm-0 is mounted at swap file /media/a/b/swap"})
	if o := openOnly(sys, d3, nil); o != nil {
		t.Errorf("a swap file in it: openOnly = %+v", o)
	}
	d4 := d
	d4.ReadOnly = true
	v, o := assessOpen(sys, d4, nil, true)
	if v.OK(true) || o != nil {
		t.Fatalf("read-only: %+v %+v", v, o)
	}
	var texts []string
	for _, r := range v.Refused {
		texts = append(texts, r.Text)
	}
	if j := strings.Join(texts, "; "); !strings.Contains(j, "read-only") || !strings.Contains(j, "dm-crypt mapping") {
		t.Errorf("read-only open disk: reasons %q, want the read-only and the mapping", j)
	}
}

// The userspace engine's open leaves no use the policy sees: the disk is
// reported open when luksdock open's record of it names a volume holder
// and its mountpoint is mounted; a record of another disk, or one whose
// mount is gone, is not an open.
func TestOpenOnlyUserspace(t *testing.T) {
	mnt := "/media/alice/backups01"
	rec := func(disk string) []*openRecord {
		return []*openRecord{{Opened: Opened{LUKSUUID: fixtureUUID, Mountpoint: mnt, Holder: 4242, Engine: "userspace", LUKS: "/dev/sde"}, Disk: disk}}
	}
	fuse := "61 26 7:9 / " + mnt + " rw,nosuid,nodev,relatime shared:301 - ext4 /dev/loop9 rw"
	sys, d := dmFixture(t, "", "", fuse)
	if len(d.InUse) != 0 || len(d.Holders) != 0 {
		t.Fatalf("the fixture disk is in use: %+v", d)
	}
	o := openOnly(sys, d, rec("/dev/sde"))
	if o == nil || o.Engine != "userspace" || o.Mountpoint != mnt || !o.Recorded {
		t.Fatalf("openOnly = %+v", o)
	}
	if v, ao := assessOpen(sys, d, rec("/dev/sde"), false); ao == nil || !v.OK(false) {
		t.Errorf("assessOpen = %+v, %+v", v, ao)
	}
	if o := openOnly(sys, d, rec("/dev/sdf")); o != nil {
		t.Errorf("another disk's record: openOnly = %+v", o)
	}
	if o := openOnly(sys, d, nil); o != nil {
		t.Errorf("no record: openOnly = %+v", o)
	}
	sys, d = dmFixture(t, "", "")
	if o := openOnly(sys, d, rec("/dev/sde")); o != nil {
		t.Errorf("the record's mount is gone: openOnly = %+v", o)
	}
}
