package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"luksdock/internal/testkit"
)

// TestDemoKeepsExistingImage (issue 12 defect 11): scripts/demo --scripted
// without a terminal leaves an existing demo image alone and prepares a new
// one beside it (it asks on a terminal).
func TestDemoKeepsExistingImage(t *testing.T) {
	testkit.NeedRoot(t)
	dir := t.TempDir()
	old := filepath.Join(dir, "demo.img")
	if err := os.WriteFile(old, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("./scripts/demo", "--scripted")
	cmd.Env = append(os.Environ(), "DEMO_IMAGE="+old)
	out, err := cmd.CombinedOutput() // stdin: /dev/null
	if err != nil {
		t.Fatalf("scripts/demo --scripted: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(old); string(b) != "keep me" {
		t.Errorf("the existing demo image was changed")
	}
	if !strings.Contains(string(out), "preparing "+filepath.Join(dir, "demo-2.img")) {
		t.Errorf("no word of the new image:\n%s", out)
	}
	if !strings.Contains(string(out), "Done: "+filepath.Join(dir, "demo-2.img")+" is a verified backup disk") {
		t.Errorf("the new image was not prepared:\n%s", out)
	}
}
