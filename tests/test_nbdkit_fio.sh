#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# fio through nbdkit on hbakit, on the bundled and the per-task path of the
# ram controller and on a RAID 5 virtual drive of the raid controller (when
# it is built): two jobs (two NBD connections) write random blocks of 4-64
# KiB with crc32c verify headers, then two fresh connections read it all
# back and check it (verify_only).  Both phases must end without an error.
. "$(dirname "$0")/../nbdkit/testlib.sh"
need fio
fio --enghelp=nbd 2>/dev/null | grep -q uri || skip "fio has no nbd engine"

configs=("bundled mode=bundled driver-arg=size=32M" "per-task mode=per-task driver-arg=size=32M")
[ -x "$BUILD/drivers/hbk-raid" ] &&
	configs+=("raid5 mode=bundled driver=$BUILD/drivers/hbk-raid driver-arg=vd=r5:raid5:4x16M")
for c in "${configs[@]}"; do
	read -r -a keys <<<"$c"
	name=${keys[0]}
	nbd_start "${keys[@]}"
	common=(--ioengine=nbd --uri="$(uri)" --rw=randwrite --bsrange=4k-64k --iodepth=16
		--numjobs=2 --size=12M --offset_increment=12M --verify=crc32c
		--verify_state_save=0 --group_reporting)
	out=$(timeout 60 fio --name="write-$name" "${common[@]}" --do_verify=0) ||
		fail "$name: fio write phase exit $?: $out"
	echo "$out" | grep -E "err=|WRITE:"
	out=$(timeout 60 fio --name="verify-$name" "${common[@]}" --verify_only=1) ||
		fail "$name: fio verify phase exit $?: $out"
	echo "$out" | grep -E "err=|READ:"
	echo "$out" | grep -q "err= 0" || fail "$name: verify reported errors: $out"
	echo "$out" | grep -qE "READ: bw=.*io=(2[0-9]|[3-9][0-9])\.?[0-9]*MiB" ||
		fail "$name: verify did not read the 24 MiB back: $out"
	nbd_stop
done
echo "nbdkit fio ok"
