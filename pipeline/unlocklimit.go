package pipeline

import (
	"context"
	"time"

	"luksdock/internal/secret"
	"luksdock/luks"
)

type maxUnlockKey struct{}

// WithMaxUnlockTime returns ctx carrying the limit of one keyslot's key
// derivation (verify --max-unlock-time): a keyslot estimated, from a
// measurement of this machine, to take longer is refused before it runs,
// and each key derivation is stopped at that deadline. 0 keeps the default
// (luks.DefaultMaxUnlockTime).
func WithMaxUnlockTime(ctx context.Context, d time.Duration) context.Context {
	if d <= 0 {
		return ctx
	}
	return context.WithValue(ctx, maxUnlockKey{}, d)
}

// maxUnlockTime is ctx's limit (WithMaxUnlockTime) or the default.
func maxUnlockTime(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(maxUnlockKey{}).(time.Duration); ok && d > 0 {
		return d
	}
	return luks.DefaultMaxUnlockTime
}

// The two unlocks keyCheck compares; tests replace one to prove that the
// comparison catches implementations that disagree.
var (
	ownUnsealKey      = luks.UnsealKey
	cryptsetupDumpKey = luks.DumpVolumeKeyDevice
)

// unsealed is what luksdock's own unseal returned.
type unsealed struct {
	info luks.Info
	key  []byte
	err  error
}

// ownUnsealWithin runs luksdock's own unseal of part with secret, giving up
// at the deadline or when ctx ends. The key derivation itself cannot be
// interrupted; a given-up one finishes in the background and its key is
// cleared (verify exits right after; its cost was bounded before it began,
// see luks.HeaderReport.Affordable).
func ownUnsealWithin(ctx context.Context, part luks.Device, pass []byte, deadline time.Duration) (luks.Info, []byte, error) {
	ch := make(chan unsealed, 1)
	unseal := ownUnsealKey
	go func() {
		info, key, err := unseal(part, pass)
		ch <- unsealed{info, key, err}
	}()
	t := time.NewTimer(deadline)
	defer t.Stop()
	select {
	case u := <-ch:
		return u.info, u.key, u.err
	case <-t.C:
		go func() { u := <-ch; secret.Free(u.key) }()
		return luks.Info{}, nil, &deadlineError{who: "luksdock's own key derivation", limit: deadline}
	case <-ctx.Done():
		go func() { u := <-ch; secret.Free(u.key) }()
		return luks.Info{}, nil, ctx.Err()
	}
}

// deadlineError is a key derivation stopped at its deadline.
type deadlineError struct {
	who   string
	limit time.Duration
}

func (e *deadlineError) Error() string {
	return e.who + " ran past its deadline of " + e.limit.String() + " (--max-unlock-time): stopped; a keyslot cryptsetup made takes seconds"
}
