package disk

import (
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"luksdock/internal/testkit"
)

func readDmesgFixture(t testing.TB, name string) []KernelLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kmsg", name))
	if err != nil {
		t.Fatal(err)
	}
	return parseDmesgOutput(b)
}

// kmsgRecords splits a file of /dev/kmsg records: a record starts with its
// "prio,seq,usec,flags;" header, dictionary lines start with a space.
func kmsgRecords(text string) []string {
	var recs []string
	for _, l := range strings.Split(text, "\n") {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, " ") && len(recs) > 0 {
			recs[len(recs)-1] += "\n" + l
			continue
		}
		recs = append(recs, l)
	}
	return recs
}

func lineTexts(ls []KernelLine) []string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Text)
	}
	return s
}

func TestParseKernelLogBlacX(t *testing.T) {
	lines := readDmesgFixture(t, "blacx-dock.dmesg")
	if len(lines) != 19 {
		t.Fatalf("parsed %d dmesg lines, want 19", len(lines))
	}
	arr := ParseKernelLog(lines)
	if len(arr) != 1 {
		t.Fatalf("arrivals = %+v", arr)
	}
	a := arr[0]
	want := Arrival{Disk: "sdi", SCSI: "13:0:0:0", USBPort: "2-1", Driver: "usb-storage", Vendor: "MAXTOR S",
		Model: "TM3500630AS", Sectors: 976773168, SectorSize: 512, Partitions: []string{"sdi1"}, Attached: true}
	got := a
	got.Lines = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("arrival\n got %+v\nwant %+v", got, want)
	}
	if a.Size() != 500107862016 {
		t.Errorf("size = %d", a.Size())
	}
	texts := lineTexts(a.Lines)
	if len(texts) != 17 || texts[0] != "usb 2-1: new high-speed USB device number 5 using ehci-pci" ||
		texts[len(texts)-1] != "sd 13:0:0:0: [sdi] Attached SCSI disk" || !strings.Contains(strings.Join(texts, "\n"), " sdi: sdi1") {
		t.Errorf("evidence lines = %q", texts)
	}
	if a.Time() != 5676*time.Second+220143*time.Microsecond {
		t.Errorf("time = %v", a.Time())
	}
	if l, ok := LatestArrival(arr); !ok || l.Disk != "sdi" {
		t.Errorf("latest = %+v %v", l, ok)
	}
}

// The lines exactly as the issue quotes them (spaces squeezed).
func TestParseKernelLogIssueLines(t *testing.T) {
	var lines []KernelLine
	for i, s := range []string{
		"scsi 13:0:0:0: Direct-Access MAXTOR S TM3500630AS PQ: 0 ANSI: 2 CCS",
		"sd 13:0:0:0: [sdi] 976773168 512-byte logical blocks: (500 GB/465 GiB)",
		" sdi: sdi1",
		"sd 13:0:0:0: [sdi] Attached SCSI disk",
	} {
		lines = append(lines, KernelLine{Time: time.Duration(i) * time.Millisecond, Text: s})
	}
	arr := ParseKernelLog(lines)
	if len(arr) != 1 || arr[0].Vendor != "MAXTOR S" || arr[0].Model != "TM3500630AS" || arr[0].Disk != "sdi" ||
		arr[0].Sectors != 976773168 || !arr[0].Attached || len(arr[0].Lines) != 4 {
		t.Fatalf("arrivals = %+v", arr)
	}
}

