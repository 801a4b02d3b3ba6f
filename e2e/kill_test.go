package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// killSteps are the pipeline's steps in order (pipeline/event.go).
var killSteps = []string{"preflight", "wipe", "partition", "luks-format", "open", "mkfs", "close", "verify"}

// killLabel is the label of every run in TestSIGKILLKernelEngine; the
// kernel engine's mapping is luksdock-LABEL.
const killLabel = "backups03"

// shimRule makes the guest's TOOL (as luksdock finds it on its PATH) do
// something first when its arguments ("$*") match the shell pattern match:
//
//	before  sleep 0.5 s, then run the real tool (the kill lands while the
//	        child runs, before the tool does its work)
//	after   run the real tool, then `sleep 1` before returning its status
//	        (the tool's work is done, luksdock has not been told)
//	fail    exit 1 with a message, as cryptsetup does where the kernel has
//	        no deferred removal
//	hold    run the real tool, then keep the device it was given (its last
//	        argument) open for 3 s in a background process, as a udev prober
//	        does with a new filesystem; its pid goes to /tmp/holder.pid
type shimRule struct{ tool, match, mode string }

// killCase is one SIGKILL of a kernel-engine prepare in the guest.
type killCase struct {
	name string
	// trigger are `guestwatch killat` flags: -event E -step S [-after D] or
	// -child REGEX (a descendant's command line).
	trigger []string
	shims   []shimRule
	// inStep, for a kill inside a step: the step that must have started
	// and not finished when the kill was sent.
	inStep string
	// dmAtKill: whether the kernel engine's mapping luksdock-LABEL must
	// ("yes") or must not ("no") exist at the kill, or the prefix of the
	// one that must ("luksdock-verify": the verify step's); "" either.
	dmAtKill string
	// throttle: the dock's writes (-progress write) or reads (-progress
	// read) are limited to this many bytes a second while the case runs
	// (QEMU's block_set_io_throttle), so the real tool's I/O takes seconds
	// and the kill lands while it works.
	throttle int64
	// throttleAfter, with throttle: the dock is slowed only once this step
	// is done (luksdock held stopped at its done event by `guestwatch
	// killat -pause-event` until the host has slowed it), so the steps
	// before run at full speed and only the tool of the next one is slow.
	throttleAfter string
	// staleMapping: the mapping guard (luksdock-guard, which removes a
	// mapping luksdock did not get to hold) is killed together with
	// luksdock, so a luksdock-* mapping outlives them; the next luksdock run
	// must close it and say so (pipeline.Tidied), after which every
	// check must pass.
	staleMapping bool
}

var killCases = func() []killCase {
	var cs []killCase
	for _, s := range killSteps {
		for _, ev := range []string{"start", "done"} {
			cs = append(cs, killCase{name: ev + "-" + s, trigger: []string{"-event", ev, "-step", s}})
		}
	}
	return append(cs,
		// Inside a tool: the real binary (-exe), once it has begun its
		// work on the disk (-progress), the dock throttled.
		killCase{name: "in-luks-format", trigger: []string{"-child", `cryptsetup .*luksFormat`, "-exe", "cryptsetup", "-progress", "write", "-disk", "$n"}, inStep: "luks-format", dmAtKill: "no",
			throttle: 4 << 20},
		killCase{name: "in-open-cryptsetup", trigger: []string{"-child", `cryptsetup open --type luks --volume-key-file`, "-exe", "cryptsetup", "-progress", "read", "-disk", "$n"}, inStep: "open", dmAtKill: "no",
			throttle: 256 << 10},
		killCase{name: "in-open-mapped", trigger: []string{"-child", `^sleep 1$`}, inStep: "open", dmAtKill: "yes",
			shims: []shimRule{{"cryptsetup", "open *--volume-key-file*", "after"}}},
		// The mapping guard killed as well (a whole cgroup killed): the
		// mapping stays, and the next luksdock run closes it.
		killCase{name: "in-open-mapped-guard-killed", trigger: []string{"-child", `^sleep 1$`, "-also-comm", "luksdock-guard"}, inStep: "open", dmAtKill: "yes",
			shims: []shimRule{{"cryptsetup", "open *--volume-key-file*", "after"}}, staleMapping: true},
		killCase{name: "in-open-deferred", trigger: []string{"-child", `cryptsetup close --deferred`}, inStep: "open", dmAtKill: "yes",
			shims: []shimRule{{"cryptsetup", "close --deferred *", "before"}}},
		// mkfs writes ~250 KiB, flushed at its end: at 64 KiB/s from the
		// end of open on, that flush lasts seconds and the kill lands in it.
		killCase{name: "in-mkfs", trigger: []string{"-child", `mkfs\.ext4 `, "-exe", "mke2fs|mkfs\\.ext4", "-progress", "write", "-disk", "$n"}, inStep: "mkfs", dmAtKill: "yes",
			throttle: 64 << 10, throttleAfter: "open"},
		killCase{name: "in-close-held", trigger: []string{"-event", "start", "-step", "close", "-after", "500ms"}, inStep: "close", dmAtKill: "yes",
			shims: []shimRule{{"mkfs.ext4", "*", "hold"}}},
		killCase{name: "in-close-cryptsetup", trigger: []string{"-child", `cryptsetup close luksdock-`}, inStep: "close", dmAtKill: "yes",
			shims: []shimRule{{"cryptsetup", "close --deferred *", "fail"}, {"cryptsetup", "close luksdock-*", "before"}}},
		killCase{name: "in-verify-cryptsetup", trigger: []string{"-child", `cryptsetup open --type luks --readonly`, "-exe", "cryptsetup", "-progress", "read", "-disk", "$n"}, inStep: "verify", dmAtKill: "no",
			throttle: 256 << 10},
		killCase{name: "in-verify-mapped", trigger: []string{"-child", `^sleep 1$`}, inStep: "verify", dmAtKill: "luksdock-verify",
			shims: []shimRule{{"cryptsetup", "open *--readonly*", "after"}}},
		killCase{name: "in-verify-e2fsck", trigger: []string{"-child", `e2fsck -fn`, "-exe", "e2fsck", "-progress", "read", "-disk", "$n"}, inStep: "verify", dmAtKill: "luksdock-verify",
			throttle: 256 << 10},
	)
}()

