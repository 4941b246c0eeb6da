/* SPDX-License-Identifier: MIT */
/*
 * HBK-C12: the driver hangs inside an I/O entry point.  A bundled or
 * per-task call that carries a task at LBA >= 4242 never returns (the
 * call server sleeps forever), so the host's call times out.
 */
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

static void hang(void)
{
	for (;;)
		pause();
}

static void process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
			    struct hbk_drv_bundled_action *action)
{
	struct tdrv *t = tdrv_of(d);
	for (unsigned i = 0; i < count; i++)
		if (tdrv_is_trigger(&t->cmds[index[i]]))
			hang();
	tdrv_ops.process_bundled(d, index, count, action);
}

static uint32_t process_task(struct hbk_drv *d, const struct hbk_task *task,
			     struct hbk_response *resp, struct hbk_drv_action *action)
{
	if (tdrv_is_trigger(task))
		hang();
	return tdrv_ops.process_task(d, task, resp, action);
}

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "hang_mid_io";
	ops.process_bundled = process_bundled;
	ops.process_task = process_task;
	return tdrv_main(argc, argv, &ops, NULL);
}
