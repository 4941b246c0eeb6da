#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The seed's fio jobs through nbdkit, against an hbakit LUN on the bundled
# and on the per-task path, with nbdkit's own memory plugin as the baseline
# measured in the same run, and a yardstick beside it: "handoff"
# (bench/nbdkit-handoff-plugin.c), a memory disk whose requests one service
# thread carries out while nbdkit's worker sleeps.  That is the least any
# plugin completing I/O on another thread pays under nbdkit's synchronous
# plugin API, so its figure is the ceiling of such designs here, hbakit's
# included.  The jobs are the ones of the forum thread the
# project started from: 4 KiB random read/write 70/30 with 4 jobs at iodepth
# 32 (the headline), 4 KiB random read and random write, 16 KiB random
# read/write 70/30 (the page size the DTS engineer suggested), and 1 MiB
# sequential writes at iodepth 32.  Each round starts one nbdkit per
# backend (fresh, prefilled), runs every job on it and stops it; the
# backends take turns going first.  Prints one table: per job and backend
# the median IOPS and MiB/s over the rounds, every round's IOPS, and the
# ratios of the medians to nbdkit memory and to the hand-off yardstick.
# A run that fails shows as ERR, and the script then exits 1.
#
#   bench/fio-seed.sh [--rounds N] [--runtime S] [--size SIZE] [--jobs a,b,...]
#
# BUILD names the build directory (default build).  Servers listen on Unix
# sockets in a private directory only.  The machine should be quiet: every
# number here is CPU bound.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
PLUGIN=$BUILD/nbdkit-hbakit-plugin.so
HANDOFF=$BUILD/nbdkit-handoff-plugin.so
ROUNDS=3 RUNTIME=5 SIZE=256M
JOBS=randrw70,randread,randwrite,randrw70-16k,write-1m

while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--jobs) JOBS=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--runtime S] [--size SIZE] [--jobs a,b,...]" >&2; exit 2 ;;
	esac
done
for t in nbdkit fio; do
	command -v $t >/dev/null || { echo "$t is not installed (tools/deps.sh)" >&2; exit 1; }
done
fio --enghelp=nbd 2>/dev/null | grep -q uri || { echo "fio has no nbd engine" >&2; exit 1; }
for p in "$PLUGIN" "$HANDOFF"; do
	[ -f "$p" ] || { echo "$p is not built (make)" >&2; exit 1; }
done

# fio arguments of each job of the seed.
job_args() {
	case $1 in
	randrw70)     echo "--rw=randrw --rwmixread=70 --bs=4k --numjobs=4 --iodepth=32" ;;
	randread)     echo "--rw=randread --bs=4k --numjobs=4 --iodepth=32" ;;
	randwrite)    echo "--rw=randwrite --bs=4k --numjobs=4 --iodepth=32" ;;
	randrw70-16k) echo "--rw=randrw --rwmixread=70 --bs=16k --numjobs=4 --iodepth=32" ;;
	write-1m)     echo "--rw=write --bs=1M --numjobs=1 --iodepth=32" ;;
	*) echo "unknown job $1" >&2; exit 2 ;;
	esac
}

BACKENDS=(memory handoff bundled per-task)
server_args() {
	case $1 in
	memory) echo "memory size=$SIZE" ;;
	handoff) echo "$HANDOFF size=$SIZE" ;;
	*) echo "$PLUGIN mode=$1 driver-arg=size=$SIZE" ;;
	esac
}

T=$(mktemp -d /tmp/hbk-bench.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT

start() {   # start BACKEND: nbdkit on $T/s.sock
	rm -f "$T/s.sock"
	# shellcheck disable=SC2046
	nbdkit -f --exit-with-parent -U "$T/s.sock" $(server_args "$1") >"$T/nbdkit.log" 2>&1 &
	PID=$!
	for _ in $(seq 200); do
		[ -S "$T/s.sock" ] && return 0
		sleep 0.05
	done
	echo "nbdkit $1 did not start:" >&2
	cat "$T/nbdkit.log" >&2
	exit 1
}

stop() {
	kill "$PID"
	wait "$PID" 2>/dev/null
	PID=
}

# fio_run NAME ARGS...: prints "IOPS KiB/s", or "ERR ERR".
fio_run() {
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --uri="nbd+unix:///?socket=$T/s.sock" \
	    --group_reporting --output-format=terse --terse-version=3 "$@" 2>"$T/fio.err" |
		awk -F';' '/^3;/ { if ($5 != 0) print "ERR ERR"; else print $8 + $49, $7 + $48 }'
}

IFS=, read -r -a jobs <<<"$JOBS"
for j in "${jobs[@]}"; do job_args "$j" >/dev/null || exit 2; done
echo "fio-seed: ${#jobs[@]} jobs x ${#BACKENDS[@]} backends x $ROUNDS rounds, ${RUNTIME}s each," \
     "$SIZE per LUN, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 0; r < ROUNDS; r++)); do
	for ((k = 0; k < ${#BACKENDS[@]}; k++)); do
		b=${BACKENDS[(r + k) % ${#BACKENDS[@]}]}
		start "$b"
		# Prefill, so reads touch written data on every backend.
		fio_run prefill --rw=write --bs=1M --iodepth=8 --size="$SIZE" >/dev/null
		for j in "${jobs[@]}"; do
			# shellcheck disable=SC2046
			read -r iops kib < <(fio_run "$j" $(job_args "$j") --size="$SIZE" \
				--time_based --runtime="$RUNTIME" --norandommap --randrepeat=0)
			echo "$j $b $r ${iops:-ERR} ${kib:-ERR}" >>"$T/results"
			printf '  round %d %-8s %-13s %8s IOPS\n' $((r + 1)) "$b" "$j" "${iops:-ERR}" >&2
		done
		stop
	done
done

# The table: medians over the rounds.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); else print "ERR" }'; }
echo
printf '%-13s %-9s %10s %9s  %-26s %9s %s\n' job backend IOPS MiB/s "IOPS per round" "vs memory" "vs handoff"
# num VALUE FORMAT: VALUE in FORMAT, or ERR when no round gave one.
num() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "ERR") print "ERR"; else printf f, v }'; }
# pct A B: A as a percentage of B, or "-".
pct() { awk -v a="$1" -v m="$2" 'BEGIN { if (m > 0 && a != "ERR") printf "%.0f%%", 100 * a / m; else print "-" }'; }
for j in "${jobs[@]}"; do
	base=$(awk -v j="$j" '$1 == j && $2 == "memory" && $4 != "ERR" { print $4 }' "$T/results" | median)
	yard=$(awk -v j="$j" '$1 == j && $2 == "handoff" && $4 != "ERR" { print $4 }' "$T/results" | median)
	for b in "${BACKENDS[@]}"; do
		iops=$(awk -v j="$j" -v b="$b" '$1 == j && $2 == b && $4 != "ERR" { print $4 }' "$T/results" | median)
		mib=$(awk -v j="$j" -v b="$b" '$1 == j && $2 == b && $5 != "ERR" { print $5 / 1024 }' "$T/results" | median)
		runs=$(awk -v j="$j" -v b="$b" '$1 == j && $2 == b { printf "%s%s", s, $4; s = "/" }' "$T/results")
		printf '%-13s %-9s %10s %9s  %-26s %9s %s\n' "$j" "$b" "$(num "$iops" %.0f)" "$(num "$mib" %.1f)" "$runs" \
			"$(pct "$iops" "$base")" "$(pct "$iops" "$yard")"
	done
done
if grep -q ' ERR' "$T/results"; then
	echo "fio-seed: some runs failed (ERR above)" >&2
	exit 1
fi
