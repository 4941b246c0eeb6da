/* SPDX-License-Identifier: MIT */
/*
 * hbk-raid: the driver of hbakit's emulated RAID controller (include/hbk/
 * device.h), written as a vendor writes an HBA driver, and the example for
 * drivers of real hardware.  Both I/O entry points turn tasks into request
 * frames and ring the doorbell, nothing more; the card's interrupt vectors
 * (eventfds) are event sources of the InterruptQueue, whose handler drains
 * the reply queues and completes bundled slots many per call, per-task
 * tasks one by one, each by the path it came.  Task management goes to the
 * card as frames, from a queue of its own (TaskManagementQueue), so that
 * I/O keeps flowing while it waits for the card's answer.
 * Targets are created from the AuxiliaryQueue, once the firmware runs and
 * the interrupts are armed.
 *
 * Options: vd=LIST and array=NAME:SPEC, repeatable (the virtual drives, see
 * drivers/raid/hba.h; default vd0:256M), tasks=N (256,
 * at most the card's credits), queues=N reply queues (1), fw-threads=N (16),
 * max-transfer=BYTES (1M), coalesce-count=N (32), coalesce-us=T (100),
 * coalesce-idle=0|1 (1: a reply that leaves the card idle interrupts at once),
 * coalesce-adaptive=0|1 (1: the count follows the frames at the card, up to
 * coalesce-count; see moderate()),
 * hold-lba=LBA (fault injection: I/O touching that block of a memory drive
 * hangs until aborted), hold-stuck=0|1 (1: aborting it does not work
 * either, as with a member disk that never answers; stopping the driver
 * cancels it all the same), post-delay-us=T (fault injection: a bundled
 * call that carries a WRITE waits T µs before it posts its frames, as a
 * driver thread preempted there), drain-delay-us=T (fault injection: the
 * interrupt handler waits T µs between taking replies and handing their
 * tasks up, as a handler preempted there), tm-wait-ms=T (1500: how long a task
 * management function waits for the card's answer on the bundled path).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "drivers/raid/hba.h"
#include "hbk/driver.h"
#include "hbk/scsi.h"

#define TM_TAG      0x80000000u  /* task-management frames */
#define TAG_INDEX   0xffffu      /* I/O frames: the pool index, generation << 16 */
#define TM_WAIT_MS  1500         /* default tm-wait-ms: well inside the host's call time limit */
/* On the per-task path every I/O call waits behind a task management call
 * on the host's call channel (one call at a time), so the wait there is
 * short: well inside any task's timeout.  The card answers at once what it
 * can cancel; what it cannot is rejected as after the long wait. */
#define TM_WAIT_PER_TASK_MS 100
#define TM_QUEUE    "TaskManagementQueue"
#define REAP_BATCH  64

enum path { IDLE = 0, PER_TASK = 1, BUNDLED = 2 };

/* A pooled task while it is at the card. */
struct slot {
	_Atomic uint8_t path;           /* enum path: how it came; IDLE when not at the card */
	/* While at the card: the task's task_tag (what ABORT TASK names) and
	 * its frame's tag, the slot index with a generation above it, so that
	 * nothing meant for one use of the slot reaches the next. */
	_Atomic uint64_t task_tag;
	_Atomic uint32_t frame_tag;
	struct hbk_drv_action *action;  /* per-task path, under slot_lock */
	struct hbk_task task;           /* per-task path: the task by value, under slot_lock */
};

struct opts {
	uint64_t tasks, queues, threads, max_transfer, coalesce_count, coalesce_us, coalesce_idle;
	uint64_t coalesce_adaptive;
	uint64_t hold_lba, hold_stuck, post_delay_us, drain_delay_us, tm_wait_ms;
};

struct hba {
	struct hbk_drv *d;
	struct opts o;
	struct storage storage;
	struct hbk_dev *dev;            /* the card */
	struct hbk_dev_port port;
	uint32_t ntasks, ntargets, nqueues, max_xfer, align;

	struct hbk_drv_queue *aux, *intr, *tmq;
	struct hbk_drv_work create_work, intr_work;
	unsigned irqs_attached;         /* vectors attached to the InterruptQueue */

	struct hbk_task *cmds;          /* bundled path: the shared slots (NULL: per-task path) */
	struct hbk_response *resps;
	struct hbk_drv_bundled_action *bundled;
	struct slot *slots;
	pthread_mutex_t slot_lock;
	/* Held from the moment the I/O entry points mark slots at the card
	 * until their frames are posted, and by task management while it
	 * looks for its task and posts its frame: task management runs on a
	 * queue of its own, and without it could find a task whose frame is
	 * not in the ring yet, and post its own first (the card would find
	 * nothing to end, and the task would run after the abort completed). */
	pthread_mutex_t post_lock;

	/* Interrupt moderation (moderate()): I/O frames posted, by the entry
	 * points under post_lock, and reaped, by the interrupt handler; the
	 * coalescing count last written, interrupt handler only. */
	_Atomic uint32_t frames_posted;
	uint32_t frames_reaped, irq_load, irq_count;

	pthread_mutex_t life;           /* held while completing */
	bool running;                   /* between start and stop: completions may go up */

