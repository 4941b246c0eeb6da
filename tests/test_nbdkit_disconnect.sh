#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Clients that vanish mid-I/O: fio (4 jobs on 4 connections, 64 requests in
# flight; --thread, so SIGKILL takes every job down) and nbdcopy (reading
# into a pipe nobody drains) are killed with SIGKILL while their I/O is
# outstanding, and a fio is stopped with SIGINT.  nbdkit must keep serving
# (a verify run after them passes), and then exit promptly on SIGTERM with
# nothing left hanging.
#
# nbdkit 1.32 (Debian 12) itself can abort here: when one worker closes the
# dead client's socket while another waits to send its reply, it fails
# "raw_send_socket: Assertion `sock >= 0'" (later nbdkit returns EBADF
# instead).  The plugin narrows that window (docs/nbdkit.md); when nbdkit
# still hits it, the run is repeated with the abort noted, and a third
# abort skips the test naming the nbdkit bug.
. "$(dirname "$0")/../nbdkit/testlib.sh"
need fio nbdcopy

NBDKIT_BUG='raw_send_socket: Assertion `sock >= 0'"'"' failed'

# nbdkit_died WHAT: fails, or returns 2 when nbdkit died of its own bug.
nbdkit_died() {
	if grep -qF "$NBDKIT_BUG" "$LOG"; then
		echo "note: nbdkit aborted on its 1.32 reply/close race ($1)"
		return 2
	fi
	fail "nbdkit died $1"
}

scenario() {
	nbd_start "gone$1" driver-arg=size=32M
	local load=(--ioengine=nbd --uri="$(uri)" --thread --rw=randrw --bs=4k --iodepth=16
		    --numjobs=4 --size=32M --time_based --runtime=30 --group_reporting)
	local sig f c out
	for sig in KILL INT; do
		fio --name="killed-$sig" "${load[@]}" >/dev/null 2>&1 &
		f=$!
		sleep 0.7
		kill -"$sig" "$f"
		timeout 15 tail --pid="$f" -f /dev/null || fail "fio did not end after SIG$sig"
		wait "$f" 2>/dev/null
		sleep 0.1
		kill -0 "$NBD_PID" 2>/dev/null || { nbdkit_died "when fio left (SIG$sig)"; return; }
	done
	rm -f "$T/pipe"
	mkfifo "$T/pipe"
	nbdcopy --requests=64 "$(uri)" - >"$T/pipe" &
	c=$!
	exec 3<"$T/pipe"   # opened, never read: nbdcopy stalls with reads in flight
	sleep 0.5
	kill -0 "$c" 2>/dev/null || fail "nbdcopy ended before it could be killed"
	kill -KILL "$c"
	wait "$c" 2>/dev/null
	exec 3<&-
	sleep 0.1
	kill -0 "$NBD_PID" 2>/dev/null || { nbdkit_died "when nbdcopy left"; return; }

	out=$(timeout 60 fio --name=after --ioengine=nbd --uri="$(uri)" --rw=randwrite --bs=4k \
		--iodepth=32 --size=8M --verify=crc32c --verify_state_save=0 2>&1) || fail "fio after the disconnects: $out"
	echo "$out" | grep -E "err="
	echo "$out" | grep -q "err= 0" || fail "verify after the disconnects failed: $out"
	nbd_stop
}

for attempt in 1 2 3; do
	scenario "$attempt"
	[ $? -eq 2 ] || break
	wait "$NBD_PID" 2>/dev/null
	NBD_PID=
	[ "$attempt" -eq 3 ] && skip "nbdkit $(nbdkit --version | cut -d' ' -f2) aborted 3 times on its own" \
		"reply/close race (assertion in raw_send_socket; fixed in later nbdkit)"
done
echo "nbdkit disconnect ok"
