#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Makes sure the Debian packages hbakit builds and tests with are installed.
# As root it installs what is missing with apt-get; otherwise it names the
# missing packages and fails, so a build never half-works.  It needs only
# what every Debian system has (bash, dpkg, apt-get), not make: a fresh
# Debian 12 has no make until build-essential is in, which is why the
# README's commands run this script before make.
set -u
# The compiler and make (build-essential; gcc brings its ASan/UBSan/TSan
# runtimes), cmocka for the tests, clang for the -Werror build and, with
# clang's runtimes (libclang-rt-dev: libFuzzer, ASan, UBSan; only a
# recommendation of clang's, which --no-install-recommends leaves out), for
# the fuzz harnesses, cppcheck for `make lint` and valgrind for the memory
# check of `make check`; liburing (disk I/O), ISA-L (RAID parity, CRC32C)
# and libnbd (network member disks) for the RAID controller.
need=(build-essential libcmocka-dev clang libclang-rt-dev cppcheck valgrind libnbd-dev liburing-dev
      libisal-dev)
# The nbdkit front end: nbdkit-plugin-dev builds the plugin; nbdkit, fio (its
# nbd engine), libnbd-bin (nbdcopy, nbdinfo) and qemu-utils with
# qemu-block-extra (qemu-img, qemu-io) run its tests and bench/fio-seed.sh.
need+=(nbdkit nbdkit-plugin-dev libnbd-bin fio qemu-utils qemu-block-extra)
# The iSCSI front end: nettle (MD5 for CHAP) builds it; libiscsi-bin
# (iscsi-test-cu, iscsi-inq, iscsi-readcapacity16, iscsi-ls, iscsi-perf)
# tests it.
need+=(nettle-dev libiscsi-bin)
# What the test and bench scripts run beyond Debian's essential set: procps
# (pgrep: a driver's or a server's children), iproute2 (ss: a free port for
# tgtd) and python3 (bench/raid0-vs-fio.sh reads fio's JSON).  The iSCSI
# benches install tgt, the reference target, themselves when they run.
need+=(procps iproute2 python3)
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
