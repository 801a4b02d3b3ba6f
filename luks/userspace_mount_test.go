package luks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserspaceOwnMount: as root the volume is mounted by luksdock itself,
// exactly on its private mountpoint (never over /dev/fuse), and the
// connection is known without touching the mount.
func TestUserspaceOwnMount(t *testing.T) {
	usRequire(t)
	img := filepath.Join(t.TempDir(), "m.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 64<<20)
	key := make([]byte, 64)
	v, err := MountUserspace(img, 0, 64<<20, Segment{Offset: 16 << 20, SectorSize: 4096, Cipher: "aes-xts-plain64"}, key)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if !v.ownMount || v.fuseConn == 0 {
		t.Errorf("ownMount %v, connection %d", v.ownMount, v.fuseConn)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var here int
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if f[4] == "/dev/fuse" {
			t.Fatalf("something is mounted over /dev/fuse: %s", line)
		}
		if f[4] == filepath.Dir(v.Path()) && strings.Contains(line, " - fuse.luksdock luksdock ") {
			here++
		}
	}
	if here != 1 {
		t.Errorf("%d fuse.luksdock mounts at %s", here, filepath.Dir(v.Path()))
	}
	if st, err := os.Stat(v.Path()); err != nil || st.Size() != 48<<20 {
		t.Errorf("volume: %v %v", st, err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	mi, _ = os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), filepath.Dir(v.Path())) {
		t.Error("still mounted after Close")
	}
}
