/* SPDX-License-Identifier: MIT */
/*
 * hbakit bench's latency histogram: 64 octaves of 16 linear sub-buckets
 * (each about 6 % wide; below 16 ns one bucket a nanosecond), the value a
 * bucket stands for (its middle) and nearest-rank percentiles over it.
 * Header only, so that tests reach it without the CLI.
 */
#ifndef HBK_TOOLS_LAT_HIST_H
#define HBK_TOOLS_LAT_HIST_H

#include <stdint.h>

#define LAT_SUB 16
#define LAT_BUCKETS (64 * LAT_SUB)

/* The bucket of a latency of ns nanoseconds. */
static inline unsigned lat_bucket(uint64_t ns)
{
	if (ns < LAT_SUB)
		return (unsigned)ns;
	unsigned msb = 63 - (unsigned)__builtin_clzll(ns);
	unsigned sub = (unsigned)(ns >> (msb - 4)) & (LAT_SUB - 1);
	return (msb - 3) * LAT_SUB + sub;
}

/* The middle of bucket b in nanoseconds: [(16 + sub) << s, (17 + sub) << s)
 * for s = octave - 4; below 16 the bucket's nanosecond itself. */
static inline double lat_value(unsigned b)
{
	if (b < LAT_SUB)
		return b;
	unsigned msb = b / LAT_SUB + 3, sub = b % LAT_SUB;
	return ((double)(LAT_SUB + sub) + 0.5) * (double)(1ull << (msb - 4));
}

/* The per_mille/1000 percentile (500: p50, 999: p99.9) of total latencies
 * counted in lat: the value of the bucket holding the nearest-rank sample,
 * the ceil(total * per_mille / 1000)-th smallest (integers, so p99.9 of
 * 1000 samples is the 999th, not the largest).  0 for no samples. */
static inline double lat_percentile(const uint64_t *lat, uint64_t total, unsigned per_mille)
{
	uint64_t want = (total * per_mille + 999) / 1000, seen = 0;
	for (unsigned b = 0; b < LAT_BUCKETS; b++) {
		seen += lat[b];
		if (seen >= want && lat[b])
			return lat_value(b);
	}
	return 0;
}

#endif /* HBK_TOOLS_LAT_HIST_H */
