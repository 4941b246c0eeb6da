/* SPDX-License-Identifier: MIT */
/*
 * HBK-C02: calls create target straight from start, i.e. on the Default
 * queue (the seed's deadlock).  It reports what the call returned and how
 * long it took on stderr ("create_on_default: rc=N ms=M"), and only on
 * -EDEADLK falls back to creating the target from its AuxiliaryQueue.
 */
#include <errno.h>
#include <stdio.h>

#include "common/common.h"
#include "tests/drivers/lib/tdrv.h"

static int start(struct tdrv *t)
{
	uint64_t t0 = hbk_now_ns();
	int rc = hbk_drv_create_target(t->d, 0);
	fprintf(stderr, "create_on_default: rc=%d ms=%llu\n", rc,
		(unsigned long long)((hbk_now_ns() - t0) / 1000000u));
	if (rc == -EDEADLK)
		tdrv_create_targets_later(t);
	return 0;
}

static const struct tdrv_hooks hooks = { .start = start };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "create_on_default";
	return tdrv_main(argc, argv, &ops, &hooks);
}
