#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# qemu-img and qemu-io through nbdkit on hbakit: pattern writes and reads
# (plain, FUA, unaligned to 4 KiB but to the 512-byte block), zero with and
# without unmap, discard and flush with qemu-io; qemu-img convert of a raw
# image onto the LUN, then qemu-img compare of the two, and its map.
. "$(dirname "$0")/../nbdkit/testlib.sh"
need qemu-img qemu-io

nbd_start qemu driver-arg=size=16M
u=$(uri)
io() {
	local out
	out=$(timeout 30 qemu-io -f raw "$u" "$@" 2>&1) || fail "qemu-io $* exit $?: $out"
	echo "$out" | grep -Ev 'ops/sec|^[0-9]+ (KiB|MiB|bytes)' || true
	echo "$out" | grep -qiE 'fail|error|mismatch|pattern' && fail "qemu-io $*: $out"
	return 0
}
io -c 'write -P 0xa5 0 1M' -c 'read -P 0xa5 0 1M' \
   -c 'write -f -P 0x5a 1M 64k' -c 'read -P 0x5a 1M 64k' \
   -c 'write -P 0x11 3584 1536' -c 'read -P 0x11 3584 1536' -c 'read -P 0xa5 0 3584' \
   -c 'write -z 64k 64k' -c 'read -P 0 64k 64k' \
   -c 'write -z -u 128k 128k' -c 'read -P 0 128k 128k' \
   -c 'discard 512k 64k' -c 'read -P 0 512k 64k' -c 'read -P 0xa5 576k 64k' -c 'flush'

img=$T/disk.img
head -c 8M /dev/urandom >"$img"
truncate -s 16M "$img"
timeout 60 qemu-img convert -n -f raw -O raw "$img" "$u" || fail "qemu-img convert exit $?"
timeout 60 qemu-img compare -f raw -F raw "$img" "$u" || fail "qemu-img compare exit $?"
io -c 'write -P 0xff 12M 4k'
timeout 60 qemu-img compare -q -f raw -F raw "$img" "$u" && fail "compare missed a changed block"
map=$(timeout 30 qemu-img map -f raw --output=json "$u") || fail "qemu-img map exit $?"
echo "$map"
echo "$map" | grep -q '"zero": true' || fail "qemu-img map shows no zeroed range"
nbd_stop
echo "nbdkit qemu ok"
