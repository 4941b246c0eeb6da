#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# iSCSI throughput of `hbakit serve iscsi` on the ram controller, bundled
# and per-task host path, next to Debian's tgt on the same machine (a LUN
# file in /dev/shm, so both serve from memory).  Three jobs through two
# initiators: libiscsi's iscsi-perf (4 KiB random reads, 32 in flight, for
# --runtime seconds) and `qemu-img bench` (4 KiB sequential reads, then
# writes, 32 in flight, --count requests, cache=none).  Each round starts
# every target fresh, prefills its LUN and runs every job on it; the targets
# take turns going first.  Prints one table of the medians over the rounds
# (IOPS, with MiB/s), every round's figure, and under it the command of
# each cell.
#
#   bench/iscsi-perf.sh [--rounds K] [--runtime S] [--count N] [--size SIZE] [--targets a,b,...]
#
# Defaults: 3 rounds, 4 s, 40000 requests, 256M LUNs, targets
# bundled,per-task,tgt (about 1.5 minutes).  --runtime is whole seconds, at
# least 2: iscsi-perf reports its average once a second, and a run stopped
# at the first report gives none.  BUILD names the build
# directory (default build).  tgt (Debian package tgt) is installed when
# missing and run as root; otherwise its column is left out with the
# reason.  Everything listens on 127.0.0.1 only.  The machine should be
# quiet: the figures are CPU bound.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/iscsi/lib.sh
ROUNDS=3 RUNTIME=4 COUNT=40000 SIZE=256M TARGETS=bundled,per-task,tgt

while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--runtime) RUNTIME=$2; shift 2 ;;
	--count) COUNT=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--targets) TARGETS=$2; shift 2 ;;
	*) echo "usage: $0 [--rounds K] [--runtime S] [--count N] [--size SIZE] [--targets a,b,...]" >&2; exit 2 ;;
	esac
done
[[ $RUNTIME =~ ^[0-9]+$ ]] && [ "$RUNTIME" -ge 2 ] || {
	echo "$0: --runtime takes whole seconds, at least 2 (iscsi-perf reports once a second), not '$RUNTIME'" >&2
	exit 2
}
for t in iscsi-perf qemu-img; do
	command -v $t >/dev/null || fail "$t is not installed (tools/deps.sh: libiscsi-bin, qemu-utils)"
done
qemu-img --help 2>/dev/null | grep -qw iscsi || fail "qemu-img has no iscsi driver (qemu-block-extra)"

IFS=, read -r -a want <<<"$TARGETS"
targets=()
for t in "${want[@]}"; do
	case $t in
	bundled|per-task)
		has_target ||
			fail "$HBAKIT serve iscsi is not built (make)"
		targets+=("$t") ;;
	tgt)
		if ! command -v tgtd >/dev/null && [ "$(id -u)" -eq 0 ]; then
			echo "iscsi-perf: installing tgt"
			DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tgt >/dev/null ||
				fail "apt-get install tgt failed"
		fi
		if ! command -v tgtd >/dev/null; then
			echo "note: tgt is not installed (Debian package tgt; run as root to install it): no tgt column"
		elif [ "$(id -u)" -ne 0 ]; then
			echo "note: tgtd needs root (its control socket is in /var/run/tgtd): no tgt column"
		else
			targets+=(tgt)
		fi ;;
	*) fail "unknown target $t (bundled, per-task, tgt)" ;;
	esac
done
[ ${#targets[@]} -gt 0 ] || fail "no target to measure"
JOBS=(randread-4k read-4k write-4k)
SHM=/dev/shm
[ -d "$SHM" ] && [ -w "$SHM" ] || SHM=$T
TGT_FILE=$(mktemp "$SHM/hbk-iscsi-perf.XXXXXX")
trap 'rm -f "$TGT_FILE"; cleanup' EXIT

# start TARGET: a fresh server; sets URL.
start() {
	case $1 in
	tgt)
		rm -f "$TGT_FILE"
		truncate -s "$SIZE" "$TGT_FILE"
		tgt_start perf "$TGT_FILE"
		URL=$(tgt_url) ;;
	*)
		iscsi_start "$1" --mode "$1" --driver-arg "size=$SIZE"
		URL=$(iscsi_url 0 0) ;;
	esac
}

stop() {
	case $1 in
	tgt) tgt_stop ;;
	*) iscsi_stop quiet >>"$T/server.log" ;;
	esac
}

