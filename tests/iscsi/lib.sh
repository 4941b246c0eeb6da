# SPDX-License-Identifier: MIT
#
# Shared by the iSCSI front end's tests (tests/test_iscsi_*.sh) and bench
# scripts (bench/iscsi-*.sh); sourced, not run.  It starts `hbakit serve
# iscsi` of $BUILD on 127.0.0.1 with a free port and a ready file and stops
# it with SIGTERM (a clean exit 0 is part of every test); it starts Debian's
# tgtd, the reference target, with a file-backed LUN for the bench scripts;
# and it runs libiscsi's iscsi-test-cu one test family at a time and turns
# its output into counts (tests/iscsi/cu-parse.awk).  Everything it starts
# is killed at exit and its temporary directory removed; every wait is
# bounded.  Tests exit 0 on success, 77 with the reason as the last line
# when a tool is missing, 1 on failure.
#
# Variables it sets: BUILD, HBAKIT, ISCSI_LIB (this directory), T (private
# temporary directory), IQN_PREFIX; after iscsi_start: ISCSI_PID,
# ISCSI_PORT, ISCSI_LOG; after tgt_start: TGT_PID, TGT_PORT, TGT_LOG.
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
HBAKIT=$BUILD/hbakit
ISCSI_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IQN_PREFIX=iqn.2026-11.org.hbakit
T=$(mktemp -d /tmp/hbk-iscsi.XXXXXX)
ISCSI_PID= ISCSI_PORT= ISCSI_LOG=
TGT_PID= TGT_PORT= TGT_LOG= TGT_CTL=
# Sanitizer builds start slower; every wait below scales with this.
ISCSI_START_TIMEOUT=${ISCSI_START_TIMEOUT:-30}

# has_target: true if $HBAKIT is built and has `serve iscsi` (its usage
# names --ready-file).
has_target() {
	[ -x "$HBAKIT" ] && timeout 10 "$HBAKIT" serve iscsi --help 2>&1 | grep -q -- --ready-file
}

# need_target: skip unless has_target.
need_target() {
	[ -x "$HBAKIT" ] || skip "$HBAKIT is not built (make)"
	has_target || skip "$HBAKIT has no 'serve iscsi' yet"
}

# iscsi_start NAME [ARG...]: `hbakit serve iscsi ARG...` on 127.0.0.1:0 with
# the ram driver of $BUILD unless ARG names --driver or --attach; log in
# $T/NAME.log.  Returns once the ready file names the port; fails if that
# takes longer than ISCSI_START_TIMEOUT seconds or the server dies.
iscsi_start() {
	local name=$1 ready a drv=("--driver" "$BUILD/drivers/hbk-ram") i
	shift
	for a; do
		case $a in --driver|--driver=*|--attach|--attach=*) drv=() ;; esac
	done
	ready=$T/$name.ready
	ISCSI_LOG=$T/$name.log
	FAIL_LOG=$ISCSI_LOG
	rm -f "$ready"
	exec "$HBAKIT" serve iscsi --listen 127.0.0.1:0 --ready-file "$ready" \
		"${drv[@]}" "$@" >"$ISCSI_LOG" 2>&1 &
	ISCSI_PID=$!
	for ((i = 0; i < ISCSI_START_TIMEOUT * 50; i++)); do
		if [ -s "$ready" ]; then
			read -r _ ISCSI_PORT <"$ready"
			[ -n "$ISCSI_PORT" ] && [ "$ISCSI_PORT" -gt 0 ] 2>/dev/null ||
				fail "$name: ready file says '$(cat "$ready")'"
			return 0
		fi
		alive "$ISCSI_PID" || { wait "$ISCSI_PID"; fail "$name: hbakit serve iscsi $* exited ($?) before it was ready"; }
		sleep 0.02
	done
	fail "$name: hbakit serve iscsi $* not ready within ${ISCSI_START_TIMEOUT}s"
}

# iscsi_threads PID: one line per thread of PID and of its children (the
# driver): its name, state, kernel wait channel and, when gdb is there, its
# innermost functions; for a server that does not exit.
iscsi_threads() {
	local p t tid st bt
	for p in "$1" $(pgrep -P "$1"); do
		: >"$T/bt"
		command -v gdb >/dev/null &&
			timeout 60 gdb -p "$p" -batch -ex 'thread apply all bt 8' >"$T/bt" 2>/dev/null
		for t in /proc/"$p"/task/*; do
			tid=${t##*/}
			st=$(sed 's/^.*) //' "$t/stat" 2>/dev/null | cut -d' ' -f1)
			bt=$(awk -v tid="$tid" '
				/^Thread / { on = index($0, "(LWP " tid ")") > 0 }
				on && /^#[0-9]/ { f = ($3 == "in") ? $4 : $2; s = s (s == "" ? "" : " < ") f }
				END { print s }' "$T/bt")
			echo "thread $p/$tid $(cat "$t/comm" 2>/dev/null) $st $(cat "$t/wchan" 2>/dev/null): $bt"
		done
	done
}