	pthread_mutex_t tm_lock;        /* the one task management in flight */
	pthread_cond_t tm_cond;
	uint32_t tm_seq, tm_tag;
	uint32_t tm_out;                /* TM frames at the card, given up on or not */
	bool tm_done;
	struct hbk_dev_reply tm_reply;
	/* Task management's pass through the Default queue (default_passed). */
	struct hbk_drv_queue *defq;
	struct hbk_drv_work pass_work;
	bool passed;                    /* under tm_lock */
};

#define HBA(w, field) ((struct hba *)((char *)(w) - offsetof(struct hba, field)))

/* ---- Options and probe ---------------------------------------------------------- */

static const struct {
	const char *name;
	uint64_t dflt, min, max;
	size_t off;
} options[] = {
	{ "tasks", 256, 1, HBK_MAX_TASKS, offsetof(struct opts, tasks) },
	{ "queues", 1, 1, HBK_DEV_MAX_QUEUES, offsetof(struct opts, queues) },
	{ "fw-threads", 16, 1, 64, offsetof(struct opts, threads) },
	{ "max-transfer", 1u << 20, 4096, 1u << 30, offsetof(struct opts, max_transfer) },
	{ "coalesce-count", 32, 1, 1024, offsetof(struct opts, coalesce_count) },
	{ "coalesce-us", 100, 0, 1000000, offsetof(struct opts, coalesce_us) },
	{ "coalesce-idle", 1, 0, 1, offsetof(struct opts, coalesce_idle) },
	{ "coalesce-adaptive", 1, 0, 1, offsetof(struct opts, coalesce_adaptive) },
	{ "hold-lba", UINT64_MAX, 0, UINT64_MAX, offsetof(struct opts, hold_lba) },
	{ "hold-stuck", 0, 0, 1, offsetof(struct opts, hold_stuck) },
	{ "post-delay-us", 0, 0, 10000000, offsetof(struct opts, post_delay_us) },
	{ "drain-delay-us", 0, 0, 10000000, offsetof(struct opts, drain_delay_us) },
	{ "tm-wait-ms", TM_WAIT_MS, 10, 60000, offsetof(struct opts, tm_wait_ms) },
};

static int parse_options(struct hba *h)
{
	for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
		uint64_t *v = (uint64_t *)((char *)&h->o + options[i].off);
		int err = hbk_drv_arg_num(h->d, options[i].name, options[i].dflt, options[i].min,
					  options[i].max, v);
		if (err)
			return err;
	}
	if (h->o.max_transfer % 4096) {
		fprintf(stderr, "hbk-raid: max-transfer must be a multiple of 4096\n");
		return -EINVAL;
	}
	return 0;
}

/* Powers the card on with the configured drives (the emulation's stand-in
 * for the card being in its slot), then probes it as a driver would. */
static int probe(struct hba *h)
{
	/* array= may be repeated; each value is NAME:SPEC, the spec's commas
	 * kept as they are. */
	const char *arrays[HBK_DEV_MAX_TARGETS];
	unsigned narrays = 0;
	for (const char *a; (a = hbk_drv_arg_nth(h->d, "array", narrays));) {
		if (narrays == HBK_DEV_MAX_TARGETS) {
			fprintf(stderr, "hbk-raid: more than %u array= drives\n", HBK_DEV_MAX_TARGETS);
			return -EINVAL;
		}
		arrays[narrays++] = a;
	}
	/* vd= lists every memory drive at once: a second one would be lost. */
	if (hbk_drv_arg_repeated(h->d, "vd"))
		return -EINVAL;
	const char *vd = hbk_drv_arg(h->d, "vd");
	/* Every option is read by now: a mistyped one is refused. */
	if (hbk_drv_args_check(h->d))
		return -EINVAL;
	int err = storage_open(&h->storage, vd || narrays ? vd : "vd0:256M", arrays, narrays);
	if (err)
		return err;
	for (unsigned i = 0; h->o.hold_lba != UINT64_MAX && i < h->storage.nvols; i++)
		if (!h->storage.spec[i]) {
			hbk_dev_vol_mem_hold(h->storage.vol[i], h->o.hold_lba);
			hbk_dev_vol_mem_stick(h->storage.vol[i], h->o.hold_stuck);
		}
	struct hbk_dev_config cfg = {
		.vols = h->storage.vol, .nvols = h->storage.nvols, .queues = (uint32_t)h->o.queues,
		.threads = (uint32_t)h->o.threads, .max_transfer = (uint32_t)h->o.max_transfer,
	};
	err = hbk_dev_create(&cfg, &h->dev);
	if (!err)
		err = hbk_dev_port_init(&h->port, h->dev);
	if (err || hbk_dev_read32(h->dev, HBK_DEV_REG_STATUS) != HBK_DEV_READY) {
		fprintf(stderr, "hbk-raid: the controller did not come up: %s\n", strerror(err ? -err : EIO));
		return err ? err : -EIO;
	}
	uint32_t credits = hbk_dev_read32(h->dev, HBK_DEV_REG_CREDITS);
	h->ntasks = (uint32_t)(h->o.tasks < credits ? h->o.tasks : credits);
	h->ntargets = hbk_dev_read32(h->dev, HBK_DEV_REG_TARGETS);
	h->nqueues = hbk_dev_read32(h->dev, HBK_DEV_REG_RPL_QUEUES);
	h->max_xfer = hbk_dev_read32(h->dev, HBK_DEV_REG_MAX_XFER);
	h->align = hbk_dev_read32(h->dev, HBK_DEV_REG_DMA_ALIGN);
	return 0;
}

