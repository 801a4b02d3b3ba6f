package pipeline

import (
	"os/user"
	"strconv"
	"strings"
	"testing"

	"luksdock/fsformat"
)

// Who owns the top directory: --owner, then sudo's user, then pkexec's
// (with the primary group from the user database), then root. The user
// database is the real one: root (uid 0, group 0) is in every one.
func TestResolveOwner(t *testing.T) {
	root, err := user.LookupId("0")
	if err != nil {
		t.Fatalf("no uid 0 in the user database: %v", err)
	}
	rootGID, _ := strconv.Atoi(root.Gid)
	for _, c := range []struct {
		spec string
		env  map[string]string
		want fsformat.Owner
		why  string // part of the reason, or of the error
		err  bool
	}{
		{"", nil, fsformat.Owner{UID: 0, GID: 0}, "root: not run through sudo or pkexec", false},
		{"", map[string]string{"SUDO_UID": "1000", "SUDO_GID": "1001"}, fsformat.Owner{UID: 1000, GID: 1001}, "sudo", false},
		{"", map[string]string{"SUDO_UID": "1000", "SUDO_GID": "1001", "PKEXEC_UID": "0"}, fsformat.Owner{UID: 1000, GID: 1001}, "sudo", false},
		{"", map[string]string{"PKEXEC_UID": "0"}, fsformat.Owner{UID: 0, GID: rootGID}, "pkexec", false},
		{"", map[string]string{"SUDO_UID": "0"}, fsformat.Owner{UID: 0, GID: rootGID}, "primary group", false},
		{"", map[string]string{"PKEXEC_UID": "4294000000"}, fsformat.Owner{}, "PKEXEC_UID", true},
		{"", map[string]string{"SUDO_UID": "bob"}, fsformat.Owner{}, "SUDO_UID", true},
		{"", map[string]string{"SUDO_UID": "1000", "SUDO_GID": "-1"}, fsformat.Owner{}, "SUDO_GID", true},
		{"4242:4343", map[string]string{"SUDO_UID": "1000", "SUDO_GID": "1000"}, fsformat.Owner{UID: 4242, GID: 4343}, "--owner 4242:4343", false},
		{root.Username, nil, fsformat.Owner{UID: 0, GID: rootGID}, "primary group", false},
		{"0", nil, fsformat.Owner{UID: 0, GID: rootGID}, "primary group", false},
		{"1000:", nil, fsformat.Owner{}, "UID:GID", true},
		{"a:b", nil, fsformat.Owner{}, "UID:GID", true},
		{"no-such-user-luksdock", nil, fsformat.Owner{}, "there is no user named no-such-user-luksdock on this computer", true},
		{"", map[string]string{"PKEXEC_UID": "2147000001"}, fsformat.Owner{}, "no user on this computer has the number 2147000001", true},
	} {
		got, why, err := ResolveOwner(c.spec, func(k string) string { return c.env[k] })
		if c.err {
			if err == nil || !strings.Contains(err.Error(), c.why) {
				t.Errorf("%q %v: got %v %q %v, want an error about %q", c.spec, c.env, got, why, err, c.why)
			}
			continue
		}
		if err != nil || got != c.want || !strings.Contains(why, c.why) {
			t.Errorf("%q %v: got %v %q %v, want %v (%q)", c.spec, c.env, got, why, err, c.want, c.why)
		}
	}
}
