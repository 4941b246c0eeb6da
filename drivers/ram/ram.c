/* SPDX-License-Identifier: MIT */
/*
 * hbk-ram: the smallest complete hbakit driver, and the one to copy.  It
 * serves memory-backed LUNs through the shared SCSI emulation on both the
 * per-task and the bundled path.  Both entry points feed one pending list;
 * the work happens on the driver's InterruptQueue, which completes many
 * bundled slots per completion call, never inside the process call.  Targets
 * are created from the AuxiliaryQueue once the driver can serve any I/O.
 *
 * Options: targets=N (1), luns=M (1), size=BYTES per LUN (256M), bs=512|4096
 * (512), tasks=N (256), max-transfer=BYTES (1M), coalesce=N (0: adaptive),
 * and the medium of every LUN: removable=1 (START STOP UNIT ejects and loads
 * it), ro=1 (write protected), lbppbe=N (2^N logical blocks per physical
 * block, 0..15), max-unmap=N (blocks one UNMAP may name, 0: no limit).
 * The LUNs together take at most three quarters of the machine's memory.
 * Task management answers once every task at the driver has completed;
 * LOGICAL UNIT RESET and TARGET RESET then reset the emulation's
 * LUN state (unit attentions, RESERVE(6), medium removal prevention), and
 * the loss of an I_T nexus ends what the LUNs kept for it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "hbk/driver.h"
#include "hbk/scsi.h"

#define HBK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define HBK_MAX(a, b) ((a) > (b) ? (a) : (b))

enum path { PER_TASK, BUNDLED };

struct pending {
	uint16_t index;
	uint8_t path;
};

/* What the interrupt handler takes from the pending list, under its lock. */
struct taken {
	struct pending p;
	struct hbk_drv_action *action;  /* per-task path */
	struct hbk_task task;           /* per-task path: the task by value */
};

struct ram_lun {
	uint8_t *mem;
	/* A bit per block, set by every write: blocks never written are zero,
	 * so GET LBA STATUS reads their bits, not their bytes. */
	_Atomic uint64_t *written;
	uint64_t size;
	uint32_t bs;
	struct hbk_scsi_lun lun;
	char serial[32];
};

struct ram {
	struct hbk_drv *d;
	unsigned ntargets, nluns;
	uint64_t size;
	uint32_t bs, ntasks;
	uint64_t max_transfer;
	unsigned coalesce;              /* bundled slots per completion call, 0 = adaptive */
	bool removable, read_only;      /* every LUN's medium */
	unsigned lbppbe;
	uint32_t max_unmap;             /* MAXIMUM UNMAP LBA COUNT, 0: none */
	struct hbk_scsi_target *targets;
	struct ram_lun *luns;           /* ntargets * nluns */

	struct hbk_drv_queue *aux, *intr;
	struct hbk_drv_work create_work, intr_work;

	/* bundled path: the shared slots, mapped once and kept */
	struct hbk_task *cmds;
	struct hbk_response *resps;
	struct hbk_drv_bundled_action *bundled;

	/* per-task path: the task copied out of the call, and its handle */
	struct hbk_task *tasks;
	struct hbk_drv_action **actions;

	/* Populates the LUNs' memory in the background (see populate_main). */
	pthread_t populate;
	bool populate_up;
	_Atomic bool populate_stop;

	pthread_mutex_t lock;           /* guards the pending list and busy */
	struct pending *pend;           /* ring of ntasks entries */
	uint32_t head, tail;
	struct taken *batch;            /* the interrupt handler's copy */
	bool busy;                      /* it holds tasks taken, not all completed */
	pthread_cond_t idle;            /* signalled when it gave them all back */
};

/* ---- Memory backend ---------------------------------------------------------- */

static int mem_read(void *ctx, uint64_t lba, uint32_t n, void *buf)
{
	struct ram_lun *l = ctx;
	memcpy(buf, l->mem + lba * l->bs, (size_t)n * l->bs);
	return 0;
}

static int mem_write(void *ctx, uint64_t lba, uint32_t n, const void *buf, bool fua)
{
	struct ram_lun *l = ctx;
	(void)fua;
	/* Relaxed: the bits only let GET LBA STATUS skip blocks, and one that
	 * runs beside a write to the same blocks may see either state. */
	for (uint64_t b = lba; b < lba + n;) {
		unsigned shift = b % 64, k = HBK_MIN(64 - shift, (unsigned)(lba + n - b));
		uint64_t mask = (k == 64 ? ~0ull : (1ull << k) - 1) << shift;
		atomic_fetch_or_explicit(&l->written[b / 64], mask, memory_order_relaxed);
		b += k;
	}
	memcpy(l->mem + lba * l->bs, buf, (size_t)n * l->bs);
	return 0;
}