/* ---- Controller -------------------------------------------------------------------- */

static void create_targets(struct hbk_drv_work *w);
static void interrupt(struct hbk_drv_work *w);
static void pass(struct hbk_drv_work *w);

static int hba_init(struct hbk_drv *d)
{
	struct hba *h = hbk_drv_priv(d);
	h->d = d;
	pthread_mutex_init(&h->slot_lock, NULL);
	pthread_mutex_init(&h->post_lock, NULL);
	pthread_mutex_init(&h->life, NULL);
	pthread_mutex_init(&h->tm_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&h->tm_cond, &ca);
	pthread_condattr_destroy(&ca);
	hbk_drv_work_init(&h->create_work, create_targets);
	hbk_drv_work_init(&h->intr_work, interrupt);
	hbk_drv_work_init(&h->pass_work, pass);
	int err = parse_options(h);
	if (!err)
		err = probe(h);
	if (err)
		return err;
	h->aux = hbk_drv_queue_create(d, HBK_QUEUE_NAME_AUX);
	h->intr = hbk_drv_queue_create(d, HBK_QUEUE_NAME_INTERRUPT);
	h->tmq = hbk_drv_queue_create(d, TM_QUEUE);
	h->defq = hbk_drv_queue_find(d, HBK_QUEUE_NAME_DEFAULT);
	h->slots = calloc(h->ntasks, sizeof(*h->slots));
	if (!h->aux || !h->intr || !h->tmq || !h->defq || !h->slots)
		return -ENOMEM;

	/* What the card can do, as its registers say: one data pointer per
	 * frame, MAX_XFER bytes, page-aligned data. */
	struct hbk_drv_constraints c = { 0 };
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_SEGMENT_COUNT_READ, 1);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_SEGMENT_COUNT_WRITE, 1);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_BYTE_COUNT_READ, h->max_xfer);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_BYTE_COUNT_WRITE, h->max_xfer);
	hbk_drv_constraint_set(&c, HBK_CONS_MIN_SEGMENT_ALIGNMENT, h->align);
	hbk_drv_constraint_set(&c, HBK_CONS_ADDRESSABLE_BITS, 64);
	hbk_drv_constraint_set(&c, HBK_CONS_DATA_ALIGNMENT_MASK, h->align - 1);
	return hbk_drv_report_constraints(d, &c);
}

static int hba_initiator_id(struct hbk_drv *d, uint64_t *id)
{
	(void)d;
	*id = HBK_DEV_MAX_TARGETS;  /* above every virtual drive */
	return 0;
}

static int hba_highest_id(struct hbk_drv *d, uint64_t *id)
{
	*id = ((struct hba *)hbk_drv_priv(d))->ntargets - 1;
	return 0;
}

static int hba_max_tasks(struct hbk_drv *d, uint32_t *n)
{
	*n = ((struct hba *)hbk_drv_priv(d))->ntasks;
	return 0;
}

static int hba_dma_spec(struct hbk_drv *d, struct hbk_drv_dma_spec *s)
{
	struct hba *h = hbk_drv_priv(d);
	s->max_transfer = h->max_xfer;
	s->alignment = h->align;
	s->address_bits = 64;
	s->segment_type = HBK_SEG_HOST64;
	return 0;
}

static int hba_map_bundled(struct hbk_drv *d, struct hbk_drv_mem *cmds,
			   struct hbk_drv_mem *resps, uint32_t count)
{
	struct hba *h = hbk_drv_priv(d);
	(void)count;
	h->cmds = hbk_drv_mem_map(cmds);
	h->resps = hbk_drv_mem_map(resps);
	return h->cmds && h->resps ? 0 : -ENOMEM;
}

/*
 * Brings the card up: interrupt vectors armed and coalescing set, firmware
 * running.  Only then may targets be created, from the AuxiliaryQueue: the
 * framework's discovery I/O arrives before create_target returns, and it
 * needs this Default queue free and the card able to answer.
 */
static int hba_start(struct hbk_drv *d)
{
	struct hba *h = hbk_drv_priv(d);
	/* Adaptive: nothing is at the card yet, so every reply interrupts. */
	h->irq_count = h->o.coalesce_adaptive ? 1 : (uint32_t)h->o.coalesce_count;
	for (unsigned q = 0; q < h->nqueues; q++) {
		hbk_dev_write32(h->dev, HBK_DEV_REG_IRQ_COUNT(q), h->irq_count);
		hbk_dev_write32(h->dev, HBK_DEV_REG_IRQ_USEC(q), (uint32_t)h->o.coalesce_us);
		hbk_dev_write32(h->dev, HBK_DEV_REG_IRQ_FLAGS(q),
				h->o.coalesce_idle ? HBK_DEV_IRQ_IDLE : 0);
	}
	/* Each vector wakes the InterruptQueue's own thread, which runs the
	 * handler: one thread woken per interrupt. */
	for (unsigned q = 0; q < h->nqueues; q++) {
		int err = hbk_drv_queue_attach(h->intr, hbk_dev_irq_fd(h->dev, q), &h->intr_work);
		if (err)
			return err;
		h->irqs_attached = q + 1;
	}
	pthread_mutex_lock(&h->life);
	h->running = true;
	pthread_mutex_unlock(&h->life);
	hbk_dev_write32(h->dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_ENABLE);
	if (hbk_dev_read32(h->dev, HBK_DEV_REG_STATUS) != HBK_DEV_OPERATIONAL)
		return -EIO;
	hbk_drv_queue_dispatch(h->aux, &h->create_work);
	return 0;
}

