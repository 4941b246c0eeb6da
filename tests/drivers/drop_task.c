/* SPDX-License-Identifier: MIT */
/*
 * HBK-C11: never completes a WRITE at LBA >= 4242 on its own.  It gives the
 * task back (with its real response) when task management reaches it:
 * ignore=none (default) on ABORT TASK, ignore=abort on LUN RESET,
 * ignore=all never, so the host must escalate to the end.  ignore=lie
 * refuses ABORT TASK and answers LUN RESET and TARGET RESET with FUNCTION
 * COMPLETE, keeping the task all the same; ignore=lie-abort answers ABORT
 * TASK with FUNCTION COMPLETE, keeping the task, and gives it back on LUN
 * RESET.
 */
#include <pthread.h>
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tdrv_io held;
static bool holding;

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	(void)t;
	if (!tdrv_is_trigger(&io->task) || io->task.direction != HBK_DIR_WRITE)
		return false;
	pthread_mutex_lock(&lock);
	held = *io;
	holding = true;
	pthread_mutex_unlock(&lock);
	return true;
}

/* Gives the held task back if this step of the escalation is honoured. */
static uint32_t give_back(struct hbk_drv *d, const char *step)
{
	struct tdrv *t = tdrv_of(d);
	const char *ignore = tdrv_arg(t, "ignore", "none");
	if (!strcmp(ignore, "lie-abort") && !strcmp(step, "abort"))
		return HBK_SR_FUNCTION_COMPLETE;
	if (!strcmp(ignore, "all") || (!strcmp(step, "lun") && !strcmp(ignore, "none")) ||
	    (!strcmp(step, "abort") && strcmp(ignore, "none")))
		return HBK_SR_FUNCTION_REJECTED;
	if (!strcmp(ignore, "lie"))
		return HBK_SR_FUNCTION_COMPLETE;
	pthread_mutex_lock(&lock);
	bool had = holding;
	struct tdrv_io io = held;
	holding = false;
	pthread_mutex_unlock(&lock);
	if (had)
		tdrv_complete(t, &io);
	return HBK_SR_FUNCTION_COMPLETE;
}

static uint32_t abort_task(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	(void)target; (void)lun; (void)tag;
	return give_back(d, "abort");
}

static uint32_t lun_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	(void)target; (void)lun;
	return give_back(d, "lun");
}

static uint32_t target_reset(struct hbk_drv *d, uint64_t target)
{
	(void)target;
	if (strcmp(tdrv_arg(tdrv_of(d), "ignore", "none"), "lie"))
		return HBK_SR_FUNCTION_REJECTED;
	return give_back(d, "target");
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "drop_task";
	ops.abort_task = abort_task;
	ops.lun_reset = lun_reset;
	ops.target_reset = target_reset;
	return tdrv_main(argc, argv, &ops, &hooks);
}