static int mem_unmap(void *ctx, uint64_t lba, uint64_t n)
{
	struct ram_lun *l = ctx;
	memset(l->mem + lba * l->bs, 0, n * l->bs);
	return 0;
}

static bool block_zero(const struct ram_lun *l, uint64_t lba)
{
	if (!(atomic_load_explicit(&l->written[lba / 64], memory_order_relaxed) >> lba % 64 & 1))
		return true;
	const uint8_t *p = l->mem + lba * l->bs;
	return p[0] == 0 && memcmp(p, p + 1, l->bs - 1) == 0;
}

/* Thin with zero reclaim: an all-zero block counts as deallocated, since it
 * reads back the same either way (LBPRZ).  A zero run skips 64 blocks
 * never written at a time. */
static int mem_lba_status(void *ctx, uint64_t lba, uint32_t *n, bool *mapped)
{
	struct ram_lun *l = ctx;
	bool zero = block_zero(l, lba);
	uint32_t run = 1;
	while (run < *n) {
		uint64_t b = lba + run;
		if (zero && b % 64 == 0 && *n - run >= 64 &&
		    !atomic_load_explicit(&l->written[b / 64], memory_order_relaxed)) {
			run += 64;
			continue;
		}
		if (block_zero(l, b) != zero)
			break;
		run++;
	}
	*n = run;
	*mapped = !zero;
	return 0;
}

static const struct hbk_scsi_backend_ops mem_ops = {
	.read = mem_read, .write = mem_write, .unmap = mem_unmap,
	.lba_status = mem_lba_status,
};

/* ---- Options ----------------------------------------------------------------- */

/* Reads the options into r; -EINVAL (the option named) for a bad one. */
static int parse_options(struct ram *r, uint64_t *removable, uint64_t *ro, uint64_t *lbppbe,
			 uint64_t *max_unmap)
{
	struct hbk_drv *d = r->d;
	uint64_t targets, luns, bs, tasks, coalesce;
	int err = 0;
	err = err ? err : hbk_drv_arg_num(d, "targets", 1, 1, 64, &targets);
	err = err ? err : hbk_drv_arg_num(d, "luns", 1, 1, 64, &luns);
	err = err ? err : hbk_drv_arg_num(d, "bs", 512, 512, 4096, &bs);
	err = err ? err : hbk_drv_arg_num(d, "size", 256u << 20, bs, UINT64_MAX, &r->size);
	err = err ? err : hbk_drv_arg_num(d, "tasks", 256, 1, HBK_MAX_TASKS, &tasks);
	err = err ? err : hbk_drv_arg_num(d, "max-transfer", 1u << 20, 1, UINT64_MAX,
						    &r->max_transfer);   /* the host checks it */
	err = err ? err : hbk_drv_arg_num(d, "coalesce", 0, 0, HBK_MAX_BUNDLE, &coalesce);
	err = err ? err : hbk_drv_arg_num(d, "removable", 0, 0, 1, removable);
	err = err ? err : hbk_drv_arg_num(d, "ro", 0, 0, 1, ro);
	err = err ? err : hbk_drv_arg_num(d, "lbppbe", 0, 0, 15, lbppbe);
	err = err ? err : hbk_drv_arg_num(d, "max-unmap", 0, 0, UINT32_MAX, max_unmap);
	if (err)
		return err;
	if (!err)
		err = hbk_drv_args_check(d);   /* a mistyped option is refused, not left out */
	if (err)
		return err;
	if (bs != 512 && bs != 4096) {
		fprintf(stderr, "hbk-ram: bs=%llu: expected 512 or 4096\n", (unsigned long long)bs);
		return -EINVAL;
	}
	if (r->size % bs) {
		fprintf(stderr, "hbk-ram: size=%llu: not a multiple of the block size (%llu)\n",
			(unsigned long long)r->size, (unsigned long long)bs);
		return -EINVAL;
	}
	/* The LUNs' memory is taken up front; more than the machine has would
	 * bring the OOM killer instead of an error. */
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	uint64_t phys = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
	if (r->size > phys / 4 * 3 / (targets * luns)) {
		fprintf(stderr, "hbk-ram: size=%llu: %llu LUNs of that size need more than three "
			"quarters of this machine's %llu MiB of memory\n", (unsigned long long)r->size,
			(unsigned long long)(targets * luns), (unsigned long long)(phys >> 20));
		return -EINVAL;
	}
	r->ntargets = (unsigned)targets;
	r->nluns = (unsigned)luns;
	r->bs = (uint32_t)bs;
	r->ntasks = (uint32_t)tasks;
	r->coalesce = (unsigned)coalesce;
	return 0;
}

