/* SPDX-License-Identifier: MIT */
/*
 * A driver that leaves target management to the framework
 * (device_management false) and reports target ids 0..3, of which only
 * target 0 answers: the host must probe every id itself and register only
 * what answers, quickly, without the driver creating anything.
 */
#include "tests/drivers/lib/tdrv.h"

static bool device_management(struct hbk_drv *d)
{
	(void)d;
	return false;
}

static int highest_id(struct hbk_drv *d, uint64_t *id)
{
	(void)d;
	*id = 3;
	return 0;
}

static int start(struct tdrv *t)
{
	(void)t;  /* creates no target: the framework does */
	return 0;
}

int main(int argc, char **argv)
{
	static const struct tdrv_hooks hooks = { .start = start };
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "framework_managed";
	ops.device_management = device_management;
	ops.report_highest_id = highest_id;
	return tdrv_main(argc, argv, &ops, &hooks);
}
