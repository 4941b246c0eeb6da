#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/iscsi-perf.sh when iscsi-perf fails: a stand-in iscsi-perf prints
# a running average and then fails a read (ABORTED!, status 1), as
# libiscsi's does; the script must give ERR for that cell and name the
# error, not the average of the reads before it.  One short round on the
# bundled target (qemu-img's jobs run for real).  Plain build only, as the
# other benches.
. "$(dirname "$0")/lib/common.sh"
case $BUILD in *san-*) skip "the bench runs on the plain build only" ;; esac
need qemu-img
qemu-img --help 2>/dev/null | grep -qw iscsi || skip "qemu-img has no iscsi driver (qemu-block-extra)"
[ -x "$BUILD/hbakit" ] || fail "$BUILD/hbakit is not built"
S=$(mktemp -d /tmp/hbk-bench-iscsi.XXXXXX)
trap 'rm -rf "$S"' EXIT
cat >"$S/iscsi-perf" <<'STUB'
#!/bin/sh
printf 'iscsi-perf version 0.1\n\n'
printf '\r00:00:01 - lba 5, iops current 5000 (19 MB/s), iops average 5000 (19 MB/s), in_flight 32, busy 0'
echo "Read16 failed with SCSI_STATUS_CHECK_CONDITION" >&2
printf '\nABORTED!\n'
exit 1
STUB
chmod +x "$S/iscsi-perf"
out=$(PATH=$S:$PATH timeout 120 bench/iscsi-perf.sh --targets bundled --rounds 1 --runtime 2 \
	--count 500 --size 4M 2>&1) || fail "iscsi-perf.sh exit $?: $out"
echo "$out"
echo "$out" | grep -qE '^randread-4k +bundled +ERR ' || fail "an aborted iscsi-perf gave a figure"
echo "$out" | grep -q "randread-4k on bundled: .*ABORTED" || fail "the error is not named"
echo "$out" | grep -qE '^read-4k +bundled +[1-9][0-9]* ' || fail "qemu-img's read job gave no figure"
echo "bench iscsi-perf ok"