// shimScript is the guest shell script standing in for tool: the rules
// for it, then the real tool (found on PATH without the shim's directory,
// which is PATH's first entry).
func shimScript(tool string, rules []shimRule) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\nPATH=${PATH#*:}\ncase \"$*\" in\n")
	for _, r := range rules {
		if r.tool != tool {
			continue
		}
		fmt.Fprintf(&b, "%s)\n", strings.ReplaceAll(r.match, " ", `\ `))
		switch r.mode {
		case "before":
			b.WriteString("\tsleep 0.5 ;;\n")
		case "after":
			fmt.Fprintf(&b, "\t%s \"$@\"; rc=$?; sleep 1; exit $rc ;;\n", tool)
		case "fail":
			fmt.Fprintf(&b, "\techo \"%s: refused by the e2e shim (like a kernel without deferred removal)\" >&2; exit 1 ;;\n", tool)
		case "hold":
			fmt.Fprintf(&b, "\t%s \"$@\"; rc=$?; for a; do dev=$a; done\n", tool)
			b.WriteString("\texec 3<\"$dev\"; sleep 3 </dev/null >/dev/null 2>&1 &\n\techo $! > /tmp/holder.pid; exit $rc ;;\n")
		default:
			panic("unknown shim mode " + r.mode)
		}
	}
	fmt.Fprintf(&b, "esac\nexec %s \"$@\"\n", tool)
	return b.String()
}

