#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# What a flush acknowledged survives the driver's end, whichever connection
# sent it.  nbdkit serves a RAID 1 of two files behind a write-back cache;
# nbd-rounds writes rounds over 4 MiB on four connections at once (multi-conn),
# each round flushed on one of them, while the driver is killed (SIGKILL) or
# hangs (SIGSTOP, found by the call timeout).  Every request in flight must
# end with EIO (no hang, no other error), nbdkit must stay up and exit on
# SIGTERM, and a second server on the same files must read back, in every
# block, the last flushed round or a later one.
. "$(dirname "$0")/../nbdkit/testlib.sh"
ROUNDS=$BUILD/tests/nbd/nbd-rounds
[ -x "$BUILD/drivers/hbk-raid" ] || skip "$BUILD/drivers/hbk-raid is not built"
[ -x "$ROUNDS" ] || skip "$ROUNDS is not built"
BLOCKS=1024   # of 4 KiB

scenario() {   # scenario SIGNAL [KEY=VALUE...]
	local sig=$1 array drv c i
	shift
	array="array=r1:level=1,size=16m,cache=32m,disk=file:$T/$sig-a.img,disk=file:$T/$sig-b.img"
	nbd_start "$sig" "driver=$BUILD/drivers/hbk-raid" "driver-arg=$array" "$@"
	drv=$(pgrep -P "$NBD_PID")
	[ -n "$drv" ] || fail "no driver process under nbdkit $NBD_PID"
	"$ROUNDS" run "$(uri t0l0)" 4 "$BLOCKS" "$T/$sig.state" >"$T/$sig.out" 2>&1 &
	c=$!
	for i in $(seq 600); do   # three rounds flushed, then the driver goes
		[ "$(cut -d' ' -f1 "$T/$sig.state" 2>/dev/null)" -ge 2 ] 2>/dev/null && break
		kill -0 "$c" 2>/dev/null || fail "nbd-rounds ended early: $(cat "$T/$sig.out")"
		sleep 0.05
	done
	kill -"$sig" "$drv"
	timeout 30 tail --pid="$c" -f /dev/null || { kill -KILL "$c"; fail "requests hung after SIG$sig to the driver"; }
	wait "$c" || fail "nbd-rounds after SIG$sig to the driver: $(cat "$T/$sig.out")"
	cat "$T/$sig.out"
	kill -0 "$NBD_PID" 2>/dev/null || fail "nbdkit died with its driver (SIG$sig)"
	nbd_stop
	kill -KILL "$drv" 2>/dev/null   # a stopped driver the host did not end

	nbd_start "$sig-back" "driver=$BUILD/drivers/hbk-raid" "driver-arg=$array"
	"$ROUNDS" check "$(uri t0l0)" "$BLOCKS" "$T/$sig.state" || fail "flushed writes were lost to SIG$sig"
	nbd_stop
}

scenario KILL
scenario STOP call-timeout=500 task-timeout=1000
echo "nbdkit flush death ok"
