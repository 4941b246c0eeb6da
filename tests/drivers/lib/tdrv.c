/* SPDX-License-Identifier: MIT */
/*
 * The base test driver (see tdrv.h): a correct memory-backed controller with
 * the structure of drivers/ram, trimmed to one LUN and one completion per
 * message, plus the raw event-channel helpers that misbehaving drivers use to
 * send what no correct driver would.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/drivers/lib/tdrv.h"

/* ---- Memory backend ---------------------------------------------------------- */

static int mem_read(void *ctx, uint64_t lba, uint32_t n, void *buf)
{
	struct tdrv *t = ctx;
	memcpy(buf, t->mem + lba * TDRV_BS, (size_t)n * TDRV_BS);
	return 0;
}

static int mem_write(void *ctx, uint64_t lba, uint32_t n, const void *buf, bool fua)
{
	struct tdrv *t = ctx;
	(void)fua;
	memcpy(t->mem + lba * TDRV_BS, buf, (size_t)n * TDRV_BS);
	return 0;
}

static const struct hbk_scsi_backend_ops mem_ops = { .read = mem_read, .write = mem_write };

/* ---- Helpers for the test drivers ------------------------------------------- */

struct tdrv *tdrv_of(struct hbk_drv *d)
{
	return hbk_drv_priv(d);
}

const char *tdrv_arg(struct tdrv *t, const char *name, const char *dflt)
{
	const char *v = hbk_drv_arg(t->d, name);
	return v ? v : dflt;
}

bool tdrv_task_lba(const struct hbk_task *task, uint64_t *lba)
{
	const uint8_t *c = task->cdb;
	if ((c[0] == 0x28 || c[0] == 0x2a) && task->cdb_len >= 10) {
		*lba = (uint64_t)c[2] << 24 | (uint64_t)c[3] << 16 | (uint64_t)c[4] << 8 | c[5];
		return true;
	}
	if ((c[0] == 0x88 || c[0] == 0x8a) && task->cdb_len >= 16) {
		*lba = 0;
		for (unsigned i = 2; i < 10; i++)
			*lba = *lba << 8 | c[i];
		return true;
	}
	return false;
}

bool tdrv_is_trigger(const struct hbk_task *task)
{
	uint64_t lba;
	return tdrv_task_lba(task, &lba) && lba >= TDRV_TRIGGER_LBA;
}

int tdrv_send_raw(struct tdrv *t, const void *msg, size_t len)
{
	return hbk_msg_send(t->event_fd, msg, len, -1);
}

int tdrv_send_slots(struct tdrv *t, uint16_t count, const uint16_t *index, unsigned n)
{
	struct hbk_msg_slots m;
	memset(&m, 0, sizeof(m));
	hbk_msg_init(&m.hdr, HBK_MSG_BUNDLED_COMPLETION, 0, sizeof(m));
	m.count = count;
	for (unsigned i = 0; i < n && i < HBK_MAX_BUNDLE; i++)
		m.index[i] = index[i];
	return tdrv_send_raw(t, &m, sizeof(m));
}

int tdrv_send_parallel(struct tdrv *t, uint32_t idx, const struct hbk_response *resp)
{
	struct hbk_msg_completion m;
	memset(&m, 0, sizeof(m));
	hbk_msg_init(&m.hdr, HBK_MSG_PARALLEL_COMPLETION, 0, sizeof(m));
	m.index = idx;
	m.resp = *resp;
	return tdrv_send_raw(t, &m, sizeof(m));
}

void tdrv_complete(struct tdrv *t, struct tdrv_io *io)
{
	if (io->path == TDRV_BUNDLED) {
		t->resps[io->index] = io->resp;
		hbk_drv_bundled_complete(t->d, io->bundled, &io->index, 1);
	} else {
		hbk_drv_task_complete(t->d, io->action, &io->resp);
		hbk_drv_action_release(io->action);
	}
}

static void create_targets(struct hbk_drv_work *w)
{
	struct tdrv *t = (struct tdrv *)((char *)w - offsetof(struct tdrv, create_work));
	int err = hbk_drv_create_target(t->d, 0);
	if (err)
		fprintf(stderr, "tdrv: create target 0: %s\n", strerror(-err));
}

