/* SPDX-License-Identifier: MIT */
/*
 * Tests of hbakit bench's latency histogram (tools/lat_hist.h): every
 * latency falls in the bucket whose range holds it, the value a bucket
 * reports is the middle of that range, and percentiles take the
 * nearest-rank sample, counted in integers (p99.9 of 1000 samples is the
 * 999th).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "tools/lat_hist.h"

/* The range [*lo, *hi) of nanoseconds bucket b holds. */
static void bucket_range(unsigned b, uint64_t *lo, uint64_t *hi)
{
	if (b < LAT_SUB) {
		*lo = b;
		*hi = b + 1;
		return;
	}
	unsigned shift = b / LAT_SUB - 1, sub = b % LAT_SUB;
	*lo = (uint64_t)(LAT_SUB + sub) << shift;
	*hi = (uint64_t)(LAT_SUB + sub + 1) << shift;
}

static void test_bucket_holds_latency(void **state)
{
	(void)state;
	static const uint64_t ns[] = { 0, 1, 15, 16, 17, 31, 32, 33, 34, 63, 64, 100, 1000,
				       67000, 999999, 1000000, 123456789, 1ull << 40,
				       (1ull << 40) + 12345, UINT64_MAX };
	for (unsigned i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		unsigned b = lat_bucket(ns[i]);
		uint64_t lo, hi;
		assert_true(b < LAT_BUCKETS);
		bucket_range(b, &lo, &hi);
		assert_true(lo <= ns[i]);
		assert_true(ns[i] < hi || hi == 0);   /* the last bucket's end wraps */
	}
	assert_int_equal(lat_bucket(32), 32);
	assert_int_equal(lat_bucket(33), 32);
	assert_int_equal(lat_bucket(34), 33);
}

static void test_value_is_middle(void **state)
{
	(void)state;
	for (unsigned b = 0; b < 60 * LAT_SUB; b++) {
		uint64_t lo, hi;
		bucket_range(b, &lo, &hi);
		double want = b < LAT_SUB ? (double)b : ((double)lo + (double)hi) / 2;
		assert_true(lat_value(b) == want);
		assert_int_equal(lat_bucket((uint64_t)lat_value(b)), b);
	}
}

static void test_percentile_rank(void **state)
{
	(void)state;
	static uint64_t lat[LAT_BUCKETS];
	memset(lat, 0, sizeof(lat));
	/* 999 at 100 ns, 1 at 1 ms: p99.9 is the 999th, 100 ns's bucket. */
	lat[lat_bucket(100)] = 999;
	lat[lat_bucket(1000000)] = 1;
	assert_true(lat_percentile(lat, 1000, 999) == lat_value(lat_bucket(100)));
	assert_true(lat_percentile(lat, 1000, 500) == lat_value(lat_bucket(100)));
	/* 1001 samples: the 1000th (ceil of 1000.0) is still 100 ns; one
	 * more at 1 ms and it is the 1000th of 1002, so p99.9 is 1 ms. */
	lat[lat_bucket(100)] = 1000;
	assert_true(lat_percentile(lat, 1001, 999) == lat_value(lat_bucket(100)));
	lat[lat_bucket(100)] = 999;
	lat[lat_bucket(1000000)] = 3;
	assert_true(lat_percentile(lat, 1002, 999) == lat_value(lat_bucket(1000000)));
	/* p99 of 100: the 99th; p50 of 2: the first. */
	memset(lat, 0, sizeof(lat));
	lat[10] = 99;
	lat[12] = 1;
	assert_true(lat_percentile(lat, 100, 990) == 10);
	lat[10] = 1;
	assert_true(lat_percentile(lat, 2, 500) == 10);
	assert_true(lat_percentile(lat, 2, 999) == 12);
	memset(lat, 0, sizeof(lat));
	assert_true(lat_percentile(lat, 0, 500) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_holds_latency),
		cmocka_unit_test(test_value_is_middle),
		cmocka_unit_test(test_percentile_rank),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
