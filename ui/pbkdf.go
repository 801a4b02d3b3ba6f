package ui

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"luksdock/disk"
	"luksdock/luks"
)

// pbkdfNote says in plain words what a keyslot cost means for the weakest
// machine that will unlock the disk.
func pbkdfNote(p luks.PBKDF, luks1 bool, ram int64) string {
	ramNote := ""
	if ram > 0 {
		ramNote = fmt.Sprintf(" (this machine has %s)", disk.SizeString(ram))
	}
	switch {
	case p == (luks.PBKDF{}) && luks1:
		return "pbkdf2, calibrated so unlocking takes about 2 s on this machine; little\n" +
			"memory. A machine half as fast takes about 4 s to unlock."
	case p == (luks.PBKDF{}):
		return "argon2id, calibrated so unlocking takes about 2 s on this machine, using up to 1 GiB of memory (at most half the RAM" + ramNote + ") and up to 4 threads. " +
			"A restore machine half as fast needs about 4 s; one with less free memory than that cannot unlock the disk at all."
	case p.Type == "pbkdf2" && p.ForceIterations > 0 && p.ForceIterations < 100000:
		return fmt.Sprintf("pbkdf2 with only %d iterations: unlocks instantly anywhere, and guessing\n"+
			"passphrases is just as cheap. For tests, not for real backups.", p.ForceIterations)
	}
	var parts []string
	kdf := p.Type
	if kdf == "" {
		kdf = "cryptsetup's default KDF"
	}
	parts = append(parts, kdf)
	if p.MemoryKiB > 0 {
		parts = append(parts, fmt.Sprintf("needs %s of free memory to unlock", disk.SizeString(int64(p.MemoryKiB)<<10)))
	}
	switch {
	case p.ForceIterations > 0:
		parts = append(parts, fmt.Sprintf("%d fixed iterations (not calibrated: unlock time depends on the machine)", p.ForceIterations))
	case p.IterTimeMS > 0:
		parts = append(parts, fmt.Sprintf("calibrated to about %.1f s on this machine", float64(p.IterTimeMS)/1000))
	default:
		parts = append(parts, "calibrated to about 2 s on this machine; a machine half as fast takes about 4 s")
	}
	if p.MemoryKiB > 0 && p.MemoryKiB < 64<<10 {
		parts = append(parts, "little memory: cheaper to attack")
	}
	return strings.Join(parts, "; ") + "."
}

// memTotal is the machine's RAM in bytes from /proc/meminfo (0 if unknown).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if n, _ := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}
