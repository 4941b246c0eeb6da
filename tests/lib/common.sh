# SPDX-License-Identifier: MIT
#
# Shared by the shell tests and the front ends' test libraries
# (nbdkit/testlib.sh, tests/iscsi/lib.sh); sourced, not run.  Tests exit 0
# when they pass, 77 with the reason as the last line when a tool is
# missing, 1 on failure; fail shows the tail of the log of the server under
# test ($FAIL_LOG, set by whoever starts it).
set -u
BUILD=${BUILD:-build}
FAIL_LOG=

fail() {
	echo "FAIL: $*"
	[ -n "$FAIL_LOG" ] && [ -f "$FAIL_LOG" ] && tail -20 "$FAIL_LOG" | sed 's/^/  | /'
	exit 1
}

skip() {
	echo "skipped: $*"
	exit 77
}

# need TOOL...: skip unless every tool is installed.
need() {
	local t
	for t; do
		command -v "$t" >/dev/null 2>&1 || skip "$t is not installed (tools/deps.sh installs it)"
	done
}

# alive PID: true while PID runs (a zombie waiting for this shell does not,
# nor one reaped between the two looks).
alive() {
	local st
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
