# Helpers for scenario scripts of the luksdock end-to-end guest. Sourced
# before /e2e/scenario.sh; stdout is the data channel (ttyS1), stdin reads
# lines the Go test sends with VM.Send.

# mark NAME [ARGS...]: a marker line the Go test waits for (VM.WaitMark).
mark() { echo "@@E2E $*"; }

# uptime_s: seconds since boot (CLOCK_BOOTTIME, 10 ms resolution).
uptime_s() { cut -d' ' -f1 /proc/uptime; }

# deadline SECONDS: the guest clock (whole seconds of uptime) SECONDS from
# now; past DEADLINE: true once the clock reached it. Every wait below is
# bounded by the clock, not by a count of polls: under a loaded TCG host
# one poll can take far longer than its sleep.
deadline() { echo $(( $(cut -d. -f1 /proc/uptime) + $1 )); }
past() { [ "$(cut -d. -f1 /proc/uptime)" -ge "$1" ]; }

# fail MSG: print a failure line and exit 1.
fail() { echo "FAIL: $*"; exit 1; }

# run CMD...: echo the command, run it, fail the scenario if it fails.
run() { echo "+ $*"; "$@" || fail "exit $?: $*"; }

# host_wait WORD: block until the Go test sends the line WORD.
host_wait() {
	while read -r _l; do [ "$_l" = "$1" ] && return 0; done
	fail "data channel closed while waiting for host '$1'"
}

# wait_block NAME [SECONDS]: wait for /sys/block/NAME (default 60 s).
wait_block() {
	_d=$(deadline ${2:-60})
	while [ ! -e "/sys/block/$1" ]; do
		past $_d && fail "no /sys/block/$1 after ${2:-60}s"
		usleep 50000
	done
	_d=$(deadline 5)
	while [ ! -b "/dev/$1" ]; do
		past $_d && fail "no /dev/$1 node"
		usleep 50000
	done
}

# wait_gone NAME [SECONDS]: wait until /sys/block/NAME disappears.
wait_gone() {
	_d=$(deadline ${2:-60})
	while [ -e "/sys/block/$1" ]; do
		past $_d && fail "/sys/block/$1 still present after ${2:-60}s"
		usleep 50000
	done
}

# emit NAME FILE: send FILE to the Go test as a base64 block (VM.Blob).
emit() {
	echo "@@E2E blob-begin $1"
	base64 < "$2"
	echo "@@E2E blob-end $1"
}

# kmsg TEXT: write TEXT into the kernel log (same clock as kernel lines).
kmsg() { echo "$*" > /dev/kmsg; }

# kmsg_time PATTERN: the timestamp (seconds) of the last kernel log line
# matching PATTERN (grep -E), or nothing.
kmsg_time() { dmesg | grep -E "$1" | tail -n 1 | sed -n 's/^\[ *\([0-9.]*\)\].*/\1/p'; }

# find_disk SERIAL: print the kernel name of the sd disk whose USB device
# (or SCSI unit) has serial SERIAL; nothing when none has.
find_disk() {
	for _b in /sys/block/sd*; do
		[ -e "$_b" ] || continue
		_p=$(readlink -f "$_b/device")
		while [ "$_p" != "/sys" ] && [ "$_p" != "/" ]; do
			if [ -f "$_p/serial" ] && [ "$(cat "$_p/serial")" = "$1" ]; then
				echo "${_b##*/}"; return 0
			fi
			_p=${_p%/*}
		done
	done
	return 1
}

# wait_disk SERIAL [SECONDS]: wait until the disk with SERIAL is attached
# (node present, size known) and print its kernel name.
wait_disk() {
	_d=$(deadline ${2:-60})
	while :; do
		_n=$(find_disk "$1")
		if [ -n "$_n" ] && [ -b "/dev/$_n" ] && [ "$(cat /sys/block/$_n/size 2>/dev/null)" != 0 ]; then
			echo "$_n"; return 0
		fi
		past $_d && return 1
		usleep 50000
	done
}

# uevent_listening PID [SECONDS]: wait until process PID has a kernel
# uevent netlink socket (NETLINK_KOBJECT_UEVENT, protocol 15) bound, i.e.
# it is listening for hotplug events. Returns 1 on timeout.
uevent_listening() {
	_d=$(deadline ${2:-10})
	while ! awk -v pid="$1" '$2 == 15 && $3 == pid { f = 1 } END { exit !f }' /proc/net/netlink; do
		past $_d && return 1
		kill -0 "$1" 2>/dev/null || return 1
		usleep 50000
	done
}

# wait_proc PATTERN [SECONDS]: wait until a running process's command line
# (arguments joined by spaces) matches the grep -E PATTERN. Write one
# character of PATTERN as a bracket expression ("[m]kfs.ext4") so the
# grep doing the search does not match itself.
wait_proc() {
	_d=$(deadline ${2:-60})
	while ! cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -qE "$1"; do
		past $_d && return 1
		usleep 20000
	done
}

# wait_dev_open COMM [SECONDS]: wait until a process named COMM (as pidof
# sees it) holds a disk, partition or device-mapper node open, i.e. it is
# doing its I/O. Returns 1 on timeout.
wait_dev_open() {
	_d=$(deadline ${2:-60})
	while :; do
		for _pid in $(pidof "$1"); do
			for _fd in /proc/$_pid/fd/*; do
				case $(readlink "$_fd" 2>/dev/null) in
				/dev/sd*|/dev/dm-*|/dev/mapper/*) return 0 ;;
				esac
			done
		done
		past $_d && return 1
		usleep 20000
	done
}

# wait_rc NAME [SECONDS]: wait until /tmp/NAME.rc holds the exit status of
# a run started in the background (the scenario's own convention). On
# timeout, print what each luksdock and tool process is blocked on (its
# kernel stack) and the kernel's list of blocked tasks, then fail: a hang
# is a failure with its evidence, never a wait until the host gives up.
wait_rc() {
	_d=$(deadline ${2:-120})
	while [ ! -s "/tmp/$1.rc" ]; do
		if past $_d; then
			stuck_report
			fail "$1: still running ${2:-120} s later"
		fi
		usleep 100000
	done
}

# stuck_report: the state, wait channel and kernel stack of every luksdock
# and tool thread, then sysrq-w (blocked tasks) and the kernel log's tail.
stuck_report() {
	for _p in $(pidof luksdock cryptsetup mkfs.ext4 mke2fs e2fsck dd); do
		echo "stuck: pid $_p ($(cat /proc/$_p/comm 2>/dev/null)): $(grep '^State' /proc/$_p/status 2>/dev/null)"
		for _t in /proc/$_p/task/*; do
			echo "stuck:  task ${_t##*/} wchan $(cat $_t/wchan 2>/dev/null)"
			sed 's/^/stuck:    /' $_t/stack 2>/dev/null
		done
	done
	echo w > /proc/sysrq-trigger 2>/dev/null
	dmesg | tail -n 120 | sed 's/^/stuck: /'
}
