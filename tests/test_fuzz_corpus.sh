#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# The libFuzzer harnesses (tests/fuzz, `make fuzz`) replay their checked-in
# corpus, seeds and the crashers of bugs fixed since among them: built with
# clang, ASan and UBSan into build/fuzz (`make fuzz-build`, done by `make
# check`; a no-op when up to date; fuzz_iscsi_conn serves build's ram
# driver), every input run once, no new fuzzing.
# Once per suite, in the plain build's turn: the harnesses carry their own
# sanitizers.  Skipped when clang or its libFuzzer runtime is missing.
. "$(dirname "$0")/lib/common.sh"
case $BUILD in *san-*) skip "the fuzz harnesses replay once, in the plain build's turn" ;; esac
need clang
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n); int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
	>"$probe/p.c"
clang -fsanitize=fuzzer -o "$probe/p" "$probe/p.c" >/dev/null 2>&1 ||
	skip "clang has no libFuzzer runtime (libclang_rt.fuzzer)"
cd "$(dirname "$0")/.." || fail "no source tree"
make -s DEPS=true fuzz-build build/drivers/hbk-ram >"$probe/make.log" 2>&1 || { tail -20 "$probe/make.log"; fail "make fuzz-build"; }
n=0
for dir in tests/fuzz/corpus/*/; do
	t=$(basename "$dir")
	bin=build/fuzz/fuzz_$t
	[ -x "$bin" ] || fail "$bin not built for corpus $dir"
	files=("$dir"*)
	"$bin" -timeout=10 "${files[@]}" >"$probe/$t.log" 2>&1 ||
		{ tail -30 "$probe/$t.log"; fail "fuzz_$t on its corpus"; }
	grep -q "^Executed .* in " "$probe/$t.log" || fail "fuzz_$t ran nothing"
	echo "fuzz_$t: ${#files[@]} inputs replayed"
	n=$((n + ${#files[@]}))
done
[ "$n" -gt 0 ] || fail "no corpus found"
echo "$n inputs replayed"
