package pipeline

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"luksdock/internal/secret"
	"luksdock/luks"
)

// keyCheck is the part of verification that needs only the LUKS header:
// every secret must open a keyslot both with luksdock's own code
// (luks.UnsealKey: independent of cryptsetup) and with cryptsetup, and all
// of them must give one volume key (the one the run generated, when known).
// A run starts it as soon as luksFormat has written the header, so that the
// two key derivations run while the volume is opened and mkfs writes; the
// verify step waits for it, then checks the filesystem with the key
// cryptsetup recovered. The guarantee is the one of doing it all after mkfs:
// the header is not written again after luksFormat, and nothing is called
// verified before every check has passed.
type keyCheck struct {
	done   chan struct{}
	cancel context.CancelFunc

	// set before done is closed
	header  [sha256.Size]byte // of the header area, read before the checks
	info    luks.Info
	key     []byte // the volume key cryptsetup recovered with the first secret
	err     error
	summary string
}

// wrongSecretError is a secret that opens no keyslot, in its own words;
// errors.Is finds luks.ErrWrongPassphrase in it (the wrong-passphrase kind,
// exit 6).
type wrongSecretError string

func (e wrongSecretError) Error() string { return string(e) }
func (e wrongSecretError) Unwrap() error { return luks.ErrWrongPassphrase }

// startKeyCheck starts the checks of secrets on part. want, if not nil, is
// the volume key every keyslot must hold; startKeyCheck copies it. The two
// key derivations of a secret run side by side when this machine has two
// or more CPUs and free memory for both at once (see parallelKDF), else one
// after the other: so a KDF's memory is never held twice on a machine that
// cannot afford it.
func startKeyCheck(ctx context.Context, part luks.Device, secrets [][]byte, want []byte) *keyCheck {
	ctx, cancel := context.WithCancel(ctx)
	c := &keyCheck{done: make(chan struct{}), cancel: cancel}
	want = secret.Clone(want)
	go func() {
		defer close(c.done)
		defer secret.Free(want)
		if c.header, c.err = headerSum(part); c.err != nil {
			return
		}
		c.info, c.key, c.summary, c.err = checkKeys(ctx, part, secrets, want)
		if c.err != nil {
			secret.Free(c.key)
			c.key = nil
		}
	}()
	return c
}

// wait returns the result; the caller owns (and clears) key. It also
// proves the checks still hold: the header area (binary headers, JSON,
// keyslots) must read as it did before they ran, so nothing written
// meanwhile (mkfs runs beside them) changed what they checked.
func (c *keyCheck) wait(part luks.Device) (luks.Info, []byte, string, error) {
	<-c.done
	key := c.key
	c.key = nil
	if c.err != nil {
		return luks.Info{}, nil, "", c.err
	}
	now, err := headerSum(part)
	if err == nil && now != c.header {
		err = errors.New("the LUKS header area changed while its keyslot was being checked")
	}
	if err != nil {
		secret.Free(key)
		return luks.Info{}, nil, "", err
	}
	return c.info, key, c.summary, nil
}