// killScript is the guest side of TestSIGKILLKernelEngine. killcase runs a
// kernel-engine prepare under `guestwatch killat`, which kills it at the
// trigger; then it records what luksdock left (mappings, loop devices,
// holders, processes, an O_EXCL open), what is on the disk by stock tools
// alone (blkid, sfdisk, cryptsetup open, e2fsck), what a new plan says
// (--dry-run), what luksdock verify says, and whether a new prepare
// succeeds.
var killScript = `
alive() {
	[ -n "$1" ] && read -r _st < /proc/$1/stat 2>/dev/null || return 1
	_st=${_st##*) }
	[ "${_st%% *}" != Z ]
}
# dm_settle NAME: dmsetup ls once no mapping is left (deferred removal is
# queued work in the kernel) or after 3 s, with the wait (guest clock)
dm_settle() {
	_t0=$(uptime_s)
	while [ "$(dmsetup ls 2>&1)" != "No devices found" ] && [ $(cut -d. -f1 /proc/uptime) -lt $((${_t0%.*} + 3)) ]; do usleep 50000; done
	mark $1 $_t0 $(uptime_s) $(dmsetup ls 2>&1)
}
# field KEY: KEY's value in blkid -o export output on stdin
field() { sed -n "s/^$1=//p"; }
# disk_state NAME: what is on the disk, by stock tools only
disk_state() {
	_pt=$(blkid -p -o value -s PTTYPE /dev/$n 2>/dev/null)
	_ks=$(cat /sys/block/$n/${n}1/start 2>/dev/null)
	_ts=$(sfdisk --dump /dev/$n 2>/dev/null | sed -n 's/^\/dev\/[a-z]*1 : start= *\([0-9]*\),.*/\1/p')
	mark pt-$1 "${_pt:--}" "${_ks:--}" "${_ts:--}"
	_b=$(blkid -p -o export /dev/${n}1 2>/dev/null)
	_t=$(echo "$_b" | field TYPE) _v=$(echo "$_b" | field VERSION) _l=$(echo "$_b" | field LABEL)
	mark luks-$1 "${_t:--}" "${_v:--}" "${_l:--}"
	_in= _lab= _fsck=- _err=
	if [ "$_t" = crypto_LUKS ]; then
		if cryptsetup open --readonly /dev/${n}1 chk < /e2e/pass 2>/tmp/chk.err; then
			_b=$(blkid -p -o export /dev/mapper/chk)
			_in=$(echo "$_b" | field TYPE) _lab=$(echo "$_b" | field LABEL)
			e2fsck -fn /dev/mapper/chk > /tmp/fsck.out 2>&1; _fsck=$?
			cryptsetup close chk || fail "$1: cryptsetup close chk"
		else
			_err=$(cat /tmp/chk.err)
		fi
	fi
	mark inner-$1 "${_in:--}" "${_lab:--}" "$_fsck" $_err
}
killcase() {
	name=$1; shift
	sp=$PATH; [ -d /tmp/shim/$name ] && sp=/tmp/shim/$name:$PATH
	rm -f /tmp/holder.pid /tmp/$name.paused
	if [ -n "$THROTTLE" ] && [ -z "$PAUSE" ]; then mark throttle-$name; host_wait throttled; fi
	mark begin-$name
	rm -f /tmp/$name.killed
	PATH=$sp guestwatch killat -out /tmp/$name.kill -killed-file /tmp/$name.killed \
		$([ -n "$PAUSE" ] && echo "-pause-event done -pause-step $PAUSE -pause-file /tmp/$name.paused") "$@" -- \
		luksdock prepare --device /dev/$n --label "$label" --passphrase-file /e2e/pass --confirm $n \
		--engine kernel --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --json </dev/null >/tmp/$name.json 2>/tmp/$name.err &
	_kp=$!
	if [ -n "$PAUSE" ]; then
		# luksdock held at the end of step $PAUSE while the host slows the dock
		_d=$(deadline 300)
		until [ -s /tmp/$name.paused ]; do
			past $_d && fail "$name: luksdock never ended step $PAUSE: $(cat /tmp/$name.err)"
			kill -0 $_kp 2>/dev/null || fail "$name: luksdock exited before step $PAUSE ended: $(cat /tmp/$name.err)"
			usleep 20000
		done
		mark throttle-$name; host_wait throttled
		kill -CONT $(cat /tmp/$name.paused)
	fi
	if [ -n "$THROTTLE" ]; then
		# Unthrottled right after the kill: the orphaned tool then ends
		# at the dock's full speed, as it would on a real one.
		while [ ! -e /tmp/$name.killed ] && kill -0 $_kp 2>/dev/null; do usleep 10000; done
		mark unthrottle-$name; host_wait unthrottled
	fi
	wait $_kp
	mark killat-$name $?
	emit kill-$name /tmp/$name.kill
	emit err-$name /tmp/$name.err
	if [ -f /tmp/holder.pid ]; then
		h=$(cat /tmp/holder.pid)
		mark held-$name $(alive $h && echo alive) $(dmsetup ls 2>&1)
		while alive $h; do usleep 50000; done
	fi
	dm_settle dmsetup-$name
	if dmsetup ls 2>/dev/null | grep -q '^luksdock-'; then
		# A mapping a killed luksdock left: the next luksdock run (here a
		# verify, as a person would run) must close it and say so.
		luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel --json </dev/null >/tmp/$name.tjson 2>/tmp/$name.terr
		mark tidy-$name $?
		emit tjson-$name /tmp/$name.tjson
		dm_settle dmsetup-tidy-$name
	else
		mark tidy-$name none
	fi
	mark losetup-$name $(losetup -a 2>&1)
	mark holders-$name $(ls /sys/block/$n/holders/) $([ -d /sys/block/$n/${n}1 ] && ls /sys/block/$n/${n}1/holders/)
	mark procs-$name $(pidof luksdock luksdock-guard cryptsetup mkfs.ext4 mke2fs e2fsck dumpe2fs)
	guestwatch excl /dev/$n $([ -b /dev/${n}1 ] && echo /dev/${n}1) > /tmp/excl.out 2>&1
	mark excl-$name $? $(cat /tmp/excl.out)
	disk_state $name
	luksdock prepare --device /dev/$n --label "$label" --dry-run --engine kernel </dev/null >/tmp/$name.plan 2>&1
	mark plan-$name $?
	emit plan-$name /tmp/$name.plan
	luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel --json </dev/null >/tmp/$name.vjson 2>/tmp/$name.verr
	mark verify-$name $?
	emit vjson-$name /tmp/$name.vjson
	emit verr-$name /tmp/$name.verr
	# verify closes its mapping and waits for it to go before it exits
	mark dmsetup-after-verify-$name $(dmsetup ls 2>&1)
	recover $name
	if [ "$(dmsetup ls 2>&1)" != "No devices found" ] || [ "$(cat /tmp/prepare.rc)" != 0 ]; then
		# What a person would do by hand, so the next case starts clean.
		mark cleaned-$name 1 $(dmsetup ls 2>/dev/null | cut -f1)
		for m in $(dmsetup ls 2>/dev/null | cut -f1); do dmsetup remove "$m"; done
		recover $name-again
	else
		mark cleaned-$name 0
	fi
}
recover() {
	` + strings.TrimSpace(guestPrepare) + `
	mark recover-$1 $(cat /tmp/prepare.rc)
	emit recover-json-$1 /tmp/prepare.json
	emit recover-err-$1 /tmp/prepare.err
	mark dmsetup-recover-$1 $(dmsetup ls 2>&1)
}
`

