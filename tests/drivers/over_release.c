/* SPDX-License-Identifier: MIT */
/*
 * HBK-C06: the seed's retain/release experiments on the bundled handle.
 * fault=release (default) releases it once per bundled call, as if it were
 * a per-task handle; fault=retain retains it once and releases it twice per
 * call (the wrapper that "balances" every task).
 */
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static void process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
			    struct hbk_drv_bundled_action *action)
{
	bool retain = !strcmp(tdrv_arg(tdrv_of(d), "fault", "release"), "retain");
	if (retain)
		hbk_drv_bundled_retain(action);
	tdrv_ops.process_bundled(d, index, count, action);
	hbk_drv_bundled_release(action);
	if (retain)
		hbk_drv_bundled_release(action);
}

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "over_release";
	ops.process_bundled = process_bundled;
	return tdrv_main(argc, argv, &ops, NULL);
}
