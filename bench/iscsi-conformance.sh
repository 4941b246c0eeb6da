#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# libiscsi's conformance suite (iscsi-test-cu) against Debian's tgt, the
# reference target, and against `hbakit serve iscsi`, side by side: tgt
# with a file-backed LUN, hbakit on the ram controller and on a file-backed
# RAID 0 of two member files (the emulated RAID card's driver, hbk-raid).
# Every family runs in its own iscsi-test-cu process on a fresh LUN (the
# runner and the parser are the ones tests/test_iscsi_cu.sh uses:
# tests/iscsi/lib.sh, tests/iscsi/cu-parse.awk); the families that need a
# removable, write-protected or LBPPB 8 LUN (cu_lun_args) get one on tgt
# (tgtadm --params) and on the ram LUN alike, while the RAID 0 LUN keeps
# its fixed medium.  Prints one table: per
# family passed/failed/skipped for each target, the totals, and then every
# test whose result differs between tgt and hbakit's ram LUN.
#
#   bench/iscsi-conformance.sh [--families REGEX] [--size SIZE] [--no-raid] [--keep DIR]
#
# SIZE is every LUN's size (default 64M).  --keep DIR keeps each family's
# iscsi-test-cu output there.  BUILD names the build directory (default
# build).  tgt (Debian package tgt) is installed when missing and run as
# root; otherwise its column is left out with the reason.  Everything
# listens on 127.0.0.1 only.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/iscsi/lib.sh
FAMILIES=. SIZE=64M RAID=1 KEEP=

while [ $# -gt 0 ]; do
	case $1 in
	--families) FAMILIES=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--no-raid) RAID=0; shift ;;
	--keep) KEEP=$2; shift 2 ;;
	*) echo "usage: $0 [--families REGEX] [--size SIZE] [--no-raid] [--keep DIR]" >&2; exit 2 ;;
	esac
done
command -v iscsi-test-cu >/dev/null || fail "iscsi-test-cu is not installed (Debian package libiscsi-bin; tools/deps.sh)"

# The targets to compare: "name title".
targets=()
if ! command -v tgtd >/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "iscsi-conformance: installing tgt"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tgt >/dev/null ||
			fail "apt-get install tgt failed"
	else
		echo "note: tgt is not installed (Debian package tgt; run as root to install it): no tgt column"
	fi
fi
if command -v tgtd >/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		targets+=(tgt)
	else
		echo "note: tgtd needs root (its control socket is in /var/run/tgtd): no tgt column"
	fi
fi
if has_target; then
	targets+=(ram)
	[ "$RAID" -eq 1 ] && [ -x "$BUILD/drivers/hbk-raid" ] && targets+=(raid0)
else
	echo "note: $HBAKIT serve iscsi is not built: no hbakit columns"
fi
[ ${#targets[@]} -gt 0 ] || fail "nothing to run"
mapfile -t families < <(cu_families "$FAMILIES")
[ ${#families[@]} -gt 0 ] || fail "no iscsi-test-cu family matches /$FAMILIES/"

# FRESH and STOP commands of cu_suite for each target.
tgt_fresh() {
	rm -f "$T/tgt.img"
	truncate -s "$SIZE" "$T/tgt.img"
	tgt_lun "$T/tgt.img"
	local params
	params=$(cu_lun_args "$1" | sed 's/^ro=/readonly=/' | paste -sd, -)   # tgt's names
	[ -z "$params" ] || tgtctl --mode logicalunit --op update --tid 1 --lun 1 --params "$params" ||
		fail "tgtadm could not set $params"
	CU_URL=$(tgt_url)
}
ram_fresh() {
	local args=(--driver-arg "size=$SIZE") a
	for a in $(cu_lun_args "$1"); do
		args+=(--driver-arg "$a")
	done
	iscsi_start ram "${args[@]}"
	CU_URL=$(iscsi_url 0 0)
}
raid0_fresh() {
	rm -f "$T"/r0-*.img
	# size= is per member: two members make one LUN of SIZE.
	local half
	half=$(( $(numfmt --from=iec "$SIZE") / 2 ))
	iscsi_start raid0 --driver "$BUILD/drivers/hbk-raid" \
		--driver-arg "array=r0:level=0,chunk=64k,size=$half,disk=file:$T/r0-a.img,disk=file:$T/r0-b.img"
	CU_URL=$(iscsi_url 0 0)
}
hbk_stop() { iscsi_stop quiet >>"$T/server.log"; }
noop() { :; }

echo "iscsi-conformance: ${#families[@]} families, targets: ${targets[*]}, $SIZE LUNs"
for t in "${targets[@]}"; do
	echo "$t:"
	start=$(date +%s)
	case $t in
	tgt)
		truncate -s "$SIZE" "$T/tgt.img"
		tgt_start ref "$T/tgt.img"
		cu_suite tgt_fresh noop "$T/cu-$t" "${families[@]}"
		tgt_stop ;;
	*)
		cu_suite "${t}_fresh" hbk_stop "$T/cu-$t" "${families[@]}" ;;
	esac
	echo "  ($(($(date +%s) - start)) s)"
done
[ -n "$KEEP" ] && mkdir -p "$KEEP" && cp -r "$T"/cu-* "$KEEP"/

# The table: "P/F/S" per target and family.
echo
printf '%-30s' family
for t in "${targets[@]}"; do printf ' %12s' "$t p/f/s"; done
echo
for fam in "${families[@]}" TOTAL; do
	printf '%-30s' "$fam"
	for t in "${targets[@]}"; do
		if [ "$fam" = TOTAL ]; then
			read -r p f s < <(cu_totals "$T/cu-$t")
		else
			read -r _ p f s < <(grep '^summary' "$T/cu-$t/$fam.res")
		fi
		printf ' %12s' "$p/$f/$s"
	done
	echo
done

# Where tgt and hbakit disagree.
if [[ " ${targets[*]} " == *" tgt "* && " ${targets[*]} " == *" ram "* ]]; then
	echo
	echo "tests whose result differs (tgt -> hbakit ram):"
	join -a1 -a2 -e none -o 0,1.2,2.2 <(cat "$T"/cu-tgt/*.res | awk '$1 == "test" { print $2, $3 }' | sort) \
		 <(cat "$T"/cu-ram/*.res | awk '$1 == "test" { print $2, $3 }' | sort) |
		awk '$2 != $3 { printf "  %-55s %-8s -> %s\n", $1, $2, $3; n++ } END { if (!n) print "  none" }'
fi
