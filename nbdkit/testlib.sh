# SPDX-License-Identifier: MIT
#
# Shared by tests/test_nbdkit_*.sh (sourced, not run): starts and stops
# nbdkit with the hbakit plugin of $BUILD on a Unix socket in a private
# directory, skips (exit 77) with the reason when a tool is missing, and
# copies nbdkit's log (driver lines included) into the test's output so
# tests/run.sh sees any sanitizer report.
#
# Sanitizer builds: the plugin is then instrumented but nbdkit is not, and a
# sanitizer runtime must come first in the process, so nbdkit runs with the
# runtime the plugin links (libasan or libtsan) in LD_PRELOAD, and only
# nbdkit (clients run plain).  Three consequences, none of them hbakit's:
# LeakSanitizer is off in nbdkit (nbdkit itself leaks a few bytes at exit);
# TSan is told that glibc freeing a dead worker's dynamic TLS is no race
# (nbdkit/tsan.supp says why); and exit() can hang after the plugin has
# cleaned up: libp11-kit's constructor runs before the preloaded runtime
# initialises, the runtime's lazy start breaks glibc's setlocale lock inside
# newlocale(), and libp11-kit's destructor then waits on that lock forever.
# nbd_stop recognises that state (controller closed, driver reaped, only
# nbdkit's main thread left) and kills nbdkit; a plain build must exit by
# itself.
. "$(dirname "${BASH_SOURCE[0]}")/../tests/lib/common.sh"
PLUGIN=$BUILD/nbdkit-hbakit-plugin.so
T=$(mktemp -d /tmp/hbk-nbdkit.XXXXXX)
NBD_PID=
SOCK=
LOG=

need nbdkit
[ -f "$PLUGIN" ] || skip "$PLUGIN is not built"
SAN_RT=$(ldd "$PLUGIN" 2>/dev/null | grep -oE '/[^ ]*lib(asan|tsan)\.so[^ ]*' | head -1)

# The environment nbdkit runs in: "${NBDKIT_ENV[@]}" nbdkit ARGS...
NBDKIT_ENV=(env)
[ -n "$SAN_RT" ] && NBDKIT_ENV+=(LD_PRELOAD="$SAN_RT" ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
	TSAN_OPTIONS="${TSAN_OPTIONS:-}:suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/tsan.supp")

# nbd_start NAME [KEY=VALUE...]: serves the plugin on $T/NAME.sock; sets
# SOCK, LOG and NBD_PID (nbdkit's own pid: the subshell execs it, so the
# driver is NBD_PID's child).  Fails if the socket does not appear in 10 s.
# With NBD_SETSID set, nbdkit leads a session and process group of its own
# (NBD_PID is its id), as a server started from a terminal leads the
# foreground group.
nbd_start() {
	local name=$1 i
	shift
	SOCK=$T/$name.sock
	LOG=$T/$name.log
	FAIL_LOG=$LOG
	exec ${NBD_SETSID:+setsid} "${NBDKIT_ENV[@]}" nbdkit -f --exit-with-parent -U "$SOCK" "$PLUGIN" "$@" \
		>"$LOG" 2>&1 &
	NBD_PID=$!
	for i in $(seq 200); do
		[ -S "$SOCK" ] && return 0
		kill -0 "$NBD_PID" 2>/dev/null || break
		sleep 0.05
	done
	fail "nbdkit $* did not start"
}

# uri [EXPORT]: the NBD URI of the running server.
uri() {
	echo "nbd+unix:///${1:-}?socket=$SOCK"
}

# True when a sanitizer-preloaded nbdkit is stuck in exit() after cleanup
# (see the head of this file): no driver child and only the main thread
# (plus TSan's background thread) left.
stuck_in_exit() {
	[ -n "$SAN_RT" ] && ! pgrep -P "$NBD_PID" >/dev/null &&
		[ "$(find "/proc/$NBD_PID/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)" -le 2 ]
}

# nbd_stop [SIGNAL [WHO]]: SIGTERM (or SIGNAL) to nbdkit (or WHO, such as
# its process group, -$NBD_PID); nbdkit must close the controller and exit
# within 10 s.  Prints nbdkit's log.
nbd_stop() {
	local i
	kill "-${1:-TERM}" -- "${2:-$NBD_PID}" 2>/dev/null
	for i in $(seq 100); do
		# gone, or a zombie waiting for this shell to reap it
		if [ ! -d "/proc/$NBD_PID" ] || [ "$(cut -d' ' -f3 "/proc/$NBD_PID/stat" 2>/dev/null)" = Z ]; then
			break
		fi
		if [ "$i" -gt 5 ] && stuck_in_exit; then
			echo "note: nbdkit stuck in exit() after cleanup under $SAN_RT (libp11-kit); killed"
			kill -KILL "$NBD_PID"
			break
		fi
		[ "$i" -eq 100 ] && { kill -KILL "$NBD_PID"; fail "nbdkit did not exit within 10 s of SIG${1:-TERM}"; }
		sleep 0.1
	done
	wait "$NBD_PID" 2>/dev/null
	sed 's/^/  | /' "$LOG"
	NBD_PID=
}

cleanup() {
	[ -n "$NBD_PID" ] && kill -KILL "$NBD_PID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