/* ---- Controller ---------------------------------------------------------------- */

static void create_targets(struct hbk_drv_work *w);
static void interrupt(struct hbk_drv_work *w);

static int ram_init(struct hbk_drv *d)
{
	struct ram *r = hbk_drv_priv(d);
	r->d = d;
	uint64_t removable, ro, lbppbe, max_unmap;
	int err = parse_options(r, &removable, &ro, &lbppbe, &max_unmap);
	if (err)
		return err;
	r->max_unmap = (uint32_t)max_unmap;
	r->removable = removable;
	r->read_only = ro;
	r->lbppbe = (unsigned)lbppbe;

	r->aux = hbk_drv_queue_create(d, HBK_QUEUE_NAME_AUX);
	r->intr = hbk_drv_queue_create(d, HBK_QUEUE_NAME_INTERRUPT);
	r->pend = calloc(r->ntasks, sizeof(*r->pend));
	r->batch = calloc(r->ntasks, sizeof(*r->batch));
	r->tasks = calloc(r->ntasks, sizeof(*r->tasks));
	r->actions = calloc(r->ntasks, sizeof(*r->actions));
	r->targets = calloc(r->ntargets, sizeof(*r->targets));
	r->luns = calloc((size_t)r->ntargets * r->nluns, sizeof(*r->luns));
	if (!r->aux || !r->intr || !r->pend || !r->batch || !r->tasks || !r->actions || !r->targets || !r->luns)
		return -ENOMEM;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->idle, NULL);
	hbk_drv_work_init(&r->create_work, create_targets);
	hbk_drv_work_init(&r->intr_work, interrupt);

	for (unsigned t = 0; t < r->ntargets; t++) {
		struct hbk_scsi_target *tg = &r->targets[t];
		tg->lun_count = r->nluns;
		tg->luns = calloc(r->nluns, sizeof(*tg->luns));
		if (!tg->luns)
			return -ENOMEM;
		for (unsigned n = 0; n < r->nluns; n++) {
			struct ram_lun *l = &r->luns[t * r->nluns + n];
			l->size = r->size / r->bs * r->bs;
			l->bs = r->bs;
			/* Huge pages where the kernel allows them (random 4 KiB I/O
			 * over the disk would miss the TLB on every access),
			 * populated in the background (populate_main). */
			l->mem = mmap(NULL, l->size, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			if (l->mem == MAP_FAILED)
				return -ENOMEM;
			madvise(l->mem, l->size, MADV_HUGEPAGE);
			l->written = calloc((l->size / r->bs + 63) / 64, sizeof(*l->written));
			if (!l->written)
				return -ENOMEM;
			snprintf(l->serial, sizeof(l->serial), "RAM%04u%04u", t, n);
			struct hbk_scsi_lun_cfg cfg = {
				.vendor = "HBAKIT", .product = "RAM DISK", .revision = "1.0",
				.serial = l->serial, .naa = 0x6001405000000000ull | (t << 8) | n,
				.block_size = r->bs, .nblocks = l->size / r->bs,
				.max_xfer_blocks = (uint32_t)(r->max_transfer / r->bs),
				.write_cache = false, .lbprz = true,
				.removable = r->removable, .read_only = r->read_only,
				.lbppbe = (uint8_t)r->lbppbe, .max_unmap_blocks = r->max_unmap,
				.ops = &mem_ops, .ctx = l,
			};
			err = hbk_scsi_lun_init(&l->lun, &cfg);
			if (err)
				return err;
			tg->luns[n] = &l->lun;
		}
	}

	struct hbk_drv_constraints c = { 0 };
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_SEGMENT_COUNT_READ, 1);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_SEGMENT_COUNT_WRITE, 1);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_BYTE_COUNT_READ, r->max_transfer);
	hbk_drv_constraint_set(&c, HBK_CONS_MAX_BYTE_COUNT_WRITE, r->max_transfer);
	hbk_drv_constraint_set(&c, HBK_CONS_MIN_SEGMENT_ALIGNMENT, 4096);
	hbk_drv_constraint_set(&c, HBK_CONS_ADDRESSABLE_BITS, 64);
	hbk_drv_constraint_set(&c, HBK_CONS_DATA_ALIGNMENT_MASK, 511);
	return hbk_drv_report_constraints(d, &c);
}