// headerSum is the SHA-256 of part's LUKS header area: everything in front
// of the data segment.
func headerSum(part luks.Device) (sum [sha256.Size]byte, err error) {
	f, err := os.Open(part.Path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	size := part.Size
	if size <= 0 {
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			return sum, err
		}
		size -= part.Base
	}
	r := io.NewSectionReader(f, part.Base, size)
	info, err := luks.ReadHeader(r)
	if errors.Is(err, luks.ErrNotLUKS) {
		return sum, fmt.Errorf("%s holds no LUKS header", part.Path)
	}
	if err != nil {
		return sum, err
	}
	if info.DataOffset <= 0 || info.DataOffset > 64<<20 || info.DataOffset > size {
		return sum, fmt.Errorf("LUKS data segment at %d: header area out of range", info.DataOffset)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, info.DataOffset)); err != nil {
		return sum, fmt.Errorf("reading the LUKS header area: %w", err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// stop cancels what can be cancelled (cryptsetup), waits for the rest and
// clears the key. Safe on nil and after wait.
func (c *keyCheck) stop() {
	if c == nil {
		return
	}
	c.cancel()
	<-c.done
	secret.Free(c.key)
	c.key = nil
}

// minHandedOverDeadline is the least time a key derivation of a disk
// verify did not just write gets (checkKeys); a test shortens it.
var minHandedOverDeadline = 30 * time.Second

// parallelKDF says whether luksdock's and cryptsetup's key derivations may
// run at the same time: with two or more CPUs and free memory for both plus
// 512 MiB. Each is memory-hard and asks for up to four lanes, so on two
// cores the pair shares them, yet it still ends sooner than one after the
// other (measured on this project's 2-core machine, argon2id t=4 m=1 GiB
// p=2: 3.75-3.96 s side by side against 3.98-4.57 s in turn), because
// neither keeps both cores busy through its memory-bound passes. Only the
// prepare needs both: a restore unlocks once, with cryptsetup.
func parallelKDF(part luks.Device) bool {
	mem, err := luks.KDFMemoryKiBDevice(part)
	if err != nil {
		return false
	}
	free, ok := freeMemoryKiB()
	if !ok {
		return false
	}
	return parallelFits(runtime.NumCPU(), mem, free)
}

// freeMemoryKiB is this machine's free memory (free and buffers, sysinfo);
// false when unknown. Tests replace it to prove that keyCheck follows
// parallelFits.
var freeMemoryKiB = func() (int64, bool) {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0, false
	}
	return int64(si.Freeram+si.Bufferram) * int64(si.Unit) / 1024, true
}

// parallelFits is parallelKDF's rule: two KDFs of memKiB side by side only
// on two CPUs or more and when freeKiB holds both plus 512 MiB.
func parallelFits(cpus int, memKiB, freeKiB int64) bool {
	return cpus >= 2 && freeKiB >= 2*memKiB+512<<10
}

// checkKeys checks every secret on part, luksdock's own unseal and
// cryptsetup's. The header is read first: a header no tool writes
// (luks.HeaderError), a keyslot whose memory this machine lacks or whose
// key derivation is estimated to outlast the --max-unlock-time limit is
// refused before either key derivation starts; each then runs under that
// deadline. When the two disagree, cryptsetup's answer decides whether the
// passphrase is wrong: a disk that opens with cryptsetup is never reported
// as a wrong passphrase.
func checkKeys(ctx context.Context, part luks.Device, secrets [][]byte, want []byte) (info luks.Info, csKey []byte, summary string, err error) {
	if len(secrets) == 0 {
		return info, nil, "", errors.New("no passphrase to check")
	}
	rep, err := luks.InspectHeaderDevice(part)
	if errors.Is(err, luks.ErrNotLUKS) {
		return info, nil, "", fmt.Errorf("%s holds no LUKS header", part.Path)
	}
	if err != nil {
		return info, nil, "", err
	}
	limit := maxUnlockTime(ctx)
	estimate, err := rep.Affordable(limit)
	if err != nil {
		return info, nil, "", err
	}
	// One secret tries each keyslot at most once: each may take the limit.
	// A header someone handed over (no volume key of this run to compare
	// with) gets within that ten times what this machine was measured to
	// need (at least 30 s): a key derivation running far past its estimate
	// is stopped rather than waited for.
	deadline := limit * time.Duration(max(1, len(rep.Keyslots)))
	if want == nil {
		deadline = min(deadline, max(minHandedOverDeadline, 10*estimate))
	}
	par := parallelKDF(part)
	var own, cs time.Duration
	for i, s := range secrets {
		u := unsealBoth(ctx, part, s, deadline, par)
		own, cs = own+u.own, cs+u.cs
		which, name := "", "the passphrase"
		if len(secrets) > 1 {
			// a run's secrets: the passphrase, then the recovery key
			name = [2]string{"the passphrase", "the recovery key"}[min(i, 1)]
			which = " (" + name + ")"
		}
		err = u.verdict(part, rep, name, which, want, csKey)
		secret.Free(u.oKey)
		if err != nil {
			secret.Free(u.cKey)
			secret.Free(csKey)
			return luks.Info{}, nil, "", err
		}
		if csKey == nil {
			info, csKey = u.oInfo, u.cKey
		} else {
			secret.Free(u.cKey)
		}
	}
	how := "one after the other"
	if par {
		how = "side by side"
	}
	summary = fmt.Sprintf("luksdock's own unseal %.1fs and cryptsetup's %.1fs, %s", own.Seconds(), cs.Seconds(), how)
	return info, csKey, summary, nil
}

// unsealPair is what luksdock's own unseal and cryptsetup made of one
// secret, and how long each took.
type unsealPair struct {
	oInfo   luks.Info
	oKey    []byte
	oErr    error
	cKey    []byte
	cErr    error
	csRan   bool
	own, cs time.Duration
}

// unsealBoth unseals s with luksdock's own code and with cryptsetup, side
// by side when par, else one after the other (cryptsetup only when its
// answer can decide).
func unsealBoth(ctx context.Context, part luks.Device, s []byte, deadline time.Duration, par bool) (u unsealPair) {
	ownRun := func() {
		t0 := time.Now()
		u.oInfo, u.oKey, u.oErr = ownUnsealWithin(ctx, part, s, deadline)
		u.own = time.Since(t0)
	}
	csRun := func() {
		t0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, deadline)
		u.cKey, u.cErr = cryptsetupDumpKey(cctx, part, s)
		if u.cErr != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
			u.cErr = &deadlineError{who: "cryptsetup", limit: deadline}
		}
		cancel()
		u.csRan = true
		u.cs = time.Since(t0)
	}
	if par {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); ownRun() }()
		csRun()
		wg.Wait()
		return u
	}
	ownRun()
	// A passphrase luksdock's code finds wrong is asked of cryptsetup
	// too: its answer decides.
	if u.oErr == nil || errors.Is(u.oErr, luks.ErrWrongPassphrase) {
		csRun()
	}
	return u
}

