package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestProductModuleLeavesPackagingOut: luksdock's go.mod requires none of
// the modules only this packaging tool needs (nFPM and what it brings:
// go-git, chglog, sprig...), so every user of the luksdock module resolves
// only what the product uses. Each module this tool's go.mod requires
// beyond luksdock's own list is checked against luksdock's go.mod.
func TestProductModuleLeavesPackagingOut(t *testing.T) {
	top, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	requires := func(gomod string) map[string]bool {
		t.Helper()
		out, err := exec.Command("go", "mod", "edit", "-json", gomod).Output()
		if err != nil {
			t.Fatalf("go mod edit -json %s: %v", gomod, err)
		}
		var m struct{ Require []struct{ Path string } }
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		set := map[string]bool{}
		for _, r := range m.Require {
			set[r.Path] = true
		}
		return set
	}
	product := requires(filepath.Join(top, "go.mod"))
	tool := requires("go.mod")
	for _, p := range []string{"github.com/goreleaser/nfpm/v2", "github.com/go-git/go-git/v5"} {
		if !tool[p] {
			t.Errorf("cmd/mkdeb's go.mod does not require %s: this test no longer knows what packaging-only means", p)
		}
	}
	// The packaging-only modules: what the tool needs and the product's
	// packages do not import (go list -deps of the product, with tests).
	out, err := exec.Command("go", "list", "-C", top, "-deps", "-test", "-f", "{{with .Module}}{{.Path}}{{end}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list -deps in %s: %v", top, err)
	}
	used := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		used[m] = true
	}
	for p := range tool {
		if p != "luksdock" && !used[p] && product[p] {
			t.Errorf("luksdock's go.mod requires %s, which only the packaging tool uses", p)
		}
	}
}
