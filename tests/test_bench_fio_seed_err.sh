#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/fio-seed.sh when every fio run fails: a stand-in fio reports an
# error (terse field 5) for each job, so no round gives a figure; the
# table must say ERR for IOPS and MiB/s, not 0, and the script exit 1.  The servers are real
# (nbdkit with each backend), one round of one job.  Plain build only, as
# the other benches.
. "$(dirname "$0")/lib/common.sh"
case $BUILD in *san-*) skip "the bench runs on the plain build only" ;; esac
need nbdkit
for p in nbdkit-hbakit-plugin.so nbdkit-handoff-plugin.so; do
	[ -f "$BUILD/$p" ] || fail "$BUILD/$p is not built"
done
S=$(mktemp -d /tmp/hbk-bench-seed.XXXXXX)
trap 'rm -rf "$S"' EXIT
cat >"$S/fio" <<'STUB'
#!/bin/sh
case "$1" in --enghelp=nbd) echo uri; exit 0 ;; esac
echo "3;fio-3.33;job;0;5;0;0;0;0"
exit 1
STUB
chmod +x "$S/fio"
out=$(PATH=$S:$PATH timeout 120 bench/fio-seed.sh --rounds 1 --runtime 1 --size 16M \
	--jobs randrw70 2>&1); rc=$?
echo "$out"
[ $rc -eq 1 ] || fail "failed runs gave status $rc, not 1"
echo "$out" | grep -q "some runs failed" || fail "the failed runs are not said"
for b in memory handoff bundled per-task; do
	echo "$out" | grep -qE "^randrw70 +$b +ERR +ERR +ERR " || fail "no ERR row for $b"
done
echo "$out" | grep -q "invalid number" && fail "printf was given ERR as a number"
echo "bench fio-seed errors ok"
