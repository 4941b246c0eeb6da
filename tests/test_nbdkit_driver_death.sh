#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The driver dies under load: while fio runs 4 connections x 16 requests,
# the driver process (nbdkit's child) is killed with SIGKILL.  fio must end
# promptly with I/O errors (EIO, not a hang), nbdkit must stay up and refuse
# new connections with a clear message, and still exit cleanly on SIGTERM.
. "$(dirname "$0")/../nbdkit/testlib.sh"
need fio

nbd_start death driver-arg=size=32M
drv=$(pgrep -P "$NBD_PID")
[ -n "$drv" ] || fail "no driver process under nbdkit $NBD_PID"
fio --name=doomed --ioengine=nbd --uri="$(uri)" --thread --rw=randrw --bs=4k --iodepth=16 \
	--numjobs=4 --size=32M --time_based --runtime=30 --group_reporting >"$T/fio.out" 2>&1 &
f=$!
for _ in $(seq 200); do   # all four connected (slow under sanitizers), then some I/O
	[ "$(grep -c 'connected to NBD server' "$T/fio.out")" -eq 4 ] && break
	sleep 0.05
done
sleep 0.5
kill -0 "$f" 2>/dev/null || fail "fio ended early: $(cat "$T/fio.out")"
kill -KILL "$drv"
timeout 15 tail --pid="$f" -f /dev/null || { kill -KILL "$f"; fail "fio hung after the driver died"; }
wait "$f" && fail "fio succeeded although its device died"
grep -E "err=|error" "$T/fio.out" | head -5
grep -qE "err= *5|Input/output error" "$T/fio.out" || fail "fio did not see EIO: $(cat "$T/fio.out")"
kill -0 "$NBD_PID" 2>/dev/null || fail "nbdkit died with its driver"

out=$(timeout 10 nbdinfo "$(uri)" 2>&1) && fail "a new connection opened on a dead controller"
echo "$out" | tail -2
kill -0 "$NBD_PID" 2>/dev/null || fail "nbdkit died on a connection after the driver died"
grep -q "went away\|died" "$LOG" || fail "nbdkit's log does not say the driver died"
nbd_stop
echo "nbdkit driver death ok"
