/* SPDX-License-Identifier: MIT */
/*
 * Sizes as users write them: a decimal count with an optional binary unit
 * (k, m, g, t, any case, optionally followed by "iB" or "B"): "4096",
 * "64k", "1G", "2TiB".  The one parser behind the RAID spec, the drivers'
 * options and the CLI, so that all of them refuse the same nonsense (a
 * sign, hex, trailing text, a value past 2^64) the same way.
 */
#include <ctype.h>
#include <string.h>

#include "common/common.h"

bool hbk_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "kmgt";
	uint64_t n = 0;
	const char *c = s;
	if (!s)
		return false;
	for (; isdigit((unsigned char)*c); c++) {
		if (n > (UINT64_MAX - 9) / 10)
			return false;
		n = n * 10 + (uint64_t)(*c - '0');
	}
	if (c == s)
		return false;
	const char *u = *c ? strchr(units, tolower((unsigned char)*c)) : NULL;
	unsigned shift = u ? 10u * (unsigned)(u - units + 1) : 0;
	if (u)
		c++;
	if (u && c[0] == 'i' && c[1] == 'B')
		c += 2;
	else if (*c == 'B')
		c++;
	if (*c || n > UINT64_MAX >> shift)
		return false;
	*out = n << shift;
	return true;
}
