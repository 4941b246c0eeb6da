#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# `hbakit raid` end to end on files: create a RAID 5 of 4 files with its
# initial resync, status (table and JSON), a pattern written and read back
# (tests/test_raid_spec's pattern helper), a member failed, degraded status
# and check, a replacement rebuilt, check clean; a corrupted parity block
# found by check (exit 3) and repaired; a stale and a foreign disk reported
# and refused; a second process kept out while one holds the files; a split
# brain refused; bad specs and options refused with status 2; rebuild onto a
# spare, interrupted and continued.
. "$(dirname "$0")/lib/common.sh"
H=$BUILD/hbakit
PAT=$BUILD/tests/test_raid_spec
[ -x "$H" ] && [ -x "$PAT" ] || skip "$H or $PAT not built"

D=$(mktemp -d)
watcher=
trap '[ -n "$watcher" ] && kill "$watcher" 2>/dev/null; rm -rf "$D"' EXIT

# The spec of a RAID 5 over the named files in $D.
spec() { local s="level=5,chunk=64k" f; for f in "$@"; do s="$s,disk=file:$D/$f"; done; echo "$s"; }
# Runs hbakit; $out holds stdout and stderr, $rc the exit status.
run() { out=$("$H" raid "$@" 2>&1); rc=$?; echo "\$ hbakit raid $*"; echo "$out"; }
expect() { [ "$rc" -eq "$1" ] || fail "exit status $rc, want $1"; shift
	   for w in "$@"; do echo "$out" | grep -qF -- "$w" || fail "output lacks: $w"; done; }

S=$(spec d0 d1 d2 d3)
run create "$S,size=4m" --rate 16m
expect 0 "created raid5" "resync: 100.0%" "the array is optimal"
for f in d0 d1 d2 d3; do [ "$(stat -c %s "$D/$f")" -eq $((5 << 20)) ] || fail "$f not created at 5 MiB"; done

run status "$S"
expect 0 "raid5 of 4 members, chunk 64.0 KiB, 12.0 MiB" "state: optimal" "cache: write-through"
[ "$(echo "$out" | grep -c 'member  active')" -eq 4 ] || fail "4 active members expected"
run status --json "$S"
expect 0 '"state": "optimal"' '"level": "raid5"' '"verdict": "member"' \
	'{"slot": 0, "role": "member", "state": "active", "generation": '

"$PAT" pattern write "$S" 7 || fail "pattern write"
"$PAT" pattern verify "$S" 7 || fail "pattern verify"

run fail "$S" "$D/d1"
expect 0 "slot 1 failed: the array is degraded"
run fail "$S" "$D/d1"
expect 1 "is not a member of the array (stale)"
run fail "$S" 1
expect 1 "slot 1: has failed already"
# A second failure would stop the degraded RAID 5 for good: only forced.
run fail "$S" 2
expect 1 "slot 2: failing it would leave the raid5 without the members it needs"
run status "$S"
expect 0 "state: degraded" "(missing)" "stale"
# JSON as the table: the failed slot has no generation and no disk.
run status --json "$S"
expect 0 '{"slot": 1, "role": "member", "state": "failed", "generation": null, "rebuilt": 0, "disk": null}' \
	'"verdict": "stale"'
"$PAT" pattern verify "$S" 7 || fail "pattern verify, degraded"
run check "$S"
expect 0 "the array is degraded: no redundancy to compare" "0 unreadable"
# In a pipe too, what it does is said before its progress lines.
first=$(echo "$out" | grep -m1 -e "no redundancy" -e "^read: ")
[[ $first == *"no redundancy"* ]] || fail "the progress came before what check does: $first"

# A refused replace leaves no file behind: the one it made for the new
# disk goes with it.
run replace "$S" 0 "file:$D/n0"
expect 1 "slot 0: has not failed"
[ ! -e "$D/n0" ] || fail "a refused replace left behind the file it made"
run replace "$S" "$D/d1" "file:$D/n1" --rate 16m
expect 0 "slot 1: rebuilding onto file:$D/n1" "rebuild: 100.0%" "the array is optimal"
S2=$(spec d0 n1 d2 d3)
run check "$S2"
expect 0 "checked 64 stripes: 0 mismatches"
"$PAT" pattern verify "$S2" 7 || fail "pattern verify, rebuilt"