func TestParseKernelLogUASKmsg(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "kmsg", "uas-dock.kmsg"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []KernelLine
	for _, r := range kmsgRecords(string(b)) {
		l, ok := ParseKmsgRecord(r)
		if !ok {
			t.Fatalf("record not parsed: %q", r)
		}
		lines = append(lines, l)
	}
	arr := ParseKernelLog(lines)
	if len(arr) != 1 {
		t.Fatalf("arrivals = %+v", arr)
	}
	a := arr[0]
	if a.Disk != "sdc" || a.Driver != "uas" || a.USBPort != "4-2" || a.Vendor != "ASMT" || a.Model != "2115" || a.Revision != "0" ||
		a.PhysicalSize != 4096 || a.SectorSize != 512 || !reflect.DeepEqual(a.Partitions, []string{"sdc1", "sdc2"}) || !a.Attached {
		t.Errorf("arrival = %+v", a)
	}
	if a.Time() != 7123456789*time.Microsecond || a.Lines[0].Text != "usb 4-2: new SuperSpeed USB device number 3 using xhci_hcd" {
		t.Errorf("first line %v %q", a.Time(), a.Lines[0].Text)
	}
	for _, l := range a.Lines {
		if strings.Contains(l.Text, "SUBSYSTEM=") || strings.Contains(l.Text, "\n") {
			t.Errorf("dictionary leaked into text: %q", l.Text)
		}
	}
}

func TestParseKernelLogUndockRedock(t *testing.T) {
	lines := readDmesgFixture(t, "undock-redock.dmesg")
	arr := ParseKernelLog(lines)
	if len(arr) != 3 {
		t.Fatalf("arrivals = %+v", arr)
	}
	if a := arr[0]; a.Disk != "sdi" || a.SCSI != "13:0:0:0" || !a.Gone || a.Model != "TM3500630AS" ||
		a.Lines[len(a.Lines)-1].Text != "sd 13:0:0:0: [sdi] Synchronize Cache(10) failed: Result: hostbyte=DID_NO_CONNECT driverbyte=DRIVER_OK" {
		t.Errorf("first dock = %+v", a)
	}
	if a := arr[1]; a.Disk != "sdi" || a.SCSI != "14:0:0:0" || !a.Gone || a.Vendor != "WDC WD50" || a.Model != "00AAKS-00A7B0" ||
		a.Revision != "01.0" || !reflect.DeepEqual(a.Partitions, []string{"sdi1", "sdi2", "sdi5"}) {
		t.Errorf("re-dock = %+v", a)
	}
	if a := arr[2]; a.Disk != "sdj" || a.Gone || a.SectorSize != 4096 || a.Sectors != 488378646 || a.Size() != 2000398934016 ||
		a.Driver != "uas" || a.USBPort != "4-1" {
		t.Errorf("second dock = %+v", a)
	}
	if l, ok := LatestArrival(arr); !ok || l.Disk != "sdj" {
		t.Errorf("latest = %+v", l)
	}
	// Cut the log at moments of the session and ask who arrived last.
	at := func(sec float64) []KernelLine {
		var out []KernelLine
		for _, l := range lines {
			if l.Time.Seconds() <= sec {
				out = append(out, l)
			}
		}
		return out
	}
	for _, c := range []struct {
		sec  float64
		disk string
		scsi string
	}{{102, "sdi", "13:0:0:0"}, {170, "", ""}, {200, "sdi", "14:0:0:0"}, {235, "sdj", "15:0:0:0"}} {
		l, ok := LatestArrival(ParseKernelLog(at(c.sec)))
		if l.Disk != c.disk || l.SCSI != c.scsi || ok != (c.disk != "") {
			t.Errorf("at %vs latest = %q %q %v, want %q %q", c.sec, l.Disk, l.SCSI, ok, c.disk, c.scsi)
		}
	}
}

func TestParseKernelLogCardReader(t *testing.T) {
	arr := ParseKernelLog(readDmesgFixture(t, "card-reader.dmesg"))
	if len(arr) != 1 || !arr[0].Removable || !arr[0].WriteProtect || arr[0].Disk != "sdb" || arr[0].Vendor != "Generic-" ||
		arr[0].Model != "SD/MMC" || arr[0].Revision != "1.00" {
		t.Fatalf("arrivals = %+v", arr)
	}
}

