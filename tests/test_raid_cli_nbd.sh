#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# `hbakit raid` with NBD disks (nbdkit memory on Unix sockets): a read-only
# export named as a member or as a spare is refused by create before
# anything is written, with the disk named; one named as a spare of an
# existing array is reported as read-only and not used; a create that fails
# half-way leaves the disks as they were; a resync stopped by a member's
# server dying is not shown as done, and a rebuild so stopped fails.
. "$(dirname "$0")/lib/common.sh"
H=$BUILD/hbakit
[ -x "$H" ] || skip "$H not built"
need nbdkit

D=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$D"' EXIT

# serve NAME [nbdkit options] [-- filter parameters]: a 3 MiB memory
# export on $D/NAME.
serve() {
	local name=$1 opts=() ; shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	nbdkit -f --exit-with-parent "${opts[@]}" -U "$D/$name" memory 3M "$@" &
	pids+=($!)
	for _ in $(seq 200); do [ -S "$D/$name" ] && return; sleep 0.02; done
	fail "nbdkit did not start on $D/$name"
}
run() { out=$("$H" raid "$@" 2>&1); rc=$?; echo "\$ hbakit raid $*"; echo "$out"; }
expect() { [ "$rc" -eq "$1" ] || fail "exit status $rc, want $1"; shift
	   for w in "$@"; do echo "$out" | grep -qF -- "$w" || fail "output lacks: $w"; done; }
no_array() { local f; for f; do [ ! -e "$D/$f" ] || fail "a refused create left $f behind"; done; }
# kill_server_during WHAT COMMAND ARGS...: runs hbakit raid COMMAND, and
# once its WHAT progress has shown, kills the server started last; $out
# and $rc then hold the command's output and exit status.
kill_server_during() {
	local what=$1 pid; shift
	"$H" raid "$@" >"$D/$what.out" 2>&1 &
	pid=$!
	for _ in $(seq 200); do grep -q "^$what: " "$D/$what.out" && break; sleep 0.02; done
	sleep 0.3
	kill -KILL "${pids[-1]}"
	wait "$pid"; rc=$?
	out=$(cat "$D/$what.out"); echo "$out"
}

serve ro -r

# A read-only member: refused up front, the disk named.
run create "level=5,size=1m,disk=file:$D/a,disk=file:$D/b,disk=nbd:$D/ro"
expect 1 "nbd:$D/ro: read-only" "1 of the disks are read-only"
no_array a b

# A read-only spare: the same, and no array is left half created.
run create "level=5,size=1m,disk=file:$D/a,disk=file:$D/b,disk=file:$D/c,spare=nbd:$D/ro"
expect 1 "nbd:$D/ro: read-only" "1 of the disks are read-only"
no_array a b c

# Named as a spare of an existing array: reported, not used.
S="level=5,size=1m,disk=file:$D/a,disk=file:$D/b,disk=file:$D/c"
run create "$S"
expect 0 "created raid5" "the array is optimal"
run status "$S,spare=nbd:$D/ro"
expect 0 "state: optimal" "nbd:$D/ro: read-only (not used)"
# A member that fails its writes (nbdkit's error filter) fails the create
# half-way, after the other members took their superblocks: those are
# wiped again, so the disks are as blank as before and a second create
# needs no force.
serve bad --filter=error -- error=EIO error-pwrite-rate=1
truncate -s 2M "$D/p" "$D/q"
B="level=5,size=1m,disk=file:$D/p,disk=file:$D/q,disk=nbd:$D/bad"
run create "$B"
expect 1 "cannot create the array: Input/output error"
for f in p q; do
	[ -z "$(tr -d '\0' < "$D/$f")" ] || fail "a failed create left data on $f"
done
run create "$B"
expect 1 "cannot create the array: Input/output error"
# The same with a spare that fails its writes: the members, written and
# resyncing by then, are wiped, not left carrying an array never made, nor
# given back what they held (with --force, here a header on p): the
# resync may have changed what that header describes.
truncate -s 2M "$D/p" "$D/q" "$D/r"
printf 'a header the create overwrote' | dd of="$D/p" conv=notrunc status=none
B="level=5,size=1m,disk=file:$D/p,disk=file:$D/q,disk=file:$D/r,spare=nbd:$D/bad"
run create "$B" --force
expect 1 "cannot create the array: nbd:$D/bad: cannot add the spare: Input/output error"
for f in p q r; do
	[ -z "$(head -c 4096 "$D/$f" | tr -d '\0')" ] || fail "a failed create left a superblock on $f"
done
run create "$B"
expect 1 "cannot add the spare: Input/output error"
# A spare whose blocks are larger than the members': refused up front,
# saying so (not that it is too small).
serve big4k --filter=blocksize-policy -- blocksize-minimum=4096
run create "level=5,size=1m,disk=file:$D/s0,disk=file:$D/s1,disk=file:$D/s2,spare=nbd:$D/big4k"
expect 1 "1 of the spares have blocks larger than the array's 512 bytes (nbd:$D/big4k)"
no_array s0 s1 s2
# The server of a member dies during the initial resync: the member fails
# and the resync stops short, which the progress says (not 100%).
serve dies
M="level=1,size=2m,disk=file:$D/m0,disk=nbd:$D/dies"
kill_server_during resync create "$M" --rate 1m
expect 0 "failed: read error" "resync: " "stopped after" "the array is degraded"
echo "$out" | grep -q "resync: 100.0%" && fail "the progress claims a resync that stopped short ended"
# The same during a rebuild onto an NBD spare: the rebuild stops short,
# and the command says so and fails (not "no spare to rebuild onto").
R="level=1,size=2m,disk=file:$D/r0,disk=file:$D/r1"
run create "$R" --assume-clean
expect 0 "created raid1"
run fail "$R" 1
expect 0 "slot 1 failed: the array is degraded"
serve spare
kill_server_during rebuild rebuild "$R,spare=nbd:$D/spare" --rate 1m
expect 1 "failed: write error" "stopped after" "the rebuild stopped: the disk it was rebuilding onto failed"
echo "$out" | grep -q "rebuild: 100.0%" && fail "the progress claims a rebuild that stopped short ended"
echo "$out" | grep -q "no spare to rebuild onto" && fail "a spare that failed taken for no spare"
echo "raid cli nbd ok"