// killReport is guestwatch's KillReport (e2e/guestwatch/killat.go).
type killReport struct {
	Fired       bool    `json:"fired"`
	FiredBy     string  `json:"fired_by"`
	Alive       bool    `json:"alive"`
	KillErr     string  `json:"kill_err"`
	KillDelayMS float64 `json:"kill_delay_ms"`
	Events      []struct {
		Event      string `json:"event"`
		Step       string `json:"step"`
		BeforeKill bool   `json:"before_kill"`
	} `json:"events"`
	Children []struct {
		PID        int     `json:"pid"`
		Comm       string  `json:"comm"`
		Cmdline    string  `json:"cmdline"`
		GoneAfterS float64 `json:"gone_after_s"`
		Left       bool    `json:"left"`
	} `json:"children"`
	DMAtKill []string `json:"dm_at_kill"`
	DMAtExit []string `json:"dm_at_exit"`
	ExitCode int      `json:"exit_code"`
	// -exe/-progress triggers: the real tool and its work at the kill.
	ToolPID         int    `json:"tool_pid"`
	ToolExe         string `json:"tool_exe"`
	ToolAliveAtKill bool   `json:"tool_alive_at_kill"`
	DiskSectorsSeen int64  `json:"disk_sectors_seen"`
	DiskSectorsKill int64  `json:"disk_sectors_kill"`
	ToolIOBytes     int64  `json:"tool_io_bytes"`
}

// lastDone is the index in killSteps of the last step luksdock reported
// done (all its events, also those read after the kill), -1 for none.
func (r *killReport) lastDone() int {
	last := -1
	for _, e := range r.Events {
		if e.Event == "done" {
			last = max(last, slices.Index(killSteps, e.Step))
		}
	}
	return last
}

// Issue 6 faults with the kernel engine (the host has no device-mapper): a
// SIGKILL of luksdock at the start and at the done event of every step and
// inside the steps that run a tool or wait for the kernel, on a USB disk in
// the QEMU guest. The guest helper `guestwatch killat` reads luksdock's
// --json output and kills it the moment the event line arrives, or when a
// descendant with the tool's command line appears (the tools slowed by a
// shim so the kill lands while they run). After each kill: luksdock died of
// it; every child it left ends by itself; no dm mapping, no loop device, no
// holder, nothing that keeps the disk from being opened O_EXCL; what stock
// blkid/sfdisk/cryptsetup/e2fsck find is at least what luksdock had
// reported done; a new plan (--dry-run) shows it; luksdock verify passes
// exactly when the stock tools find a finished disk (exit 5, no result
// event and a reason otherwise); and a new prepare succeeds. Three boots (the
// boundaries, the kills inside the first steps, those inside close and
// verify) run side by side, each case after the
// other on one disk.
func TestSIGKILLKernelEngine(t *testing.T) {
	g := skipUnlessVM(t)
	bin := luksdockBinary(t)
	gw := guestwatchBinary(t)
	t.Parallel()
	// The kills inside steps take two boots: in one they took about 15
	// minutes under TCG, the whole of a boot's budget. Three boots share
	// two cores (one took 11 minutes beside the rest of the suite), so
	// each boot may take 25.
	var boundaries, inside, insideLate []killCase
	for _, c := range killCases {
		switch {
		case c.inStep == "":
			boundaries = append(boundaries, c)
		case strings.HasPrefix(c.name, "in-close") || strings.HasPrefix(c.name, "in-verify"):
			insideLate = append(insideLate, c)
		default:
			inside = append(inside, c)
		}
	}
	for _, b := range []struct {
		name, serial string
		cases        []killCase
	}{{"boundaries", "WCC2EKILL01", boundaries}, {"inside", "WCC2EKILL02", inside}, {"inside-late", "WCC2EKILL03", insideLate}} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			killBoot(t, g, bin, gw, b.serial, b.cases)
		})
	}
}