# iscsi_stop [quiet]: SIGTERM; the server must exit 0 within
# ISCSI_STOP_TIMEOUT seconds (30: a bound for a hang, not a speed test).
# Prints its log (all of it, so a sanitizer report reaches the test's
# output; with "quiet" only the lines that are not routine).
ISCSI_STOP_TIMEOUT=${ISCSI_STOP_TIMEOUT:-30}
iscsi_stop() {
	local i rc
	[ -n "$ISCSI_PID" ] || return 0
	kill -TERM "$ISCSI_PID" 2>/dev/null
	for ((i = 0; i < ISCSI_STOP_TIMEOUT * 50; i++)); do
		alive "$ISCSI_PID" || break
		sleep 0.02
	done
	if alive "$ISCSI_PID"; then
		iscsi_threads "$ISCSI_PID" >>"$ISCSI_LOG"
		kill -KILL "$ISCSI_PID" 2>/dev/null
		{ wait "$ISCSI_PID"; } 2>/dev/null
		ISCSI_PID=
		fail "hbakit serve iscsi did not exit within $ISCSI_STOP_TIMEOUT s of SIGTERM"
	fi
	wait "$ISCSI_PID"
	rc=$?
	ISCSI_PID=
	if [ "${1:-}" = quiet ]; then
		grep -Ev 'listening on|^$' "$ISCSI_LOG" | sed 's/^/  | /'
	else
		sed 's/^/  | /' "$ISCSI_LOG"
	fi
	[ "$rc" -eq 0 ] || fail "hbakit serve iscsi exited $rc on SIGTERM"
}

# iscsi_url [TARGET [LUN [USERINFO]]]: the libiscsi URL of hbakit target
# TARGET (0), LUN (0) on the running server; USERINFO is "user%secret".
iscsi_url() {
	local ui=${3:+$3@}
	echo "iscsi://${ui}127.0.0.1:$ISCSI_PORT/$IQN_PREFIX:t${1:-0}/${2:-0}"
}

# --- Debian's tgt, the reference target (bench scripts) -------------------

# tgt_start NAME FILE: tgtd in the foreground on 127.0.0.1 with a free port
# and a private control port; one target, LUN 1 backed by FILE, open to
# every initiator.  Needs root (tgtd keeps its control socket in
# /var/run/tgtd).
tgt_start() {
	local name=$1 file=$2 try i
	command -v tgtd >/dev/null && command -v tgtadm >/dev/null ||
		fail "tgtd is not installed (Debian package tgt)"
	TGT_LOG=$T/$name.tgt.log
	for ((try = 0; try < 5; try++)); do
		TGT_PORT=$((20000 + RANDOM % 30000))
		TGT_CTL=$((1000 + RANDOM % 30000))
		ss -Htln "sport = :$TGT_PORT" 2>/dev/null | grep -q . && continue
		[ -e "/var/run/tgtd/socket.$TGT_CTL" ] && continue
		tgtd -f -C "$TGT_CTL" --iscsi "portal=127.0.0.1:$TGT_PORT" >"$TGT_LOG" 2>&1 &
		TGT_PID=$!
		for ((i = 0; i < 100; i++)); do
			alive "$TGT_PID" || break
			if ss -Htln "sport = :$TGT_PORT" 2>/dev/null | grep -q . &&
				tgtctl --mode target --op show >/dev/null 2>&1; then
				tgtctl --mode target --op new --tid 1 --targetname "iqn.2026-11.org.hbakit.ref:tgt" &&
				tgtctl --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$file" &&
				tgtctl --mode target --op bind --tid 1 --initiator-address ALL ||
					fail "tgtadm could not configure the target"
				return 0
			fi
			sleep 0.05
		done
		kill -KILL "$TGT_PID" 2>/dev/null
		{ wait "$TGT_PID"; } 2>/dev/null
		TGT_PID=
	done
	fail "tgtd did not start: $(tail -3 "$TGT_LOG")"
}

tgtctl() {
	timeout 10 tgtadm -C "$TGT_CTL" --lld iscsi "$@"
}

# tgt_lun FILE: replaces LUN 1 by a fresh one backed by FILE (no data or
# reservations left over from an earlier family).
tgt_lun() {
	tgtctl --mode logicalunit --op delete --tid 1 --lun 1 >/dev/null 2>&1
	tgtctl --mode logicalunit --op new --tid 1 --lun 1 --backing-store "$1" ||
		fail "tgtadm could not add LUN 1 ($1)"
}

