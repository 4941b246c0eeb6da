#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Ctrl-C on a server started from a terminal: SIGINT goes to the whole
# foreground process group.  nbdkit serves a RAID 1 with a write-back cache
# from a group of its own (as a terminal's foreground job does); a client
# writes 8 MiB, which the cache acknowledges, and the group gets SIGINT.
# The driver is not in that group, so nbdkit closes the controller and the
# driver destages its cache before it exits: a second server reads back
# every byte, and the array was shut down cleanly (no resync).
. "$(dirname "$0")/../nbdkit/testlib.sh"
need nbdcopy
[ -x "$BUILD/drivers/hbk-raid" ] || skip "$BUILD/drivers/hbk-raid is not built"

ARRAY="array=r1:level=1,size=16m,cache=32m,disk=file:$T/a.img,disk=file:$T/b.img"
head -c 8M /dev/urandom >"$T/data"

NBD_SETSID=1 nbd_start sigint "driver=$BUILD/drivers/hbk-raid" "driver-arg=$ARRAY"
nbdcopy "$T/data" "$(uri t0l0)" || fail "nbdcopy to the array"
nbd_stop INT "-$NBD_PID"
grep -q "went away\|died" "$LOG" && fail "the driver was hit by the terminal's SIGINT"

nbd_start readback "driver=$BUILD/drivers/hbk-raid" "driver-arg=$ARRAY"
nbdcopy "$(uri t0l0)" "$T/back" || fail "nbdcopy from the array"
nbd_stop
grep -q "not shut down cleanly" "$LOG" && fail "the array was not shut down cleanly"
cmp -n $((8 << 20)) "$T/data" "$T/back" || fail "acknowledged writes were lost to Ctrl-C"
echo "nbdkit ctrl-c ok"
