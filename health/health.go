// Package health reads a disk's SMART health with smartmontools' smartctl
// before luksdock trusts it with backups: a reused disk with pending or
// reallocated sectors fails silently later.
//
// Only read-only smartctl commands are run: -i (identity), -H (overall
// health), -A (attributes) with --json. Nothing that changes a drive
// setting (-s, -o, -S, --set), starts a self-test (-t) or aborts one (-X).
// Through a USB dock the ATA commands must pass the bridge: smartctl's own
// choice (-d auto, which knows many bridges by USB ID) is tried first, then
// SCSI-ATA Translation (-d sat), then the vendor pass-through of the
// bridge's maker where smartctl documents one (JMicron, Prolific, Sunplus,
// Cypress). A bridge that passes none says "health not readable through
// this dock", and luksdock goes on. smartmontools is optional: without
// smartctl the report says how to install it.
package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Verdict is the overall judgement.
type Verdict string

// Verdicts, from good to bad. Unknown: health could not be read.
const (
	OK        Verdict = "ok"
	Unknown   Verdict = "unknown"
	Degrading Verdict = "degrading" // sectors reallocated, pending or uncorrectable: it is wearing out
	Failing   Verdict = "failing"   // the drive's own assessment is FAILED, or an attribute is at its threshold
)

// NotInstalled is the report's reason when smartctl is missing.
const NotInstalled = "smartctl (smartmontools) is not installed: health not checked. Install it with `apt install smartmontools` (Debian/Ubuntu) or `dnf install smartmontools`"

// NotReadable is the report's reason when the dock passes no SMART command.
const NotReadable = "health not readable through this dock (the USB bridge passes no SMART commands)"

// Report is what luksdock knows about a disk's health.
type Report struct {
	Verdict Verdict `json:"verdict"`
	// Why is set when the verdict is Unknown: smartctl missing, or the
	// dock passes nothing through.
	Why string `json:"why,omitempty"`
	// DeviceType is the smartctl -d type that reached the drive ("sat",
	// "usbjmicron", or "auto" for smartctl's own choice).
	DeviceType string `json:"device_type,omitempty"`
	Protocol   string `json:"protocol,omitempty"` // "ATA", "NVMe", "SCSI"
	// The drive's own identity, as it answered through SMART.
	Model          string `json:"model,omitempty"`
	Serial         string `json:"serial,omitempty"`
	Firmware       string `json:"firmware,omitempty"`
	LogicalSector  int    `json:"logical_sector,omitempty"`
	PhysicalSector int    `json:"physical_sector,omitempty"`
	// Passed is the drive's overall self-assessment (smartctl -H).
	Passed               *bool  `json:"smart_passed,omitempty"`
	PowerOnHours         *int64 `json:"power_on_hours,omitempty"`
	Reallocated          *int64 `json:"reallocated_sectors,omitempty"`
	Pending              *int64 `json:"pending_sectors,omitempty"`
	OfflineUncorrectable *int64 `json:"offline_uncorrectable,omitempty"`
	MediaErrors          *int64 `json:"media_errors,omitempty"` // NVMe
	// Problems says, in words, what makes the verdict degrading or failing.
	Problems []string `json:"problems,omitempty"`
}

// Summary is the report in one line for lists and plans.
func (r Report) Summary() string {
	if r.Verdict == Unknown {
		return r.Why
	}
	var b strings.Builder
	switch r.Verdict {
	case OK:
		b.WriteString("SMART health OK")
	case Degrading:
		b.WriteString("SMART: DEGRADING")
	case Failing:
		b.WriteString("SMART: FAILING")
	}
	num := func(p *int64) string {
		if p == nil {
			return "?"
		}
		return fmt.Sprint(*p)
	}
	if r.PowerOnHours != nil {
		fmt.Fprintf(&b, ", %d power-on hours", *r.PowerOnHours)
	}
	if r.Protocol == "NVMe" {
		fmt.Fprintf(&b, ", %s media errors", num(r.MediaErrors))
	} else {
		fmt.Fprintf(&b, ", reallocated %s, pending %s, offline uncorrectable %s", num(r.Reallocated), num(r.Pending), num(r.OfflineUncorrectable))
	}
	if len(r.Problems) > 0 && r.Verdict != OK {
		b.WriteString(": " + strings.Join(r.Problems, "; "))
	}
	return b.String()
}

