package main

import (
	"bufio"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

// Found trying retire: stopped (SIGTERM, Ctrl+C) during --erase, retire
// exited 4, a failed step, though it stopped as asked with the disk
// crypto-erased already; it exits 130 as every interrupted command does,
// and stock cryptsetup finds no LUKS volume left.
func TestRetireEraseStoppedExits130(t *testing.T) {
	dir := t.TempDir()
	img, _ := preparedImage(t, dir, "stopme01", "--size", "3G")
	c := testkit.CLICommand("retire", "--image", img, "--confirm", "disk.img", "--erase")
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "overwriting:") {
	}
	time.Sleep(200 * time.Millisecond)
	_ = c.Process.Signal(syscall.SIGTERM)
	for sc.Scan() {
	}
	err = c.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 130 || !strings.Contains(stderr.String(), "the overwrite did not finish") {
		t.Fatalf("retire --erase stopped by SIGTERM: exit %d, want 130\n%s", code, stderr.String())
	}
	if err := exec.Command("cryptsetup", "isLuks", "--header", img).Run(); err == nil {
		t.Errorf("cryptsetup isLuks finds a LUKS header on the retired image")
	}
	if o, _ := exec.Command("blkid", "-p", "-O", "1048576", img).CombinedOutput(); strings.Contains(string(o), "crypto_LUKS") {
		t.Errorf("blkid finds LUKS where the volume was: %s", o)
	}
}
