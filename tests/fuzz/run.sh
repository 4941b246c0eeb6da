#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Runs the libFuzzer harnesses of FUZZ_BUILD (`make fuzz`):
#   tests/fuzz/run.sh FUZZ_BUILD SECONDS [TARGET...]
# fuzzes each target (default: every build/fuzz/fuzz_*) for SECONDS, one
# at a time and on one core, on its working corpus FUZZ_BUILD/corpus/TARGET
# (the checked-in seeds of tests/fuzz/corpus/TARGET copied in, next to what
# earlier runs found), and prints each target's closing figures.  A crash,
# a leak or a timeout (an input running over 10 s) fails the target; the
# reproducer is FUZZ_BUILD/crash/TARGET-*, replayed with
# `FUZZ_BUILD/fuzz_TARGET FILE`.  Exit status non-zero if any target failed.
set -u
cd "$(dirname "$0")/../.." || exit 2
[ $# -ge 2 ] || { echo "usage: $0 FUZZ_BUILD SECONDS [TARGET...]" >&2; exit 2; }
fb=$1 secs=$2
shift 2
if [ $# -eq 0 ]; then
	for bin in "$fb"/fuzz_*; do
		[ -x "$bin" ] && set -- "$@" "${bin##*/fuzz_}"
	done
fi
[ $# -gt 0 ] || { echo "no harness in $fb (make fuzz-build)" >&2; exit 2; }

# The longest input worth trying: a few records, or the whole metadata of
# five disks.
max_len() {
	case $1 in
	raid_meta) echo 20500 ;;
	scsi|iscsi_login|iscsi_conn) echo 16384 ;;
	*) echo 4096 ;;
	esac
}

failed=()
mkdir -p "$fb/crash"
for t; do
	corpus=$fb/corpus/$t
	log=$fb/fuzz_$t.log
	mkdir -p "$corpus"
	cp tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null
	"$fb/fuzz_$t" -max_total_time="$secs" -timeout=10 -max_len="$(max_len "$t")" \
		-print_final_stats=1 -artifact_prefix="$fb/crash/$t-" "$corpus" >"$log" 2>&1
	rc=$?
	last=$(grep -E '^#[0-9]+[[:space:]]' "$log" | tail -1)
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	printf '%-12s %ss %10s runs %7s exec/s  %s\n' "$t" "$secs" "${runs:-?}" "${rate:-?}" \
		"$(echo "$last" | grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [^ ]+')"
	if [ "$rc" -ne 0 ]; then
		failed+=("$t")
		echo "  fuzz_$t FAILED (status $rc), log $log:"
		grep -E 'ERROR:|SUMMARY:|runtime error:' "$log" | head -5 | sed 's/^/    /'
		grep -oE '(Test unit|artifact) written to [^ ]+' "$log" | sed 's/^/    reproducer: /'
	fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzzing failed: ${failed[*]}"; exit 1; }
