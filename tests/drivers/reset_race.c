/* SPDX-License-Identifier: MIT */
/*
 * Task management on a queue of its own (ABORT TASK, LUN RESET and TARGET
 * RESET bound to the AuxiliaryQueue), so that a reset runs while the
 * submitter is still inside process_bundled on the Default queue.  A WRITE
 * at LBA >= 4242 is kept 300 ms on the InterruptQueue before it completes.
 * how=gate (default): process_bundled, handed that WRITE, writes one byte
 * to the descriptor signal-fd=N (inherited from the test) and waits until a
 * reset has answered; the reset ends every task the driver has received
 * (none), so a task it has not yet received outlives the reset: no
 * violation.  how=lie: nothing waits, and the resets answer FUNCTION
 * COMPLETE while the driver keeps the WRITE it received: HBK-C11.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

#define KEEP_MS 300u
#define GATE_MS 5000u   /* bound of process_bundled's wait for a reset */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t opened = PTHREAD_COND_INITIALIZER;
static bool reset_answered;

static bool gated(struct tdrv *t)
{
	return !strcmp(tdrv_arg(t, "how", "gate"), "gate");
}

static bool kept(const struct hbk_task *k)
{
	return tdrv_is_trigger(k) && k->direction == HBK_DIR_WRITE;
}

/* Tells the test that the WRITE is being handed over, then waits (bounded)
 * for a reset to answer.  Submitter thread, Default queue. */
static void gate(struct tdrv *t)
{
	int fd = atoi(tdrv_arg(t, "signal-fd", "-1"));
	char b = 1;
	if (fd >= 0 && write(fd, &b, 1) != 1)
		return;
	struct timespec end;
	clock_gettime(CLOCK_REALTIME, &end);
	end.tv_sec += GATE_MS / 1000;
	pthread_mutex_lock(&lock);
	int err = 0;
	while (!reset_answered && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&opened, &lock, &end);
	pthread_mutex_unlock(&lock);
}

static void process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
			    struct hbk_drv_bundled_action *action)
{
	struct tdrv *t = tdrv_of(d);
	bool wait = false;
	for (unsigned i = 0; i < count; i++)
		wait |= kept(&t->cmds[index[i]]);
	if (wait && gated(t))
		gate(t);
	tdrv_ops.process_bundled(d, index, count, action);
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!kept(&io->task))
		return false;
	tdrv_defer(t, io, KEEP_MS, 0);
	return true;
}

static void due(struct tdrv *t, struct tdrv_io *io, int kind)
{
	(void)kind;
	tdrv_complete(t, io);
}

/* how=gate: ends what the driver received (nothing is kept yet) and lets
 * the WRITE in; how=lie: keeps the WRITE all the same.  AuxiliaryQueue. */
static uint32_t answer(void)
{
	pthread_mutex_lock(&lock);
	reset_answered = true;
	pthread_cond_broadcast(&opened);
	pthread_mutex_unlock(&lock);
	return HBK_SR_FUNCTION_COMPLETE;
}

static uint32_t abort_task(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	(void)d; (void)target; (void)lun; (void)tag;
	return answer();
}

static uint32_t lun_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	(void)d; (void)target; (void)lun;
	return answer();
}

static uint32_t target_reset(struct hbk_drv *d, uint64_t target)
{
	(void)d; (void)target;
	return answer();
}

static const struct tdrv_hooks hooks = { .complete = complete, .due = due };
static const struct hbk_drv_binding bindings[] = {
	{ .entry = HBK_MSG_ABORT_TASK, .queue = HBK_QUEUE_NAME_AUX },
	{ .entry = HBK_MSG_LUN_RESET, .queue = HBK_QUEUE_NAME_AUX },
	{ .entry = HBK_MSG_TARGET_RESET, .queue = HBK_QUEUE_NAME_AUX },
	{ 0 } };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "reset_race";
	ops.process_bundled = process_bundled;
	ops.abort_task = abort_task;
	ops.lun_reset = lun_reset;
	ops.target_reset = target_reset;
	ops.bindings = bindings;
	return tdrv_main(argc, argv, &ops, &hooks);
}