// Bad reports whether the disk needs an explicit extra confirmation.
func (r Report) Bad() bool { return r.Verdict == Failing || r.Verdict == Degrading }

// smartctlJSON is the part of `smartctl --json` output luksdock reads.
type smartctlJSON struct {
	Smartctl struct {
		ExitStatus int `json:"exit_status"`
		Messages   []struct {
			String   string `json:"string"`
			Severity string `json:"severity"`
		} `json:"messages"`
	} `json:"smartctl"`
	Device struct {
		Type     string `json:"type"`
		Protocol string `json:"protocol"`
	} `json:"device"`
	ModelName       string `json:"model_name"`
	SerialNumber    string `json:"serial_number"`
	FirmwareVersion string `json:"firmware_version"`
	LogicalBlock    int    `json:"logical_block_size"`
	PhysicalBlock   int    `json:"physical_block_size"`
	SmartStatus     *struct {
		Passed bool `json:"passed"`
	} `json:"smart_status"`
	PowerOnTime *struct {
		Hours int64 `json:"hours"`
	} `json:"power_on_time"`
	ATAAttributes *struct {
		Table []struct {
			ID         int    `json:"id"`
			Name       string `json:"name"`
			Value      int    `json:"value"`
			Thresh     int    `json:"thresh"`
			WhenFailed string `json:"when_failed"`
			Raw        struct {
				Value int64 `json:"value"`
			} `json:"raw"`
		} `json:"table"`
	} `json:"ata_smart_attributes"`
	NVMeLog *struct {
		CriticalWarning int   `json:"critical_warning"`
		MediaErrors     int64 `json:"media_errors"`
		PercentageUsed  int   `json:"percentage_used"`
		PowerOnHours    int64 `json:"power_on_hours"`
	} `json:"nvme_smart_health_information_log"`
}

// smartctl's exit status bits (man smartctl, EXIT STATUS).
const (
	exitCmdLine     = 1 << 0
	exitOpenFailed  = 1 << 1 // or the device did not answer IDENTIFY
	exitCmdFailed   = 1 << 2 // a SMART command failed, or a checksum error
	exitDiskFailing = 1 << 3
	exitPrefailNow  = 1 << 4
)

// ErrNoSMART means the output holds no SMART data (the bridge passed no
// ATA command, or the device has no SMART).
var ErrNoSMART = errors.New("no SMART data")

// Parse turns one `smartctl --json -i -H -A` output into a Report. It
// returns ErrNoSMART when the drive's health is not in it.
func Parse(out []byte) (Report, error) {
	var j smartctlJSON
	if err := json.Unmarshal(out, &j); err != nil {
		return Report{}, fmt.Errorf("smartctl output is not JSON: %w", err)
	}
	if j.Smartctl.ExitStatus&(exitCmdLine|exitOpenFailed) != 0 || (j.SmartStatus == nil && j.ATAAttributes == nil && j.NVMeLog == nil) {
		var msgs []string
		for _, m := range j.Smartctl.Messages {
			msgs = append(msgs, m.String)
		}
		return Report{}, fmt.Errorf("%w (exit status %d: %s)", ErrNoSMART, j.Smartctl.ExitStatus, strings.Join(msgs, "; "))
	}
	r := Report{
		Protocol: j.Device.Protocol, DeviceType: j.Device.Type,
		Model: j.ModelName, Serial: j.SerialNumber, Firmware: j.FirmwareVersion,
		LogicalSector: j.LogicalBlock, PhysicalSector: j.PhysicalBlock,
	}
	if j.SmartStatus != nil {
		p := j.SmartStatus.Passed
		r.Passed = &p
	}
	if j.PowerOnTime != nil {
		h := j.PowerOnTime.Hours
		r.PowerOnHours = &h
	}
	var failing, degrading []string
	if r.Passed != nil && !*r.Passed || j.Smartctl.ExitStatus&exitDiskFailing != 0 {
		failing = append(failing, "the drive's own health assessment is FAILED")
	}
	if a := j.ATAAttributes; a != nil {
		for _, at := range a.Table {
			v := at.Raw.Value
			switch at.ID {
			case 5:
				r.Reallocated = &v
			case 197:
				r.Pending = &v
			case 198:
				r.OfflineUncorrectable = &v
			case 9:
				if r.PowerOnHours == nil {
					r.PowerOnHours = &v
				}
			}
			if at.WhenFailed == "now" {
				failing = append(failing, fmt.Sprintf("attribute %d %s is at or below its failure threshold (%d <= %d)", at.ID, at.Name, at.Value, at.Thresh))
			}
		}
	}
	if n := j.NVMeLog; n != nil {
		me := n.MediaErrors
		r.MediaErrors = &me
		if r.PowerOnHours == nil {
			h := n.PowerOnHours
			r.PowerOnHours = &h
		}
		if n.CriticalWarning != 0 {
			failing = append(failing, fmt.Sprintf("NVMe critical warning 0x%02x", n.CriticalWarning))
		}
		if me > 0 {
			degrading = append(degrading, fmt.Sprintf("%d media errors", me))
		}
		if n.PercentageUsed >= 100 {
			degrading = append(degrading, fmt.Sprintf("%d%% of its rated endurance used", n.PercentageUsed))
		}
	}
	for _, c := range []struct {
		p    *int64
		what string
	}{{r.Reallocated, "reallocated sectors"}, {r.Pending, "sectors pending reallocation (unreadable now)"}, {r.OfflineUncorrectable, "offline uncorrectable sectors"}} {
		if c.p != nil && *c.p > 0 {
			degrading = append(degrading, fmt.Sprintf("%d %s", *c.p, c.what))
		}
	}
	switch {
	case len(failing) > 0:
		r.Verdict = Failing
	case len(degrading) > 0:
		r.Verdict = Degrading
	default:
		r.Verdict = OK
	}
	r.Problems = append(failing, degrading...)
	return r, nil
}