func TestParseKmsgRecord(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		time time.Duration
		text string
	}{
		{"6,1234,5678901,-;sd 13:0:0:0: [sdi] Attached SCSI disk", true, 5678901 * time.Microsecond, "sd 13:0:0:0: [sdi] Attached SCSI disk"},
		{"6,1235,5678902,-; sdi: sdi1\n SUBSYSTEM=block\n DEVICE=b8:128", true, 5678902 * time.Microsecond, " sdi: sdi1"},
		{"12,7,1,c,caller=T123;tab\\x09here \\x5c", true, time.Microsecond, "tab\there \\"},
		{"6,1,2,-", false, 0, ""},
		{"x,1,2,-;text", false, 0, ""},
		{"6,1,-2,-;text", false, 0, ""},
		{"6,1;text", false, 0, ""},
		{"", false, 0, ""},
	} {
		l, ok := ParseKmsgRecord(c.in)
		if ok != c.ok || l.Time != c.time || l.Text != c.text {
			t.Errorf("ParseKmsgRecord(%q) = %+v %v, want %v %q %v", c.in, l, ok, c.time, c.text, c.ok)
		}
	}
}

// TestDmesgContinuationLines: a record of two lines reads the same from
// dmesg's output (the second line indented, no timestamp) and from
// /dev/kmsg (one record, the newline escaped).
func TestDmesgContinuationLines(t *testing.T) {
	out := "[    0.434572] amd_pstate: disabled by the BIOS.\n               Please enable it.\n[    0.500000] next\n"
	got := parseDmesgOutput([]byte(out))
	k, _ := ParseKmsgRecord("4,87,434572,-;amd_pstate: disabled by the BIOS.\\x0aPlease enable it.")
	if len(got) != 2 || got[0] != k || got[1].Text != "next" {
		t.Errorf("dmesg view %q, kmsg view %q", got, k)
	}
}

func TestParseDmesgLine(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		time time.Duration
		text string
	}{
		{"[ 5678.901234] sd 13:0:0:0: [sdi] Attached SCSI disk", true, 5678901234 * time.Microsecond, "sd 13:0:0:0: [sdi] Attached SCSI disk"},
		{"[ 5679.360000]  sdi: sdi1\n", true, 5679360 * time.Millisecond, " sdi: sdi1"},
		{"[    0.000000] Linux version 6.1.0", true, 0, "Linux version 6.1.0"},
		{"[12345678.5] x", true, 12345678*time.Second + 500*time.Millisecond, "x"},
		{"5678.901234 no brackets", false, 0, ""},
		{"[ abc] x", false, 0, ""},
		{"", false, 0, ""},
	} {
		l, ok := ParseDmesgLine(c.in)
		if ok != c.ok || l.Time != c.time || l.Text != c.text {
			t.Errorf("ParseDmesgLine(%q) = %+v %v", c.in, l, ok)
		}
	}
	l := KernelLine{Time: 5678901234 * time.Microsecond, Text: "x"}
	if l.String() != "[ 5678.901234] x" {
		t.Errorf("String = %q", l.String())
	}
}

