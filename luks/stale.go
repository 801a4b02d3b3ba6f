package luks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MappingPrefix starts the name of every device-mapper mapping luksdock
// makes: "luksdock-LABEL" while preparing, "luksdock-verify-PID" while
// verifying.
const MappingPrefix = "luksdock-"

// RemoveStaleMappings closes the dm-crypt mappings a killed luksdock left on
// the block devices devs (kernel names: "sdi1", "loop3"). Such a mapping is
// left when luksdock dies while `cryptsetup open` runs: the orphaned
// cryptsetup still makes it, or made it before luksdock could hold it and
// mark it for deferred removal. Only mappings named luksdock-* are
// considered; a luksdock-verify-PID mapping whose PID is still a luksdock is
// left alone, and a mapping that is in use (opened or mounted) is left to
// cryptsetup's refusal. The caller must hold the target's flock, so that no
// other luksdock is between opening such a mapping and holding it. root
// is the sysfs root ("/" on a real system). It returns the names closed.
func RemoveStaleMappings(ctx context.Context, root string, devs []string) ([]string, error) {
	want := map[string]bool{}
	for _, d := range devs {
		want[d] = true
	}
	names, _ := filepath.Glob(filepath.Join(root, "sys", "block", "dm-*", "dm", "name"))
	var removed []string
	var errs []string
	for _, nf := range names {
		b, err := os.ReadFile(nf)
		if err != nil {
			continue
		}
		name := strings.TrimSpace(string(b))
		if !strings.HasPrefix(name, MappingPrefix) {
			continue
		}
		slaves, _ := os.ReadDir(filepath.Join(filepath.Dir(filepath.Dir(nf)), "slaves"))
		on := false
		for _, s := range slaves {
			on = on || want[s.Name()]
		}
		if !on || verifierAlive(root, name) {
			continue
		}
		if err := Close(ctx, name); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		removed = append(removed, name)
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("could not close %s", strings.Join(errs, "; "))
	}
	return removed, nil
}

// verifierAlive reports whether name is luksdock-verify-PID of a luksdock
// process that is still running.
func verifierAlive(root, name string) bool {
	pid, err := strconv.Atoi(strings.TrimPrefix(name, MappingPrefix+"verify-"))
	if err != nil || !strings.HasPrefix(name, MappingPrefix+"verify-") {
		return false
	}
	comm, err := os.ReadFile(filepath.Join(root, "proc", strconv.Itoa(pid), "comm"))
	return err == nil && strings.TrimSpace(string(comm)) == "luksdock"
}
