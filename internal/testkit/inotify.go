package testkit

import (
	"testing"

	"golang.org/x/sys/unix"

	"luksdock/internal/procwatch"
)

// CloseEvents runs fn and counts the inotify close events it caused on
// path: closes of a descriptor opened for writing (IN_CLOSE_WRITE, which
// udev's watch of a block device turns into a change event and a re-read
// of its partition table) and of one opened only for reading.
func CloseEvents(t *testing.T, path string, fn func()) (write, nowrite int) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_CLOSE_WRITE|unix.IN_CLOSE_NOWRITE); err != nil {
		t.Fatal(err)
	}
	fn()
	procwatch.ReadEvents(fd, func(ev procwatch.Event) {
		if ev.Mask&unix.IN_CLOSE_WRITE != 0 {
			write++
		}
		if ev.Mask&unix.IN_CLOSE_NOWRITE != 0 {
			nowrite++
		}
	})
	return write, nowrite
}
