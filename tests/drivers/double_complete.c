/* SPDX-License-Identifier: MIT */
/*
 * HBK-C07, per-task path, on a trigger task (LBA >= 4242).  fault=twice:
 * ParallelTaskCompletion twice from the interrupt handler; fault=final:
 * completes it and also answers process_task with a final status;
 * fault=stale: drops the runtime's reference (release without retain),
 * completes with the dead handle, then answers with a final status.  The
 * runtime refuses the second completion of twice itself; with via=raw it
 * goes as a PARALLEL_COMPLETION message of the driver's own, for the host
 * to refuse.
 */
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static uint32_t process_task(struct hbk_drv *d, const struct hbk_task *task,
			     struct hbk_response *resp, struct hbk_drv_action *action)
{
	struct tdrv *t = tdrv_of(d);
	const char *fault = tdrv_arg(t, "fault", "twice");
	if (!tdrv_is_trigger(task) || !strcmp(fault, "twice"))
		return tdrv_ops.process_task(d, task, resp, action);
	tdrv_execute(t, task, resp);
	if (!strcmp(fault, "stale"))
		hbk_drv_action_release(action);
	hbk_drv_task_complete(d, action, resp);
	return HBK_SR_TASK_COMPLETE;
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (io->path != TDRV_PER_TASK || !tdrv_is_trigger(&io->task))
		return false;
	hbk_drv_task_complete(t->d, io->action, &io->resp);
	if (!strcmp(tdrv_arg(t, "via", "api"), "raw"))
		tdrv_send_parallel(t, io->index, &io->resp);
	else
		hbk_drv_task_complete(t->d, io->action, &io->resp);
	hbk_drv_action_release(io->action);
	return true;
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "double_complete";
	ops.process_task = process_task;
	return tdrv_main(argc, argv, &ops, &hooks);
}
