#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# hbakit test runner: tests/run.sh BUILD_DIR...  For each build directory
# (plain, ASan+UBSan, TSan) it runs every cmocka test binary in TAP mode and
# every shell test (tests/test_*.sh: exit 0 pass, 77 skip, else fail), each
# under a time limit (HBK_TEST_TIMEOUT seconds, 300 by default) so a hang is
# a failure.  A sanitizer report anywhere in a
# test's output, driver processes included, fails that test.  Each test's
# line ends with its wall time in seconds, each build with a line of its total
# and the run with the test phase's total.  Ends with one line "N passed, N
# failed, N skipped"; exit status non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- build
LIMIT=${HBK_TEST_TIMEOUT:-300}
SAN_RE='ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|runtime error:'
pass=0 fail=0 skip=0
failed_names=()

# Seconds since $1 (an earlier $EPOCHREALTIME), to a tenth.
elapsed() {
	local now=$EPOCHREALTIME
	awk -v a="$1" -v b="$now" 'BEGIN { printf "%.1f", b - a }'
}

sanitizer_report() {
	grep -Eq "$SAN_RE" "$1"
}

run_tap() {
	local bin=$1 variant=$2 log_dir=$3 name log rc p f s t0 secs
	name=$(basename "$bin")
	log=$log_dir/$name.log
	t0=$EPOCHREALTIME
	CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$LIMIT" "$bin" >"$log" 2>&1
	rc=$?
	secs=$(elapsed "$t0")
	p=$(grep -c '^ok ' "$log")
	s=$(grep -c '^not ok .*# SKIP' "$log")
	f=$(( $(grep -c '^not ok ' "$log") - s ))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1   # crashed, hung or failed outside a test case
		echo "  $name: exit status $rc (see $log)"
	fi
	if sanitizer_report "$log"; then
		f=$((f + 1))
		echo "  $name: sanitizer report (see $log):"
		grep -E "$SAN_RE" "$log" | sort | uniq -c | head -5 | sed 's/^/    /'
	fi
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
	if [ "$f" -gt 0 ]; then
		failed_names+=("$variant/$name")
		grep -E '^(not ok|#)' "$log" | grep -v SKIP | head -20 | sed 's/^/    /'
	fi
	printf '%-17s %-28s %3d passed %3d failed %3d skipped %6ss\n' \
	    "$variant" "$name" "$p" "$f" "$s" "$secs"
}

run_sh() {
	local t=$1 variant=$2 log_dir=$3 name log rc t0 secs
	name=$(basename "$t")
	log=$log_dir/$name.log
	t0=$EPOCHREALTIME
	timeout -k 10 "$LIMIT" bash "$t" >"$log" 2>&1
	rc=$?
	secs=$(elapsed "$t0")
	[ "$rc" -eq 0 ] && sanitizer_report "$log" && rc=99
	case $rc in
	0) pass=$((pass + 1)); printf '%-17s %-28s passed %6ss\n' "$variant" "$name" "$secs" ;;
	77) skip=$((skip + 1)); printf '%-17s %-28s skipped %6ss: %s\n' "$variant" "$name" "$secs" "$(tail -1 "$log" | sed "s/^skipped: //")" ;;
	*) fail=$((fail + 1)); failed_names+=("$variant/$name")
	   printf '%-17s %-28s FAILED (status %d) %6ss\n' "$variant" "$name" "$rc" "$secs"
	   tail -20 "$log" | sed 's/^/    /' ;;
	esac
}

run_t0=$EPOCHREALTIME
for BUILD in "$@"; do
	export BUILD
	build_t0=$EPOCHREALTIME
	variant=$(basename "$BUILD")
	[ "$variant" = build ] && variant=plain
	variant=${variant#san-}
	log_dir=$BUILD/test-logs
	mkdir -p "$log_dir"
	for bin in "$BUILD"/tests/test_*; do
		case $bin in *.o|*.d) continue ;; esac
		[ -x "$bin" ] && [ -f "$bin" ] && run_tap "$bin" "$variant" "$log_dir"
	done
	for t in tests/test_*.sh; do
		[ -f "$t" ] && run_sh "$t" "$variant" "$log_dir"
	done
	printf '%-17s %-28s %6ss\n' "$variant" "(all tests)" "$(elapsed "$build_t0")"
done

echo "test phase: $(elapsed "$run_t0") s"

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
