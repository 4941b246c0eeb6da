/* SPDX-License-Identifier: MIT */
/*
 * A driver that completes a task a second time, late, when the host has
 * reissued its slot to another task.  A READ or WRITE at LBA 4242 is
 * completed at once and again 200 ms later with the same response (the
 * earlier task's); one at LBA 5000 or above is executed and completed only
 * 600 ms after it came (a device that moves the data at the end), with its
 * buffer marked 0xEE meanwhile.  One worker thread does the late work.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/drivers/lib/tdrv.h"

static struct later {
	struct tdrv *t;
	struct tdrv_io io;
	uint64_t due_ns;
	bool used, again;          /* again: the repeated completion */
} later[TDRV_TASKS];
static pthread_mutex_t later_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t worker_once = PTHREAD_ONCE_INIT;

static void run(struct later *l)
{
	if (!l->again) {
		tdrv_execute(l->t, &l->io.task, &l->io.resp);
		tdrv_complete(l->t, &l->io);
	} else if (l->io.path == TDRV_BUNDLED) {
		hbk_drv_bundled_complete(l->t->d, l->io.bundled, &l->io.index, 1);
	} else {
		hbk_drv_task_complete(l->t->d, l->io.action, &l->io.resp);
	}
}

static void *worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct later due[TDRV_TASKS];
		unsigned n = 0;
		uint64_t now = hbk_now_ns();
		pthread_mutex_lock(&later_lock);
		for (unsigned i = 0; i < TDRV_TASKS; i++)
			if (later[i].used && later[i].due_ns <= now) {
				due[n++] = later[i];
				later[i].used = false;
			}
		pthread_mutex_unlock(&later_lock);
		for (unsigned i = 0; i < n; i++)
			run(&due[i]);
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

static void defer(struct tdrv *t, const struct tdrv_io *io, unsigned ms, bool again)
{
	pthread_once(&worker_once, worker_start);
	pthread_mutex_lock(&later_lock);
	for (unsigned i = 0; i < TDRV_TASKS; i++)
		if (!later[i].used) {
			later[i] = (struct later){ .t = t, .io = *io, .used = true, .again = again,
						   .due_ns = hbk_now_ns() + ms * 1000000ull };
			break;
		}
	pthread_mutex_unlock(&later_lock);
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	uint64_t lba;
	if (!tdrv_task_lba(&io->task, &lba))
		return false;
	if (lba == TDRV_TRIGGER_LBA) {
		tdrv_complete(t, io);
		defer(t, io, 200, true);
		return true;
	}
	if (lba >= 5000) {
		/* The base executed it already: undo a READ's data, as a device
		 * that moves it at the end would show until then. */
		if (io->task.direction == HBK_DIR_READ)
			memset(hbk_drv_dma(t->d, io->task.buffer_iova, io->task.requested_transfer_count),
			       0xEE, io->task.requested_transfer_count);
		defer(t, io, 600, false);
		return true;
	}
	return false;
}

static const struct tdrv_hooks hooks = { .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "late_double";
	return tdrv_main(argc, argv, &ops, &hooks);
}
