#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The hbakit CLI end to end: `info` lists the ram controller's LUNs, `bench`
# runs both paths and reports in JSON, iodepth 1 gives 1-slot calls only, and
# bad options are refused with status 2.
. "$(dirname "$0")/lib/common.sh"
H=$BUILD/hbakit

out=$($H info --driver-arg targets=2 --driver-arg luns=2 --driver-arg size=1M) || fail "info exit $?"
echo "$out"
[ "$(echo "$out" | grep -c 'HBAKIT   RAM DISK')" -eq 4 ] || fail "info does not list 4 LUNs"
echo "$out" | grep -q "bundled path" || fail "info does not name the path"

json=$($H bench --rw randrw --rwmixread 70 --bs 4k --iodepth 8 --runtime 0.5 \
	--driver-arg size=8M --output-format json) || fail "bench exit $?"
echo "$json"
for key in '"mode": "per-task"' '"mode": "bundled"' '"iops"' '"lat_us"' '"p99.9"' \
	   '"calls_per_task"' '"slots_per_call"' '"17-32"' '"cpu_us_per_io"' '"bundled_over_per_task"'; do
	echo "$json" | grep -qF "$key" || fail "bench JSON lacks $key"
done
echo "$json" | grep -q '"errors": 0,' || fail "bench reported I/O errors"

one=$($H bench --mode bundled --rw randread --bs 4k --iodepth 1 --runtime 0.3 \
	--driver-arg size=8M --output-format json) || fail "iodepth 1 bench exit $?"
echo "$one" | grep -qE '"slots_per_call": \{"1": [1-9][0-9]*, "2": 0, "3-4": 0, "5-8": 0, "9-16": 0, "17-32": 0\}' \
	|| fail "iodepth 1 must give 1-slot calls only: $one"

normal=$($H bench --mode per-task --rw read --bs 64k --iodepth 4 --size 4M --driver-arg size=8M) \
	|| fail "sized bench exit $?"
echo "$normal" | grep -q "^per-task: read bs=65536" || fail "normal output header"
echo "$normal" | grep -q "slots per call:  1: " || fail "normal output histogram"

echo "$json" | grep -q '"violations": {}' || fail "a good driver reported violations"
bad=$($H bench --driver "$BUILD/tests/drivers/over_release" --mode bundled --rw randread \
	--bs 4k --iodepth 4 --runtime 0.3 2>/dev/null) || fail "over_release bench exit $?"
echo "$bad" | grep -q "contract violations: HBK-C06 x" || fail "bench hides violations: $bad"

# The seed suite: seven rows (the psync one last), the table's header
# first in a log that takes stderr too, before the drivers' lines.  (Files,
# not memory disks: the random writes of parallel jobs meet on the same
# blocks, which on a memory disk is two memcpy at once, a race to TSan.)
A=$(mktemp -d)
suite=$($H bench --suite seed --runtime 0.1 --driver "$BUILD/drivers/hbk-raid" \
	--driver-arg "array=r:level=0,size=8m,disk=file:$A/m0,disk=file:$A/m1" 2>&1) ||
	fail "suite exit $?: $suite"
rm -rf "$A"
echo "$suite"
echo "$suite" | head -1 | grep -q "^workload  *jobs  *per-task" || fail "the suite's header is not first"
[ "$(echo "$suite" | grep -cE '^[0-9].* [0-9.]+x ')" -eq 7 ] || fail "the suite has not 7 rows"
echo "$suite" | grep -q "^4k rw70/30 psync " || fail "the suite has no psync row"
$H bench --rw sideways >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --rw not refused"
$H bench --bs 0 >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --bs not refused"
$H bench --span 2k >/dev/null 2>&1; [ $? -eq 2 ] || fail "--span below --bs not refused"
warm=$($H bench --mode bundled --rw randrw --span 2M --warmup --iodepth 4 --runtime 0.3 \
	--driver-arg size=8M) || fail "warm-up bench exit $?"
