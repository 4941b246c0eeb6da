/* SPDX-License-Identifier: MIT */
/*
 * A yardstick for bench/fio-seed.sh, not a storage backend: an in-memory
 * disk, like `nbdkit memory`, whose reads and writes are carried out by one
 * service thread instead of by nbdkit's worker.  The worker queues each
 * request, sleeps on a latch, and is woken when the service thread has copied
 * the data: one hand-off and one futex wake per request, with no driver
 * process, no shared slots and no SCSI.  Every plugin that completes a
 * request on another thread pays at least this under nbdkit's synchronous
 * plugin API, so its IOPS are the ceiling of such designs on this machine,
 * the hbakit plugin's included; the bench prints it beside `nbdkit memory`.
 *
 *   nbdkit build/nbdkit-handoff-plugin.so size=256M
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/common.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

struct request {
	void *buf;
	uint32_t count;
	uint64_t offset;
	bool write;
	struct request *next;
	struct hbk_latch done;
};

static uint64_t size = 256u << 20;
static uint8_t *disk;
static pthread_t service;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queued = PTHREAD_COND_INITIALIZER;
static struct request *head, *tail;     /* guarded by lock */
static bool idle;                       /* the service thread waits on queued; lock */

static int handoff_config(const char *key, const char *value)
{
	if (strcmp(key, "size")) {
		nbdkit_error("unknown parameter '%s'", key);
		return -1;
	}
	int64_t r = nbdkit_parse_size(value);
	if (r < 0)
		return -1;   /* nbdkit_parse_size said why */
	if (!r) {
		nbdkit_error("size must not be 0");
		return -1;
	}
	size = (uint64_t)r;
	return 0;
}

/* The service thread: takes queued requests in order and copies their data. */
static void *serve(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!head) {
			idle = true;
			pthread_cond_wait(&queued, &lock);
			idle = false;
		}
		struct request *r = head;
		head = r->next;
		if (!head)
			tail = NULL;
		pthread_mutex_unlock(&lock);
		if (r->write)
			memcpy(disk + r->offset, r->buf, r->count);
		else
			memcpy(r->buf, disk + r->offset, r->count);
		hbk_latch_open(&r->done, 0);
		pthread_mutex_lock(&lock);
	}
	return NULL;
}

static int handoff_get_ready(void)
{
	disk = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		    -1, 0);
	if (disk == MAP_FAILED) {
		nbdkit_error("mmap %" PRIu64 " bytes: %m", size);
		return -1;
	}
	return 0;
}

/* After the fork: the service thread must live in the serving process. */
static int handoff_after_fork(void)
{
	int err = pthread_create(&service, NULL, serve, NULL);
	if (err) {
		nbdkit_error("pthread_create: %s", strerror(err));
		return -1;
	}
	return 0;
}

static void *handoff_open(int readonly)
{
	(void)readonly;
	return disk;
}

static int64_t handoff_get_size(void *h)
{
	(void)h;
	return (int64_t)size;
}

static int handoff_can_multi_conn(void *h)
{
	(void)h;
	return 1;
}

/* Hands the request to the service thread and sleeps until it is done. */
static int handoff_io(void *buf, uint32_t count, uint64_t offset, bool write)
{
	struct request r = { .buf = buf, .count = count, .offset = offset, .write = write,
			     .done = HBK_LATCH_INIT };
	pthread_mutex_lock(&lock);
	if (tail)
		tail->next = &r;
	else
		head = &r;
	tail = &r;
	if (idle)
		pthread_cond_signal(&queued);
	pthread_mutex_unlock(&lock);
	return hbk_latch_wait(&r.done);
}

static int handoff_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	(void)flags;
	return handoff_io(buf, count, offset, false);
}

static int handoff_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset,
			  uint32_t flags)
{
	(void)h;
	(void)flags;
	return handoff_io((void *)buf, count, offset, true);
}

static struct nbdkit_plugin plugin = {
	.name = "handoff",
	.longname = "hbakit bench: memory disk served by a service thread",
	.config = handoff_config,
	.config_help = "size=<SIZE>  disk size (256M)",
	.get_ready = handoff_get_ready,
	.after_fork = handoff_after_fork,
	.open = handoff_open,
	.get_size = handoff_get_size,
	.can_multi_conn = handoff_can_multi_conn,
	.pread = handoff_pread,
	.pwrite = handoff_pwrite,
};

struct nbdkit_plugin *plugin_init(void);   /* for -Wmissing-prototypes */
NBDKIT_REGISTER_PLUGIN(plugin)
