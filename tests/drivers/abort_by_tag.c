/* SPDX-License-Identifier: MIT */
/*
 * A driver that finds the task ABORT TASK names by its task_tag, as a real
 * one does, and keeps some I/O long enough for the abort to race with it.
 * READ and WRITE at LBA 5000 and above are held, then completed by one
 * worker thread: 150 ms later below LBA 6000, 1000 ms later from there.
 * ABORT TASK ends the held task whose task_tag is the tag with TASK
 * ABORTED.  LUN RESET runs on the AuxiliaryQueue and takes 300 ms, so a
 * test can keep the host's call channel busy while a task ends and its
 * slot is taken by the next.
 */
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/drivers/lib/tdrv.h"

static struct held {
	struct tdrv *t;
	struct tdrv_io io;
	uint64_t due_ns;
	bool used;
} held[TDRV_TASKS];
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t worker_once = PTHREAD_ONCE_INIT;

/* Ends held[i] (held_lock held): out of the table first, then completed. */
static void end_held(struct held *h)
{
	h->used = false;
	tdrv_complete(h->t, &h->io);
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		uint64_t now = hbk_now_ns();
		pthread_mutex_lock(&held_lock);
		for (unsigned i = 0; i < TDRV_TASKS; i++)
			if (held[i].used && held[i].due_ns <= now)
				end_held(&held[i]);
		pthread_mutex_unlock(&held_lock);
		usleep(2000);
	}
	return NULL;
}

static void worker_start(void)
{
	pthread_t th;
	if (!pthread_create(&th, NULL, worker, NULL))
		pthread_detach(th);
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	uint64_t lba;
	if (!tdrv_task_lba(&io->task, &lba) || lba < 5000)
		return false;
	pthread_once(&worker_once, worker_start);
	pthread_mutex_lock(&held_lock);
	struct held *h = NULL;
	for (unsigned i = 0; i < TDRV_TASKS && !h; i++)
		if (!held[i].used)
			h = &held[i];
	*h = (struct held){ .t = t, .io = *io, .used = true,
			    .due_ns = hbk_now_ns() + (lba >= 6000 ? 1000 : 150) * 1000000ull };
	pthread_mutex_unlock(&held_lock);
	return true;
}

static uint32_t abort_task(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	(void)d; (void)target; (void)lun;
	pthread_mutex_lock(&held_lock);
	for (unsigned i = 0; i < TDRV_TASKS; i++) {
		struct held *h = &held[i];
		if (h->used && h->io.task.task_tag == tag) {
			hbk_drv_response_fill(&h->io.resp, &h->io.task, HBK_SR_TASK_COMPLETE,
					      HBK_STATUS_TASK_ABORTED, 0, NULL, 0);
			end_held(h);
		}
	}
	pthread_mutex_unlock(&held_lock);
	return HBK_SR_FUNCTION_COMPLETE;
}

static uint32_t lun_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	(void)d; (void)target; (void)lun;
	usleep(300000);
	return HBK_SR_FUNCTION_COMPLETE;
}

static const struct tdrv_hooks hooks = { .complete = complete };
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