void tdrv_create_targets_later(struct tdrv *t)
{
	hbk_drv_queue_dispatch(t->aux, &t->create_work);
}

/* ---- Deferred tasks -------------------------------------------------------------- */

/* On the InterruptQueue: hands every kept task that is due to hooks->due. */
static void defer_run(struct hbk_drv_work *w)
{
	struct tdrv *t = (struct tdrv *)((char *)w - offsetof(struct tdrv, defer_work));
	uint64_t now = hbk_now_ns();
	for (unsigned i = 0; i < TDRV_TASKS; i++) {
		pthread_mutex_lock(&t->defer_lock);
		struct tdrv_deferred x = t->deferred[i];
		bool due = x.used && x.due_ns <= now;
		if (due)
			t->deferred[i].used = false;
		pthread_mutex_unlock(&t->defer_lock);
		if (due)
			t->hooks->due(t, &x.io, x.kind);
	}
}

/* Raises defer_run on the InterruptQueue whenever a kept task is due. */
static void *defer_main(void *arg)
{
	struct tdrv *t = arg;
	pthread_mutex_lock(&t->defer_lock);
	while (!t->defer_stop) {
		uint64_t now = hbk_now_ns();
		bool due = false;
		for (unsigned i = 0; i < TDRV_TASKS; i++)
			due |= t->deferred[i].used && t->deferred[i].due_ns <= now;
		pthread_mutex_unlock(&t->defer_lock);
		if (due)
			hbk_drv_queue_dispatch(t->intr, &t->defer_work);  /* -EALREADY: raised */
		usleep(2000);
		pthread_mutex_lock(&t->defer_lock);
	}
	pthread_mutex_unlock(&t->defer_lock);
	return NULL;
}

void tdrv_defer(struct tdrv *t, const struct tdrv_io *io, unsigned ms, int kind)
{
	pthread_mutex_lock(&t->defer_lock);
	if (!t->defer_running && !t->defer_stop)
		t->defer_running = !pthread_create(&t->defer_thread, NULL, defer_main, t);
	for (unsigned i = 0; i < TDRV_TASKS; i++)
		if (!t->deferred[i].used) {
			t->deferred[i] = (struct tdrv_deferred){
				.io = *io, .kind = kind, .used = true,
				.due_ns = hbk_now_ns() + ms * 1000000ull };
			break;
		}
	pthread_mutex_unlock(&t->defer_lock);
}

bool tdrv_defer_expedite(struct tdrv *t, uint64_t tag, int kind)
{
	bool found = false;
	pthread_mutex_lock(&t->defer_lock);
	for (unsigned i = 0; i < TDRV_TASKS; i++)
		if (t->deferred[i].used && t->deferred[i].io.task.task_tag == tag) {
			t->deferred[i].due_ns = 0;
			t->deferred[i].kind = kind;
			found = true;
		}
	pthread_mutex_unlock(&t->defer_lock);
	return found;
}

/* STOP: the raising thread ends; what is still kept never completes. */
static void defer_stop(struct tdrv *t)
{
	pthread_mutex_lock(&t->defer_lock);
	t->defer_stop = true;
	bool running = t->defer_running;
	pthread_mutex_unlock(&t->defer_lock);
	if (running)
		pthread_join(t->defer_thread, NULL);
}

/* ---- Controller ---------------------------------------------------------------- */

static void interrupt(struct hbk_drv_work *w);

