#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# bench/raid0-vs-fio.sh's arithmetic and error handling, against stand-ins
# for fio, hbakit, the card's driver and the disk probe that print set
# figures: fio runs first on odd rounds and last on even ones, the medians
# of two rounds are the means of their two figures (IOPS and ratios), and a
# run whose I/O failed (hbakit's "errors", fio's "error") fails the round
# instead of giving a figure.
. "$(dirname "$0")/lib/common.sh"
need python3 numfmt
S=$(mktemp -d /var/tmp/hbk-bench-scripts.XXXXXX)
trap 'rm -rf "$S"' EXIT
dd if=/dev/zero of="$S/d.img" bs=1M count=1 oflag=direct status=none 2>/dev/null ||
	skip "/var/tmp does not take O_DIRECT writes (the script writes its files so)"
mkdir -p "$S/build/drivers" "$S/bin"
printf '#!/bin/sh\nexit 0\n' >"$S/build/drivers/hbk-raid"
printf '#!/bin/sh\necho probe\n' >"$S/build/disk-batch-probe"
# next KIND: the next line of $S/KIND.seq (a counter per kind).
cat >"$S/next.sh" <<'STUB'
n=$(cat "$S/$1.n" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" >"$S/$1.n"
sed -n "${n}p" "$S/$1.seq"
STUB
cat >"$S/build/hbakit" <<'STUB'
#!/bin/bash
[ "$1" = raid ] && exit 0
case "$*" in *poll=10*) k=poll ;; *) k=plain ;; esac
echo "$k" >>"$S/calls"
read -r iops errors < <(. "$S/next.sh" "$k")
echo "{\"results\": [{\"iops\": $iops, \"errors\": $errors, \"cpu_us_per_io\": 2.0}]}"
[ "$errors" -eq 0 ]
STUB
cat >"$S/bin/fio" <<'STUB'
#!/bin/bash
echo fio >>"$S/calls"
read -r iops error < <(. "$S/next.sh" fio)
echo "{\"jobs\": [{\"error\": $error, \"read\": {\"iops\": $iops, \"iops_mean\": 1}}]}"
[ "$error" -eq 0 ]
STUB
chmod +x "$S/build/drivers/hbk-raid" "$S/build/disk-batch-probe" "$S/build/hbakit" "$S/bin/fio"
export S

# run ROUNDS: the script on the stand-ins, output in $out.
run() {
	rm -f "$S/calls" "$S"/*.n
	out=$(PATH=$S/bin:$PATH BUILD=$S/build timeout 60 bench/raid0-vs-fio.sh --rounds "$1" \
		--runtime 1 --size 1M --dir "$S" 2>&1)
}

printf '1000 0\n2000 0\n' >"$S/fio.seq"
printf '800 0\n900 0\n' >"$S/plain.seq"
printf '600 0\n1000 0\n' >"$S/poll.seq"
run 2 || fail "exit $?: $out"
echo "$out"
[ "$(tr '\n' ' ' <"$S/calls")" = "fio plain poll plain poll fio " ] ||
	fail "fio not first on odd rounds and last on even ones: $(tr '\n' ' ' <"$S/calls")"
echo "$out" | grep -qE '^1 +1000 +800 +2\.0 +0\.80 +600 +2\.0 +0\.60$' || fail "round 1 row"
echo "$out" | grep -qE '^2 +2000 +900 +2\.0 +0\.45 +1000 +2\.0 +0\.50$' || fail "round 2 row"
echo "$out" | grep -qE '^median +1500 +850 +0\.625 +800 +0\.55$' || fail "medians of two rounds"

# hbakit's I/O failed (status 1, errors in its JSON): no figure, the round fails.
printf '1000 0\n' >"$S/fio.seq"
printf '800 3\n' >"$S/plain.seq"
printf '600 0\n' >"$S/poll.seq"
run 1 && fail "a round whose hbakit run had I/O errors passed: $out"
echo "$out" | grep -q "round 1 failed" || fail "no failed round: $out"

# fio's I/O failed (an error in its JSON).
printf '1000 5\n' >"$S/fio.seq"
printf '800 0\n' >"$S/plain.seq"
run 1 && fail "a round whose fio run had an error passed: $out"
echo "$out" | grep -q "round 1 failed" || fail "no failed round: $out"
echo "bench scripts ok"
