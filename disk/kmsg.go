package disk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// KernelLine is one kernel log message.
type KernelLine struct {
	Time time.Duration `json:"time"` // since boot
	Text string        `json:"text"`
}

// String formats the line as dmesg does: "[ 5678.901234] text".
func (l KernelLine) String() string {
	us := l.Time.Microseconds()
	return fmt.Sprintf("[%5d.%06d] %s", us/1e6, us%1e6, l.Text)
}

// Arrival is one disk attaching as told by the kernel log: usb-storage/uas
// and sd messages for one SCSI device, in order.
type Arrival struct {
	Disk         string   `json:"disk"` // "sdi"
	SCSI         string   `json:"scsi"` // "13:0:0:0"
	USBPort      string   `json:"usb_port,omitempty"`
	Driver       string   `json:"driver,omitempty"` // "usb-storage" or "uas" when seen
	Vendor       string   `json:"vendor,omitempty"`
	Model        string   `json:"model,omitempty"`
	Revision     string   `json:"revision,omitempty"`
	Sectors      int64    `json:"sectors,omitempty"`
	SectorSize   int      `json:"sector_size,omitempty"` // logical
	PhysicalSize int      `json:"physical_size,omitempty"`
	Partitions   []string `json:"partitions,omitempty"` // from " sdi: sdi1 sdi2"
	Removable    bool     `json:"removable,omitempty"`
	WriteProtect bool     `json:"write_protect,omitempty"`
	Attached     bool     `json:"attached,omitempty"` // "Attached SCSI [removable ]disk" seen
	Gone         bool     `json:"gone,omitempty"`     // disconnected afterwards
	// Lines is the evidence: the USB attach, SCSI and sd lines in order,
	// at most MaxArrivalLines of them (a failing disk can log thousands of
	// errors); Omitted counts the lines left out after that.
	Lines   []KernelLine `json:"lines"`
	Omitted int          `json:"omitted,omitempty"`
}

// MaxArrivalLines caps Arrival.Lines.
const MaxArrivalLines = 200

func (a *Arrival) add(l KernelLine) {
	if len(a.Lines) >= MaxArrivalLines {
		a.Omitted++
		return
	}
	a.Lines = append(a.Lines, l)
}

// appendCapped keeps at most 64 USB lines per port (an attach prints ~10).
func appendCapped(ls []KernelLine, l KernelLine) []KernelLine {
	if len(ls) >= 64 {
		return ls
	}
	return append(ls, l)
}

// Size is Sectors × SectorSize in bytes.
func (a Arrival) Size() int64 { return a.Sectors * int64(a.SectorSize) }

// Time is when the arrival's first line was logged (since boot).
func (a Arrival) Time() time.Duration {
	if len(a.Lines) == 0 {
		return 0
	}
	return a.Lines[0].Time
}

var (
	kmsgEscRe   = regexp.MustCompile(`\\x[0-9a-fA-F]{2}`)
	dmesgRe     = regexp.MustCompile(`^\[\s*(\d+)\.(\d{1,9})\]\s?(.*)$`)
	usbLineRe   = regexp.MustCompile(`^usb (\d+-[\d.]+): (.*)$`)
	usbNewRe    = regexp.MustCompile(`^new .*USB device number \d+`)
	usbDiscRe   = regexp.MustCompile(`^USB disconnect, device number \d+`)
	hostRe      = regexp.MustCompile(`^scsi host(\d+): (usb-storage|uas)(?: (\d+-[\d.]+):\d+\.\d+)?`)
	ifaceRe     = regexp.MustCompile(`^(usb-storage|uas) (\d+-[\d.]+):\d+\.\d+: (.*)$`)
	scsiInqRe   = regexp.MustCompile(`^scsi (\d+:\d+:\d+:\d+): (Direct-Access-ZBC|Direct-Access|RBC|Optical Device)(.*) PQ: \d+ ANSI: `)
	sdLineRe    = regexp.MustCompile(`^sd (\d+:\d+:\d+:\d+): (?:\[(\w+)\] )?(.*)$`)
	sdBlocksRe  = regexp.MustCompile(`^(\d+) (\d+)-byte logical blocks: `)
	sdPhysRe    = regexp.MustCompile(`^(\d+)-byte physical blocks`)
	partLineRe  = regexp.MustCompile(`^ ?([a-z]+): ?(.*)$`)
	partNamesRe = regexp.MustCompile(`^[a-z]+\d*(?:p\d+)?$`)
)

