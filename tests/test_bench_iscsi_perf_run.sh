#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/iscsi-perf.sh end to end, briefly: a --runtime under the 2 s that
# iscsi-perf needs to report an average is refused as a usage error, and
# one short round on the bundled path prints IOPS for every job
# (iscsi-perf random reads, qemu-img bench reads and writes).  Figures from
# so short a run mean nothing and are not checked; that the bench runs is.
# Plain build only, without tgt (its column needs root and the package).
. "$(dirname "$0")/iscsi/lib.sh"
case $BUILD in *san-*) skip "the bench runs on the plain build only" ;; esac
need iscsi-perf qemu-img
need_target
qemu-img --help 2>/dev/null | grep -qw iscsi || skip "qemu-img has no iscsi driver (qemu-block-extra)"

out=$(timeout 60 bench/iscsi-perf.sh --runtime 1 --targets bundled 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q -- "--runtime" ||
	fail "--runtime 1: status $rc (iscsi-perf reports once a second, so 1 s gives no figure): $out"

out=$(timeout 120 bench/iscsi-perf.sh --rounds 1 --runtime 3 --count 500 --size 16M \
	--targets bundled 2>&1) || fail "iscsi-perf.sh exit $?: $out"
echo "$out"
for j in randread-4k read-4k write-4k; do
	echo "$out" | grep -qE "^$j +bundled +[1-9][0-9]* " || fail "no IOPS for $j"
done
echo "$out" | grep -q ERR && fail "a job failed"
echo "iscsi-perf ok"