// killBoot runs cases one after the other in one boot, on one disk.
func killBoot(t *testing.T, g *Guest, bin, gw, serial string, cases []killCase) {
	dir := scratchDir(t)
	d := Disk{ID: "kill", Image: newImage(t, dir, "disk.img", 96<<20), Transport: "bot",
		Vendor: "WDC", Product: "WD5000AAKX", Serial: serial}
	var sb strings.Builder
	sb.WriteString("label=" + killLabel + "\nn=$(wait_disk " + d.Serial + " 60) || fail \"disk did not appear\"\n")
	sb.WriteString(killScript)
	for _, c := range cases {
		tools := map[string]bool{}
		for _, r := range c.shims {
			if !tools[r.tool] {
				tools[r.tool] = true
				fmt.Fprintf(&sb, "mkdir -p /tmp/shim/%s\ncat > /tmp/shim/%s/%s <<'EOF'\n%sEOF\nchmod +x /tmp/shim/%s/%s\n",
					c.name, c.name, r.tool, shimScript(r.tool, c.shims), c.name, r.tool)
			}
		}
		if c.throttle > 0 {
			sb.WriteString("THROTTLE=1 ")
		}
		if c.throttleAfter != "" {
			sb.WriteString("PAUSE=" + c.throttleAfter + " ")
		}
		fmt.Fprintf(&sb, "killcase %s", c.name)
		for _, a := range c.trigger {
			if a == "$n" {
				sb.WriteString(` "$n"`) // the disk's kernel name, in the guest
				continue
			}
			fmt.Fprintf(&sb, " '%s'", a)
		}
		sb.WriteString("\n")
	}
	sb.WriteString(`disk_state final
luksdock verify --device /dev/$n --passphrase-file /e2e/pass --engine kernel </dev/null >/dev/null 2>/tmp/verify.err
mark verify-final $?
cat /tmp/verify.err
`)
	start := time.Now()
	vm := boot(t, dir, Config{Guest: g, Luksdock: bin, Programs: map[string]string{"guestwatch": gw},
		Disks: []Disk{d}, Timeout: 25 * time.Minute, Script: sb.String()})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Now()
			if c.throttle > 0 {
				mustMark(t, vm, "throttle-"+c.name, 5*time.Minute)
				rd, wr := int64(0), c.throttle
				if slices.Contains(c.trigger, "read") {
					rd, wr = c.throttle, 0
				}
				if err := sigThrottle(vm, d.ID, rd, wr); err != nil {
					t.Fatalf("throttling the dock: %v", err)
				}
				if err := vm.Send("throttled"); err != nil {
					t.Fatal(err)
				}
			}
			checkKillCase(t, vm, c)
			t.Logf("%.1f s", time.Since(t0).Seconds())
		})
	}
	st := diskState(t, vm, "final")
	if !st.finished() {
		t.Errorf("after the last new prepare the stock tools find %s", st)
	}
	if rc := strings.Join(mustMark(t, vm, "verify-final", 2*time.Minute), ""); rc != "0" {
		t.Errorf("luksdock verify after the last new prepare: exit %s", rc)
	}
	mustExit(t, vm, time.Minute)
	t.Logf("whole boot: %.1f s, %d kills", time.Since(start).Seconds(), len(cases))
}

// stockState is what stock tools in the guest find on the disk.
type stockState struct {
	pt                    string // blkid PTTYPE of the disk: gpt, PMBR, ""
	kernelStart, tabStart string // partition 1's start: the kernel's, the table's (sfdisk)
	luks, version, label  string // blkid of partition 1
	inner, innerLabel     string // blkid inside the volume opened by stock cryptsetup
	fsck                  string // e2fsck -fn's exit status there
	openErr               string // why stock cryptsetup could not open it
}

func (s stockState) finished() bool {
	return s.pt == "gpt" && s.luks == "crypto_LUKS" && s.inner == "ext4" && s.innerLabel == killLabel && s.fsck == "0"
}

func (s stockState) String() string {
	return fmt.Sprintf("table %q (partition 1 at sector %q, the kernel's at %q), partition 1 %q %q %q, inside %q %q, e2fsck -fn exit %s%s",
		s.pt, s.tabStart, s.kernelStart, s.luks, s.version, s.label, s.inner, s.innerLabel, s.fsck,
		map[bool]string{true: ", cryptsetup open: " + s.openErr}[s.openErr != ""])
}

func diskState(t *testing.T, vm *VM, name string) stockState {
	t.Helper()
	var s stockState
	// Each field is "-" when the tool found nothing.
	fields := func(mark string, n int, into ...*string) []string {
		f := mustMark(t, vm, mark+"-"+name, 2*time.Minute)
		if len(f) < n {
			t.Fatalf("marker %s-%s: %v, want %d fields", mark, name, f, n)
		}
		for i, p := range into {
			if f[i] != "-" {
				*p = f[i]
			}
		}
		return f[n:]
	}
	fields("pt", 3, &s.pt, &s.kernelStart, &s.tabStart)
	fields("luks", 3, &s.luks, &s.version, &s.label)
	s.openErr = strings.Join(fields("inner", 3, &s.inner, &s.innerLabel, &s.fsck), " ")
	return s
}