static void create_targets(struct hbk_drv_work *w)
{
	struct hba *h = HBA(w, create_work);
	for (unsigned t = 0; t < h->ntargets; t++) {
		int err = hbk_drv_create_target(h->d, t);
		if (err)
			fprintf(stderr, "hbk-raid: create target %u: %s\n", t, strerror(-err));
	}
}

static bool hba_device_management(struct hbk_drv *d)
{
	(void)d;
	return true;
}

static int hba_init_target(struct hbk_drv *d, uint64_t target)
{
	return target < ((struct hba *)hbk_drv_priv(d))->ntargets ? 0 : -ENODEV;
}

static uint64_t hba_highest_lun(struct hbk_drv *d)
{
	(void)d;
	return 0;  /* one LUN per virtual drive */
}

/* ---- I/O ------------------------------------------------------------------------------ */

/* The frame for pool slot `index` carrying task t, under a tag of the
 * slot's next generation (recorded with t's task_tag in the slot, before
 * the frame can reach the card).  False when its buffer cannot be handed
 * to the card. */
static bool build_frame(struct hba *h, const struct hbk_task *t, uint16_t index,
			struct hbk_dev_frame *f)
{
	uint64_t len = t->requested_transfer_count;
	void *buf = len ? hbk_drv_dma(h->d, t->buffer_iova, len) : NULL;
	if ((len && !buf) || len > h->max_xfer || t->cdb_len > sizeof(f->cdb))
		return false;
	struct slot *s = &h->slots[index];
	uint32_t gen = (atomic_load_explicit(&s->frame_tag, memory_order_relaxed) >> 16) + 1;
	uint32_t tag = index | (gen & (~TM_TAG >> 16)) << 16;
	/* Task management reads them under post_lock, which the caller
	 * holds; the frame's post publishes them to the interrupt handler. */
	atomic_store(&s->task_tag, t->task_tag);
	atomic_store(&s->frame_tag, tag);
	*f = (struct hbk_dev_frame){
		.tag = tag, .function = HBK_DEV_FN_SCSI_IO, .dir = t->direction,
		.cdb_len = t->cdb_len, .reply_queue = (uint8_t)(index % h->nqueues),
		/* The card answers NO_TARGET for a target it does not have. */
		.target = t->target_id < h->ntargets ? (uint32_t)t->target_id : UINT32_MAX,
		.data_addr = (uintptr_t)buf, .data_len = (uint32_t)len,
		.initiator = t->initiator_id,
	};
	memcpy(f->lun, t->lun, sizeof(f->lun));
	memcpy(f->cdb, t->cdb, sizeof(f->cdb));
	return true;
}

/* The response for task t from the card's reply. */
static void fill_response(struct hbk_response *resp, const struct hbk_task *t,
			  const struct hbk_dev_reply *rep)
{
	uint64_t len = t->requested_transfer_count;
	switch (rep->status) {
	case HBK_DEV_ST_OK:
		hbk_drv_response_fill(resp, t, HBK_SR_TASK_COMPLETE, rep->scsi_status,
				      len - (rep->residual < len ? rep->residual : len), rep->sense,
				      rep->sense_len < HBK_DEV_SENSE_MAX ? rep->sense_len : HBK_DEV_SENSE_MAX);
		break;
	case HBK_DEV_ST_NO_TARGET:
		hbk_drv_response_fill(resp, t, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				      HBK_DS_DEVICE_NOT_PRESENT, 0, NULL, 0);
		break;
	case HBK_DEV_ST_TERMINATED:
		/* Ended by task management: TASK ABORTED (SAM-5 5.6, with the
		 * control page's TAS 1), which its initiator may retry. */
		hbk_drv_response_fill(resp, t, HBK_SR_TASK_COMPLETE, HBK_STATUS_TASK_ABORTED, 0,
				      NULL, 0);
		break;
	default:  /* refused as malformed */
		hbk_drv_response_fill(resp, t, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				      HBK_DS_DELIVERY_FAILURE, 0, NULL, 0);
	}
}

static uint32_t hba_process_task(struct hbk_drv *d, const struct hbk_task *task,
				 struct hbk_response *resp, struct hbk_drv_action *action)
{
	struct hba *h = hbk_drv_priv(d);
	uint16_t index = (uint16_t)hbk_drv_action_index(action);
	struct slot *s = &h->slots[index];
	struct hbk_dev_frame f;
	pthread_mutex_lock(&h->post_lock);
	if (!build_frame(h, task, index, &f)) {
		pthread_mutex_unlock(&h->post_lock);
		hbk_drv_response_fill(resp, task, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				      HBK_DS_DELIVERY_FAILURE, 0, NULL, 0);
		return HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE;
	}
	hbk_drv_action_retain(action);
	/* Under the lock that hands them to the interrupt handler, which may
	 * still be reading this slot's previous cycle. */
	pthread_mutex_lock(&h->slot_lock);
	s->task = *task;
	s->action = action;
	pthread_mutex_unlock(&h->slot_lock);
	atomic_store(&s->path, PER_TASK);
	int err = hbk_dev_post(&h->port, &f, 1);
	if (err)
		atomic_store(&s->path, IDLE);  /* the ring is full: cannot happen within credits */
	else
		atomic_fetch_add_explicit(&h->frames_posted, 1, memory_order_relaxed);  /* see moderate */
	pthread_mutex_unlock(&h->post_lock);
	if (!err)
		return HBK_SR_REQUEST_IN_PROCESS;
	hbk_drv_action_release(action);
	hbk_drv_response_fill(resp, task, HBK_SR_TASK_COMPLETE, HBK_STATUS_TASK_SET_FULL, 0, NULL, 0);
	return HBK_SR_TASK_COMPLETE;
}

