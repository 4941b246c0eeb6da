/* SPDX-License-Identifier: MIT */
/*
 * A driver that stalls inside its I/O entry points.  delay-us=N (0) makes
 * every bundled or per-task call take N µs to return, which keeps the host's
 * sender busy while a test prepares more tasks.  A call that carries a task
 * at LBA >= 4242 never returns at all (the call server sleeps forever), so
 * the host's call times out: HBK-C12.
 */
#include <stdlib.h>
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

static void stall(struct hbk_drv *d, bool trigger)
{
	while (trigger)
		pause();
	unsigned us = (unsigned)atoi(tdrv_arg(tdrv_of(d), "delay-us", "0"));
	if (us)
		usleep(us);
}

static void process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
			    struct hbk_drv_bundled_action *action)
{
	struct tdrv *t = tdrv_of(d);
	bool trigger = false;
	for (unsigned i = 0; i < count; i++)
		trigger |= tdrv_is_trigger(&t->cmds[index[i]]);
	stall(d, trigger);
	tdrv_ops.process_bundled(d, index, count, action);
}

static uint32_t process_task(struct hbk_drv *d, const struct hbk_task *task,
			     struct hbk_response *resp, struct hbk_drv_action *action)
{
	stall(d, tdrv_is_trigger(task));
	return tdrv_ops.process_task(d, task, resp, action);
}

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "stall";
	ops.process_bundled = process_bundled;
	ops.process_task = process_task;
	return tdrv_main(argc, argv, &ops, NULL);
}
