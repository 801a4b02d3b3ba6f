package ui

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"luksdock/internal/procmem"
	"luksdock/internal/testkit"
)

// TestWizardPassphraseInMemory measures where the wizard keeps a passphrase
// typed on its Passphrase screen: the built binary in a real terminal
// (tmux), the passphrase entered in both fields, then luksdock's memory
// read through /proc/PID/mem (internal/procmem, as
// reliability.TestSecretsInMemory does for the CLI) and searched for the
// whole passphrase, telling locked memory (the fields' secret buffers) from
// the rest. Three ways in:
//
//   - typed: one key per terminal write, as a person types;
//   - burst: the whole passphrase in one terminal write (a fast typist, or
//     a terminal that sends a paste without bracketed-paste markers);
//   - paste: a bracketed paste (tmux paste-buffer -p), which bubbletea
//     delivers as one PasteMsg.
//
// The rule, for all three: no whole copy of the passphrase outside locked
// memory. bubbletea reads the terminal into its own buffers and hands keys
// and pastes over as Go strings; ui.Run puts the input filter (keyFilter)
// between the terminal and bubbletea, so while a masked field has the
// focus bubbletea sees placeholders, and the characters go from the
// terminal into secret memory and on into the fields. (Without the filter,
// typed passed, and burst and paste left 4-10 whole copies.) Control: the
// passphrase is found in locked memory (the two fields) every time.
// After "typed", the test goes on to the Recovery key screen and logs how
// many copies of the shown recovery key luksdock holds (a measurement: to
// be shown, the key is rendered as text).
func TestWizardPassphraseInMemory(t *testing.T) {
	testkit.NeedRoot(t, "cryptsetup", "mkfs.ext4", "e2fsck", "sfdisk", "losetup", "tmux")
	bin := testkit.Luksdock(t)
	for _, c := range []struct {
		name string
		pass string
	}{
		{"typed", "Quokka-velvet-Harbor-7319-sundial"},
		{"burst", "Marmot-copper-Lagoon-2846-teacup"},
		{"paste", "Pelican-amber-Meadow-5072-lantern"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "m.img")
			tmp := filepath.Join(dir, "tmp")
			os.Mkdir(tmp, 0o700)
			cmd := fmt.Sprintf("%s --image %s --size 96M --pbkdf pbkdf2 --pbkdf-force-iterations 1000 2>%s/err.txt; sleep 60", bin, img, dir)
			tm := newTmux(t, 100, 30, []string{"NO_COLOR=1", "TERM=xterm-256color", "TMPDIR=" + tmp, "LUKSDOCK_INVENTORY=" + filepath.Join(dir, "inventory.json")}, cmd)
			tm.waitFor(15*time.Second, "1/9 Choose", "› m.img")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "2/9 Is this the image file")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "3/9 Options", "✓ ready")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "4/9 Passphrase")
			enter := func() {
				switch c.name {
				case "typed":
					for _, r := range c.pass {
						tm.text(string(r))
					}
				case "burst":
					tm.text(c.pass)
				case "paste":
					tm.run("set-buffer", "-b", "p", c.pass)
					tm.run("paste-buffer", "-p", "-b", "p", "-t", tm.target)
					tm.run("delete-buffer", "-b", "p")
				}
			}
			enter()
			tm.keys("Enter")
			enter()
			tm.waitFor(10*time.Second, "entries match")
			pid := wizardPID(t, img)
			s, err := procmem.Read(pid)
			if err != nil {
				t.Fatal(err)
			}
			counts := map[string]int{}
			for _, h := range s.Find(map[string][]byte{"passphrase": []byte(c.pass)}) {
				where := "unlocked"
				if h.Locked {
					where = "locked"
				}
				counts[where]++
				if !h.Locked {
					t.Logf("unlocked copy at %#x (%q) in %q", h.Addr, h.Region, h.Context)
				}
			}
			var sum []string
			for k, n := range counts {
				sum = append(sum, fmt.Sprintf("%s ×%d", k, n))
			}
			sort.Strings(sum)
			t.Logf("%s: luksdock (pid %d), %d MiB read, VmLck %s: passphrase %s", c.name, pid, s.Size>>20, s.VmLck, strings.Join(sum, ", "))
			if counts["locked"] == 0 {
				t.Errorf("control: the passphrase is not in luksdock's locked memory: the scan finds nothing")
			}
			if counts["unlocked"] > 0 {
				t.Errorf("%s: the passphrase is found whole %d times outside locked memory", c.name, counts["unlocked"])
			}
			if c.name != "typed" {
				return
			}
			// Measured, not a rule: the recovery key while the wizard
			// shows it (rendered as text for the terminal).
			tm.keys("Enter")
			sc := tm.waitFor(10*time.Second, "Recovery key: write it down", "8 ")
			g := map[string]string{}
			for _, m := range keyGroupRe.FindAllStringSubmatch(sc, -1) {
				g[m[1]] = m[2]
			}
			if len(g) != 8 {
				t.Fatalf("the terminal shows %d groups of the key, want 8:\n%s", len(g), sc)
			}
			var groups []string
			for i := 1; i <= 8; i++ {
				groups = append(groups, g[strconv.Itoa(i)])
			}
			rk := strings.Join(groups, "-")
			s, err = procmem.Read(pid)
			if err != nil {
				t.Fatal(err)
			}
			rc := map[string]int{}
			for _, h := range s.Find(map[string][]byte{"recovery key": []byte(rk), "group 1-2": []byte(groups[0] + "-" + groups[1])}) {
				where := "unlocked"
				if h.Locked {
					where = "locked"
				}
				rc[h.Form+" "+where]++
			}
			t.Logf("recovery key screen: recovery key whole: locked ×%d, unlocked ×%d; its first two groups: unlocked ×%d",
				rc["recovery key locked"], rc["recovery key unlocked"], rc["group 1-2 unlocked"])
		})
	}
}

// wizardPID is the luksdock process running the wizard on img.
func wizardPID(t *testing.T, img string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		if len(args) > 2 && filepath.Base(string(args[0])) == "luksdock" && bytes.Equal(args[1], []byte("--image")) && bytes.Equal(args[2], []byte(img)) {
			return pid
		}
	}
	t.Fatalf("no luksdock process for %s", img)
	return 0
}