// ParseKmsgRecord parses one record read from /dev/kmsg:
// "6,1234,5678901,-;sd 13:0:0:0: [sdi] Attached SCSI disk", optionally
// followed by "\n KEY=value" dictionary lines (ignored). The timestamp is in
// microseconds since boot; \xNN escapes of printable ASCII and tab are
// decoded, other bytes stay escaped.
func ParseKmsgRecord(rec string) (KernelLine, bool) {
	hdr, msg, ok := strings.Cut(rec, ";")
	if !ok {
		return KernelLine{}, false
	}
	f := strings.Split(hdr, ",")
	if len(f) < 3 {
		return KernelLine{}, false
	}
	if _, err := strconv.ParseUint(f[0], 10, 32); err != nil {
		return KernelLine{}, false
	}
	if _, err := strconv.ParseUint(f[1], 10, 64); err != nil {
		return KernelLine{}, false
	}
	us, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || us < 0 || us > int64(1<<62)/1000 {
		return KernelLine{}, false
	}
	msg, _, _ = strings.Cut(msg, "\n")
	msg = kmsgEscRe.ReplaceAllStringFunc(msg, func(x string) string {
		v, _ := strconv.ParseUint(x[2:], 16, 8)
		if v == '\t' || (v >= 0x20 && v < 0x7f) {
			return string([]byte{byte(v)})
		}
		return x // control and non-ASCII bytes stay escaped: safe to show

	})
	return KernelLine{Time: time.Duration(us) * time.Microsecond, Text: msg}, true
}

// ParseDmesgLine parses one line of plain `dmesg` output:
// "[ 5678.901234] sd 13:0:0:0: [sdi] Attached SCSI disk".
func ParseDmesgLine(s string) (KernelLine, bool) {
	s = strings.TrimRight(s, "\r\n")
	m := dmesgRe.FindStringSubmatch(s)
	if m == nil {
		return KernelLine{}, false
	}
	sec, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || sec > int64(1<<62)/int64(time.Second) {
		return KernelLine{}, false
	}
	frac := m[2]
	for len(frac) < 9 {
		frac += "0"
	}
	ns, _ := strconv.ParseInt(frac, 10, 64)
	return KernelLine{Time: time.Duration(sec)*time.Second + time.Duration(ns), Text: m[3]}, true
}

// splitInquiry splits the vendor/model/revision text the kernel prints
// after the device type ("%.8s %.16s %.4s" of space-padded INQUIRY
// fields). With the original padding it is cut by position; text whose
// spaces were squeezed is split best-effort (vendor = leading words up to
// 8 characters, revision = a last word of at most 4 characters when three
// or more words remain).
func splitInquiry(s string) (vendor, model, rev string) {
	if len(s) == 30 && s[8] == ' ' && s[25] == ' ' {
		return strings.TrimSpace(s[:8]), strings.TrimSpace(s[9:25]), strings.TrimSpace(s[26:])
	}
	w := strings.Fields(s)
	if len(w) == 0 {
		return
	}
	vendor = w[0]
	i := 1
	for i < len(w)-1 && len(vendor)+1+len(w[i]) <= 8 {
		vendor += " " + w[i]
		i++
	}
	rest := w[i:]
	if len(rest) >= 2 && len(rest[len(rest)-1]) <= 4 {
		rev = rest[len(rest)-1]
		rest = rest[:len(rest)-1]
	}
	model = strings.Join(rest, " ")
	return
}

// ParseKernelLog finds disk arrivals in kernel log lines, in order. Each
// SCSI INQUIRY line ("scsi H:C:T:L: Direct-Access ...") or first sd line for
// a SCSI address starts an arrival; sd lines, the partition line (" sdi:
// sdi1") and usb-storage/uas lines for its host are its evidence. Gone is
// set when its USB device disconnects (or the sd driver reports the device
// gone). A later arrival at the same address (re-dock) is a new Arrival.
func ParseKernelLog(lines []KernelLine) []Arrival {
	p := &kmsgParser{
		byAddr: map[string]*Arrival{}, lastByAddr: map[string]*Arrival{}, byDisk: map[string]*Arrival{},
		hostPort: map[string]string{}, hostDrv: map[string]string{}, portLines: map[string][]KernelLine{},
	}
	for _, l := range lines {
		t := l.Text
		if m := usbLineRe.FindStringSubmatch(t); m != nil {
			p.usbLine(l, m[1], m[2])
		} else if m := ifaceRe.FindStringSubmatch(t); m != nil {
			if _, ok := p.portLines[m[2]]; ok {
				p.portLines[m[2]] = appendCapped(p.portLines[m[2]], l)
			}
			p.lastNewPort = m[2]
		} else if m := hostRe.FindStringSubmatch(t); m != nil {
			p.hostLine(l, m[1], m[2], m[3])
		} else if m := scsiInqRe.FindStringSubmatch(t); m != nil {
			p.inquiryLine(l, m)
		} else if m := sdLineRe.FindStringSubmatch(t); m != nil {
			p.sdLine(l, m[1], m[2], m[3])
		} else if m := partLineRe.FindStringSubmatch(t); m != nil {
			p.partLine(l, m[1], m[2])
		}
	}
	out := p.out
	res := make([]Arrival, len(out))
	for i, a := range out {
		res[i] = *a
	}
	return res
}

