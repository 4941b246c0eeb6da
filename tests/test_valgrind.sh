#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The host and the driver process under valgrind: a full open, discovery,
# I/O on both paths and teardown must show no memory error, no uninitialised
# byte sent over a socket and no leak.  Plain build only (valgrind and the
# sanitizers do not mix).
set -u
BUILD=${BUILD:-build}
case $BUILD in *san-*) echo "valgrind runs on the plain build only"; exit 77 ;; esac
command -v valgrind >/dev/null || { echo "valgrind not installed"; exit 77; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
valgrind -q --trace-children=yes --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file="$log.%p" \
	"$BUILD/hbakit" bench --rw randrw --bs 4k --iodepth 8 --runtime 0.5 --driver-arg size=8M \
	>/dev/null
rc=$?
cat "$log".* 2>/dev/null
errors=$(cat "$log".* 2>/dev/null | grep -c "==[0-9]*== ")
rm -f "$log".*
[ "$rc" -eq 0 ] || { echo "FAIL: bench under valgrind exited $rc"; exit 1; }
[ "$errors" -eq 0 ] || { echo "FAIL: valgrind reported $errors lines"; exit 1; }
echo "valgrind clean"
