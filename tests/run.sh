#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# hbakit test runner.  Runs every cmocka test binary in TAP mode and every
# shell test (tests/test_*.sh: exit 0 pass, 77 skip, else fail), each under a time
# limit so a hang is a failure, and ends with one line
# "N passed, N failed, N skipped".  Exit status is non-zero on any failure.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
LIMIT=${HBK_TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0
failed_names=()
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"

run_tap() {
	local bin=$1 name log rc
	name=$(basename "$bin")
	log=$log_dir/$name.log
	CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$LIMIT" "$bin" >"$log" 2>&1
	rc=$?
	local p f s
	p=$(grep -c '^ok ' "$log")
	s=$(grep -c '^not ok .*# SKIP' "$log")
	f=$(( $(grep -c '^not ok ' "$log") - s ))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1   # crashed, hung or failed outside a test case
		echo "  $name: exit status $rc (see $log)"
	fi
	pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
	[ "$f" -gt 0 ] && failed_names+=("$name") && grep -E '^(not ok|#)' "$log" | grep -v SKIP | head -20 | sed 's/^/    /'
	printf '%-40s %3d passed %3d failed %3d skipped\n' "$name" "$p" "$f" "$s"
}

run_sh() {
	local t=$1 name log rc
	name=$(basename "$t")
	log=$log_dir/$name.log
	timeout -k 10 "$LIMIT" bash "$t" >"$log" 2>&1
	rc=$?
	case $rc in
	0) pass=$((pass + 1)); printf '%-40s passed\n' "$name" ;;
	77) skip=$((skip + 1)); printf '%-40s skipped: %s\n' "$name" "$(tail -1 "$log")" ;;
	*) fail=$((fail + 1)); failed_names+=("$name")
	   printf '%-40s FAILED (status %d)\n' "$name" "$rc"; tail -20 "$log" | sed 's/^/    /' ;;
	esac
}

for bin in "$BUILD"/tests/test_*; do
	[ -x "$bin" ] && [ -f "$bin" ] && case $bin in *.o|*.d) ;; *) run_tap "$bin" ;; esac
done
for t in tests/test_*.sh; do
	[ -f "$t" ] && run_sh "$t"
done

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
