/* SPDX-License-Identifier: MIT */
/*
 * The contract checker's reporting half: every refused driver action is
 * counted per rule and logged as one line naming the rule, the call, the slot
 * or task and the fix.  The checks themselves sit where the data is (ctl.c
 * for calls, io.c for completions); this file keeps the output uniform.
 */
#include <stdio.h>

#include "host/host_priv.h"

#define LOG_FIRST 8  /* lines per rule before the log thins out */

void hbk_chk_violation(struct hbk_ctl *c, unsigned rule, const char *fmt, ...)
{
	if (rule >= HBK_RULES)
		rule = 0;
	/* Logged first and counted after, so whoever sees the count (the
	 * statistics) finds the line already written.  Two threads reporting
	 * the same rule at once may both log one number or miss a thousandth:
	 * the thinning is approximate, the count exact. */
	unsigned long long n = atomic_load_explicit(&c->st_viol[rule], memory_order_relaxed) + 1;
	if (n <= LOG_FIRST || !(n % 1000)) {
		char text[768];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		if (n > LOG_FIRST)
			hbk_log(HBK_LOG_ERR, "HBK-C%02u (%llu times so far) %s", rule, n, text);
		else
			hbk_log(HBK_LOG_ERR, "HBK-C%02u %s", rule, text);
	}
	/* Release: a reader's acquire load of the count sees the line. */
	atomic_fetch_add_explicit(&c->st_viol[rule], 1, memory_order_release);
}

const char *hbk_chk_history(const struct htask *t, char *buf, size_t size)
{
	static const char *const name[] = { "FREE", "HOST", "DRIVER", "DONE" };
	size_t off = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < HIST_LEN && off < size; i++) {
		uint8_t s = t->hist[i];
		if (!s)
			continue;
		int n = snprintf(buf + off, size - off, "%s%s", off ? ">" : "", name[(s - 1) & 3]);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	return buf;
}