// Runner runs smartctl with args and returns its standard output (smartctl
// exits non-zero for many reasons that still print JSON). Replaced in tests.
type Runner func(ctx context.Context, args ...string) ([]byte, error)

// Smartctl runs the real smartctl, "" when it is not installed.
func Smartctl() Runner {
	path, err := exec.LookPath("smartctl")
	if err != nil {
		return nil
	}
	return func(ctx context.Context, args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives luksdock
		var out bytes.Buffer
		cmd.Stdout = &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = nil // the exit status is in the JSON
		}
		return out.Bytes(), err
	}
}

// Args is the read-only smartctl command line luksdock runs for dev with
// device type typ ("" for smartctl's own choice).
func Args(dev, typ string) []string {
	a := []string{"--json=c", "-i", "-H", "-A"}
	if typ != "" {
		a = append(a, "-d", typ)
	}
	return append(a, dev)
}

// bridgeTypes are smartctl's documented USB bridge pass-through types, by
// the USB vendor ID of the bridge's maker.
var bridgeTypes = map[string]string{
	"152d": "usbjmicron",  // JMicron
	"067b": "usbprolific", // Prolific
	"04fc": "usbsunplus",  // Sunplus
	"04b4": "usbcypress",  // Cypress
}

// Types is the order of smartctl -d types tried for a disk: smartctl's own
// choice first; through USB then SAT and the bridge maker's type.
func Types(usb bool, usbVendor string) []string {
	if !usb {
		return []string{""}
	}
	t := []string{"", "sat"}
	if bt, ok := bridgeTypes[strings.ToLower(usbVendor)]; ok {
		t = append(t, bt)
	}
	return t
}

// Timeout bounds each smartctl run (a bridge may stall on a command it
// does not know).
var Timeout = 20 * time.Second

// Read reads dev's health with run (nil: smartctl is not installed). usb
// and usbVendor (idVendor, "152d") choose the bridge types to try. It
// never fails: what could not be read is the report's Why.
func Read(ctx context.Context, run Runner, dev string, usb bool, usbVendor string) Report {
	if run == nil {
		return Report{Verdict: Unknown, Why: NotInstalled}
	}
	var last error
	for _, typ := range Types(usb, usbVendor) {
		c, cancel := context.WithTimeout(ctx, Timeout)
		out, err := run(c, Args(dev, typ)...)
		cancel()
		if err != nil {
			last = err
			continue
		}
		r, err := Parse(out)
		if err != nil {
			last = err
			continue
		}
		if typ == "" && r.DeviceType == "" {
			r.DeviceType = "auto"
		}
		return r
	}
	if usb {
		return Report{Verdict: Unknown, Why: NotReadable}
	}
	why := "health not readable"
	if last != nil {
		why += ": " + last.Error()
	}
	return Report{Verdict: Unknown, Why: why}
}
