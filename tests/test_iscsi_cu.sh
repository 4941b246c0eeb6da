#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# libiscsi's conformance suite, iscsi-test-cu, against `hbakit serve iscsi`
# on the ram controller: one iscsi-test-cu process per test family (every
# SCSI.<Command> and iSCSI.<Feature> suite; a family's leftover hooks,
# reservations and unit attentions must not leak into the next one), each
# on a fresh server with a fresh 64 MiB LUN, destructive tests allowed.
# Families that need a removable, write-protected or 4 KiB-physical-block
# LUN get one (cu_lun_args in tests/iscsi/lib.sh).
# Prints a line per family and one closing line "iscsi-test-cu: N passed,
# N failed, N skipped".  Fails on any failure not listed in
# tests/iscsi/known-failures.txt (and on a crash, a hang, a family that ran
# no test or a server that does not exit 0 on SIGTERM); lists the listed
# failures that now pass, so the list can shrink, without failing.
#
# Every build runs the whole suite.  Most of its time is waiting (libiscsi's
# own sleeps of 3 s in the reset and nexus-loss tests, its timeouts for
# commands the target must ignore; a server's start and stop), so CU_JOBS
# (3) families run at once, each still on a server of its own: about 15 s
# plain and under ASan+UBSan, 30 s under TSan on two cores, where one at a
# time took 40 s and 80 s.  ISCSI_CU_FAMILIES=REGEX runs the families it
# matches only (e.g. '^iSCSI\.|Read10' while working on one of them).
. "$(dirname "$0")/iscsi/lib.sh"
need iscsi-test-cu
need_target

SIZE=64M
sel=${ISCSI_CU_FAMILIES:-.}
mapfile -t families < <(cu_families "$sel")
[ ${#families[@]} -gt 0 ] || fail "no iscsi-test-cu family matches /$sel/"
[ ${#families[@]} -ge 40 ] || [ "$sel" != . ] ||
	fail "iscsi-test-cu -l lists only ${#families[@]} families"
# The longest families go first, so that none of them is the last one left
# running: those that mostly wait (libiscsi's sleeps after resets and its
# timeouts for ignored commands, 3 to 9 s each) and those of many commands
# (GetLBAStatus takes 24 s under TSan, OrWrite 7 s).
SLOW='^(SCSI\.GetLBAStatus|SCSI\.Reserve6|SCSI\.OrWrite|iSCSI\.iSCSIcmdsn|iSCSI\.iSCSIdatasn)$'
mapfile -t families < <(printf '%s\n' "${families[@]}" | grep -E "$SLOW"
			printf '%s\n' "${families[@]}" | grep -vE "$SLOW")

# The run must end well inside tests/run.sh's limit (300 s by default).
CU_DEADLINE=$(($(date +%s) + ${ISCSI_CU_BUDGET:-220}))
CU_TIMEOUT=60
CU_JOBS=${CU_JOBS:-3}

fresh() {
	local args=(--driver-arg "size=$SIZE") a
	for a in $(cu_lun_args "$1"); do
		args+=(--driver-arg "$a")
	done
	iscsi_start "cu-$1" "${args[@]}"
	CU_URL=$(iscsi_url 0 0)
}
stop() {
	iscsi_stop quiet
}

start=$(date +%s)
echo "iscsi-test-cu: ${#families[@]} families, a fresh $SIZE ram LUN each"
cu_suite fresh stop "$T/cu" "${families[@]}"
read -r p f s < <(cu_totals "$T/cu")
cu_compare "$T/cu" "$ISCSI_LIB/known-failures.txt" >"$T/compare"
bad=$?
cat "$T/compare"
echo "($(($(date +%s) - start)) s)"
echo "iscsi-test-cu: $p passed, $f failed, $s skipped"
[ "$p" -gt 0 ] || fail "no test passed"
[ "$bad" -eq 0 ] || fail "$(grep -c '^NEW FAILURE' "$T/compare") failure(s) not in tests/iscsi/known-failures.txt (above)"