echo "$warm" | grep -q "errors 0" || fail "warm-up bench reported errors: $warm"
# psync: a thread per job with one I/O at a time, so 3 jobs never put more
# than 3 tasks in one call, however deep --iodepth is.
sync=$($H bench --mode bundled --rw randrw --ioengine psync --numjobs 3 --iodepth 32 \
	--runtime 0.3 --driver-arg size=8M --output-format json) || fail "psync bench exit $?"
echo "$sync" | grep -qE '"slots_per_call": \{"1": [1-9][0-9]*, "2": [0-9]+, "3-4": [0-9]+, "5-8": 0, "9-16": 0, "17-32": 0\}' \
	|| fail "psync with 3 jobs must give calls of 1 to 3 slots: $sync"
echo "$sync" | grep -q '"errors": 0,' || fail "psync bench reported I/O errors: $sync"
$H bench --ioengine libaio >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --ioengine not refused"
# A driver started with --listen serves one host, once: bench --attach
# refuses both paths and the suite before it attaches, and then runs the
# path it is given.
A=$(mktemp -d)
"$BUILD/drivers/hbk-ram" --listen "$A/ram.sock" size=8M 2>"$A/driver.log" &
drv=$!
for _ in $(seq 200); do [ -S "$A/ram.sock" ] && break; sleep 0.05; done
for args in "" "--mode both" "--suite seed"; do
	err=$($H bench --attach "$A/ram.sock" $args --runtime 0.3 2>&1); rc=$?
	[ $rc -eq 2 ] && echo "$err" | grep -q "serves one host" || fail "bench --attach $args: status $rc: $err"
done
out=$($H bench --attach "$A/ram.sock" --mode bundled --runtime 0.3 2>&1) ||
	fail "bench --attach --mode bundled: $out $(cat "$A/driver.log")"
echo "$out" | grep -q "^bundled: randread" || fail "bench --attach --mode bundled: $out"
wait "$drv" || fail "the attached driver exited $?"
rm -rf "$A"

# An explicit --help (or -h) prints the usage on stdout with status 0; a
# bad word prints it on stderr with status 2, after naming the word.
for c in "" bench info raid serve "serve iscsi"; do
	for h in --help -h; do
		out=$($H $c $h 2>/dev/null); rc=$?
		[ $rc -eq 0 ] && echo "$out" | grep -q "^usage: hbakit" || fail "hbakit $c $h: status $rc, stdout: $out"
	done
done
# Every command that opens a controller takes the same controller options
# (tools/hbakit.c, cli_ctl_option), and its usage names each of them.
for c in info bench "serve iscsi"; do
	out=$($H $c --help)
	for o in --driver --driver-arg --attach --mode --poll-us; do
		echo "$out" | grep -q -- "$o\b" || fail "hbakit $c --help does not name $o: $out"
	done
done
usage_err() {   # usage_err MESSAGE ARG...: status 2, MESSAGE and the usage on stderr, nothing on stdout
	local want=$1 out err rc
	shift
	out=$($H "$@" 2>/dev/null)
	err=$($H "$@" 2>&1 >/dev/null); rc=$?
	[ $rc -eq 2 ] && [ -z "$out" ] && echo "$err" | grep -qF -- "$want" && echo "$err" | grep -q "^usage: hbakit" ||
		fail "hbakit $*: status $rc, stdout '$out', stderr: $err"
}
usage_err "hbakit: unknown command 'frobnicate'" frobnicate
usage_err "hbakit: unknown option '--version'" --version
usage_err "hbakit raid: unknown command 'frob'" raid frob level=1
usage_err "hbakit info: unknown option '--bogus'" info --bogus
usage_err "hbakit info: unexpected argument 'extra'" info extra
usage_err "hbakit bench: unknown option '--bogus'" bench --bogus=1
usage_err "hbakit bench: --bs: bad value '0'" bench --bs 0
usage_err "hbakit serve: unknown protocol 'nfs'" serve nfs
usage_err "hbakit serve iscsi: unknown option '--bogus'" serve iscsi --bogus
# serve iscsi: a --listen address that cannot be is refused before the
# driver starts (a missing driver would give status 1); --mode names the
# words of the command at hand.
for l in 127.0.0.1 127.0.0.1:99999 :3260 "[::1" no-such-host.invalid:3260; do
	err=$($H serve iscsi --driver /nonexistent --listen "$l" 2>&1); rc=$?
	[ $rc -eq 2 ] && echo "$err" | grep -qF "hbakit serve iscsi: --listen $l: " ||
		fail "serve iscsi --listen $l: status $rc: $err"