# tgt_stop: tgtd ignores SIGTERM while it has targets; its own shutdown is
# "system delete".
tgt_stop() {
	local i
	[ -n "$TGT_PID" ] || return 0
	tgtctl --mode system --op delete >/dev/null 2>&1
	for ((i = 0; i < 100; i++)); do
		alive "$TGT_PID" || break
		sleep 0.05
	done
	alive "$TGT_PID" && kill -KILL "$TGT_PID"
	{ wait "$TGT_PID"; } 2>/dev/null
	rm -f "/var/run/tgtd/socket.$TGT_CTL" "/var/run/tgtd/socket.$TGT_CTL.lock"
	TGT_PID=
}

tgt_url() {
	echo "iscsi://127.0.0.1:$TGT_PORT/iqn.2026-11.org.hbakit.ref:tgt/1"
}

# --- iscsi-test-cu, one family at a time ----------------------------------

# cu_families [REGEX]: the families iscsi-test-cu knows, one per line: every
# suite of the SCSI and iSCSI groups (SCSI.Read10, iSCSI.iSCSIcmdsn, ...;
# the ALL group is their union and LINUX a subset of SCSI), those matching
# the extended REGEX only when it is given.
cu_families() {
	iscsi-test-cu -l 2>/dev/null | awk -F. 'NF == 2 && ($1 == "SCSI" || $1 == "iSCSI")' |
		grep -E "${1:-.}"
}

# cu_run URL FAMILY OUT: one iscsi-test-cu process, destructive tests
# allowed (and SANITIZE's when CU_SANITIZE is 1), on FAMILY only (the multipath family gets URL twice, as two
# paths to the LUN), bounded by CU_TIMEOUT seconds (90).  Its output goes
# to OUT.raw, the parsed per-test lines (cu-parse.awk) to OUT.  Prints
# "FAMILY P F S".
cu_run() {
	local url=$1 fam=$2 out=$3 urls=("$1") rc
	case $fam in *.MultipathIO) urls+=("$url") ;; esac
	local opts=(-d)
	[ "${CU_SANITIZE:-0}" = 1 ] && opts+=(-S)
	# --foreground: in the caller's process group, so that tests/run.sh's
	# time limit ends it too (a run left behind retries its dead target).
	timeout --foreground -k 5 "${CU_TIMEOUT:-90}" iscsi-test-cu "${opts[@]}" -t "$fam" "${urls[@]}" >"$out.raw" 2>&1
	rc=$?
	# A killed or crashed run has no summary; say why in the raw output.
	[ "$rc" -ge 124 ] && echo "cu_run: iscsi-test-cu exit status $rc" >>"$out.raw"
	awk -v prefix="${fam%%.*}" -f "$ISCSI_LIB/cu-parse.awk" "$out.raw" >"$out"
	echo "$fam $(awk '$1 == "summary" { print $2, $3, $4 }' "$out")"
}

# cu_lun_args FAMILY: the options (ram driver args, one per line) of the
# LUN that FAMILY needs to run its tests: a removable medium for the
# families that eject it, a write-protected one for ReadOnly, 8 logical
# blocks per physical block for the WRITE SAME and COMPARE AND WRITE tests
# that skip when LBPPB < 2.  Nothing for the others.
cu_lun_args() {
	case $1 in
	SCSI.PreventAllow|SCSI.NoMedia|SCSI.StartStopUnit) echo removable=1 ;;
	SCSI.ReadOnly) echo ro=1 ;;
	SCSI.WriteSame10|SCSI.WriteSame16|SCSI.CompareAndWrite) echo lbppbe=3 ;;
	esac
}

