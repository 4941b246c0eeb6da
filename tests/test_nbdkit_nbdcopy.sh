#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# nbdcopy through nbdkit on hbakit: a 16 MiB file of random data with two
# holes is copied onto one LUN of a 2-target x 2-LUN controller and back,
# byte for byte; the holes become zeroed (deallocated) ranges, which the
# LUN's extents report, and the other LUNs stay untouched.  Also: the
# export list, the lunN alias, an unknown export, and bad keys refused.
. "$(dirname "$0")/../nbdkit/testlib.sh"
need nbdcopy nbdinfo

# Bad configuration is refused, with a message, before any driver starts.
# (Judged by the message: a sanitizer-preloaded nbdkit may hang in exit().
# Its exit is waited for 10 s, but once the message is there only 1 s more
# under a sanitizer: enough for a report at exit, not the 4 s hang's bound.)
refused() {
	local want=$1 out pid i seen=-1
	shift
	"${NBDKIT_ENV[@]}" nbdkit "$PLUGIN" "$@" --run true >"$T/refused.log" 2>&1 &
	pid=$!
	for ((i = 0; i < 200 && (seen < 0 || i - seen < 20); i++)); do
		alive "$pid" || break
		[ -n "$SAN_RT" ] && [ "$seen" -lt 0 ] && grep -q "$want" "$T/refused.log" && seen=$i
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	out=$(cat "$T/refused.log")
	echo "$out" | grep -q "$want" || fail "$* not refused with '$want': $out"
}
refused "mode takes bundled" mode=sideways
refused "driver /nonexistent" driver=/nonexistent
refused "driver-arg takes K=V" driver-arg=novalue
refused "not both" driver=/bin/true attach=/nonexistent

nbd_start copy driver-arg=targets=2 driver-arg=luns=2 driver-arg=size=16M
list=$(nbdinfo --list "$(uri)") || fail "nbdinfo --list exit $?"
echo "$list" | grep -E '^export=|description'
[ "$(echo "$list" | grep -cE '^export="t[01]l[01]"')" -eq 4 ] || fail "4 exports t0l0..t1l1 expected"
info=$(nbdinfo "$(uri t1l0)") || fail "nbdinfo t1l0 exit $?"
for cap in "can_multi_conn: true" "can_fua: true" "can_trim: true" "can_zero: true" \
	   "block_size_minimum: 512"; do
	echo "$info" | grep -q "$cap" || fail "t1l0 does not say $cap"
done

# 16 MiB: random data, a 2 MiB hole at 4 MiB and a 1 MiB hole at the end.
in=$T/in.img out=$T/out.img
head -c 16M /dev/urandom >"$in"
dd if=/dev/zero of="$in" bs=1M seek=4 count=2 conv=notrunc status=none
dd if=/dev/zero of="$in" bs=1M seek=15 count=1 conv=notrunc status=none
fallocate -d "$in" 2>/dev/null || true   # make the zeroes real holes where the fs can
timeout 60 nbdcopy "$in" "$(uri t1l0)" || fail "nbdcopy in exit $?"
timeout 60 nbdcopy "$(uri t1l0)" "$out" || fail "nbdcopy out exit $?"
cmp "$in" "$out" || fail "the copy differs from the source"
timeout 60 nbdcopy "$(uri lun2)" - | cmp - "$in" || fail "lun2 is not t1l0"
timeout 60 nbdcopy "$(uri t0l1)" - | cmp -n 16777216 - /dev/zero || fail "t0l1 was written"

if echo "$info" | grep -q "base:allocation"; then
	map=$(nbdinfo --map "$(uri t1l0)") || fail "nbdinfo --map exit $?"
	echo "$map"
	echo "$map" | grep -qE '^ *4194304 +2097152 +3 +hole,zero' || fail "the 2 MiB hole is not a hole"
fi
nbdinfo "$(uri t9l9)" >/dev/null 2>&1 && fail "unknown export t9l9 opened"
nbd_stop
echo "nbdkit nbdcopy ok"