static int base_init(struct hbk_drv *d)
{
	struct tdrv *t = hbk_drv_priv(d);
	t->d = d;
	t->aux = hbk_drv_queue_create(d, HBK_QUEUE_NAME_AUX);
	t->intr = hbk_drv_queue_create(d, HBK_QUEUE_NAME_INTERRUPT);
	if (!t->aux || !t->intr)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->idle, NULL);
	pthread_mutex_init(&t->defer_lock, NULL);
	hbk_drv_work_init(&t->defer_work, defer_run);
	hbk_drv_work_init(&t->create_work, create_targets);
	hbk_drv_work_init(&t->intr_work, interrupt);
	t->mem = mmap(NULL, TDRV_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t->mem == MAP_FAILED) {
		t->mem = NULL;
		return -ENOMEM;
	}
	struct hbk_scsi_lun_cfg cfg = {
		.vendor = "HBAKIT", .product = "TEST DISK", .revision = "1.0",
		.serial = "TDRV0000", .naa = 0x6001405000000100ull,
		.block_size = TDRV_BS, .nblocks = TDRV_SIZE / TDRV_BS,
		.max_xfer_blocks = (1u << 20) / TDRV_BS, .ops = &mem_ops, .ctx = t,
	};
	int err = hbk_scsi_lun_init(&t->lun, &cfg);
	if (err)
		return err;
	t->lunp = &t->lun;
	t->target.lun_count = 1;
	t->target.luns = &t->lunp;

	struct hbk_drv_constraints c = { 0 };
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_SEGMENT_COUNT_READ, 1);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_SEGMENT_COUNT_WRITE, 1);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_BYTE_COUNT_READ, 1u << 20);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_BYTE_COUNT_WRITE, 1u << 20);
	hbk_drv_constraint_set(&c, HBK_CONS_MIN_SEGMENT_ALIGNMENT, 4096);
	hbk_drv_constraint_set(&c, HBK_CONS_ADDRESSABLE_BITS, 64);
	hbk_drv_constraint_set(&c, HBK_CONS_DATA_ALIGNMENT_MASK, TDRV_BS - 1);
	if (t->hooks && t->hooks->init && (err = t->hooks->init(t, &c)))
		return err;
	return hbk_drv_report_constraints(d, &c);
}

static int base_highest_id(struct hbk_drv *d, uint64_t *id)
{
	(void)d;
	*id = 0;
	return 0;
}

static int base_initiator_id(struct hbk_drv *d, uint64_t *id)
{
	(void)d;
	*id = 255;
	return 0;
}

static int base_max_tasks(struct hbk_drv *d, uint32_t *n)
{
	(void)d;
	*n = TDRV_TASKS;
	return 0;
}

static int base_map_bundled(struct hbk_drv *d, struct hbk_drv_mem *cmds,
			    struct hbk_drv_mem *resps, uint32_t count)
{
	struct tdrv *t = hbk_drv_priv(d);
	(void)count;
	t->cmds = hbk_drv_mem_map(cmds);
	t->resps = hbk_drv_mem_map(resps);
	return t->cmds && t->resps ? 0 : -ENOMEM;
}

static int base_start(struct hbk_drv *d)
{
	struct tdrv *t = hbk_drv_priv(d);
	if (t->hooks && t->hooks->start)
		return t->hooks->start(t);
	tdrv_create_targets_later(t);
	return 0;
}

static bool base_device_management(struct hbk_drv *d)
{
	(void)d;
	return true;
}

/* ---- I/O ------------------------------------------------------------------------ */

static void queue_task(struct tdrv *t, const struct tdrv_io *io)
{
	pthread_mutex_lock(&t->lock);
	t->pend[t->tail++ % TDRV_TASKS] = *io;
	pthread_mutex_unlock(&t->lock);
	if (t->hooks && t->hooks->raise)
		t->hooks->raise(t);
	else
		hbk_drv_queue_dispatch(t->intr, &t->intr_work); /* -EALREADY: already raised */
}

static uint32_t base_process_task(struct hbk_drv *d, const struct hbk_task *task,
				  struct hbk_response *resp, struct hbk_drv_action *action)
{
	struct tdrv *t = hbk_drv_priv(d);
	(void)resp;
	struct tdrv_io io = {
		.path = TDRV_PER_TASK, .index = (uint16_t)hbk_drv_action_index(action),
		.task = *task, .action = action,
	};
	hbk_drv_action_retain(action);
	queue_task(t, &io);
	return HBK_SR_REQUEST_IN_PROCESS;
}

static void base_process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
				 struct hbk_drv_bundled_action *action)
{
	struct tdrv *t = hbk_drv_priv(d);
	pthread_mutex_lock(&t->lock);
	t->bundled = action; /* the same handle on every call */
	pthread_mutex_unlock(&t->lock);
	for (unsigned i = 0; i < count; i++) {
		struct tdrv_io io = {
			.path = TDRV_BUNDLED, .index = index[i], .task = t->cmds[index[i]],
			.bundled = action,
		};
		queue_task(t, &io);
	}
}