static void hba_process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
				struct hbk_drv_bundled_action *action)
{
	struct hba *h = hbk_drv_priv(d);
	/* One handle serves every bundled call: keep it, never release it. */
	if (!h->bundled)
		h->bundled = action;
	else if (h->bundled != action)
		abort();
	struct hbk_dev_frame f[HBK_MAX_BUNDLE];
	uint16_t posted[HBK_MAX_BUNDLE], failed[HBK_MAX_BUNDLE];
	unsigned n = 0, nfailed = 0;
	for (unsigned i = 0; h->o.post_delay_us && i < count; i++)
		if (h->cmds[index[i]].cdb[0] == 0x2a || h->cmds[index[i]].cdb[0] == 0x8a) {
			usleep((useconds_t)h->o.post_delay_us);
			break;
		}
	pthread_mutex_lock(&h->post_lock);
	for (unsigned i = 0; i < count; i++) {
		const struct hbk_task *t = &h->cmds[index[i]];
		if (build_frame(h, t, index[i], &f[n])) {
			atomic_store(&h->slots[index[i]].path, BUNDLED);
			posted[n++] = index[i];
		} else {
			hbk_drv_response_fill(&h->resps[index[i]], t, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
					      HBK_DS_DELIVERY_FAILURE, 0, NULL, 0);
			failed[nfailed++] = index[i];
		}
	}
	if (n && hbk_dev_post(&h->port, f, n)) {
		for (unsigned i = 0; i < n; i++) {
			atomic_store(&h->slots[posted[i]].path, IDLE);
			hbk_drv_response_fill(&h->resps[posted[i]], &h->cmds[posted[i]], HBK_SR_TASK_COMPLETE,
					      HBK_STATUS_TASK_SET_FULL, 0, NULL, 0);
			failed[nfailed++] = posted[i];
		}
	} else {
		atomic_fetch_add_explicit(&h->frames_posted, n, memory_order_relaxed);  /* see moderate */
	}
	pthread_mutex_unlock(&h->post_lock);
	if (nfailed)
		hbk_drv_bundled_complete(d, action, failed, (uint16_t)nfailed);
}

/* ---- Interrupts: replies to completions ------------------------------------------------ */

static void tm_replied(struct hba *h, const struct hbk_dev_reply *rep)
{
	pthread_mutex_lock(&h->tm_lock);
	if (h->tm_out)
		h->tm_out--;
	if (rep->tag == h->tm_tag) {
		h->tm_reply = *rep;
		h->tm_done = true;
		pthread_cond_signal(&h->tm_cond);
	} else {
		fprintf(stderr, "hbk-raid: late task management reply %#x (%u terminated)\n",
			rep->tag, rep->terminated);
	}
	pthread_mutex_unlock(&h->tm_lock);
}

/* Completes the task a reply is for, by the path it came; bundled slots
 * gather in done[] (n so far), sent 32 at a time.  Returns the new n. */
static unsigned complete(struct hba *h, const struct hbk_dev_reply *rep, uint16_t *done, unsigned n)
{
	uint32_t index = rep->tag & TAG_INDEX;
	/* Only the reply of the slot's current frame: the tag has its generation. */
	uint8_t path = index < h->ntasks &&
		       rep->tag == atomic_load_explicit(&h->slots[index].frame_tag, memory_order_relaxed)
		       ? atomic_exchange(&h->slots[index].path, IDLE) : IDLE;
	if (path == BUNDLED) {
		fill_response(&h->resps[index], &h->cmds[index], rep);
		done[n++] = (uint16_t)index;
		if (n == HBK_MAX_BUNDLE) {
			hbk_drv_bundled_complete(h->d, h->bundled, done, (uint16_t)n);
			n = 0;
		}
	} else if (path == PER_TASK) {
		struct hbk_response resp;
		pthread_mutex_lock(&h->slot_lock);
		struct hbk_drv_action *a = h->slots[index].action;
		fill_response(&resp, &h->slots[index].task, rep);
		pthread_mutex_unlock(&h->slot_lock);
		hbk_drv_task_complete(h->d, a, &resp);
		hbk_drv_action_release(a);
	} else {
		/* Never complete what was not issued: log it and drop it. */
		fprintf(stderr, "hbk-raid: reply for tag %#x, which has no task at the controller\n",
			rep->tag);
	}
	return n;
}

/*
 * Interrupt moderation, as Linux's dynamic interrupt moderation does for
 * network cards: before each drain the handler sets every reply queue's
 * coalescing count to a quarter of its share of the I/O frames at the
 * card, rounded up to a power of two (so that the register changes only
 * when the load does), between 1 and coalesce-count.  The load is the
 * peak of recent drains, decaying by an eighth a drain: right after a
 * drain the host holds most of the tasks, and the count must not follow
 * that dip.  With few
 * frames at the card a reply interrupts at once: its submitter is waiting,
 * and the next reply may be a whole round trip away (with a fixed count,
 * four synchronous jobs each waited for the card to go idle or for the
 * time limit).  With many, a quarter of them come soon, and one interrupt
 * carries them all.  Interrupt handler only.
 */
