#!/usr/bin/awk -f
# SPDX-License-Identifier: MIT
#
# Turns the text output of libiscsi's iscsi-test-cu (CUnit "basic" verbose
# mode) into counts: one line per test, "test NAME passed|failed|skipped"
# (a failed test adds why: its first "[FAILED]" message, else CUnit's first
# failed assertion), then one line "summary P F S".  NAME is PREFIX.Suite.Test (set PREFIX with
# -v prefix=SCSI; without it NAME is Suite.Test), the spelling
# `iscsi-test-cu -l` lists and `-t` takes.
#
# The output it reads looks like this:
#
#   Suite: Read10
#     Test: Simple ...passed
#     Test: Unmap ...    [SKIPPED] Logical unit is fully provisioned. ...
#   passed
#     Test: 2Initiators ...    Take out a RESERVE6 from the first initiator
#       [FAILED] MODESENSE6 successful but should have failed ...
#   FAILED
#       1. test_reserve6_2initiators.c:70  - CU_ASSERT_EQUAL(_r,0)
#     Test: LUNReset ...passed    [FAILED] PRIN command: failed ...
#   Run Summary:    Type  Total    Ran Passed Failed Inactive
#                 suites      1      1    n/a      0        0
#                  tests      6      6      6      0        0
#
# A test's verdict is CUnit's: "passed" or "FAILED" right after the "...",
# or alone on a line after the test's own messages.  Text after the verdict
# on the same line comes from the next setup or cleanup and does not count.
# A test that printed "[SKIPPED]" before a "passed" verdict is counted as
# skipped (CUnit itself counts it as passed); a "[FAILED]" message under a
# "passed" verdict is only a message (the test did not assert on it).
#
# What cannot be a clean run is reported as a failed pseudo-test, so a
# caller that compares names against a list of accepted failures sees it:
#   PREFIX.Suite.<suite-init>     CUnit could not initialise the suite
#   PREFIX.Suite.<suite-cleanup>  CUnit's suite cleanup failed
#   PREFIX.<no-summary>           no "Run Summary" (crash, hang, login refused)
#   PREFIX.<no-tests>             the summary says no test ran
#   PREFIX.<count-mismatch>       the per-test lines disagree with the summary
#   PREFIX.Suite.Test.<no-verdict> a test started and never ended
{ sub(/\r$/, "") }

function name(t) { return (prefix != "" ? prefix "." : "") (suite != "" ? suite "." : "") t }

# CUnit has given test cur its verdict; the line is printed once what
# follows it (the failed assertions) has been seen.
function verdict(v) {
	if (v == "FAILED") res = "failed"
	else res = skipped_msg ? "skipped" : "passed"
	done_name = name(cur)
	cur = ""
}

# Prints the test that has its verdict, or reports one that never got it.
function flush() {
	if (done_name != "") {
		print "test", done_name, res (res == "failed" && why != "" ? " " why : "")
		n[res]++
	} else if (cur != "") {
		print "test", name(cur ".<no-verdict>"), "failed" (why != "" ? " " why : "")
		n["failed"]++
	}
	done_name = cur = why = ""
	skipped_msg = 0
}

# Remembers what a test prints: a skip, or the first failure message.
function note(text) {
	if (text ~ /\[SKIPPED\]/) skipped_msg = 1
	if (why == "" && text ~ /\[FAILED\]/) {
		why = text
		sub(/.*\[FAILED\][ \t]*/, "", why)
		why = substr(why, 1, 160)
	}
}

function pseudo(s, what) {
	print "test", (prefix != "" ? prefix "." : "") s "." what, "failed"
	n["failed"]++
	suite_fail++
}

/^Suite: / {
	flush()
	suite = substr($0, 8)
	sub(/[ \t]+$/, "", suite)
	next
}

/^  Test: .* \.\.\./ {
	flush()
	line = $0
	sub(/^  Test: /, "", line)
	i = index(line, " ...")
	cur = substr(line, 1, i - 1)
	rest = substr(line, i + 4)
	# "...passed" or "...FAILED" directly is the verdict; anything after
	# it belongs to what runs next.
	if (rest ~ /^passed/) verdict("passed")
	else if (rest ~ /^FAILED/) verdict("FAILED")
	else note(rest)
	next
}

/WARNING - Suite initialization failed for '/ || /WARNING - Suite cleanup failed for '/ {
	flush()
	s = $0
	sub(/.*failed for '/, "", s)
	sub(/'.*/, "", s)
	pseudo(s, /initialization/ ? "<suite-init>" : "<suite-cleanup>")
	next
}

/^Run Summary:/ { flush(); in_summary = 1; next }

in_summary && $1 == "tests" && NF >= 5 {
	sum_ran = $3; sum_failed = $5; have_summary = 1
	next
}

cur != "" {
	line = $0
	sub(/^[ \t]+/, "", line)
	if (line ~ /^passed/) verdict("passed")
	else if (line ~ /^FAILED/) verdict("FAILED")
	else note(line)
	next
}

# The first failed assertion of a failed test that printed no message.
done_name != "" && res == "failed" && why == "" && /^ +1\. / {
	why = $0
	sub(/^ +1\. /, "", why)
	why = substr(why, 1, 160)
}

END {
	flush()
	p = prefix != "" ? prefix "." : ""
	if (!have_summary) {
		print "test", p "<no-summary>", "failed"; n["failed"]++
	} else if (sum_ran == 0 && suite_fail == 0) {
		print "test", p "<no-tests>", "failed"; n["failed"]++
	} else if (sum_ran != n["passed"] + n["skipped"] + n["failed"] - suite_fail ||
		   sum_failed != n["failed"] - suite_fail) {
		print "test", p "<count-mismatch>", "failed"; n["failed"]++
	}
	print "summary", n["passed"] + 0, n["failed"] + 0, n["skipped"] + 0
}