// verdict is what the two unseals of the secret called name say together:
// nil when both recovered the same volume key, the run's (want) and the
// earlier secrets' (csKey).
func (u unsealPair) verdict(part luks.Device, rep luks.HeaderReport, name, which string, want, csKey []byte) error {
	switch {
	case u.oErr != nil && u.csRan && u.cErr == nil:
		// cryptsetup opens it, luksdock's code does not: never a
		// wrong passphrase; say what differs.
		diff := "no difference from what cryptsetup writes was found in the header"
		if len(rep.Differences) > 0 {
			diff = "the header differs from what cryptsetup writes: " + strings.Join(rep.Differences, "; ")
		}
		why := u.oErr.Error()
		if errors.Is(u.oErr, luks.ErrWrongPassphrase) {
			why = "no keyslot's key matched its digest"
		}
		return fmt.Errorf("cryptsetup unlocks it with %s, luksdock's own LUKS code does not (%s); %s: the disk is not verified", name, why, diff)
	case errors.Is(u.oErr, luks.ErrWrongPassphrase) && (!u.csRan || cryptsetupWrongPassphrase(u.cErr)):
		return wrongSecretError(name + " does not unlock any keyslot (checked with luksdock's own LUKS code and cryptsetup)")
	case errors.Is(u.oErr, luks.ErrWrongPassphrase):
		return fmt.Errorf("luksdock's own LUKS code finds no keyslot %s opens, and cryptsetup could not check it: %w", name, u.cErr)
	case errors.Is(u.oErr, luks.ErrNotLUKS):
		return fmt.Errorf("%s holds no LUKS header", part.Path)
	case u.oErr != nil:
		return fmt.Errorf("%w%s", u.oErr, which)
	case u.cErr != nil:
		return fmt.Errorf("cryptsetup could not unlock it%s: %w", which, u.cErr)
	case u.oKey != nil && subtle.ConstantTimeCompare(u.oKey, u.cKey) != 1:
		return fmt.Errorf("luksdock's own LUKS code and cryptsetup recovered different volume keys%s", which)
	case want != nil && subtle.ConstantTimeCompare(u.cKey, want) != 1:
		return fmt.Errorf("the keyslot%s holds a volume key other than the one this run generated", which)
	case csKey != nil && subtle.ConstantTimeCompare(u.cKey, csKey) != 1:
		return fmt.Errorf("the keyslot%s holds a different volume key than the passphrase's", which)
	}
	return nil
}

// cryptsetupWrongPassphrase says whether err is cryptsetup's "No key
// available with this passphrase" (exit 2).
func cryptsetupWrongPassphrase(err error) bool {
	var ce *luks.Error
	return errors.As(err, &ce) && ce.Code == 2
}