// TestReadKernelLogReal reads this machine's kernel log through /dev/kmsg and
// checks it against the dmesg tool, then writes a dock session into the log
// (as root may) and finds it with the parser.
func TestReadKernelLogReal(t *testing.T) {
	if !kmsgAvailable() {
		t.Skipf("SKIP: /dev/kmsg cannot be opened here (no permission or no device); ReadKernelLog would fall back to dmesg")
	}
	lines, err := ReadKernelLog()
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) == 0 {
		t.Fatal("empty kernel log")
	}
	testkit.NeedTools(t, "dmesg")
	out, err := exec.Command("dmesg").Output()
	if err != nil {
		t.Skipf("SKIP: dmesg failed (%v); cannot cross-check", err)
	}
	dm := parseDmesgOutput(out)
	// Both views start at the oldest record still in the buffer. Other
	// tests (other packages' binaries run beside this one) log to the
	// kernel too and can push old records out between the two reads, so
	// the views are aligned on the first record both have, and must agree
	// from there.
	if len(dm) == 0 {
		t.Fatal("dmesg printed no records")
	}
	a, b := lines, dm
	i := slices.IndexFunc(b, func(l KernelLine) bool { return l == a[0] })
	if i < 0 {
		a, b = dm, lines
		i = slices.IndexFunc(b, func(l KernelLine) bool { return l == a[0] })
	}
	if i < 0 {
		t.Fatalf("kmsg and dmesg share no first record: kmsg starts %v, dmesg starts %v", lines[0], dm[0])
	}
	n := min(len(a), len(b)-i, 200)
	if n < 10 && len(lines) >= 10 {
		t.Fatalf("kmsg and dmesg overlap in only %d records", n)
	}
	for k := 0; k < n; k++ {
		if a[k] != b[i+k] {
			t.Fatalf("record %d: %v in one view, %v in the other", k, a[k], b[i+k])
		}
	}

	testkit.NeedRoot(t) // writing to /dev/kmsg
	w, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("SKIP: /dev/kmsg not writable: %v", err)
	}
	defer w.Close()
	host := 90 + rand.Intn(9)
	name := fmt.Sprintf("sdtest%d", rand.Intn(1000))
	addr := fmt.Sprintf("%d:0:0:0", host)
	session := []string{
		fmt.Sprintf("scsi host%d: usb-storage 9-9:1.0", host),
		fmt.Sprintf("scsi %s: Direct-Access     %-8s %-16s %-4s PQ: 0 ANSI: 6", addr, "LUKSDOCK", "TEST DISK", "0001"),
		fmt.Sprintf("sd %s: [%s] 2097152 512-byte logical blocks: (1.07 GB/1.00 GiB)", addr, name),
		fmt.Sprintf("sd %s: [%s] Attached SCSI disk", addr, name),
	}
	for _, s := range session {
		// The newline finalizes the record; without it the last one stays
		// open (invisible to readers) until the next message.
		if _, err := w.Write([]byte(s + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	// Mark it gone again so nothing later takes the test session for a real dock.
	defer w.Write([]byte(fmt.Sprintf("sd %s: [%s] Synchronize Cache(10) failed: Result: hostbyte=DID_NO_CONNECT driverbyte=DRIVER_OK\n", addr, name)))
	lines, err = ReadKernelLog()
	if err != nil {
		t.Fatal(err)
	}
	// Only the session this test wrote is judged (the log is the host's:
	// other processes write to it at the same time).
	var l Arrival
	ok := false
	for _, x := range ParseKernelLog(lines) {
		if x.Disk == name && x.SCSI == addr {
			l, ok = x, true
		}
	}
	if !ok || l.Vendor != "LUKSDOCK" || l.Model != "TEST DISK" || l.Sectors != 2097152 || !l.Attached || l.Gone {
		t.Fatalf("arrival of %s at %s = %+v (found %v)", name, addr, l, ok)
	}
}

// A failing disk logs errors without end; the evidence keeps the attach and
// counts the rest.
func TestParseKernelLogCapsEvidence(t *testing.T) {
	lines := readDmesgFixture(t, "blacx-dock.dmesg")
	for i := 0; i < 1000; i++ {
		lines = append(lines, KernelLine{Time: time.Hour + time.Duration(i), Text: "sd 13:0:0:0: [sdi] tag#0 FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_SENSE cmd_age=0s"})
	}
	arr := ParseKernelLog(lines)
	if len(arr) != 1 || len(arr[0].Lines) != MaxArrivalLines || arr[0].Omitted != 17+1000-MaxArrivalLines {
		t.Fatalf("lines %d omitted %d", len(arr[0].Lines), arr[0].Omitted)
	}
	if arr[0].Lines[16].Text != "sd 13:0:0:0: [sdi] Attached SCSI disk" {
		t.Errorf("attach evidence lost: %q", arr[0].Lines[16].Text)
	}
}

// Without a readable /dev/kmsg the log comes from the dmesg tool.
func TestReadKernelLogFallsBackToDmesg(t *testing.T) {
	testkit.NeedTools(t, "dmesg")
	want, err := exec.Command("dmesg").Output()
	if err != nil {
		t.Skipf("SKIP: dmesg cannot read the log here: %v", err)
	}
	lines, err := readKernelLog(filepath.Join(t.TempDir(), "no-kmsg"))
	if err != nil {
		t.Fatal(err)
	}
	dm := parseDmesgOutput(want)
	if len(lines) == 0 || len(dm) == 0 || lines[0] != dm[0] {
		t.Fatalf("fallback gave %d lines (first %v), dmesg %d", len(lines), lines, len(dm))
	}
}
