/* SPDX-License-Identifier: MIT */
/*
 * A correct driver whose interrupts reach the InterruptQueue through an
 * event source (hbk_drv_queue_attach) rather than by dispatch: every task
 * queued writes the driver's "interrupt vector", an eventfd attached to the
 * InterruptQueue, whose thread wakes and runs the handler.  init_controller
 * first checks the attach and detach error returns and fails if one is
 * wrong.  churn=N detaches and re-attaches the vector from the submitting
 * thread every N tasks, while the InterruptQueue may be polling it; a
 * count written meanwhile must still raise the handler.  Stop detaches and
 * closes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "tests/drivers/lib/tdrv.h"

static atomic_int vector = -1;
static unsigned churn;
static atomic_uint raised;
static pthread_mutex_t churn_lock = PTHREAD_MUTEX_INITIALIZER;

static struct hbk_drv_work dummy;
static void nothing(struct hbk_drv_work *w) { (void)w; }

#define EXPECT(call, want)                                                              \
	do {                                                                            \
		int got_ = (call);                                                      \
		if (got_ != (want)) {                                                   \
			fprintf(stderr, "event_source: %s returned %d, not %d\n", #call, \
				got_, (want));                                          \
			return -EPROTO;                                                 \
		}                                                                       \
	} while (0)

/* The error returns, on a scratch queue that keeps none of these sources. */
static int check_api(struct tdrv *t)
{
	struct hbk_drv_queue *q = hbk_drv_queue_create(t->d, "EventSourceCheck");
	if (!q)
		return -ENOMEM;
	hbk_drv_work_init(&dummy, nothing);
	int fds[HBK_DRV_MAX_SOURCES + 1], blocking = eventfd(0, EFD_CLOEXEC);
	for (unsigned i = 0; i <= HBK_DRV_MAX_SOURCES; i++)
		if ((fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
			return -errno;
	EXPECT(hbk_drv_queue_attach(q, blocking, &dummy), -EINVAL);
	EXPECT(hbk_drv_queue_attach(q, -1, &dummy), -EINVAL);
	EXPECT(hbk_drv_queue_detach(q, fds[0]), -ENOENT);
	for (unsigned i = 0; i < HBK_DRV_MAX_SOURCES; i++)
		EXPECT(hbk_drv_queue_attach(q, fds[i], &dummy), 0);
	EXPECT(hbk_drv_queue_attach(q, fds[0], &dummy), -EEXIST);
	EXPECT(hbk_drv_queue_attach(q, fds[HBK_DRV_MAX_SOURCES], &dummy), -ENOSPC);
	for (unsigned i = 0; i < HBK_DRV_MAX_SOURCES; i++)
		EXPECT(hbk_drv_queue_detach(q, fds[i]), 0);
	EXPECT(hbk_drv_queue_detach(q, fds[0]), -ENOENT);
	for (unsigned i = 0; i <= HBK_DRV_MAX_SOURCES; i++)
		close(fds[i]);  /* detached: the queue never looks at them again */
	close(blocking);
	return 0;
}

static int init(struct tdrv *t, struct hbk_drv_constraints *cons)
{
	(void)cons;
	churn = (unsigned)strtoul(tdrv_arg(t, "churn", "0"), NULL, 10);
	int err = check_api(t);
	if (err)
		return err;
	vector = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (vector < 0)
		return -errno;
	return hbk_drv_queue_attach(t->intr, vector, &t->intr_work);
}

static void raise_irq(struct tdrv *t)
{
	unsigned n = atomic_fetch_add(&raised, 1) + 1;
	if (churn && n % churn == 0) {
		/* The count written below lands while the vector is off the
		 * queue; re-attached, its readiness must still be seen. */
		pthread_mutex_lock(&churn_lock);
		int err = hbk_drv_queue_detach(t->intr, vector);
		uint64_t one = 1;
		if (!err && write(vector, &one, sizeof(one)) == sizeof(one))
			err = hbk_drv_queue_attach(t->intr, vector, &t->intr_work);
		pthread_mutex_unlock(&churn_lock);
		if (err)
			fprintf(stderr, "event_source: churn: %d\n", err);
		return;
	}
	uint64_t one = 1;
	if (write(vector, &one, sizeof(one)) != sizeof(one))
		perror("event_source: raise");
}

static void stop(struct tdrv *t)
{
	pthread_mutex_lock(&churn_lock);
	if (vector >= 0 && hbk_drv_queue_detach(t->intr, vector) == 0)
		close(vector);
	vector = -1;
	pthread_mutex_unlock(&churn_lock);
}

static const struct tdrv_hooks hooks = { .init = init, .raise = raise_irq, .stop = stop };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "event_source";
	return tdrv_main(argc, argv, &ops, &hooks);
}
