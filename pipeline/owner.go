package pipeline

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"

	"luksdock/fsformat"
)

// ResolveOwner says who will own the new filesystem's top directory, and
// why: spec ("USER" or "UID:GID", from --owner) when given; otherwise the
// person who ran luksdock through sudo (SUDO_UID and SUDO_GID) or pkexec
// (PKEXEC_UID and that user's primary group); otherwise root (0:0).
// getenv reads the environment (os.Getenv).
func ResolveOwner(spec string, getenv func(string) string) (fsformat.Owner, string, error) {
	if spec != "" {
		if u, g, ok := strings.Cut(spec, ":"); ok {
			uid, err1 := strconv.ParseUint(u, 10, 31)
			gid, err2 := strconv.ParseUint(g, 10, 31)
			if err1 != nil || err2 != nil {
				return fsformat.Owner{}, "", fmt.Errorf("--owner %q: want USER or UID:GID (numbers)", spec)
			}
			return fsformat.Owner{UID: int(uid), GID: int(gid)}, "--owner " + spec, nil
		}
		o, err := lookupUser(spec)
		if err != nil {
			return fsformat.Owner{}, "", fmt.Errorf("--owner %q: %v", spec, err)
		}
		return o, fmt.Sprintf("--owner %s (uid %d, primary group %d)", spec, o.UID, o.GID), nil
	}
	if u := getenv("SUDO_UID"); u != "" {
		uid, err := strconv.ParseUint(u, 10, 31)
		if err != nil {
			return fsformat.Owner{}, "", fmt.Errorf("SUDO_UID=%q is not a user id; give --owner", u)
		}
		if g := getenv("SUDO_GID"); g != "" {
			gid, err := strconv.ParseUint(g, 10, 31)
			if err != nil {
				return fsformat.Owner{}, "", fmt.Errorf("SUDO_GID=%q is not a group id; give --owner", g)
			}
			return fsformat.Owner{UID: int(uid), GID: int(gid)}, "the user behind sudo (SUDO_UID, SUDO_GID)", nil
		}
		o, err := lookupUser(u)
		if err != nil {
			return fsformat.Owner{}, "", fmt.Errorf("SUDO_UID=%s without SUDO_GID: %v; give --owner", u, err)
		}
		return o, "the user behind sudo (SUDO_UID, primary group)", nil
	}
	if u := getenv("PKEXEC_UID"); u != "" {
		if _, err := strconv.ParseUint(u, 10, 31); err != nil {
			return fsformat.Owner{}, "", fmt.Errorf("PKEXEC_UID=%q is not a user id; give --owner", u)
		}
		o, err := lookupUser(u)
		if err != nil {
			return fsformat.Owner{}, "", fmt.Errorf("PKEXEC_UID=%s: %v; give --owner", u, err)
		}
		return o, "the user behind pkexec (PKEXEC_UID, primary group)", nil
	}
	return fsformat.Owner{}, "root: not run through sudo or pkexec (give --owner for someone else)", nil
}

// lookupUser finds a user by name or number in the user database and returns
// it with its primary group. Its errors are in the user's words, not Go's
// ("user: unknown user bob").
func lookupUser(s string) (fsformat.Owner, error) {
	var u *user.User
	var err error
	if _, nerr := strconv.ParseUint(s, 10, 31); nerr == nil {
		u, err = user.LookupId(s)
	} else {
		u, err = user.Lookup(s)
	}
	var noName user.UnknownUserError
	var noID user.UnknownUserIdError
	switch {
	case errors.As(err, &noName):
		return fsformat.Owner{}, fmt.Errorf("there is no user named %s on this computer", s)
	case errors.As(err, &noID):
		return fsformat.Owner{}, fmt.Errorf("no user on this computer has the number %s", s)
	case err != nil:
		return fsformat.Owner{}, fmt.Errorf("the list of users could not be read (%v)", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return fsformat.Owner{}, fmt.Errorf("user %s has ids %q:%q", s, u.Uid, u.Gid)
	}
	return fsformat.Owner{UID: uid, GID: gid}, nil
}
