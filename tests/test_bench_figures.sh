#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The figures `hbakit bench` prints, on fixed workloads (--size, so counts
# not timings): a failed I/O counts as an error, never toward IOPS, the
# read/write split or the latency percentiles; the JSON output parses
# (python3) whatever the run measured.
. "$(dirname "$0")/lib/common.sh"
need python3
H=$BUILD/hbakit
RAM=(--driver "$BUILD/drivers/hbk-ram" --driver-arg size=8M)

# check JSON PYTHON_EXPR: the expression, over the parsed output d, holds.
check() {
	python3 -c 'import json, sys
d = json.loads(sys.argv[1])
r = d["results"]
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" || fail "not $2: $1"
}

# 16 writes to a write-protected LUN, each rejected: 16 errors, no IOPS.
out=$($H bench "${RAM[@]}" --driver-arg ro=1 --mode per-task --rw write --bs 4k --iodepth 4 \
	--size 64k --output-format json 2>/dev/null); rc=$?
[ $rc -eq 1 ] || fail "a run with I/O errors gave status $rc, not 1: $out"
check "$out" 'r[0]["errors"] == 16 and r[0]["ios"] == 0 and r[0]["iops"] == 0 and r[0]["write_iops"] == 0'
check "$out" 'r[0]["lat_us"] == {"p50": 0, "p99": 0, "p99.9": 0}'

# Mixed, one job at a time: the reads succeed, the writes fail; the reads
# and the errors add up to the 64 I/Os, and IOPS are the reads'.
out=$($H bench "${RAM[@]}" --driver-arg ro=1 --mode bundled --rw randrw --rwmixread 50 \
	--ioengine psync --size 256k --output-format json 2>/dev/null)
check "$out" 'r[0]["ios"] + r[0]["errors"] == 64 and r[0]["ios"] > 0 and r[0]["errors"] > 0'
check "$out" 'r[0]["write_iops"] == 0 and r[0]["read_iops"] == r[0]["iops"] > 0'
# Both paths, neither completing an I/O: no ratio to give, and the JSON
# still parses (null, not nan); the table says "-".
out=$($H bench "${RAM[@]}" --driver-arg ro=1 --rw write --bs 4k --iodepth 4 --size 64k \
	--output-format json 2>/dev/null)
check "$out" 'd["bundled_over_per_task"] is None and len(r) == 2'
out=$($H bench "${RAM[@]}" --driver-arg ro=1 --rw write --bs 4k --iodepth 4 --size 64k 2>/dev/null)
echo "$out" | grep -q "^bundled / per-task IOPS: -$" || fail "no ratio without I/O: $out"
# Sequential jobs get a region of the span each; with more jobs than the
# span has I/Os (a 2 MiB LUN, 4 jobs of 1 MiB I/Os) they share its I/Os
# and none goes past the end.
out=$($H bench --driver "$BUILD/drivers/hbk-ram" --driver-arg size=2M --mode per-task --rw read \
	--bs 1M --numjobs 4 --iodepth 1 --size 2M --output-format json 2>&1) || fail "exit $?: $out"
check "$out" 'r[0]["errors"] == 0 and r[0]["ios"] == 8'
# --warmup reads the span's whole I/Os, whatever bytes --span gives.
out=$($H bench "${RAM[@]}" --mode bundled --rw randread --span 1048676 --warmup --size 64k \
	--iodepth 4 --output-format json 2>&1) || fail "a span of 1 MiB + 100 B with --warmup: $out"
check "$out" 'r[0]["errors"] == 0 and r[0]["ios"] == 16'
# A run that fails ends the JSON list with its error; the JSON stays whole:
# a LUN that does not exist, and the seed suite on a 512 KiB LUN, whose
# 1 MiB writes do not fit after three workloads that ran.
out=$($H bench "${RAM[@]}" --lun 3 --size 64k --output-format json 2>/dev/null) &&
	fail "a bench of a missing LUN passed"
check "$out" 'r == [{"mode": "per-task", "error": "No such device"}]'
out=$($H bench --driver "$BUILD/drivers/hbk-ram" --driver-arg size=512k --suite seed --size 64k \
	--output-format json 2>/dev/null) && fail "a suite with a failed workload passed"
check "$out" 'r[-1] == {"workload": "1m write", "error": "Invalid argument"} and r[-2]["workload"] == "4k randwrite"'
# A driver attached to (--attach) is no child of the bench: its CPU is not
# known, and CPU per I/O says so (null) rather than give the host's as all.
A=$(mktemp -d)
trap 'rm -rf "$A"' EXIT
"$BUILD/drivers/hbk-ram" --listen "$A/ram.sock" size=8M 2>"$A/driver.log" &
drv=$!
for _ in $(seq 200); do [ -S "$A/ram.sock" ] && break; sleep 0.05; done
out=$($H bench --attach "$A/ram.sock" --mode bundled --size 64k --output-format json 2>&1) ||
	fail "bench --attach: $out $(cat "$A/driver.log")"
wait "$drv" || fail "the attached driver exited $?"
check "$out" 'r[0]["ios"] == 16 and r[0]["driver_cpu_s"] is None and r[0]["cpu_us_per_io"] is None'
out=$($H bench "${RAM[@]}" --mode bundled --size 64k --output-format json 2>&1) || fail "exit $?: $out"
check "$out" 'r[0]["driver_cpu_s"] >= 0 and r[0]["cpu_us_per_io"] >= 0'
echo "bench figures ok"
