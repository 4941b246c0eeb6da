#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# File-backed RAID 0 through the whole stack against fio on the same files:
# two member files on the local disk (/var/tmp by default), an hbakit RAID 0
# over them (64 KiB chunks) served by the emulated RAID card's driver
# (build/drivers/hbk-raid, array=), and 4 KiB random reads at iodepth 32 on
# the bundled path (`hbakit bench`), next to fio's io_uring engine reading
# the two files directly (direct=1, the same iodepth, one job each).  Both
# use O_DIRECT, so the page cache serves neither.  hbakit runs twice a round:
# as configured by default, and with its member disks polled (spec key
# poll=10: a kernel thread takes the card's disk I/O off the rings, so no
# thread is woken to submit, at the cost of a CPU while I/O flows); the
# CPU each spends per I/O (host and driver processes, the poller included)
# is printed beside it.  Each round runs all three, fio first on odd rounds
# and last on even ones; the script prints every round and the medians, and
# the ratios hbakit / fio (the target: at least 0.80).  First it prints what the disk under the files does
# with a batch of reads (build/disk-batch-probe): whether the first of a batch
# comes back before the last, whether a batch sent while another is in the
# disk comes back with it, and what 32 reads kept in flight get when each is
# sent again a fixed delay after it came back.  A disk that answers a group
# of reads as a whole sits idle from then until the next group arrives, which
# is where a stack of several threads loses to fio's one: the delay table
# gives the round trip (completion to next submission) a stack may take for
# a given share of what no delay gets.
#
#   bench/raid0-vs-fio.sh [--rounds N] [--runtime S] [--size SIZE] [--dir DIR]
#                         [--driver-arg NAME=VALUE]...
#
# --driver-arg passes an option to the card's driver (drivers/raid/hba.c:
# coalesce-count=, coalesce-us=, coalesce-idle=, fw-threads=, ...).  SIZE is
# per member file (default 512M; the files are written with zeros first so
# every block is allocated and read from the disk).  BUILD names
# the build directory (default build).  The figures depend on the machine's
# disk and on anything else running: on a shared machine they are noisy, so
# the script prints the load average before and after.
set -u
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
ROUNDS=1 RUNTIME=10 SIZE=512M DIR=/var/tmp
DARGS=()

while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--driver-arg) DARGS+=(--driver-arg "$2"); shift 2 ;;
	*) echo "usage: $0 [--rounds N] [--runtime S] [--size SIZE] [--dir DIR] [--driver-arg NAME=VALUE]..." >&2
	   exit 2 ;;
	esac
done
for t in fio python3; do
	command -v $t >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done
for b in "$BUILD/hbakit" "$BUILD/drivers/hbk-raid" "$BUILD/disk-batch-probe"; do
	[ -x "$b" ] || { echo "$b is not built (make)" >&2; exit 1; }
done

WORK=$(mktemp -d "$DIR/hbk-raid0-XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
A=$WORK/m0.img B=$WORK/m1.img
MIB=$(numfmt --from=iec "$SIZE") || exit 2
MIB=$((MIB / 1048576))
for f in "$A" "$B"; do
	dd if=/dev/zero of="$f" bs=1M count="$MIB" oflag=direct status=none || exit 1
done
SPEC="level=0,chunk=64k,disk=file:$A,disk=file:$B"
"$BUILD/hbakit" raid create "$SPEC" >/dev/null || exit 1

# fio's IOPS (reads over the run, not its per-second samples' mean), or
# nothing if it reported an error
fio_iops() {
	fio --name=raid0-members --filename="$A:$B" --ioengine=io_uring --direct=1 \
	    --rw=randread --bs=4k --iodepth=32 --numjobs=1 --time_based --runtime="$RUNTIME" \
	    --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; j["error"] or print(round(j["read"]["iops"]))'
}

# hbakit [EXTRA_SPEC_KEYS]: "IOPS CPU_US_PER_IO", or nothing if I/O failed
hbakit_iops() {
	"$BUILD/hbakit" bench --driver "$BUILD/drivers/hbk-raid" --driver-arg "array=r0:$SPEC$1" "${DARGS[@]}" \
	    --mode bundled --rw randread --bs 4k --iodepth 32 --numjobs 1 --runtime "$RUNTIME" \
	    --output-format json 2>/dev/null |
		python3 -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; r["errors"] or print(round(r["iops"]), "%.1f" % r["cpu_us_per_io"])'
}

median() {
	printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "The disk under $DIR, as the two files see it:"
"$BUILD/disk-batch-probe" --rounds 100 "$A" "$B" || exit 1
echo
echo "RAID 0 of 2 x $SIZE files in $DIR, 4 KiB randread, iodepth 32, ${RUNTIME} s per run (load $(load))"
ratio() { awk -v h="$1" -v f="$2" 'BEGIN { printf "%.2f", h / f }'; }
FMT='%-6s %11s %14s %7s %6s %14s %7s %6s\n'
printf "$FMT" "" "" "hbakit bundled" "" "" "hbakit poll=10" "" ""
printf "$FMT" round "fio IOPS" IOPS "us/IO" ratio IOPS "us/IO" ratio
F=() H=() P=() R=() Q=()
for ((r = 1; r <= ROUNDS; r++)); do
	((r % 2)) && f=$(fio_iops)
	read -r h hc < <(hbakit_iops "")
	read -r p pc < <(hbakit_iops ",poll=10")
	((r % 2)) || f=$(fio_iops)
	[ -n "$f" ] && [ -n "${h:-}" ] && [ -n "${p:-}" ] && [ "$f" -gt 0 ] ||
		{ echo "round $r failed (fio '$f', hbakit '${h:-}', polled '${p:-}')" >&2; exit 1; }
	F+=("$f") H+=("$h") P+=("$p") R+=("$(ratio "$h" "$f")") Q+=("$(ratio "$p" "$f")")
	printf "$FMT" "$r" "$f" "$h" "$hc" "${R[-1]}" "$p" "$pc" "${Q[-1]}"
done
if ((ROUNDS > 1)); then
	printf "$FMT" median "$(median "${F[@]}")" "$(median "${H[@]}")" "" "$(median "${R[@]}")" \
		"$(median "${P[@]}")" "" "$(median "${Q[@]}")"
fi
echo "load average after: $(load)"