static int ram_highest_id(struct hbk_drv *d, uint64_t *id)
{
	struct ram *r = hbk_drv_priv(d);
	*id = r->ntargets - 1;
	return 0;
}

static int ram_initiator_id(struct hbk_drv *d, uint64_t *id)
{
	(void)d;
	*id = 255;
	return 0;
}

static int ram_max_tasks(struct hbk_drv *d, uint32_t *n)
{
	*n = ((struct ram *)hbk_drv_priv(d))->ntasks;
	return 0;
}

static int ram_dma_spec(struct hbk_drv *d, struct hbk_drv_dma_spec *s)
{
	s->max_transfer = ((struct ram *)hbk_drv_priv(d))->max_transfer;
	s->alignment = 4096;
	s->address_bits = 64;
	s->segment_type = HBK_SEG_HOST64;
	return 0;
}

static int ram_map_bundled(struct hbk_drv *d, struct hbk_drv_mem *cmds,
			   struct hbk_drv_mem *resps, uint32_t count)
{
	struct ram *r = hbk_drv_priv(d);
	(void)count;
	/* Map once, keep the addresses for the life of the controller. */
	r->cmds = hbk_drv_mem_map(cmds);
	r->resps = hbk_drv_mem_map(resps);
	return r->cmds && r->resps ? 0 : -ENOMEM;
}

/*
 * Faults every LUN's memory in, writable, as a RAM disk reserves its memory,
 * so I/O does not pay page faults (zeroing a huge page) as it first touches
 * the disk.  In the background from START: populating gigabytes takes
 * seconds here (2 GiB: over 4 s of system time), longer than the host waits
 * for INIT_CONTROLLER.  I/O meanwhile is safe: populating leaves a page's
 * contents as they are.  Its own thread, ended at stop.
 */
static void *populate_main(void *arg)
{
	struct ram *r = arg;
	enum { STEP = 64 << 20 };
	for (unsigned i = 0; i < r->ntargets * r->nluns; i++) {
		struct ram_lun *l = &r->luns[i];
		for (uint64_t off = 0; off < l->size && !atomic_load(&r->populate_stop); off += STEP) {
			size_t len = (size_t)HBK_MIN((uint64_t)STEP, l->size - off);
			if (!madvise(l->mem + off, len, MADV_POPULATE_WRITE))
				continue;
			if (errno != EINVAL)
				return NULL;   /* out of memory: pages come as I/O touches them */
			/* A kernel before 5.14: touch each page for writing,
			 * keeping what I/O may already have written there. */
			for (size_t k = 0; k < len; k += 4096)
				__atomic_fetch_add(l->mem + off + k, 0, __ATOMIC_RELAXED);
		}
	}
	return NULL;
}

static int ram_start(struct hbk_drv *d)
{
	struct ram *r = hbk_drv_priv(d);
	r->populate_up = !pthread_create(&r->populate, NULL, populate_main, r);
	/* Target creation waits for discovery I/O, which needs the Default
	 * queue this call runs on: do it from the auxiliary queue. */
	hbk_drv_queue_dispatch(r->aux, &r->create_work);
	return 0;
}

static bool ram_device_management(struct hbk_drv *d)
{
	(void)d;
	return true;
}

static uint64_t ram_highest_lun(struct hbk_drv *d)
{
	return ((struct ram *)hbk_drv_priv(d))->nluns - 1;
}

static void create_targets(struct hbk_drv_work *w)
{
	struct ram *r = (struct ram *)((char *)w - offsetof(struct ram, create_work));
	for (unsigned t = 0; t < r->ntargets; t++) {
		int err = hbk_drv_create_target(r->d, t);
		if (err)
			fprintf(stderr, "hbk-ram: create target %u: %s\n", t, strerror(-err));
	}
}

/* ---- I/O: both paths share one pending list and one interrupt handler ------------ */

static void queue_bundled(struct ram *r, const uint16_t *index, unsigned n)
{
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < n; i++)
		r->pend[r->tail++ % r->ntasks] = (struct pending){ .index = index[i], .path = BUNDLED };
	pthread_mutex_unlock(&r->lock);
}

static void raise_interrupt(struct ram *r)
{
	hbk_drv_queue_dispatch(r->intr, &r->intr_work); /* -EALREADY: already raised */
}