done
err=$($H serve iscsi --mode both 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -qF "hbakit serve iscsi: --mode takes auto, bundled or per-task, not 'both'" ||
	fail "serve iscsi --mode both: status $rc: $err"
err=$($H bench --mode auto 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -qF "hbakit bench: --mode takes per-task, bundled or both, not 'auto'" ||
	fail "bench --mode auto: status $rc: $err"
err=$($H info --driver 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$err" | grep -qF "hbakit info: --driver needs a value" || fail "info --driver: status $rc: $err"
$H info --driver /nonexistent >/dev/null 2>&1; [ $? -eq 1 ] || fail "missing driver not reported"
# Bad driver options are refused, the option named: no division by a zero
# block size, no unit dropped, no count cut to 32 bits.
for a in bs=0:"bs=0: expected" bs=1024:"bs=1024: expected 512 or 4096" size=4m0000:"size=4m0000: expected" \
	 size=-1:"size=-1: expected" targets=4294967297:"targets=4294967297: expected 1..64" \
	 sise=1G:"sise=1G: not an option of this driver" size:"size: not NAME=VALUE" \
	 size=1000:"size=1000: not a multiple of the block size (512)"; do
	err=$($H info --driver-arg "${a%%:*}" 2>&1); rc=$?
	[ $rc -eq 1 ] || fail "driver option ${a%%:*} gave status $rc: $err"
	echo "$err" | grep -q "hbk-ram: ${a#*:}" || fail "driver option ${a%%:*} not named: $err"
done
# LUN memory past what the machine has is refused, not left to the OOM
# killer; a RAM disk whose memory takes seconds to populate still starts
# (it populates in the background, not in INIT_CONTROLLER).
err=$($H info --driver-arg size=64t 2>&1); rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "hbk-ram: size=70368744177664: 1 LUNs of that size need more than" ||
	fail "a LUN past the machine's memory: status $rc: $err"
out=$($H info --driver-arg size=2g 2>&1) && echo "$out" | grep -q "2.0 GiB" || fail "a 2 GiB RAM disk did not start: $out"
$H bench --lun 4294967296 >/dev/null 2>&1; [ $? -eq 2 ] || fail "--lun past 32 bits not refused"
$H bench --bs -512 >/dev/null 2>&1; [ $? -eq 2 ] || fail "negative --bs not refused"
for t in inf nan 1e9; do
	$H bench --runtime $t >/dev/null 2>&1; [ $? -eq 2 ] || fail "--runtime $t not refused"
done
# The nbdkit plugin's poll=0 never polls the completion ring, as hbakit's
# --poll-us 0 (in hbk_ctl_opts 0 is the default, 100 us): the plugin says
# so and 4096 reads of 4 KiB make no ring poll.  Plain build only: a
# sanitizer build's plugin needs nbdkit started as nbdkit/testlib.sh does.
plugin() {   # plugin KEY=VALUE...: nbdkit -v with the plugin, nbdcopy reading 16 MiB
	nbdkit -v -U - "$BUILD/nbdkit-hbakit-plugin.so" mode=bundled driver-arg=size=16M "$@" \
		--run 'nbdcopy --request-size=4096 "$uri" /dev/null' 2>&1
}
case $BUILD in
*san-*) ;;
*)	if command -v nbdkit >/dev/null && command -v nbdcopy >/dev/null; then
		out=$(plugin poll=0)
		echo "$out" | grep -q "completion ring polling: never$" ||
			fail "the plugin's poll=0 is not 'never': $(echo "$out" | grep 'LUN(s)')"
		echo "$out" | grep -q " 0 completion ring polls$" ||
			fail "the plugin's poll=0 polled: $(echo "$out" | grep 'ring polls')"
		out=$(plugin poll=50)
		echo "$out" | grep -q "completion ring polling: 50 us$" || fail "the plugin's poll=50: $out"
		nbdkit -U - "$BUILD/nbdkit-hbakit-plugin.so" poll=-2 --run true 2>/dev/null &&
			fail "the plugin took poll=-2"
	fi ;;
esac

# tools/deps.sh, as a user who is not root on a machine with nothing
# installed (stand-in id and dpkg-query), names every package and fails:
# make's (a fresh Debian 12 has none) and those of the tools the test and
# bench scripts run (pgrep, ss, python3) among them.
F=$(mktemp -d)
printf '#!/bin/sh\nexit 1\n' >"$F/dpkg-query"
printf '#!/bin/sh\necho 1000\n' >"$F/id"
chmod +x "$F/dpkg-query" "$F/id"
out=$(cd "$(dirname "$0")/.." && PATH="$F:$PATH" tools/deps.sh 2>&1); rc=$?
rm -rf "$F"
[ $rc -eq 1 ] || fail "deps.sh with nothing installed, not root: status $rc"
for p in build-essential libcmocka-dev nbdkit fio libiscsi-bin procps iproute2 python3; do
	echo "$out" | grep -q "^deps: missing Debian packages: .*\b$p\b" || fail "deps.sh does not name $p: $out"
done
# The README's quick start runs deps.sh before make (make comes with its
# packages), and .ci/run runs the README's test command.
quick=$(sed -n '/^## Quick start/,/^## /p' "$(dirname "$0")/../README.md")
ci=$(grep -vE '^(#|$|set |cd |export )' "$(dirname "$0")/../.ci/run")
echo "$quick" | grep -qxE 'tools/deps.sh && make run +#.*' || fail "the quick start's make run does not run deps.sh first"
echo "$quick" | grep -qF "$ci " || fail ".ci/run runs '$ci', not the README's test command"
echo "$ci" | grep -qx 'tools/deps.sh && make check' || fail ".ci/run runs '$ci'"
# `make -j4 run` installs the packages before it compiles anything: with
# a stand-in deps that takes a second and then leaves a mark, and a
# stand-in compiler and archiver that fail without the mark (and otherwise
# write scripts that exit 0, the run's bench among them).
if command -v make >/dev/null; then
	M=$(mktemp -d)
	cat >"$M/deps" <<-EOS
	#!/bin/sh
	sleep 1; touch "$M/deps-done"
	EOS
	cat >"$M/cc" <<-EOS
	#!/bin/sh
	[ -e "$M/deps-done" ] || { echo "compiled before deps ended" >"$M/early"; exit 1; }
	out=; prev=
	for a; do [ "\$prev" = -o ] && out=\$a; prev=\$a; done
	[ "\$1" = rcs ] && out=\$2
	mkdir -p "\$(dirname "\$out")" && printf '#!/bin/sh\nexit 0\n' >"\$out" && chmod +x "\$out"
	EOS
	chmod +x "$M/deps" "$M/cc"
	(cd "$(dirname "$0")/.." && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j4 --no-print-directory \
		BUILD="$M/b" CC="$M/cc" AR="$M/cc" DEPS="$M/deps" run) >"$M/log" 2>&1; rc=$?
	why="$(cat "$M/early" 2>/dev/null) $(tail -5 "$M/log")"
	rm -rf "$M"
	[ $rc -eq 0 ] || fail "make -j4 run with stand-in tools: $why"
fi
echo "cli ok"