# cu_suite FRESH STOP OUT FAMILY...: every FAMILY in its own iscsi-test-cu
# process on a fresh LUN: the command FRESH runs before each family with the
# family as its argument and sets CU_URL (it starts a server or replaces the
# LUN), the command STOP after it.  Writes OUT/FAMILY.res and OUT/FAMILY.res.raw (cu_run) and prints one
# line per family, in the order given.  When CU_DEADLINE (a time from `date +%s`) has passed,
# the families left are not run and each counts as one failed pseudo-test,
# FAMILY.<not-run>, so the totals cannot look clean.  CU_JOBS (1) families
# run at once, each in a subshell of its own: only for a FRESH that starts
# a server of the family's own (a name of its own for iscsi_start), never
# for one that replaces the LUN of a shared one.  A family whose FRESH or
# STOP fails (a server that did not start or did not exit 0) fails the
# caller, its output shown.
cu_suite() {
	local fresh=$1 stop=$2 out=$3 fam jobs=${CU_JOBS:-1} pid bad=
	shift 3
	mkdir -p "$out"
	for fam; do
		if [ -n "${CU_DEADLINE:-}" ] && [ "$(date +%s)" -ge "$CU_DEADLINE" ]; then
			printf 'test %s.<not-run> failed time budget used up\nsummary 0 1 0\n' "$fam" >"$out/$fam.res"
			printf '  %-34s not run: time budget used up\n' "$fam" >"$out/$fam.line"
			[ "$jobs" -le 1 ] && cat "$out/$fam.line"
			continue
		fi
		if [ "$jobs" -le 1 ]; then
			cu_family "$fresh" "$stop" "$out" "$fam"
			continue
		fi
		while [ "${#CU_JOB_PIDS[@]}" -ge "$jobs" ]; do
			wait -n -p pid "${CU_JOB_PIDS[@]}" || bad=1
			mapfile -t CU_JOB_PIDS < <(printf '%s\n' "${CU_JOB_PIDS[@]}" | grep -vx "$pid")
		done
		( trap '[ -n "$ISCSI_PID" ] && kill -KILL "$ISCSI_PID" 2>/dev/null' EXIT
		  trap 'exit 1' INT TERM
		  cu_family "$fresh" "$stop" "$out" "$fam" ) >"$out/$fam.line" 2>&1 &
		CU_JOB_PIDS+=("$!")
	done
	for pid in "${CU_JOB_PIDS[@]}"; do
		wait "$pid" || bad=1
	done
	CU_JOB_PIDS=()
	[ "$jobs" -le 1 ] && return 0
	for fam; do
		cat "$out/$fam.line"
	done
	[ -z "$bad" ] || fail "a family's server did not start or stop cleanly (above)"
}

# cu_family FRESH STOP OUT FAMILY: one family of cu_suite; prints its line,
# with its wall time, FRESH and STOP included.
cu_family() {
	local fresh=$1 stop=$2 out=$3 fam=$4 p f s t0=$EPOCHREALTIME
	CU_URL=
	$fresh "$fam"
	read -r _ p f s < <(cu_run "$CU_URL" "$fam" "$out/$fam.res")
	$stop
	printf '  %-34s %3d passed %3d failed %3d skipped %5.1fs\n' "$fam" "$p" "$f" "$s" \
		"$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')"
}

# cu_totals OUT: "P F S" over every family run into OUT.
cu_totals() {
	cat "$1"/*.res 2>/dev/null | awk '$1 == "summary" { p += $2; f += $3; s += $4 } END { print p + 0, f + 0, s + 0 }'
}

# cu_known FILE: the accepted failures of FILE (known-failures.txt), one
# name per line, comments and blank lines dropped.
cu_known() {
	sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$1" | awk '{ print $1 }'
}

# cu_compare OUT KNOWN: prints the accepted failures of file KNOWN that now
# pass or are skipped (only for the families run into OUT), then the
# failures not in KNOWN with why; returns 1 if there are any.
cu_compare() {
	local out=$1 known=$2
	cu_known "$known" >"$T/known.list"
	cat "$out"/*.res | awk -v list="$T/known.list" '
		BEGIN { while ((getline k < list) > 0) known[k] = 1 }
		$1 == "test" { res[$2] = $3; line[$2] = $0 }
		END {
			for (k in known)
				if (k in res && res[k] != "failed")
					printf "known failure now %s: %s (remove it from known-failures.txt)\n", res[k], k | "sort"
			close("sort")
			for (t in res)
				if (res[t] == "failed" && !(t in known)) {
					w = line[t]; sub(/^test [^ ]+ failed ?/, "", w)
					printf "NEW FAILURE: %s%s\n", t, (w != "" ? ": " w : "") | "sort"
					bad = 1
				}
			close("sort")
			exit bad
		}'
}

CU_JOB_PIDS=()
cleanup() {
	local pid
	for pid in "${CU_JOB_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
		{ wait "$pid"; } 2>/dev/null
	done
	if [ -n "$ISCSI_PID" ]; then
		kill -KILL "$ISCSI_PID" 2>/dev/null
		{ wait "$ISCSI_PID"; } 2>/dev/null
	fi
	if [ -n "$TGT_PID" ]; then
		kill -KILL "$TGT_PID" 2>/dev/null
		{ wait "$TGT_PID"; } 2>/dev/null
		rm -f "/var/run/tgtd/socket.$TGT_CTL" "/var/run/tgtd/socket.$TGT_CTL.lock"
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
