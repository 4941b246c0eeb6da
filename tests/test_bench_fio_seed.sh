#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/fio-seed.sh end to end, briefly: the hand-off yardstick serves the
# data written to it (fio crc32c verify), and one short round of the
# headline job prints a row with IOPS for every backend (nbdkit memory, the
# yardstick, hbakit bundled and per-task).  Figures from one second mean
# nothing and are not checked; that the bench runs, and measures each backend
# on correct data, is.  Plain build only: the bench loads plugins into an
# uninstrumented nbdkit, and sanitized figures would be no use.
. "$(dirname "$0")/lib/common.sh"
BUILD=${BUILD:-build}
case $BUILD in *san-*) skip "the bench runs on the plain build only" ;; esac
need nbdkit fio
fio --enghelp=nbd 2>/dev/null | grep -q uri || skip "fio has no nbd engine"
HANDOFF=$BUILD/nbdkit-handoff-plugin.so
[ -f "$HANDOFF" ] || fail "$HANDOFF is not built"

T=$(mktemp -d /tmp/hbk-bench-test.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT

nbdkit -f --exit-with-parent -U "$T/h.sock" "$HANDOFF" size=16M >"$T/nbdkit.log" 2>&1 &
PID=$!
for _ in $(seq 200); do [ -S "$T/h.sock" ] && break; sleep 0.05; done
[ -S "$T/h.sock" ] || fail "the hand-off plugin did not start: $(cat "$T/nbdkit.log")"
common=(--ioengine=nbd --uri="nbd+unix:///?socket=$T/h.sock" --rw=randwrite --bs=4k
	--iodepth=16 --numjobs=2 --size=6M --offset_increment=6M --verify=crc32c
	--verify_state_save=0 --group_reporting)
out=$(timeout 60 fio --name=write "${common[@]}" --do_verify=0) || fail "fio write: $out"
out=$(timeout 60 fio --name=verify "${common[@]}" --verify_only=1) || fail "fio verify: $out"
echo "$out" | grep -q "err= 0" || fail "verify reported errors: $out"
kill "$PID"
wait "$PID" 2>/dev/null
PID=

out=$(timeout 120 bench/fio-seed.sh --rounds 1 --runtime 1 --size 16M --jobs randrw70 2>&1) ||
	fail "fio-seed.sh exit $?: $out"
echo "$out"
for b in memory handoff bundled per-task; do
	echo "$out" | grep -qE "^randrw70 +$b +[1-9][0-9]* " || fail "no IOPS for $b"
done
echo "$out" | grep -q ERR && fail "a backend failed"
echo "fio-seed ok"
