/* SPDX-License-Identifier: MIT */
/*
 * A driver that stalls inside its I/O entry points.  delay-us=N (0) makes
 * every bundled or per-task call take N µs to return, which keeps the host's
 * sender busy while a test prepares more tasks; with slow-below=LBA, only
 * calls carrying a READ or WRITE below that LBA are delayed, so one
 * controller can be slow and then fast again.  hold-us=N (0) keeps every
 * task N µs on the InterruptQueue before it completes, so tasks stay at the
 * driver after the call that brought them returned.  A call that carries a task
 * at LBA >= 4242 never returns at all (the call server sleeps forever), so
 * the host's call times out: HBK-C12.
 */
#include <stdlib.h>
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

/* Whether delay-us applies to task k (see slow-below). */
static bool slow(struct hbk_drv *d, const struct hbk_task *k)
{
	const char *below = tdrv_arg(tdrv_of(d), "slow-below", NULL);
	uint64_t lba;
	return !below || (tdrv_task_lba(k, &lba) && lba < strtoull(below, NULL, 0));
}

static void stall(struct hbk_drv *d, bool trigger, bool delay)
{
	while (trigger)
		pause();
	unsigned us = (unsigned)atoi(tdrv_arg(tdrv_of(d), "delay-us", "0"));
	if (us && delay)
		usleep(us);
}

static void process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
			    struct hbk_drv_bundled_action *action)
{
	struct tdrv *t = tdrv_of(d);
	bool trigger = false, delay = false;
	for (unsigned i = 0; i < count; i++) {
		trigger |= tdrv_is_trigger(&t->cmds[index[i]]);
		delay |= slow(d, &t->cmds[index[i]]);
	}
	stall(d, trigger, delay);
	tdrv_ops.process_bundled(d, index, count, action);
}

static uint32_t process_task(struct hbk_drv *d, const struct hbk_task *task,
			     struct hbk_response *resp, struct hbk_drv_action *action)
{
	stall(d, tdrv_is_trigger(task), slow(d, task));
	return tdrv_ops.process_task(d, task, resp, action);
}

/* On the InterruptQueue: holds the task hold-us, then lets the base complete it. */
static bool hold(struct tdrv *t, struct tdrv_io *io)
{
	(void)io;
	unsigned us = (unsigned)atoi(tdrv_arg(t, "hold-us", "0"));
	if (us)
		usleep(us);
	return false;
}

static const struct tdrv_hooks hooks = { .complete = hold };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "stall";
	ops.process_bundled = process_bundled;
	ops.process_task = process_task;
	return tdrv_main(argc, argv, &ops, &hooks);
}
