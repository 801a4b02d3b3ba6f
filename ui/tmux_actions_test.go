package ui

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// The actions in a real terminal at 80x24 and 60x18 (NO_COLOR): the
// built wizard on a disk the command prepared shows the Actions screen;
// Open refuses a wrong passphrase with a readable message and Esc goes
// back; Retire refuses a wrong name and Esc goes back; every screen fits.
func TestTerminalActionsAtSizes(t *testing.T) {
	for _, sz := range sizes20 {
		t.Run(fmt.Sprintf("%dx%d", sz.w, sz.h), func(t *testing.T) {
			w, h := sz.w, sz.h
			img, _ := knownImage(t, "wzterm01")
			dir := filepath.Dir(img)
			cmd := fmt.Sprintf("%s --image %s --engine userspace --pbkdf pbkdf2 --pbkdf-force-iterations 1000 >%s/out.txt 2>%s/err.txt; sleep 60",
				testkit.Luksdock(t), img, dir, dir)
			env := []string{"NO_COLOR=1", "TERM=xterm-256color"}
			for _, k := range []string{"LUKSDOCK_INVENTORY", "LUKSDOCK_RUN_DIR", "LUKSDOCK_CONFIG_DIR"} {
				env = append(env, k+"="+os.Getenv(k))
			}
			tm := newTmux(t, w, h, env, cmd)
			tm.waitFor(15*time.Second, "Choose", "disk.img")
			tm.keys("Enter")
			tm.waitFor(15*time.Second, "Known disk: wzterm01")
			tm.checkScreen(w, h)
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "What to do with this disk", "› Open")
			tm.checkScreen(w, h)
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "Open: unlock and mount")
			tm.text("not the passphrase")
			tm.keys("Enter")
			tm.waitFor(60*time.Second, "opens no keyslot")
			tm.checkScreen(w, h)
			tm.keys("Escape")
			tm.waitFor(5*time.Second, "What to do with this disk")
			for range 4 { // Retire: after passphrase, recovery key, enroll
				tm.keys("Down")
			}
			tm.waitFor(5*time.Second, "› Retire")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "type exactly: disk.img")
			tm.checkScreen(w, h)
			tm.text("disk")
			tm.keys("Enter")
			tm.waitFor(5*time.Second, "that is not disk.img")
			tm.checkScreen(w, h)
			tm.keys("Escape")
			tm.waitFor(5*time.Second, "What to do with this disk")
			if !opens(t, img, testPass) {
				t.Error("the wrong entries wrote to the disk")
			}
		})
	}
}