static void moderate(struct hba *h)
{
	if (!h->o.coalesce_adaptive)
		return;
	/* Relaxed: an estimate, which only decides how soon to interrupt.  An
	 * entry point counts its frames after posting them, so a reply can be
	 * reaped first: the difference may be briefly negative. */
	int32_t at_card = (int32_t)(atomic_load_explicit(&h->frames_posted, memory_order_relaxed) -
				    h->frames_reaped);
	/* Frames spread over the reply queues (index mod queues): each
	 * queue's count goes by its share. */
	uint32_t now = at_card > 0 ? (uint32_t)at_card / h->nqueues : 0;
	h->irq_load = HBK_MAX(now, h->irq_load - (h->irq_load + 7) / 8);
	uint32_t quarter = h->irq_load / 4;
	uint32_t want = quarter > 1 ? 1u << (32 - __builtin_clz(quarter - 1)) : 1;
	if (want > h->o.coalesce_count)
		want = (uint32_t)h->o.coalesce_count;
	if (want == h->irq_count)
		return;
	h->irq_count = want;
	for (unsigned q = 0; q < h->nqueues; q++)
		hbk_dev_write32(h->dev, HBK_DEV_REG_IRQ_COUNT(q), want);
}

/*
 * The interrupt handler, on the InterruptQueue: drains every reply queue,
 * handing credits back as it goes, and completes what it found.  Bundled
 * slots go up 32 per completion call; what the card coalesced into one
 * interrupt thus reaches the host in few calls.
 */
static void interrupt(struct hbk_drv_work *w)
{
	struct hba *h = HBA(w, intr_work);
	struct hbk_dev_reply rep[REAP_BATCH], tm_rep;
	uint16_t done[HBK_MAX_BUNDLE];
	unsigned ndone = 0;
	bool tm_seen = false;
	pthread_mutex_lock(&h->life);
	if (h->running)
		moderate(h);
	for (unsigned q = 0; h->running && q < h->nqueues; q++) {
		unsigned n;
		while ((n = hbk_dev_reap(&h->port, q, rep, REAP_BATCH)))
			for (unsigned i = 0; i < n; i++) {
				if (rep[i].function != HBK_DEV_FN_TASK_MGMT) {
					h->frames_reaped++;
					ndone = complete(h, &rep[i], done, ndone);
				} else {
					if (tm_seen)    /* one at a time: an older one, late */
						tm_replied(h, &tm_rep);
					tm_rep = rep[i];
					tm_seen = true;
				}
			}
	}
	if (ndone && h->o.drain_delay_us)
		usleep((useconds_t)h->o.drain_delay_us);
	if (ndone)
		hbk_drv_bundled_complete(h->d, h->bundled, done, (uint16_t)ndone);
	/* Last: the card posts the replies of the tasks a task management
	 * function ended before its own, but on their queues, which this
	 * drain may reach after the function's; the caller waiting for the
	 * function must find those tasks completed. */
	if (tm_seen)
		tm_replied(h, &tm_rep);
	pthread_mutex_unlock(&h->life);
}

/* ---- Task management ---------------------------------------------------------------------- */

static const char *const tm_name[] = {
	[HBK_DEV_TM_ABORT_TASK] = "ABORT TASK", [HBK_DEV_TM_ABORT_TASK_SET] = "ABORT TASK SET",
	[HBK_DEV_TM_CLEAR_TASK_SET] = "CLEAR TASK SET", [HBK_DEV_TM_LUN_RESET] = "LOGICAL UNIT RESET",
	[HBK_DEV_TM_TARGET_RESET] = "TARGET RESET", [HBK_DEV_TM_NEXUS_LOSS] = "I_T NEXUS LOSS",
};

/* The frame tag of the task whose task_tag is tag, if it is at the card
 * (or its frame is about to be).  post_lock held, so that no slot is being
 * filled; a task that ends meanwhile leaves its frame tag until the slot
 * carries the next one. */
static bool find_frame(struct hba *h, uint64_t tag, uint32_t *frame)
{
	for (uint32_t i = 0; tag && i < h->ntasks; i++) {
		struct slot *s = &h->slots[i];
		if (atomic_load(&s->task_tag) == tag && atomic_load(&s->path) != IDLE) {
			*frame = atomic_load(&s->frame_tag);
			return true;
		}
	}
	return false;
}

/* On the Default queue: tells default_passed that it got through. */
static void pass(struct hbk_drv_work *w)
{
	struct hba *h = HBA(w, pass_work);
	pthread_mutex_lock(&h->tm_lock);
	h->passed = true;
	pthread_cond_broadcast(&h->tm_cond);
	pthread_mutex_unlock(&h->tm_lock);
}

/*
 * Waits until a work item gets through the Default queue, where
 * process_bundled runs: the runtime hands slots to the driver (they are at
 * the driver from then on) under that queue's exec lock, before the call
 * that posts their frames, so once the item ran every slot handed over
 * before has its frame in the ring.  A bundled call is short (it only
 * posts), so the wait is too.  TaskManagementQueue, one at a time.
 */