# The command of JOB on URL, as one line (also what the table shows).
job_cmd() {
	case $1 in
	randread-4k) echo "timeout -s INT $RUNTIME iscsi-perf -m 32 -b 8 -r $URL" ;;
	read-4k)     echo "qemu-img bench -f raw -t none -d 32 -s 4k -c $COUNT $URL" ;;
	write-4k)    echo "qemu-img bench -f raw -t none -d 32 -s 4k -c $COUNT -w $URL" ;;
	esac
}

# run JOB TARGET: prints its IOPS, or ERR (and why into $T/errors).
run_job() {
	local cmd out s
	cmd=$(job_cmd "$1")
	case $1 in
	randread-4k)
		# It runs until interrupted and updates one line with \r.  A failed
		# read ends it with a line saying so (then ABORTED!, after averages
		# of the reads so far); ABORTED! alone also comes when the
		# interrupt meets its once-a-second report, and the average stands.
		out=$($cmd 2>&1 | tr '\r' '\n')
		if echo "$out" | grep -q 'failed'; then
			echo "$1 on $2: $(echo "$out" | grep -v '^ *$' | tail -2 | tr '\n' ' ')" >>"$T/errors"
			echo ERR
			return
		fi
		echo "$out" | grep -q 'iops average' ||
			echo "$1 on $2: $(echo "$out" | tail -2 | tr '\n' ' ')" >>"$T/errors"
		echo "$out" | grep -o 'iops average [0-9]*' | tail -1 | awk '{ print $3 } END { if (!NR) print "ERR" }' ;;
	*)
		# shellcheck disable=SC2086 # the command line is split on purpose
		out=$(timeout 120 $cmd 2>&1) || {
			echo "$1 on $2: exit $?: $(echo "$out" | tail -2 | tr '\n' ' ')" >>"$T/errors"
			echo ERR
			return
		}
		s=$(echo "$out" | sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p')
		awk -v c="$COUNT" -v s="${s:-0}" 'BEGIN { if (s > 0) printf "%.0f\n", c / s; else print "ERR" }' ;;
	esac
}

echo "iscsi-perf: ${#JOBS[@]} jobs x ${#targets[@]} targets x $ROUNDS rounds, $SIZE LUNs, $(nproc) CPUs," \
	"load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 0; r < ROUNDS; r++)); do
	for ((k = 0; k < ${#targets[@]}; k++)); do
		b=${targets[(r + k) % ${#targets[@]}]}
		start "$b"
		# Prefill, so reads touch written data on every target.
		timeout 120 qemu-img bench -f raw -t none -w -d 16 -s 64k -c $(( $(numfmt --from=iec "$SIZE") / 65536 )) \
			"$URL" >/dev/null 2>&1 || fail "$b: prefill failed"
		for j in "${JOBS[@]}"; do
			iops=$(run_job "$j" "$b")
			echo "$j $b $r $iops" >>"$T/results"
			echo "$j $b $(job_cmd "$j")" >>"$T/commands"
			printf '  round %d %-9s %-12s %8s IOPS\n' $((r + 1)) "$b" "$j" "$iops" >&2
		done
		stop "$b"
	done
done

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) printf "%.0f\n", (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); else print "ERR" }'; }
echo
printf '%-12s %-9s %9s %8s  %-24s %s\n' job target IOPS MiB/s "IOPS per round" command
n=0
for j in "${JOBS[@]}"; do
	for b in "${targets[@]}"; do
		iops=$(awk -v j="$j" -v b="$b" '$1 == j && $2 == b && $4 != "ERR" { print $4 }' "$T/results" | median)
		runs=$(awk -v j="$j" -v b="$b" '$1 == j && $2 == b { printf "%s%s", s, $4; s = "/" }' "$T/results")
		mib=$(awk -v i="$iops" 'BEGIN { if (i != "ERR") printf "%.1f", i * 4096 / 1048576; else print "-" }')
		n=$((n + 1))
		printf '%-12s %-9s %9s %8s  %-24s [%d]\n' "$j" "$b" "$iops" "$mib" "$runs" "$n"
		cmds[n]=$(awk -v j="$j" -v b="$b" '$1 == j && $2 == b { $1 = $2 = ""; sub(/^  /, ""); c = $0 } END { print c }' "$T/commands")
	done
done
echo
echo "commands (the last round's; ports differ between rounds):"
for ((i = 1; i <= n; i++)); do
	echo "  [$i] ${cmds[i]}"
done
if [ -s "$T/errors" ]; then
	echo
	echo "errors:"
	sed 's/^/  /' "$T/errors"
fi