static uint32_t ram_process_task(struct hbk_drv *d, const struct hbk_task *task,
				 struct hbk_response *resp, struct hbk_drv_action *action)
{
	struct ram *r = hbk_drv_priv(d);
	(void)resp;
	uint16_t index = (uint16_t)hbk_drv_action_index(action);
	hbk_drv_action_retain(action);
	/* The copies are written under the lock that hands them over: the
	 * interrupt handler may still be reading this index's previous cycle. */
	pthread_mutex_lock(&r->lock);
	r->tasks[index] = *task;
	r->actions[index] = action;
	r->pend[r->tail++ % r->ntasks] = (struct pending){ .index = index, .path = PER_TASK };
	pthread_mutex_unlock(&r->lock);
	raise_interrupt(r);
	return HBK_SR_REQUEST_IN_PROCESS;
}

static void ram_process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
				struct hbk_drv_bundled_action *action)
{
	struct ram *r = hbk_drv_priv(d);
	/* One handle serves every bundled call: keep it from the first call and
	 * check it never changes.  Never release it. */
	if (!r->bundled)
		r->bundled = action;
	else if (r->bundled != action)
		abort();
	queue_bundled(r, index, count);
	raise_interrupt(r);
}

static void execute(struct ram *r, const struct hbk_task *t, struct hbk_response *resp)
{
	struct hbk_scsi_reply rep;
	uint64_t lun = hbk_scsi_lun_decode(t->lun);
	void *buf = t->requested_transfer_count ?
		hbk_drv_dma(r->d, t->buffer_iova, t->requested_transfer_count) : NULL;
	if (t->target_id >= r->ntargets) {
		hbk_drv_response_fill(resp, t, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				      HBK_DS_DEVICE_NOT_PRESENT, 0, NULL, 0);
		return;
	}
	if (t->requested_transfer_count && !buf) {
		hbk_drv_response_fill(resp, t, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				      HBK_DS_DELIVERY_FAILURE, 0, NULL, 0);
		return;
	}
	const struct hbk_scsi_req req = {
		.initiator = t->initiator_id, .lun = lun, .cdb = t->cdb, .cdb_len = t->cdb_len,
		.buf = buf, .buf_len = t->requested_transfer_count, .dir = (enum hbk_dir)t->direction,
	};
	hbk_scsi_exec(&r->targets[t->target_id], &req, &rep);
	hbk_drv_response_fill(resp, t, HBK_SR_TASK_COMPLETE, rep.status, rep.bytes,
			      rep.sense, rep.sense_len);
}

/*
 * The interrupt handler: drains everything pending, completing per-task tasks
 * one by one and bundled slots in groups.  Adaptive coalescing (the default)
 * completes a quarter of what was pending per call (4..32 slots): at low
 * depth the host refills the first groups while the rest execute, at high
 * depth every completion call carries 32 slots.  coalesce=N fixes the group
 * size.
 */
static void interrupt(struct hbk_drv_work *w)
{
	struct ram *r = (struct ram *)((char *)w - offsetof(struct ram, intr_work));
	struct taken *batch = r->batch;
	uint16_t done[HBK_MAX_BUNDLE];
	unsigned ndone = 0;
	for (;;) {
		/* Take everything pending in one go. */
		pthread_mutex_lock(&r->lock);
		unsigned n = r->tail - r->head;
		for (unsigned i = 0; i < n; i++) {
			struct pending p = r->pend[(r->head + i) % r->ntasks];
			batch[i].p = p;
			if (p.path == PER_TASK) {
				batch[i].action = r->actions[p.index];
				batch[i].task = r->tasks[p.index];
			}
		}
		r->head = r->tail;
		r->busy |= n != 0;
		pthread_mutex_unlock(&r->lock);
		if (!n)
			break;
		unsigned group = r->coalesce;
		if (!group)
			group = HBK_MIN(HBK_MAX(n / 4, 4u), HBK_MAX_BUNDLE);
		for (unsigned i = 0; i < n; i++) {
			struct pending p = batch[i].p;
			if (p.path == BUNDLED) {
				execute(r, &r->cmds[p.index], &r->resps[p.index]);
				done[ndone++] = p.index;
				if (ndone >= group) {
					hbk_drv_bundled_complete(r->d, r->bundled, done, (uint16_t)ndone);
					ndone = 0;
				}
			} else {
				struct hbk_response resp;
				struct hbk_drv_action *a = batch[i].action;
				execute(r, &batch[i].task, &resp);
				hbk_drv_task_complete(r->d, a, &resp);
				hbk_drv_action_release(a);
			}
		}
	}
	if (ndone)
		hbk_drv_bundled_complete(r->d, r->bundled, done, (uint16_t)ndone);
	pthread_mutex_lock(&r->lock);
	r->busy = false;
	pthread_cond_broadcast(&r->idle);
	pthread_mutex_unlock(&r->lock);
}