// kmsgParser is ParseKernelLog's state: the arrivals so far and what the
// lines before told about SCSI addresses, disks, hosts and USB ports.
type kmsgParser struct {
	out         []*Arrival
	byAddr      map[string]*Arrival     // live arrival per SCSI address
	lastByAddr  map[string]*Arrival     // latest arrival per SCSI address, gone or not
	byDisk      map[string]*Arrival     // live arrival per disk name
	hostPort    map[string]string       // scsi host number -> USB port
	hostDrv     map[string]string       // scsi host number -> driver
	portLines   map[string][]KernelLine // evidence per USB port, before its disk
	lastNewPort string
	liveUSB     []*Arrival // arrivals through a USB port, not yet gone
}

// start begins an arrival at SCSI address addr.
func (p *kmsgParser) start(addr string) *Arrival {
	a := &Arrival{SCSI: addr}
	host, _, _ := strings.Cut(addr, ":")
	a.USBPort, a.Driver = p.hostPort[host], p.hostDrv[host]
	if a.USBPort != "" {
		for _, pl := range p.portLines[a.USBPort] {
			a.add(pl)
		}
		p.liveUSB = append(p.liveUSB, a)
	}
	p.out = append(p.out, a)
	p.byAddr[addr] = a
	p.lastByAddr[addr] = a
	return a
}

// usbLine is a "usb PORT: MSG" line: a new device, a disconnect, or
// evidence for the port.
func (p *kmsgParser) usbLine(l KernelLine, port, msg string) {
	switch {
	case usbNewRe.MatchString(msg):
		p.portLines[port] = []KernelLine{l}
		p.lastNewPort = port
	case usbDiscRe.MatchString(msg):
		p.disconnect(l, port)
	default:
		if _, ok := p.portLines[port]; ok {
			p.portLines[port] = appendCapped(p.portLines[port], l)
		}
	}
}

// disconnect marks the arrivals through port (or a port behind it) gone.
func (p *kmsgParser) disconnect(l KernelLine, port string) {
	under := func(q string) bool { return q == port || strings.HasPrefix(q, port+".") }
	keep := p.liveUSB[:0]
	for _, a := range p.liveUSB {
		if a.Gone {
			continue
		}
		if !under(a.USBPort) {
			keep = append(keep, a)
			continue
		}
		a.Gone = true
		a.add(l)
		if p.byAddr[a.SCSI] == a {
			delete(p.byAddr, a.SCSI)
		}
		if p.byDisk[a.Disk] == a {
			delete(p.byDisk, a.Disk)
		}
	}
	p.liveUSB = keep
	delete(p.portLines, port)
	for h, q := range p.hostPort {
		if under(q) {
			delete(p.hostPort, h)
			delete(p.hostDrv, h)
		}
	}
}

// hostLine is a "scsi hostN: DRIVER" line, naming its USB port or not.
func (p *kmsgParser) hostLine(l KernelLine, host, driver, port string) {
	if port == "" {
		port = p.lastNewPort // "scsi hostN: uas" names no port: the device just probed
	}
	p.hostPort[host], p.hostDrv[host] = port, driver
	if port != "" {
		p.portLines[port] = appendCapped(p.portLines[port], l)
	}
}

// inquiryLine is a SCSI INQUIRY line: it starts an arrival.
func (p *kmsgParser) inquiryLine(l KernelLine, m []string) {
	a := p.start(m[1])
	a.add(l)
	full := m[2] + m[3]
	inq := strings.TrimSpace(m[3])
	if len(full) >= 18 && full[17] == ' ' {
		inq = full[18:] // the device type is printed padded to 17 characters
	}
	a.Vendor, a.Model, a.Revision = splitInquiry(inq)
}