# Stripe 0's parity is on the last member (left-symmetric), at 1 MiB.
dd if=/dev/urandom of="$D/d3" bs=4k seek=256 count=1 conv=notrunc status=none
run check "$S2"
expect 3 "1 mismatches (the first in stripe 0)"
run check --repair "$S2"
expect 3 "1 mismatches (the first in stripe 0), repaired"
run check "$S2"
expect 0 "0 mismatches"
"$PAT" pattern verify "$S2" 7 || fail "pattern verify, repaired"

# The old d1 is stale, e0 belongs to another array: both reported, neither used.
run create "level=1,size=1m,disk=file:$D/e0,disk=file:$D/e1" --assume-clean
expect 0 "created raid1"
run status "$S2,disk=file:$D/d1,disk=file:$D/e0"
expect 0 "state: optimal"
echo "$out" | grep -q "stale .*file:$D/d1$" || fail "d1 not reported stale"
echo "$out" | grep -q "foreign .*file:$D/e0$" || fail "e0 not reported foreign"
run fail "$S2,disk=file:$D/e0" "$D/e0"
expect 1 "is not a member of the array (foreign)"
run create "$(spec e0 d1 x2),size=1m"
expect 1 "file:$D/e0: carries hbakit RAID metadata" "2 of the disks carry hbakit RAID metadata"
run status "level=1,disk=file:$D/e0,disk=file:$D/e1"
expect 0 "state: optimal"
run fail "$S2" 2
expect 0 "slot 2 failed"
run replace "$S2" 2 "file:$D/e1"
expect 1 "carries hbakit RAID metadata"
run replace "$S2,disk=file:$D/d1" 2 "file:$D/d1"   # a stale disk of this array may come back
expect 0 "rebuild: 100.0%" "the array is optimal"
S3=$(spec d0 n1 d1 d3)
"$PAT" pattern verify "$S3" 7 || fail "pattern verify, stale disk back"

# A missing disk is reported and stops the assembly unless forced.
run status "$S3,disk=file:$D/gone"
expect 1 "file:$D/gone: cannot open: No such file or directory" "1 of the disks cannot be opened"

# rebuild: refused without a spare; onto a blank spare= disk, interrupted
# (the cursor is kept) and continued.
run fail "$S3" 3
expect 0 "slot 3 failed: the array is degraded"
run rebuild "$S3"
expect 1 "no spare to rebuild onto"
truncate -s 5M "$D/s0"
S4="$S3,spare=file:$D/s0"
"$H" raid rebuild --rate 2m "$S4" >"$D/rebuild.out" 2>&1 &
pid=$!
sleep 0.7
kill -TERM "$pid"
wait "$pid"; rc=$?
cat "$D/rebuild.out"
[ "$rc" -eq 130 ] || fail "interrupted rebuild exit $rc, want 130"
grep -q "rebuild interrupted at" "$D/rebuild.out" || fail "no interruption message"
run status "$S4"
expect 0 "state: rebuilding" "rebuild: "
echo "$out" | grep -q "rebuilding [1-9]" || fail "the rebuild cursor was not kept"
# A closed terminal (SIGHUP) or a closed pipe stops it as cleanly: the
# cursor moves on each time.
pct() { "$H" raid status "$S4" 2>/dev/null | sed -n 's/^rebuild: \([0-9.]*\)%$/\1/p'; }
more() { awk "BEGIN { exit !($2 > $1) }" || fail "$3 lost the rebuild's progress ($1% then $2%)"; }
p0=$(pct)
"$H" raid rebuild --rate 1m "$S4" >"$D/rebuild.out" 2>&1 &
pid=$!
sleep 0.5
kill -HUP "$pid"
wait "$pid"; rc=$?
[ "$rc" -eq 130 ] || fail "rebuild on SIGHUP exit $rc, want 130"
p1=$(pct)
more "$p0" "$p1" SIGHUP
"$H" raid rebuild --rate 1m "$S4" 2>&1 >/dev/null | grep -m1 "^rebuild: " >/dev/null
rc=${PIPESTATUS[0]}
[ "$rc" -eq 130 ] || fail "rebuild into a closed pipe exit $rc, want 130"
more "$p1" "$(pct)" "a closed pipe"
run rebuild "$S4"
expect 0 "rebuild: 100.0%" "the array is optimal"
S3=$(spec d0 n1 d1 s0)
"$PAT" pattern verify "$S3" 7 || fail "pattern verify, rebuilt onto the spare"
run rebuild "$S3"
expect 0 "the array is optimal"

