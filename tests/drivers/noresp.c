/* SPDX-License-Identifier: MIT */
/*
 * A driver that completes a WRITE at LBA >= 4242 without filling its
 * response: on the bundled path the slot's response is still the earlier
 * task's, on the per-task path it passes the response of the last task it
 * completed.  The runtime refuses the completion, so the task stays with
 * the host's driver side although the driver thinks it done.  The driver
 * keeps a copy, and gives the task back (TASK ABORTED) when ABORT TASK
 * names it, as a driver that finds it by its tag does.
 */
#include "tests/drivers/lib/tdrv.h"

enum { KEPT, ABORTED };

static struct hbk_response last;   /* InterruptQueue only */

static void due(struct tdrv *t, struct tdrv_io *io, int kind)
{
	if (kind != ABORTED)
		return;
	hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE,
			      HBK_STATUS_TASK_ABORTED, 0, NULL, 0);
	tdrv_complete(t, io);
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task) || io->task.direction != HBK_DIR_WRITE) {
		last = io->resp;
		return false;
	}
	tdrv_defer(t, io, 600000, KEPT);   /* never due: only ABORT TASK ends it */
	if (io->path == TDRV_BUNDLED)
		hbk_drv_bundled_complete(t->d, io->bundled, &io->index, 1);
	else
		hbk_drv_task_complete(t->d, io->action, &last);
	return true;
}

static uint32_t abort_task(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	(void)target; (void)lun;
	tdrv_defer_expedite(tdrv_of(d), tag, ABORTED);
	return HBK_SR_FUNCTION_COMPLETE;
}

static const struct tdrv_hooks hooks = { .complete = complete, .due = due };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "noresp";
	ops.abort_task = abort_task;
	return tdrv_main(argc, argv, &ops, &hooks);
}
