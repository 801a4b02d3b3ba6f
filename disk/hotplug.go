package disk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Hotplug is one block-device event from the kernel.
type Hotplug struct {
	Action    string `json:"action"` // "add", "remove", "change"
	Name      string `json:"name"`   // kernel name, "sdi", "sdi1"
	Partition bool   `json:"partition"`
	MajMin    string `json:"majmin,omitempty"`
	DevPath   string `json:"devpath,omitempty"` // "/devices/.../block/sdi"
	DiskSeq   uint64 `json:"diskseq,omitempty"`
	Seq       uint64 `json:"seq,omitempty"` // kernel uevent SEQNUM
}

// Uevent is a parsed kernel uevent message.
type Uevent struct {
	Action  string
	DevPath string
	Env     map[string]string
}

// ParseUevent parses one kernel uevent datagram as sent on the
// NETLINK_KOBJECT_UEVENT socket: "ACTION@DEVPATH\0KEY=VALUE\0...". Messages
// relayed by udevd ("libudev" header) and malformed ones return ok=false.
func ParseUevent(msg []byte) (Uevent, bool) {
	if bytes.HasPrefix(msg, []byte("libudev\x00")) {
		return Uevent{}, false
	}
	fields := bytes.Split(msg, []byte{0})
	if len(fields) < 2 {
		return Uevent{}, false
	}
	action, devpath, ok := strings.Cut(string(fields[0]), "@")
	if !ok || action == "" || !strings.HasPrefix(devpath, "/") {
		return Uevent{}, false
	}
	ev := Uevent{Action: action, DevPath: devpath, Env: map[string]string{}}
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(string(f), "=")
		if ok && k != "" {
			ev.Env[k] = v
		}
	}
	if a := ev.Env["ACTION"]; a != "" && a != action {
		return Uevent{}, false
	}
	if p := ev.Env["DEVPATH"]; p != "" && p != devpath {
		return Uevent{}, false
	}
	return ev, true
}

// hotplugOf turns a block uevent into a Hotplug; ok is false for other
// subsystems and for actions other than add/remove/change.
func hotplugOf(ev Uevent) (Hotplug, bool) {
	if ev.Env["SUBSYSTEM"] != "block" {
		return Hotplug{}, false
	}
	switch ev.Action {
	case "add", "remove", "change":
	default:
		return Hotplug{}, false
	}
	name := ev.Env["DEVNAME"]
	if name == "" {
		name = ev.DevPath[strings.LastIndexByte(ev.DevPath, '/')+1:]
	}
	name = strings.TrimPrefix(name, "/dev/")
	h := Hotplug{Action: ev.Action, Name: name, Partition: ev.Env["DEVTYPE"] == "partition", DevPath: ev.DevPath}
	if ev.Env["MAJOR"] != "" {
		h.MajMin = ev.Env["MAJOR"] + ":" + ev.Env["MINOR"]
	}
	h.DiskSeq, _ = strconv.ParseUint(ev.Env["DISKSEQ"], 10, 64)
	h.Seq, _ = strconv.ParseUint(ev.Env["SEQNUM"], 10, 64)
	return h, true
}

// WatchHotplug listens for kernel uevents over netlink (no udevd needed) and
// sends block-device events until ctx is done, then closes the channel.
// Loop devices exist before they are bound, so the kernel reports binding
// and unbinding a backing file as "change"; WatchHotplug reports those as
// "add" (bound) and "remove" (unbound), matching Scan, which lists loop
// devices only while bound.
func WatchHotplug(ctx context.Context) (<-chan Hotplug, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return nil, fmt.Errorf("uevent socket: %w", err)
	}
	// Group 1 is the kernel's own broadcast (group 2 is udevd's).
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("uevent bind: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	loops := loopBoundState()
	ch := make(chan Hotplug, 64)
	go func() {
		defer close(ch)
		defer unix.Close(fd)
		buf := make([]byte, 64<<10)
		for ctx.Err() == nil {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(pfd, 100)
			if err != nil && err != unix.EINTR {
				return
			}
			if n <= 0 {
				continue
			}
			m, from, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR || err == unix.ENOBUFS {
					continue
				}
				return
			}
			if nl, ok := from.(*unix.SockaddrNetlink); ok && nl.Pid != 0 {
				continue // only the kernel (pid 0) speaks for itself
			}
			ev, ok := ParseUevent(buf[:m])
			if !ok {
				continue
			}
			h, ok := hotplugOf(ev)
			if !ok {
				continue
			}
			if strings.HasPrefix(h.Name, "loop") && !h.Partition {
				bound := sysfsAttr("/sys/block/"+h.Name+"/loop/backing_file") != ""
				prev := loops[h.Name]
				loops[h.Name] = bound
				switch {
				case h.Action == "change" && bound && !prev:
					h.Action = "add"
				case h.Action == "change" && !bound && prev:
					h.Action = "remove"
				case h.Action == "add" && !bound:
					h.Action = "change" // an unbound loop node appeared: not a disk yet
				}
			}
			select {
			case ch <- h:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

func loopBoundState() map[string]bool {
	m := map[string]bool{}
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "loop") {
			m[e.Name()] = sysfsAttr("/sys/block/"+e.Name()+"/loop/backing_file") != ""
		}
	}
	return m
}

func diskKey(d Disk) string { return fmt.Sprintf("%s|%s|%d", d.Name, d.MajMin, d.DiskSeq) }

// WaitForNewDisk blocks until Scan finds a disk that is not in known
// (compared by name, major:minor and disk sequence number, so a re-dock
// under the same name counts as new) and has a size, and returns it. It rescans on every
// hotplug event and, as a backstop, once a second (also when uevents are
// not available, e.g. without permission for the netlink socket).
func (s Sys) WaitForNewDisk(ctx context.Context, known []Disk) (Disk, error) {
	seen := map[string]bool{}
	for _, d := range known {
		seen[diskKey(d)] = true
	}
	var events <-chan Hotplug
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.root() == "/" {
		if ch, err := WatchHotplug(wctx); err == nil {
			events = ch
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		disks, err := s.Scan()
		if err != nil {
			return Disk{}, err
		}
		for _, d := range disks {
			// A disk of no size is not there yet: a loop device bound
			// before its capacity is set, a card reader with no card.
			// Its capacity arrives with a change event (or the tick).
			if !seen[diskKey(d)] && d.Size > 0 {
				return d, nil
			}
		}
		select {
		case <-ctx.Done():
			return Disk{}, ctx.Err()
		case <-tick.C:
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		}
	}
}