# One process at a time: a second status meets the first one's locks.
"$H" raid status --watch 0.2 "$S3" >"$D/watch.out" 2>&1 &
watcher=$!
for _ in $(seq 200); do grep -q "state:" "$D/watch.out" && break; sleep 0.05; done
grep -q "state: optimal" "$D/watch.out" || fail "the watching status did not report"
run status "$S3"
expect 1 "file:$D/d0: in use by another process"
kill -TERM "$watcher"
wait "$watcher" || fail "the watching status exit $?"
watcher=
run status "$S3"
expect 0 "state: optimal"

# A split brain: a RAID 1 fails its second disk and runs on, then that disk
# is assembled on its own (the first one missing, forced); each half ran the
# array without the other, so assembling both is refused, with --force too
# (it is for missing disks and dirty arrays), until the split brain is
# accepted, and not after.
M="level=1,chunk=64k,disk=file:$D/m0,disk=file:$D/m1"
run create "$M,size=4m"
expect 0 "created raid1"
run fail "$M" "$D/m1"
expect 0 "slot 1 failed: the array is degraded"
run status "level=1,chunk=64k,disk=file:$D/gone,disk=file:$D/m1" --force
expect 0 "state: degraded"
run status "$M"
expect 1 "split brain: a stale disk ran the array on its own" "accept the split brain to keep generation"
run status "$M" --force
expect 1 "split brain: a stale disk ran the array on its own"
run status "$M" --accept-split-brain
expect 0 "state: degraded" "stale" "split brain accepted"
run status "$M"   # the choice was recorded: the other half is merely stale
expect 0 "state: degraded" "stale"

# A RAID 5 stopped by a forced second failure comes back only forced, with
# the member that failed last (it saw every acknowledged write), never the
# one that failed first.
F=$(spec f0 f1 f2)
run create "$F,size=2m"
expect 0 "created raid5"
"$PAT" pattern write "$F" 11 || fail "pattern write (f)"
run fail "$F" 0
expect 0 "slot 0 failed: the array is degraded"
"$PAT" pattern write "$F" 12 || fail "pattern write (f, degraded)"
run fail "$F" 1 --force
expect 1 "slot 1 failed: the array is failed"
run status "$F"
expect 1 "too many members missing"
run status "$(spec f0 gone f2)" --force
expect 1 "too many members missing"
run status "$F" --force
expect 0 "forced: member 1" "state: degraded" "stale"
"$PAT" pattern verify "$F" 12 || fail "pattern verify after the forced assembly"
run status "$F"   # recorded: no force needed from now on
expect 0 "state: degraded"

# The driver's array= creates an array whose files are missing, but never
# a member file missing from an array that exists: it is refused, not made
# blank (which would leave the real disk stale once it is back).
G=$(spec g0 g1 g2)
"$H" info --driver "$BUILD/drivers/hbk-raid" --driver-arg "array=g:$G,size=2m" >/dev/null 2>&1 ||
	fail "array= did not create the array"
mv "$D/g1" "$D/g1.moved"
out=$("$H" info --driver "$BUILD/drivers/hbk-raid" --driver-arg "array=g:$G,size=2m" 2>&1) &&
	fail "array= ran with a member file missing: $out"
echo "$out" | grep -q "1 of the disks cannot be opened" || fail "missing member not named: $out"
[ ! -e "$D/g1" ] || fail "array= made the missing member file"
mv "$D/g1.moved" "$D/g1"
run status "$G"
expect 0 "state: optimal"

