#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Makes sure the Debian packages hbakit builds and tests with are installed.
# As root it installs what is missing with apt-get; otherwise it names the
# missing packages and fails, so a build never half-works.
set -u
# The compiler (gcc brings its ASan/UBSan/TSan runtimes), cmocka for the
# tests, clang for the -Werror build and valgrind for the memory check of
# `make check`; liburing (disk I/O), ISA-L (RAID parity, CRC32C) and libnbd
# (network member disks) for the RAID controller.
need=(build-essential libcmocka-dev clang valgrind libnbd-dev liburing-dev libisal-dev)
# The nbdkit front end: nbdkit-plugin-dev builds the plugin; nbdkit, fio (its
# nbd engine), libnbd-bin (nbdcopy, nbdinfo) and qemu-utils with
# qemu-block-extra (qemu-img, qemu-io) run its tests and bench/fio-seed.sh.
need+=(nbdkit nbdkit-plugin-dev libnbd-bin fio qemu-utils qemu-block-extra)
# The iSCSI front end: nettle (MD5 for CHAP) builds it; libiscsi-bin
# (iscsi-test-cu, iscsi-inq, iscsi-readcapacity16, iscsi-perf) tests it.
need+=(nettle-dev libiscsi-bin)
missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
	echo "deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
		echo "deps: apt-get install failed" >&2; exit 1; }
else
	echo "deps: missing Debian packages: ${missing[*]}" >&2
	echo "deps: run as root, or: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