void tdrv_execute(struct tdrv *t, const struct hbk_task *k, struct hbk_response *resp)
{
	struct hbk_scsi_reply rep;
	void *buf = k->requested_transfer_count ?
		hbk_drv_dma(t->d, k->buffer_iova, k->requested_transfer_count) : NULL;
	if (k->target_id != 0 || (k->requested_transfer_count && !buf)) {
		hbk_drv_response_fill(resp, k, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				      k->target_id ? HBK_DS_DEVICE_NOT_PRESENT : HBK_DS_DELIVERY_FAILURE,
				      0, NULL, 0);
		return;
	}
	hbk_scsi_execute(&t->target, hbk_scsi_lun_decode(k->lun), k->cdb, k->cdb_len, buf,
			 k->requested_transfer_count, (enum hbk_dir)k->direction, &rep);
	hbk_drv_response_fill(resp, k, HBK_SR_TASK_COMPLETE, rep.status, rep.bytes,
			      rep.sense, rep.sense_len);
}

static void interrupt(struct hbk_drv_work *w)
{
	struct tdrv *t = (struct tdrv *)((char *)w - offsetof(struct tdrv, intr_work));
	for (;;) {
		struct tdrv_io io;
		pthread_mutex_lock(&t->lock);
		bool empty = t->head == t->tail;
		if (!empty)
			io = t->pend[t->head++ % TDRV_TASKS];
		t->busy = !empty;      /* the task taken before is completed (or kept) */
		if (empty)
			pthread_cond_broadcast(&t->idle);
		pthread_mutex_unlock(&t->lock);
		if (empty)
			return;
		tdrv_execute(t, &io.task, &io.resp);
		if (!t->hooks || !t->hooks->complete || !t->hooks->complete(t, &io))
			tdrv_complete(t, &io);
	}
}

/*
 * LUN RESET: answers once the InterruptQueue has completed every task the
 * base holds (pending, or taken and running), so none the reset covers is
 * left at the driver; what a hook keeps stays the hook's.  Each task was
 * raised when it was queued, and none comes meanwhile: the I/O entry points
 * and this one run on the Default queue (unless a driver binds them
 * elsewhere, never to the InterruptQueue), so the wait is not for itself.
 */
static uint32_t base_lun_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	struct tdrv *t = hbk_drv_priv(d);
	(void)target; (void)lun;
	pthread_mutex_lock(&t->lock);
	while (t->head != t->tail || t->busy)
		pthread_cond_wait(&t->idle, &t->lock);
	pthread_mutex_unlock(&t->lock);
	return HBK_SR_FUNCTION_COMPLETE;
}

static void base_stop(struct hbk_drv *d)
{
	struct tdrv *t = hbk_drv_priv(d);
	defer_stop(t);
	if (t->hooks && t->hooks->stop)
		t->hooks->stop(t);
}

const struct hbk_drv_ops tdrv_ops = {
	.name = "tdrv",
	.init_controller = base_init,
	.report_initiator_id = base_initiator_id,
	.report_highest_id = base_highest_id,
	.report_max_tasks = base_max_tasks,
	.map_bundled = base_map_bundled,
	.start = base_start,
	.device_management = base_device_management,
	.process_task = base_process_task,
	.process_bundled = base_process_bundled,
	.lun_reset = base_lun_reset,
	.stop = base_stop,
};

int tdrv_main(int argc, char **argv, const struct hbk_drv_ops *ops,
	      const struct tdrv_hooks *hooks)
{
	static struct tdrv t;
	t.hooks = hooks;
	t.event_fd = -1;
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "--event-fd=", 11))
			t.event_fd = atoi(argv[i] + 11);
	int rc = hbk_drv_main(ops ? ops : &tdrv_ops, &t, argc, argv);
	if (t.mem)
		munmap(t.mem, TDRV_SIZE);
	/* exit-delay-ms=N: work on after STOP, as a driver writing its cache out */
	for (int i = 1; i < argc; i++)
		if (!strncmp(argv[i], "exit-delay-ms=", 14))
			usleep((useconds_t)atoi(argv[i] + 14) * 1000);
	return rc;
}