# A disk that holds data (not an array's) is overwritten only with --force.
head -c 2M /dev/urandom > "$D/data"
sum=$(md5sum < "$D/data")
run create "level=1,chunk=64k,size=256k,disk=file:$D/data,disk=file:$D/data2"
expect 1 "1 of the disks hold data (not an hbakit array's): force to overwrite it"
[ "$(md5sum < "$D/data")" = "$sum" ] || fail "a refused create changed the disk's data"
[ ! -e "$D/data2" ] || fail "a refused create left behind the file it made"
run create "level=1,chunk=64k,size=256k,disk=file:$D/data,disk=file:$D/data2" --force
expect 0 "created raid1"

# The README's array= example, its files in $D: it makes its missing
# member files (size=) and the driver serves the array.
RAIDDRV=$BUILD/drivers/hbk-raid
ex=$(grep -o 'array=r0:[^` ]*' "$(dirname "$0")/../README.md" | head -1 | sed "s|/var/tmp/|$D/ex-|g")
echo "$ex" | grep -q "size=" || fail "the README's array= example has no size=: $ex"
out=$("$H" info --driver "$RAIDDRV" --driver-arg "$ex" 2>&1) || fail "the README's array= example: $out"
echo "$out" | grep -q "HBK0-VD0-r0" || fail "the README's array= example serves no r0: $out"
[ -f "$D/ex-d0.img" ] && [ -f "$D/ex-d1.img" ] || fail "the README's array= example made no files"
# docs/device.md: a replacement given as spare= to the driver must exist,
# unless the spec has size=, which makes it.
R="level=1,chunk=64k,disk=file:$D/r0,disk=file:$D/r1"
run create "$R,size=1m"
expect 0 "created raid1"
run fail "$R" 1
expect 0 "slot 1 failed: the array is degraded"
out=$("$H" info --driver "$RAIDDRV" --driver-arg "array=r1:$R,spare=file:$D/rs" 2>&1) &&
	fail "the driver started with a missing spare= file and no size=: $out"
echo "$out" | grep -q "1 of the disks cannot be opened" || fail "a missing spare= file: $out"
out=$("$H" info --driver "$RAIDDRV" --driver-arg "array=r1:$R,size=1m,spare=file:$D/rs" 2>&1) ||
	fail "the driver with a missing spare= file and size=: $out"
run rebuild "$R,spare=file:$D/rs"   # goes on with what the driver began, if it has not ended
expect 0 "the array is optimal"
run status "$R,spare=file:$D/rs"
expect 0 "state: optimal"
echo "$out" | grep -q "^1 .*member .*active .*file:$D/rs$" || fail "the spare did not take slot 1"

# Bad specs and options: status 2, the bad key named.
run status "$S3" --watch nan
expect 2 "--watch takes seconds"
# A spare too small for the members (without size=, their size comes from
# the smallest member) is refused before anything is written: here, with
# --force, x0's header stays.
truncate -s 8M "$D/x0" "$D/x1" "$D/x2"
truncate -s 2M "$D/xs"
printf 'a header the create would overwrite' | dd of="$D/x0" conv=notrunc status=none
X="level=5,disk=file:$D/x0,disk=file:$D/x1,disk=file:$D/x2"
run create "$X,spare=file:$D/xs" --force
expect 1 "1 of the spares are too small (file:$D/xs): each needs 8388608 bytes"
[ "$(head -c 35 "$D/x0")" = "a header the create would overwrite" ] || fail "a refused create wrote on x0"
for f in x1 x2 xs; do [ -z "$(head -c 1M "$D/$f" | tr -d '\0')" ] || fail "a failed create left metadata on $f"; done
run create "$X" --force --rate 64m
expect 0 "created raid5"
run status "level=7,disk=file:$D/d0"
expect 2 "spec: level=7: not a RAID level"
run status "$S3,colour=red"
expect 2 "spec: colour=red: unknown key"
run check --json "$S3"
expect 2 "--json is not an option of this command"
run fail "$S3"
expect 2 "usage: hbakit raid fail SPEC SLOT|DISK"
run frobnicate
expect 2 "hbakit raid: unknown command 'frobnicate'" "usage: hbakit raid COMMAND"
out=$("$H" raid --help 2>/dev/null); rc=$?
expect 0 "usage: hbakit raid COMMAND" "exit status: 0 done"
out=$("$H" raid status --help 2>/dev/null); rc=$?
expect 0 "hbakit raid status SPEC"
echo "raid cli ok"