static void default_passed(struct hba *h)
{
	pthread_mutex_lock(&h->tm_lock);
	h->passed = false;
	pthread_mutex_unlock(&h->tm_lock);
	hbk_drv_queue_dispatch(h->defq, &h->pass_work);  /* never queued already: one at a time */
	pthread_mutex_lock(&h->tm_lock);
	while (!h->passed)
		pthread_cond_wait(&h->tm_cond, &h->tm_lock);
	pthread_mutex_unlock(&h->tm_lock);
}

/*
 * Sends one task-management frame and waits for the card's answer, which
 * comes after the replies of every task it terminated.  task is the
 * task_tag of the task to abort (ABORT TASK: its frame's tag goes to the
 * card, which ends that frame only, so a task that ends meanwhile, and the
 * next one its slot carries, are left alone; a task not at the card is
 * complete, its completion on its way) or the initiator whose nexus ended
 * (NEXUS LOSS).
 * A function the card does not answer in tm-wait-ms (TM_WAIT_PER_TASK_MS
 * on the per-task path) is rejected, but its frame stays at the card,
 * holding one of its HBK_DEV_TM_SLOTS contexts until the I/O it waits for
 * ends: with all of them held, a further frame would stop the request ring
 * behind it, I/O to every drive with it, so it is rejected without being
 * sent.  TaskManagementQueue (one at a time), so that the wait keeps no
 * I/O entry point off the Default queue.  The frame goes after those of
 * every task at the driver when the function began (default_passed): a
 * bundled call the runtime had started may not have posted them yet, and
 * the card would not end tasks it has not seen.
 */
static uint32_t tm(struct hba *h, uint8_t type, uint64_t target, uint64_t lun, uint64_t task)
{
	struct hbk_dev_frame f = { .function = HBK_DEV_FN_TASK_MGMT, .tm_type = type,
				   .target = (uint32_t)target };
	default_passed(h);
	pthread_mutex_lock(&h->post_lock);
	if (type == HBK_DEV_TM_ABORT_TASK && !find_frame(h, task, &f.tm_tag)) {
		pthread_mutex_unlock(&h->post_lock);
		/* Not at the card: done, or its reply taken by a drain that has
		 * not handed it up yet (the handler marks the slot idle first).
		 * The drain runs under life: once it is over, the task is
		 * completed, and FUNCTION COMPLETE is true. */
		pthread_mutex_lock(&h->life);
		pthread_mutex_unlock(&h->life);
		return HBK_SR_FUNCTION_COMPLETE;
	}
	if (target >= h->ntargets) {
		pthread_mutex_unlock(&h->post_lock);
		return HBK_SR_FUNCTION_REJECTED;
	}
	if (type == HBK_DEV_TM_NEXUS_LOSS)
		f.initiator = task;
	hbk_scsi_lun_encode(lun, f.lun);
	pthread_mutex_lock(&h->tm_lock);
	if (h->tm_out >= HBK_DEV_TM_SLOTS) {
		pthread_mutex_unlock(&h->tm_lock);
		pthread_mutex_unlock(&h->post_lock);
		fprintf(stderr, "hbk-raid: %s target %llu lun %llu: not sent, the card still holds "
			"%u unanswered task management frames\n", tm_name[type],
			(unsigned long long)target, (unsigned long long)lun, HBK_DEV_TM_SLOTS);
		return HBK_SR_FUNCTION_REJECTED;
	}
	f.tag = h->tm_tag = TM_TAG | (++h->tm_seq & ~TM_TAG);
	h->tm_done = false;
	int err = hbk_dev_post(&h->port, &f, 1);
	if (!err)
		h->tm_out++;
	pthread_mutex_unlock(&h->tm_lock);
	pthread_mutex_unlock(&h->post_lock);

	long wait_ms = h->cmds ? (long)h->o.tm_wait_ms : TM_WAIT_PER_TASK_MS;
	struct timespec end;
	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += wait_ms / 1000;
	end.tv_nsec += wait_ms % 1000 * 1000000L;
	if (end.tv_nsec >= 1000000000L) {
		end.tv_sec++;
		end.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&h->tm_lock);
	while (!err && !h->tm_done && pthread_cond_timedwait(&h->tm_cond, &h->tm_lock, &end) != ETIMEDOUT)
		;
	bool done = h->tm_done;
	struct hbk_dev_reply rep = h->tm_reply;
	h->tm_tag = 0;
	pthread_mutex_unlock(&h->tm_lock);

	bool ok = done && rep.status == HBK_DEV_ST_OK;
	if (ok && type == HBK_DEV_TM_NEXUS_LOSS)
		;       /* every session's end: only a failure is worth a line */
	else if (ok)
		fprintf(stderr, "hbk-raid: %s target %llu lun %llu: done by the controller, %u task(s) terminated\n",
			tm_name[type], (unsigned long long)target, (unsigned long long)lun, rep.terminated);
	else
		fprintf(stderr, "hbk-raid: %s target %llu lun %llu: %s\n", tm_name[type],
			(unsigned long long)target, (unsigned long long)lun,
			done ? "refused by the controller" : "no answer from the controller");
	return ok ? HBK_SR_FUNCTION_COMPLETE : HBK_SR_FUNCTION_REJECTED;
}

static uint32_t hba_abort_task(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	return tm(hbk_drv_priv(d), HBK_DEV_TM_ABORT_TASK, target, lun, tag);
}

