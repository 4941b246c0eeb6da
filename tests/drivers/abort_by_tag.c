/* SPDX-License-Identifier: MIT */
/*
 * A driver that finds the task ABORT TASK names by its task_tag, as a real
 * one does, and keeps some I/O long enough for the abort to race with it.
 * READ and WRITE at LBA 5000 and above are kept and completed later (on
 * the InterruptQueue, tdrv_defer): 150 ms after they came below LBA 6000,
 * 1000 ms after from there.  ABORT TASK ends the kept task whose task_tag
 * is the tag with TASK ABORTED.  LUN RESET runs on the AuxiliaryQueue and
 * takes 300 ms, so a test can keep the host's call channel busy while a
 * task ends and its slot is taken by the next.
 */
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

enum { DONE, ABORTED };

static void due(struct tdrv *t, struct tdrv_io *io, int kind)
{
	if (kind == ABORTED)
		hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE,
				      HBK_STATUS_TASK_ABORTED, 0, NULL, 0);
	tdrv_complete(t, io);
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	uint64_t lba;
	if (!tdrv_task_lba(&io->task, &lba) || lba < 5000)
		return false;
	tdrv_defer(t, io, lba >= 6000 ? 1000 : 150, DONE);
	return true;
}

static uint32_t abort_task(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	(void)target; (void)lun;
	tdrv_defer_expedite(tdrv_of(d), tag, ABORTED);
	return HBK_SR_FUNCTION_COMPLETE;   /* a task not kept has ended already */
}

static uint32_t lun_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	(void)d; (void)target; (void)lun;
	usleep(300000);
	return HBK_SR_FUNCTION_COMPLETE;
}

static const struct tdrv_hooks hooks = { .complete = complete, .due = due };
static const struct hbk_drv_binding bindings[] = {
	{ .entry = HBK_MSG_LUN_RESET, .queue = HBK_QUEUE_NAME_AUX }, { 0 } };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "abort_by_tag";
	ops.abort_task = abort_task;
	ops.lun_reset = lun_reset;
	ops.bindings = bindings;
	return tdrv_main(argc, argv, &ops, &hooks);
}
