#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/raid0-vs-fio.sh end to end, briefly, and the disk probe it starts
# with (build/disk-batch-probe).  The probe must print a row for every batch
# size from 1 to 64, a verdict for each gap and a row for each resubmission
# delay (its IOPS, and but for no delay their share of no delay's), and
# refuse a bad command line
# (status 2) and a file it cannot open (status 1, naming the reason).  One short
# round of the script must print fio's IOPS, and hbakit's IOPS, CPU per I/O
# and ratio to fio, as configured and with polled disks.
# Figures from one second mean nothing and are not checked; that the bench
# runs and measures both sides is.  The probe runs in every build; the
# script on the plain build only, as the other benches.
. "$(dirname "$0")/lib/common.sh"
PROBE=$BUILD/disk-batch-probe
[ -x "$PROBE" ] || fail "$PROBE is not built"

T=$(mktemp -d /var/tmp/hbk-bench-raid0-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
dd if=/dev/zero of="$T/d.img" bs=1M count=4 oflag=direct status=none 2>/dev/null ||
	skip "/var/tmp does not take O_DIRECT writes"

out=$("$PROBE" --rounds 5 "$T/d.img" 2>&1) || fail "probe exit $?: $out"
echo "$out"
for n in 1 2 4 8 16 32 64; do
	echo "$out" | grep -qE "^ +$n +[0-9]+ +[0-9]+ +[1-9][0-9]*$" || fail "no row for a batch of $n"
done
[ "$(echo "$out" | grep -cE '  (together|apart)')" -eq 4 ] || fail "not four gap verdicts"
echo "$out" | grep -qE "^ +0 +[1-9][0-9]*$" || fail "no row for reads sent again at once"
for d in 50 100 150 200 300; do
	echo "$out" | grep -qE "^ +$d +[1-9][0-9]* +[0-9]+\.[0-9]{2}$" || fail "no row for a delay of $d us"
done

"$PROBE" --rounds 0 "$T/d.img" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || fail "--rounds 0 gave status $rc, not 2"
"$PROBE" >/dev/null 2>&1; rc=$?
[ "$rc" -eq 2 ] || fail "no file gave status $rc, not 2"
err=$(LC_ALL=C "$PROBE" --rounds 5 "$T/missing.img" 2>&1); rc=$?
[ "$rc" -eq 1 ] || fail "a missing file gave status $rc, not 1"
echo "$err" | grep -q "missing.img: No such file" || fail "no reason for the missing file: $err"

case $BUILD in *san-*) echo "probe ok; the bench runs on the plain build only"; exit 0 ;; esac
need fio python3
out=$(timeout 120 bench/raid0-vs-fio.sh --rounds 1 --runtime 1 --size 16M --dir "$T" 2>&1) ||
	fail "raid0-vs-fio.sh exit $?: $out"
echo "$out"
echo "$out" | grep -qE "^ +32 +[0-9]+ +[0-9]+ " || fail "the script did not print the probe"
num='[1-9][0-9]* +[0-9]+\.[0-9] +[0-9]+\.[0-9]{2}'   # IOPS, CPU us per I/O, ratio
echo "$out" | grep -qE "^1 +[1-9][0-9]* +$num +$num$" ||
	fail "no round with both hbakit runs and their ratios"
echo "raid0 bench ok"
