/* SPDX-License-Identifier: MIT */
/*
 * A well-behaved driver whose process entry points take delay-us (20000) to
 * return, so the host's sender is certainly busy in a call while the test
 * prepares more tasks: what the sender carries next shows its batching rule.
 */
#include <stdlib.h>
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

static void pause_call(struct hbk_drv *d)
{
	usleep((useconds_t)atoi(tdrv_arg(tdrv_of(d), "delay-us", "20000")));
}

static void process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
			    struct hbk_drv_bundled_action *action)
{
	pause_call(d);
	tdrv_ops.process_bundled(d, index, count, action);
}

static uint32_t process_task(struct hbk_drv *d, const struct hbk_task *task,
			     struct hbk_response *resp, struct hbk_drv_action *action)
{
	pause_call(d);
	return tdrv_ops.process_task(d, task, resp, action);
}

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "slow_call";
	ops.process_bundled = process_bundled;
	ops.process_task = process_task;
	return tdrv_main(argc, argv, &ops, NULL);
}