/*
 * Waits until the interrupt handler has completed every task at the driver:
 * those pending and those it took.  Each was raised when it was queued, and
 * none comes meanwhile: the I/O entry points and task management all run
 * on the Default queue (ram binds none), never on the InterruptQueue, so
 * this cannot wait for itself.  Task management only, on the Default queue.
 */
static void drain(struct ram *r)
{
	pthread_mutex_lock(&r->lock);
	while (r->head != r->tail || r->busy)
		pthread_cond_wait(&r->idle, &r->lock);
	pthread_mutex_unlock(&r->lock);
}

/* Task management: nothing is ever stuck in memory, so every function lets
 * the tasks at the driver complete (they finish before the function takes
 * effect, as SAM allows) and is then complete: none it covers is left at
 * the driver when it answers.  The resets also reset the emulation's state
 * of the LUNs they cover. */
static uint32_t ram_abort_task(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	(void)target; (void)lun; (void)tag;
	drain(hbk_drv_priv(d));
	return HBK_SR_FUNCTION_COMPLETE;
}

static uint32_t ram_tmf_lun(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	(void)target; (void)lun;
	drain(hbk_drv_priv(d));
	return HBK_SR_FUNCTION_COMPLETE;
}

static uint32_t ram_lun_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	struct ram *r = hbk_drv_priv(d);
	drain(r);
	if (target < r->ntargets && lun < r->nluns)
		hbk_scsi_lun_reset(r->targets[target].luns[lun]);
	return HBK_SR_FUNCTION_COMPLETE;
}

static uint32_t ram_target_reset(struct hbk_drv *d, uint64_t target)
{
	struct ram *r = hbk_drv_priv(d);
	drain(r);
	if (target < r->ntargets)
		hbk_scsi_target_reset(&r->targets[target]);
	return HBK_SR_FUNCTION_COMPLETE;
}

static void ram_nexus_loss(struct hbk_drv *d, uint64_t target, uint64_t initiator)
{
	struct ram *r = hbk_drv_priv(d);
	if (target < r->ntargets)
		hbk_scsi_nexus_loss(&r->targets[target], initiator);
}

/* Ends populate_main; at stop, and before the memory goes. */
static void populate_end(struct ram *r)
{
	atomic_store(&r->populate_stop, true);
	if (r->populate_up)
		pthread_join(r->populate, NULL);
	r->populate_up = false;
}

static void ram_stop(struct hbk_drv *d)
{
	populate_end(hbk_drv_priv(d));
}

static const struct hbk_drv_ops ram_ops = {
	.name = "hbk-ram",
	.init_controller = ram_init,
	.report_initiator_id = ram_initiator_id,
	.report_highest_id = ram_highest_id,
	.report_max_tasks = ram_max_tasks,
	.get_dma_spec = ram_dma_spec,
	.map_bundled = ram_map_bundled,
	.start = ram_start,
	.device_management = ram_device_management,
	.highest_lun = ram_highest_lun,
	.process_task = ram_process_task,
	.process_bundled = ram_process_bundled,
	.abort_task = ram_abort_task,
	.abort_task_set = ram_tmf_lun,
	.clear_task_set = ram_tmf_lun,
	.lun_reset = ram_lun_reset,
	.target_reset = ram_target_reset,
	.nexus_loss = ram_nexus_loss,
	.stop = ram_stop,
};

int main(int argc, char **argv)
{
	static struct ram r;
	int rc = hbk_drv_main(&ram_ops, &r, argc, argv);
	populate_end(&r);
	for (unsigned i = 0; r.luns && i < r.ntargets * r.nluns; i++) {
		if (r.luns[i].mem && r.luns[i].mem != MAP_FAILED)
			munmap(r.luns[i].mem, r.luns[i].size);
		free(r.luns[i].written);
		if (r.luns[i].lun.cfg.ops)
			hbk_scsi_lun_fini(&r.luns[i].lun);
	}
	for (unsigned t = 0; r.targets && t < r.ntargets; t++)
		free(r.targets[t].luns);
	free(r.targets);
	free(r.luns);
	free(r.pend);
	free(r.batch);
	free(r.tasks);
	free(r.actions);
	return rc;
}