// sdLine is an "sd ADDR: [NAME] MSG" line: evidence for the arrival at
// addr, or the first line of a new one.
func (p *kmsgParser) sdLine(l KernelLine, addr, name, msg string) {
	a := p.byAddr[addr]
	if a == nil {
		// After a disconnect the sd driver still reports on the
		// address (cache sync failures): that is the gone arrival's
		// tail, not a new one. A capacity or attach line is new.
		if last := p.lastByAddr[addr]; last != nil && !sdBlocksRe.MatchString(msg) && !strings.HasPrefix(msg, "Attached SCSI") {
			last.add(l)
			return
		}
		a = p.start(addr)
	}
	if name != "" && a.Disk == "" {
		a.Disk = name
		if old := p.byDisk[name]; old != nil && old != a && !old.Gone {
			old.Gone = true // the name was reused: the old one is gone
		}
		p.byDisk[name] = a
	}
	a.add(l)
	if sdFact(a, msg) {
		delete(p.byAddr, addr)
	}
}

// sdFact records what an sd message says about the disk; gone reports
// that the device is gone (DID_NO_CONNECT).
func sdFact(a *Arrival, msg string) (gone bool) {
	switch {
	case sdBlocksRe.MatchString(msg):
		mm := sdBlocksRe.FindStringSubmatch(msg)
		a.Sectors, _ = strconv.ParseInt(mm[1], 10, 64)
		a.SectorSize, _ = strconv.Atoi(mm[2])
	case sdPhysRe.MatchString(msg):
		a.PhysicalSize, _ = strconv.Atoi(sdPhysRe.FindStringSubmatch(msg)[1])
	case strings.HasPrefix(msg, "Write Protect is on"):
		a.WriteProtect = true
	case strings.HasPrefix(msg, "Write Protect is off"):
		a.WriteProtect = false
	case strings.HasPrefix(msg, "Attached SCSI removable disk"):
		a.Attached, a.Removable = true, true
	case strings.HasPrefix(msg, "Attached SCSI disk"):
		a.Attached = true
	case strings.Contains(msg, "DID_NO_CONNECT"):
		a.Gone = true
		return true
	}
	return false
}

// partLine is the partition line (" sdi: sdi1 sdi2") of a disk.
func (p *kmsgParser) partLine(l KernelLine, name, parts string) {
	a := p.byDisk[name]
	if a == nil {
		return
	}
	a.add(l)
	a.Partitions = nil
	for _, q := range strings.Fields(parts) {
		if partNamesRe.MatchString(q) && strings.HasPrefix(q, name) {
			a.Partitions = append(a.Partitions, q)
		}
	}
}

// LatestArrival returns the most recent arrival that attached a disk and
// has not gone since.
func LatestArrival(arr []Arrival) (Arrival, bool) {
	for i := len(arr) - 1; i >= 0; i-- {
		if arr[i].Disk != "" && !arr[i].Gone {
			return arr[i], true
		}
	}
	return Arrival{}, false
}

// ReadKernelLog returns the kernel's log buffer. It reads /dev/kmsg
// without blocking (one record per read, until EAGAIN) and falls back to
// running `dmesg` when /dev/kmsg cannot be opened or read.
func ReadKernelLog() ([]KernelLine, error) {
	return readKernelLog("/dev/kmsg")
}

func readKernelLog(kmsg string) ([]KernelLine, error) {
	lines, err := readKmsg(kmsg)
	if err == nil {
		return lines, nil
	}
	out, derr := exec.Command("dmesg").Output()
	if derr != nil {
		return nil, fmt.Errorf("read kernel log: /dev/kmsg: %v; dmesg: %w", err, derr)
	}
	return parseDmesgOutput(out), nil
}

func parseDmesgOutput(out []byte) []KernelLine {
	var lines []KernelLine
	for _, s := range strings.Split(string(out), "\n") {
		if l, ok := ParseDmesgLine(s); ok {
			lines = append(lines, l)
			continue
		}
		// dmesg prints a record's further lines indented under its text,
		// without a timestamp; /dev/kmsg gives the record whole, its
		// newlines escaped: join them the same way.
		if len(lines) > 0 && strings.HasPrefix(s, " ") && strings.TrimSpace(s) != "" {
			lines[len(lines)-1].Text += `\x0a` + strings.TrimLeft(s, " ")
		}
	}
	return lines
}

func readKmsg(path string) ([]KernelLine, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var lines []KernelLine
	buf := make([]byte, 16384)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			switch {
			case errors.Is(err, unix.EAGAIN):
				return lines, nil
			case errors.Is(err, unix.EPIPE): // records overwritten while reading: go on
				continue
			case errors.Is(err, unix.EINTR):
				continue
			}
			return nil, err
		}
		if n == 0 {
			return lines, nil
		}
		if l, ok := ParseKmsgRecord(string(bytes.TrimRight(buf[:n], "\n"))); ok {
			lines = append(lines, l)
		}
	}
}

// kmsgAvailable reports whether /dev/kmsg can be opened (for tests).
func kmsgAvailable() bool {
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		return false
	}
	f.Close()
	return true
}