func checkKillCase(t *testing.T, vm *VM, c killCase) {
	if c.throttle > 0 {
		mustMark(t, vm, "unthrottle-"+c.name, 5*time.Minute)
		if err := sigThrottle(vm, "kill", 0, 0); err != nil {
			t.Fatalf("unthrottling the dock: %v", err)
		}
		if err := vm.Send("unthrottled"); err != nil {
			t.Fatal(err)
		}
	}
	rc := strings.Join(mustMark(t, vm, "killat-"+c.name, 5*time.Minute), "")
	if rc != "0" {
		t.Fatalf("guestwatch killat exit %s", rc)
	}
	raw, err := vm.Blob("kill-"+c.name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := vm.Blob("err-"+c.name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r killReport
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("guestwatch report: %v\n%s", err, raw)
	}
	// The checks' failures are collected: in a case that exposes a known
	// bug they are reported together with it (see the end).
	var fails []string
	errorf := func(format string, a ...any) { fails = append(fails, fmt.Sprintf(format, a...)) }
	leaked := false // a luksdock mapping outlived luksdock and its children

	// The kill landed where it should, and luksdock died of it.
	if !r.Fired {
		t.Fatalf("the trigger %v never fired: the case was not exercised (exit %d)\nstderr:\n%s", c.trigger, r.ExitCode, stderr)
	}
	// Inside a tool: the real binary ran, had begun its work, and was
	// still running as the kill was sent.
	if slices.Contains(c.trigger, "-exe") {
		switch {
		case r.ToolPID == 0 || r.ToolExe == "":
			t.Fatalf("the kill was not decided on the real tool (report: pid %d, exe %q)", r.ToolPID, r.ToolExe)
		case !r.ToolAliveAtKill:
			errorf("%s (pid %d) was no longer running at the kill", r.ToolExe, r.ToolPID)
		}
		switch {
		case slices.Contains(c.trigger, "write") && r.DiskSectorsKill < r.DiskSectorsSeen+8:
			t.Fatalf("%s had not written to the disk at the kill (sectors written %d when seen, %d at the kill)", r.ToolExe, r.DiskSectorsSeen, r.DiskSectorsKill)
		case slices.Contains(c.trigger, "read") && r.ToolIOBytes < 4096:
			t.Fatalf("%s had not read from the disk at the kill (%d bytes)", r.ToolExe, r.ToolIOBytes)
		}
		if slices.Contains(c.trigger, "write") {
			t.Logf("killed while %s (pid %d) ran: the disk's written sectors %d -> %d since it started", r.ToolExe, r.ToolPID, r.DiskSectorsSeen, r.DiskSectorsKill)
		} else {
			t.Logf("killed while %s (pid %d) ran: it had read %d bytes since it was seen holding the disk", r.ToolExe, r.ToolPID, r.ToolIOBytes)
		}
	}
	var before []string
	started := ""
	for _, e := range r.Events {
		if e.BeforeKill {
			before = append(before, e.Event+" "+e.Step)
			if e.Event == "start" {
				started = e.Step
			}
		}
		if e.Event == "failed" {
			errorf("a SIGKILLed run printed a failed event: %+v", e)
		}
	}
	switch {
	case r.Alive && r.ExitCode == 137:
	case c.name == "done-verify" && r.ExitCode == 0 && len(r.Events) > 0 && r.Events[len(r.Events)-1].Event == "result":
		// Between done and its exit luksdock only prints the result.
		t.Logf("luksdock had finished (result event, exit 0) before the SIGKILL at done of verify took effect (running just before it: %v)", r.Alive)
	default:
		t.Fatalf("luksdock exit %d (running at the kill: %v, kill error %q), want 137\nstderr:\n%s", r.ExitCode, r.Alive, r.KillErr, stderr)
	}
	if c.inStep != "" && (started != c.inStep || slices.Contains(before, "done "+c.inStep)) {
		errorf("the kill did not land inside %s: events before it: %v", c.inStep, before)
	}
	if c.trigger[0] == "-event" && c.inStep == "" && (len(before) == 0 || before[len(before)-1] != c.trigger[1]+" "+c.trigger[3]) {
		errorf("the kill did not follow the %s %s event: events before it: %v", c.trigger[1], c.trigger[3], before)
	}
	mapping := "luksdock-" + killLabel
	switch {
	case c.dmAtKill == "yes" && !slices.Contains(r.DMAtKill, mapping):
		errorf("the mapping %s was not open at the kill: %v", mapping, r.DMAtKill)
	case c.dmAtKill == "no" && len(r.DMAtKill) > 0:
		errorf("a mapping was open at the kill: %v", r.DMAtKill)
	case strings.HasPrefix(c.dmAtKill, "luksdock-") && (len(r.DMAtKill) != 1 || !strings.HasPrefix(r.DMAtKill[0], c.dmAtKill)):
		errorf("the mapping %s... was not (alone) open at the kill: %v", c.dmAtKill, r.DMAtKill)
	}
	t.Logf("killed %.1f ms after %q (events before: %s); mappings at the kill %v, as luksdock was reaped %v",
		r.KillDelayMS, r.FiredBy, strings.Join(before, ", "), r.DMAtKill, r.DMAtExit)

	// What it left.
	for _, k := range r.Children {
		switch {
		case k.Left:
			errorf("luksdock's child %d %q was still running 30 s after the kill", k.PID, k.Cmdline)
		case k.GoneAfterS > 15:
			errorf("luksdock's child %d %q lived on %.1f s after the kill", k.PID, k.Cmdline, k.GoneAfterS)
		default:
			t.Logf("orphaned child %d %q ended %.2f s after the kill", k.PID, k.Cmdline, k.GoneAfterS)
		}
	}
	if c.name == "in-close-held" {
		// The holder (not luksdock) still had the mapping when luksdock
		// died; deferred removal must take it away when the holder lets go.
		if h := mustMark(t, vm, "held-"+c.name, 10*time.Second); len(h) == 0 || h[0] != "alive" || !slices.Contains(h, mapping) {
			errorf("the outside holder was not holding %s after the kill: %v", mapping, h)
		}
	}
	dm := mustMark(t, vm, "dmsetup-"+c.name, 2*time.Minute)
	leaked = slices.ContainsFunc(dm, func(w string) bool { return strings.HasPrefix(w, "luksdock-") })
	switch {
	case leaked && c.staleMapping:
		// With the guard killed too, the mapping stays until the next
		// luksdock run, which closes it.
		t.Logf("mapping left with luksdock and its guard killed, as this case expects: %v", dm[min(2, len(dm)):])
		tjson, err := vm.Blob("tjson-"+c.name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		closed := false
		for _, e := range parseEvents(tjson) {
			closed = closed || e.Kind == "info" && strings.Contains(e.Message, "that a killed luksdock left on /dev/")
		}
		if !closed {
			errorf("the next luksdock run (verify) did not say it closed the mapping a killed luksdock left:\n%s", tjson)
		}
		if tdm := mustMark(t, vm, "dmsetup-tidy-"+c.name, time.Minute); len(tdm) < 2 || strings.Join(tdm[2:], " ") != "No devices found" {
			errorf("mapping still there after the next luksdock run: %v", tdm[min(2, len(tdm)):])
		}
		t.Logf("the next luksdock run closed it (verify exit %s)", strings.Join(mustMark(t, vm, "tidy-"+c.name, 10*time.Second), ""))
	case len(dm) < 2 || strings.Join(dm[2:], " ") != "No devices found":
		errorf("device-mapper mapping left after the kill (luksdock and its children gone, then 3 s for deferred removal): %v", dm[min(2, len(dm)):])
	default:
		t.Logf("no mapping %.2f s after luksdock and its children were gone", seconds(t, dm[1])-seconds(t, dm[0]))
		if tidy := strings.Join(mustMark(t, vm, "tidy-"+c.name, 10*time.Second), ""); tidy != "none" {
			errorf("tidy-up ran although no mapping was left: %s", tidy)
		}
	}
	for _, what := range []string{"losetup", "holders", "procs"} {
		if l := mustMark(t, vm, what+"-"+c.name, 30*time.Second); len(l) != 0 {
			errorf("%s after the kill: %q", what, l)
		}
	}
	if ex := mustMark(t, vm, "excl-"+c.name, 10*time.Second); len(ex) == 0 || ex[0] != "0" {
		errorf("the disk or its partition cannot be opened O_EXCL after the kill: %v", ex)
	}

	// What is on the disk, by stock tools, against what luksdock reported done.
	st := diskState(t, vm, c.name)
	last := r.lastDone()
	lastName := "nothing"
	if last >= 0 {
		lastName = killSteps[last]
	}
	t.Logf("last step reported done: %s; stock tools find %s", lastName, st)
	if st.kernelStart != "" && st.tabStart != "" && st.kernelStart != st.tabStart {
		errorf("the kernel's partition 1 starts at sector %s, the table's at %s", st.kernelStart, st.tabStart)
	}
	if last >= slices.Index(killSteps, "partition") && st.pt != "gpt" {
		errorf("partition was reported done, but blkid finds the table %q", st.pt)
	}
	if last >= slices.Index(killSteps, "luks-format") && (st.luks != "crypto_LUKS" || st.label != killLabel) {
		errorf("luks-format was reported done, but blkid finds %q %q in partition 1", st.luks, st.label)
	}
	if last >= slices.Index(killSteps, "mkfs") && !st.finished() {
		errorf("mkfs was reported done, but the stock tools do not find a finished disk: %s", st)
	}

	// A new plan shows it.
	if rc := strings.Join(mustMark(t, vm, "plan-"+c.name, time.Minute), ""); rc != "0" {
		errorf("prepare --dry-run after the kill: exit %s", rc)
	}
	plan, err := vm.Blob("plan-"+c.name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var destroys []string
	for _, l := range strings.Split(string(plan), "\n") {
		if s, ok := strings.CutPrefix(l, "# destroys "); ok {
			destroys = append(destroys, s)
		}
	}
	all := strings.Join(destroys, "; ")
	switch {
	case st.luks == "crypto_LUKS" && st.pt == "gpt":
		if !strings.Contains(all, "GPT partition table") || !strings.Contains(all, `LUKS2 "`+killLabel+`"`) {
			errorf("stock tools find a GPT with LUKS2 %q, but the new plan says it destroys: %s", killLabel, all)
		}
	case st.pt == "gpt":
		if !strings.Contains(all, "GPT partition table") || strings.Contains(all, "LUKS") {
			errorf("stock tools find a GPT without LUKS, but the new plan says it destroys: %s", all)
		}
	case st.pt == "PMBR":
		if !strings.Contains(all, "GPT protective MBR, but no valid GPT header") {
			errorf("blkid finds a protective MBR without a GPT, but the new plan says it destroys: %s", all)
		}
	case st.pt == "":
		if strings.Contains(all, "GPT") || strings.Contains(all, "MBR") || strings.Contains(all, "LUKS") {
			errorf("blkid finds no partition table, but the new plan says it destroys: %s", all)
		}
	}
	t.Logf("new plan: destroys %s", all)

	// luksdock verify agrees with the stock tools.
	vrc := strings.Join(mustMark(t, vm, "verify-"+c.name, 2*time.Minute), "")
	vjson, err := vm.Blob("vjson-"+c.name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	verr, err := vm.Blob("verr-"+c.name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hasResult := false
	for _, e := range parseEvents(vjson) {
		hasResult = hasResult || e.Kind == "result"
	}
	switch {
	case st.finished() && vrc != "0":
		errorf("the stock tools find a finished disk, but luksdock verify exits %s:\n%s", vrc, verr)
	case !st.finished() && vrc != "5":
		errorf("the stock tools find %s, not a finished disk, but luksdock verify exits %s (want 5):\n%s", st, vrc, verr)
	case !st.finished() && hasResult:
		errorf("luksdock verify printed a result event for a half-made disk:\n%s", vjson)
	case !st.finished():
		explained := false
		for _, w := range []string{"has no partition table", "the kernel will not read this partition table", "holds no LUKS header", "no ext4 filesystem inside the LUKS volume", "e2fsck -fn is not clean", "the ext4 label is", "has no label"} {
			explained = explained || strings.Contains(string(verr), w)
		}
		if !explained {
			errorf("luksdock verify of a half-made disk does not say what is missing:\n%s", verr)
		}
	}
	t.Logf("luksdock verify: exit %s %s", vrc, strings.TrimSpace(strings.SplitN(string(verr), "\n", 2)[0]))
	if dm := mustMark(t, vm, "dmsetup-after-verify-"+c.name, 30*time.Second); strings.Join(dm, " ") != "No devices found" {
		errorf("mapping left after luksdock verify: %v", dm)
	}

	// A new prepare, after the usual confirmation, makes it from scratch.
	checkRecover(t, vm, c.name, errorf)
	if cl := mustMark(t, vm, "cleaned-"+c.name, 10*time.Second); len(cl) > 0 && cl[0] == "1" {
		t.Logf("removed by hand (dmsetup remove) so the next case starts clean: %v", cl[1:])
		checkRecover(t, vm, c.name+"-again", t.Errorf)
	}

	if c.staleMapping && !leaked {
		errorf("luksdock and its mapping guard were killed after cryptsetup made the mapping, but none was left: the case did not test the next run's clean-up")
	}
	for _, f := range fails {
		t.Error(f)
	}
}

func checkRecover(t *testing.T, vm *VM, name string, report func(string, ...any)) {
	t.Helper()
	rc := strings.Join(mustMark(t, vm, "recover-"+name, 3*time.Minute), "")
	js, err := vm.Blob("recover-json-"+name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := vm.Blob("recover-err-"+name, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var res *event
	for _, e := range parseEvents(js) {
		if e.Kind == "result" {
			res = &e
		}
	}
	switch {
	case rc != "0":
		report("a new prepare after the kill: exit %s\n%s", rc, stderr)
	case res == nil || res.Result == nil || res.Result.FSLabel != killLabel || !res.Result.FsckClean || res.Result.Engine != "kernel":
		report("a new prepare after the kill: no result event for a clean %q (kernel engine):\n%s", killLabel, js)
	}
	if dm := strings.Join(mustMark(t, vm, "dmsetup-recover-"+name, 10*time.Second), " "); dm != "No devices found" {
		report("mapping left after the new prepare: %q", dm)
	}
}