static uint32_t hba_abort_task_set(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	return tm(hbk_drv_priv(d), HBK_DEV_TM_ABORT_TASK_SET, target, lun, 0);
}

static uint32_t hba_clear_task_set(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	return tm(hbk_drv_priv(d), HBK_DEV_TM_CLEAR_TASK_SET, target, lun, 0);
}

static uint32_t hba_lun_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	return tm(hbk_drv_priv(d), HBK_DEV_TM_LUN_RESET, target, lun, 0);
}

static uint32_t hba_target_reset(struct hbk_drv *d, uint64_t target)
{
	return tm(hbk_drv_priv(d), HBK_DEV_TM_TARGET_RESET, target, 0, 0);
}

/* The card ends what its LUNs keep for the nexus (RESERVE(6), prevention). */
static void hba_nexus_loss(struct hbk_drv *d, uint64_t target, uint64_t initiator)
{
	tm(hbk_drv_priv(d), HBK_DEV_TM_NEXUS_LOSS, target, 0, initiator);
}

/* ---- Stop and teardown ------------------------------------------------------------------------ */

static void irq_stop(struct hba *h)
{
	for (unsigned q = 0; q < h->irqs_attached; q++)
		hbk_drv_queue_detach(h->intr, hbk_dev_irq_fd(h->dev, q));
	h->irqs_attached = 0;
}

/*
 * Nothing is outstanding for the host any more.  No completion may follow,
 * and the card must stop its DMA into the arena before the runtime unmaps
 * it: a reset ends everything in flight.
 */
static void hba_stop(struct hbk_drv *d)
{
	struct hba *h = hbk_drv_priv(d);
	pthread_mutex_lock(&h->life);
	h->running = false;
	pthread_mutex_unlock(&h->life);
	/* The injected hang ends with the driver, as a hung I/O ends at a
	 * reset: cancelled, never performed.  The host has failed its tasks
	 * already, and their buffers are the application's again, so lifting
	 * the hold, which carries the I/O out, would move data into them.  A
	 * stuck hold refuses the cancel, and the reset, which waits for every
	 * I/O the card started, would wait for ever: it comes unstuck first. */
	for (unsigned i = 0; h->o.hold_lba != UINT64_MAX && i < h->storage.nvols; i++)
		if (!h->storage.spec[i])
			hbk_dev_vol_mem_stick(h->storage.vol[i], false);
	if (h->dev)
		hbk_dev_write32(h->dev, HBK_DEV_REG_CONTROL, HBK_DEV_CTL_RESET);
	irq_stop(h);
	for (uint32_t i = 0; h->slots && i < h->ntasks; i++)
		if (atomic_exchange(&h->slots[i].path, IDLE) == PER_TASK)
			hbk_drv_action_release(h->slots[i].action);
}

/* After the runtime returned: frees whatever init_controller built. */
static void teardown(struct hba *h)
{
	if (!h->d)
		return;  /* never initialised */
	/* No irq_stop: the runtime's queues are gone with their sources. */
	hbk_dev_destroy(h->dev);
	storage_close(&h->storage);
	free(h->slots);
	pthread_mutex_destroy(&h->slot_lock);
	pthread_mutex_destroy(&h->post_lock);
	pthread_mutex_destroy(&h->life);
	pthread_mutex_destroy(&h->tm_lock);
	pthread_cond_destroy(&h->tm_cond);
}

/* Task management waits at the card (tm) on a queue of its own: on the
 * Default queue it would hold process_bundled, and I/O to every drive,
 * for as long. */
static const struct hbk_drv_binding hba_bindings[] = {
	{ .entry = HBK_MSG_ABORT_TASK, .queue = TM_QUEUE },
	{ .entry = HBK_MSG_ABORT_TASK_SET, .queue = TM_QUEUE },
	{ .entry = HBK_MSG_CLEAR_TASK_SET, .queue = TM_QUEUE },
	{ .entry = HBK_MSG_LUN_RESET, .queue = TM_QUEUE },
	{ .entry = HBK_MSG_TARGET_RESET, .queue = TM_QUEUE },
	{ .entry = HBK_MSG_NEXUS_LOSS, .queue = TM_QUEUE },
	{ 0 },
};

static const struct hbk_drv_ops hba_ops = {
	.name = "hbk-raid",
	.init_controller = hba_init,
	.report_initiator_id = hba_initiator_id,
	.report_highest_id = hba_highest_id,
	.report_max_tasks = hba_max_tasks,
	.get_dma_spec = hba_dma_spec,
	.map_bundled = hba_map_bundled,
	.start = hba_start,
	.device_management = hba_device_management,
	.init_target = hba_init_target,
	.highest_lun = hba_highest_lun,
	.process_task = hba_process_task,
	.process_bundled = hba_process_bundled,
	.abort_task = hba_abort_task,
	.abort_task_set = hba_abort_task_set,
	.clear_task_set = hba_clear_task_set,
	.lun_reset = hba_lun_reset,
	.target_reset = hba_target_reset,
	.nexus_loss = hba_nexus_loss,
	.stop = hba_stop,
	.bindings = hba_bindings,
};

int main(int argc, char **argv)
{
	static struct hba h;
	int rc = hbk_drv_main(&hba_ops, &h, argc, argv);
	teardown(&h);
	return rc;
}
