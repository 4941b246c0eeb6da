/* SPDX-License-Identifier: MIT */
/*
 * The hardware half of the emulated RAID controller: device memory and its
 * register file, the doorbell (the controller's queue manager, which copies
 * published frames into firmware contexts as credits allow), reply posting
 * and interrupt coalescing by count and by time, and reset.  The firmware
 * threads that execute the frames are in firmware.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/common.h"
#include "device/device_priv.h"

#define REGS_BYTES 4096u

void dev_reg_set(struct hbk_dev *dev, uint32_t reg, uint32_t val)
{
	__atomic_store_n(&dev->regs[reg / 4], val, __ATOMIC_RELEASE);
}

uint32_t hbk_dev_read32(struct hbk_dev *dev, uint32_t reg)
{
	if (reg >= HBK_DEV_REG_SIZE || reg % 4)
		return 0;
	return __atomic_load_n(&dev->regs[reg / 4], __ATOMIC_ACQUIRE);
}

void *hbk_dev_bar(struct hbk_dev *dev)
{
	return dev->bar;
}

int hbk_dev_irq_fd(struct hbk_dev *dev, unsigned q)
{
	return q < dev->nqueues ? dev->rq[q].fd : -EINVAL;
}

static void set_state(struct hbk_dev *dev, uint8_t state)
{
	dev->state = state;
	dev_reg_set(dev, HBK_DEV_REG_STATUS, state);
}

/* ---- Contexts -------------------------------------------------------------- */

static bool is_tm(const struct hbk_dev *dev, const struct fw_ctx *c)
{
	return c - dev->ctx >= dev->credits;
}

/* dev->lock held. */
static void ctx_free(struct hbk_dev *dev, struct fw_ctx *c)
{
	struct fw_ctx **list = &dev->free[is_tm(dev, c)];
	c->state = CTX_FREE;
	c->next = *list;
	*list = c;
	if (!--dev->in_use)
		pthread_cond_broadcast(&dev->idle_cond);
}

/* LOGICAL UNIT RESET and TARGET RESET, once the tasks they end have ended,
 * also reset the SCSI state of the LUNs they cover (unit attentions,
 * RESERVE(6), medium removal prevention); NEXUS LOSS ends what the target's
 * LUNs keep for that I_T nexus.  dev->lock held; the SCSI layer takes only
 * its own LUN locks, never dev->lock. */
static void tm_reset_luns(struct hbk_dev *dev, const struct hbk_dev_frame *f)
{
	if (f->target >= dev->nvds || !dev->vds[f->target].lun_ready)
		return;
	struct hbk_scsi_target *t = &dev->vds[f->target].target;
	uint64_t lun = hbk_scsi_lun_decode(f->lun);
	if (f->tm_type == HBK_DEV_TM_TARGET_RESET)
		hbk_scsi_target_reset(t);
	else if (f->tm_type == HBK_DEV_TM_LUN_RESET && lun < t->lun_count)
		hbk_scsi_lun_reset(t->luns[lun]);
	else if (f->tm_type == HBK_DEV_TM_NEXUS_LOSS)
		hbk_scsi_nexus_loss(t, f->initiator);
}

/* Posts the reply of TM context tm and frees it.  dev->lock held. */
static void tm_reply(struct hbk_dev *dev, struct fw_ctx *tm, uint8_t status)
{
	if (status == HBK_DEV_ST_OK)
		tm_reset_luns(dev, &tm->f);
	struct hbk_dev_reply rep = { .tag = tm->f.tag, .function = tm->f.function,
				     .status = status, .terminated = tm->terminated };
	dev_post_reply(dev, tm->f.reply_queue < dev->nqueues ? tm->f.reply_queue : 0, &rep);
	ctx_free(dev, tm);
}

static unsigned fetch(struct hbk_dev *dev);

unsigned dev_ctx_end(struct hbk_dev *dev, struct fw_ctx *c, bool terminated)
{
	uint32_t waiters = c->tm_waiters;
	c->tm_waiters = 0;
	ctx_free(dev, c);
	/* The task's reply is posted already, so the driver sees it before the
	 * reply of the task management that ended it. */
	for (; waiters; waiters &= waiters - 1) {
		struct fw_ctx *tm = &dev->ctx[dev->credits + (unsigned)__builtin_ctz(waiters)];
		tm->terminated += terminated;
		if (!--tm->tm_pending)
			tm_reply(dev, tm, HBK_DEV_ST_OK);
	}
	/* Frames that waited for a free context (their credits came back
	 * before this context did) are taken now, not at the next doorbell. */
	if (dev->ci == dev->pi)
		return 0;
	unsigned wake = fetch(dev);
	/* A task management frame among them may have cancelled an
	 * asynchronous command: it ends here, as after a doorbell.  Left on
	 * dev->ended it would wait for a free firmware thread, and there may
	 * be none: the one that runs this may take next a COMPARE AND WRITE
	 * that waits for the very write cancelled, and the others may wait
	 * likewise. */
	fw_end_cancelled(dev);
	return wake;
}

static bool tm_matches(const struct hbk_dev_frame *tm, const struct fw_ctx *c, uint64_t lun)
{
	if (c->f.target != tm->target)
		return false;
	if (tm->tm_type == HBK_DEV_TM_TARGET_RESET)
		return true;
	if (tm->tm_type == HBK_DEV_TM_NEXUS_LOSS)
		return c->f.initiator == tm->initiator;
	return hbk_scsi_lun_decode(c->f.lun) == lun &&
	       (tm->tm_type != HBK_DEV_TM_ABORT_TASK || c->f.tag == tm->tm_tag);
}

/* Starts a TM context just fetched: terminates the tasks it names; its
 * reply follows once the last of them has ended.  dev->lock held. */
static void tm_start(struct hbk_dev *dev, struct fw_ctx *tm)
{
	const struct hbk_dev_frame *f = &tm->f;
	unsigned bit = (unsigned)(tm - dev->ctx) - dev->credits;
	tm->tm_pending = tm->terminated = 0;
	if (f->tm_type < HBK_DEV_TM_ABORT_TASK || f->tm_type > HBK_DEV_TM_NEXUS_LOSS) {
		tm_reply(dev, tm, HBK_DEV_ST_INVALID_FRAME);
		return;
	}
	if (f->target >= dev->nvds) {
		tm_reply(dev, tm, HBK_DEV_ST_NO_TARGET);
		return;
	}
	uint64_t lun = hbk_scsi_lun_decode(f->lun);
	for (uint32_t i = 0; i < dev->credits; i++) {
		struct fw_ctx *c = &dev->ctx[i];
		if ((c->state == CTX_QUEUED || c->state == CTX_EXEC) && tm_matches(f, c, lun)) {
			fw_terminate(c);
			c->tm_waiters |= 1u << bit;
			tm->tm_pending++;
		}
	}
	if (!tm->tm_pending)
		tm_reply(dev, tm, HBK_DEV_ST_OK);
}

/*
 * The queue manager: copies published frames, in ring order, into free
 * contexts while credits allow, queues I/O for the firmware threads and
 * starts task management at once (so it is never stuck behind busy
 * threads).  Returns how many idle firmware threads to wake for the new
 * work, which the caller does with dev_wake() once it released dev->lock (a
 * thread woken under the lock would only block on it).  dev->lock held.
 */
static unsigned fetch(struct hbk_dev *dev)
{
	unsigned queued = 0;
	while (dev->state == HBK_DEV_OPERATIONAL && dev->ci != dev->pi) {
		const struct hbk_dev_frame *f = &dev->req[dev->ci & (dev->entries - 1)];
		/* Acquire: pairs with the release store of seq in hbk_dev_post,
		 * so the frame's body is visible once its seq is. */
		if (__atomic_load_n(&f->seq, __ATOMIC_ACQUIRE) != dev->ci + 1)
			break;  /* not published yet: its producer's doorbell follows */
		bool tm = f->function == HBK_DEV_FN_TASK_MGMT;
		if (dev->outstanding >= dev->credits + (tm ? HBK_DEV_TM_SLOTS : 0) || !dev->free[tm])
			break;  /* out of credits: the frame waits in the ring */
		struct fw_ctx *c = dev->free[tm];
		dev->free[tm] = c->next;
		c->f = *f;
		c->next = NULL;
		atomic_store(&c->aborted, false);
		dev->ci++;
		dev->outstanding++;
		dev->in_use++;
		atomic_fetch_add_explicit(&dev->unreplied, 1, memory_order_relaxed);
		if (tm) {
			c->state = CTX_WAIT;
			tm_start(dev, c);
			continue;
		}
		c->state = CTX_QUEUED;
		if (dev->run_tail)
			dev->run_tail->next = c;
		else
			dev->run_head = c;
		dev->run_tail = c;
		queued++;
	}
	/* Release: the frames are copied out before a producer may overwrite
	 * their slots (pairs with the acquire load of REQ_CI in hbk_dev_post). */
	dev_reg_set(dev, HBK_DEV_REG_REQ_CI, dev->ci);
	if (!queued)
		return 0;
	/* A thread per new frame, but no more running (or woken already) than
	 * the CPUs can run: a thread that blocks on its volume makes room
	 * (firmware.c).  Commands that need CPU (memory volumes) then run on
	 * every CPU; a thread whose commands only submit takes the frames
	 * queued behind its own in a row anyway. */
	uint32_t have = dev->running + dev->waking;
	uint32_t idle = dev->idle_threads > dev->waking ? dev->idle_threads - dev->waking : 0;
	uint32_t n = dev->ncpu > have ? HBK_MIN(HBK_MIN(dev->ncpu - have, queued), idle) : 0;
	dev->waking += n;
	return n;
}

void dev_wake(struct hbk_dev *dev, unsigned n)
{
	while (n--)
		pthread_cond_signal(&dev->work_cond);
}

/* ---- Replies and interrupts ---------------------------------------------------- */

static void irq_raise(struct fw_rq *r)
{
	uint64_t one = 1;
	ssize_t n = write(r->fd, &one, sizeof(one));
	(void)n;  /* EAGAIN only when 2^64-2 interrupts went unread */
}

/* Whether queue r's pending replies are due for an interrupt: IRQ_COUNT of
 * them, the first IRQ_USEC old, or (IDLE) no admitted frame left unreplied.
 * r->lock held. */
static bool irq_due(const struct hbk_dev *dev, const struct fw_rq *r, uint64_t now)
{
	/* Relaxed: a count, which only decides how soon to interrupt. */
	bool idle = r->flags & HBK_DEV_IRQ_IDLE &&
		    atomic_load_explicit(&dev->unreplied, memory_order_relaxed) <= 0;
	return r->pending && (r->pending >= r->count || !r->usec || idle ||
			      now >= r->first_ns + r->usec * 1000ull);
}

static void timer_kick(struct hbk_dev *dev)
{
	pthread_mutex_lock(&dev->timer_lock);
	dev->timer_kick = true;
	pthread_cond_signal(&dev->timer_cond);
	pthread_mutex_unlock(&dev->timer_lock);
}

/* Fires queue q if due, else tells when it will be (UINT64_MAX: nothing
 * pending).  Takes r->lock. */
static uint64_t irq_check(struct hbk_dev *dev, struct fw_rq *r, uint64_t now)
{
	pthread_mutex_lock(&r->lock);
	bool fire = irq_due(dev, r, now);
	uint64_t next = fire || !r->pending ? UINT64_MAX : r->first_ns + r->usec * 1000ull;
	if (fire)
		r->pending = 0;
	pthread_mutex_unlock(&r->lock);
	if (fire)
		irq_raise(r);
	return next;
}

void dev_post_reply(struct hbk_dev *dev, unsigned q, const struct hbk_dev_reply *rep)
{
	struct fw_rq *r = &dev->rq[q];
	atomic_fetch_sub_explicit(&dev->unreplied, 1, memory_order_relaxed);  /* see irq_due */
	pthread_mutex_lock(&r->lock);
	if (hbk_dev_read32(dev, HBK_DEV_REG_STATUS) != HBK_DEV_OPERATIONAL) {
		pthread_mutex_unlock(&r->lock);  /* a reset discards replies */
		return;
	}
	/* Room by construction: outstanding frames <= CREDITS + TM slots <= depth. */
	assert(r->pi - r->ci < dev->depth);
	r->ring[r->pi & (dev->depth - 1)] = *rep;
	r->pi++;
	/* Release: pairs with the acquire load of RQ_PI in hbk_dev_reap, so
	 * the descriptor is visible once the index is. */
	dev_reg_set(dev, HBK_DEV_REG_RQ_PI(q), r->pi);
	uint64_t now = hbk_now_ns();
	if (!r->pending++)
		r->first_ns = now;
	bool fire = irq_due(dev, r, now);
	bool arm = !fire && r->pending == 1;
	if (fire)
		r->pending = 0;
	pthread_mutex_unlock(&r->lock);
	if (fire)
		irq_raise(r);
	if (arm)
		timer_kick(dev);
	/* The card went idle with this reply: IDLE is due on every queue
	 * holding replies with the flag set, not only on this one. */
	if (dev->nqueues > 1 && atomic_load_explicit(&dev->unreplied, memory_order_relaxed) <= 0)
		for (unsigned o = 0; o < dev->nqueues; o++)
			if (o != q)
				irq_check(dev, &dev->rq[o], now);
}

/* Fires every queue whose first pending reply is IRQ_USEC old. */
static void *timer_thread(void *arg)
{
	hbk_thread_name("hbk-irq-timer");
	struct hbk_dev *dev = arg;
	/* Microsecond deadlines: no 50 us of default timer slack. */
	prctl(PR_SET_TIMERSLACK, 1000ul);
	pthread_mutex_lock(&dev->timer_lock);
	while (!dev->timer_stop) {
		uint64_t next = UINT64_MAX, now = hbk_now_ns();
		for (unsigned q = 0; q < dev->nqueues; q++)
			next = HBK_MIN(next, irq_check(dev, &dev->rq[q], now));
		if (dev->timer_kick) {
			dev->timer_kick = false;
			continue;
		}
		if (next == UINT64_MAX) {
			pthread_cond_wait(&dev->timer_cond, &dev->timer_lock);
		} else {
			struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ull),
					       .tv_nsec = (long)(next % 1000000000ull) };
			pthread_cond_timedwait(&dev->timer_cond, &dev->timer_lock, &ts);
		}
	}
	pthread_mutex_unlock(&dev->timer_lock);
	return NULL;
}

/* ---- Register writes ------------------------------------------------------------- */

/* Terminates everything in flight, discarding its replies, and empties the
 * rings: the device is READY again. */
static void reset(struct hbk_dev *dev)
{
	pthread_mutex_lock(&dev->lock);
	set_state(dev, HBK_DEV_RESETTING);
	for (uint32_t i = 0; i < dev->credits; i++)
		if (dev->ctx[i].state != CTX_FREE)
			fw_terminate(&dev->ctx[i]);
	for (fw_end_cancelled(dev); dev->in_use; fw_end_cancelled(dev))
		pthread_cond_wait(&dev->idle_cond, &dev->lock);
	dev->pi = dev->ci = dev->outstanding = 0;
	atomic_store(&dev->unreplied, 0);  /* contexts a reset ended post nothing */
	memset(dev->req, 0, (size_t)dev->entries * sizeof(*dev->req));
	dev_reg_set(dev, HBK_DEV_REG_REQ_PI, 0);
	dev_reg_set(dev, HBK_DEV_REG_REQ_CI, 0);
	for (unsigned q = 0; q < dev->nqueues; q++) {
		struct fw_rq *r = &dev->rq[q];
		uint64_t junk;
		pthread_mutex_lock(&r->lock);
		r->pi = r->ci = r->pending = 0;
		memset(r->ring, 0, (size_t)dev->depth * sizeof(*r->ring));
		dev_reg_set(dev, HBK_DEV_REG_RQ_PI(q), 0);
		dev_reg_set(dev, HBK_DEV_REG_RQ_CI(q), 0);
		while (read(r->fd, &junk, sizeof(junk)) > 0)
			;
		pthread_mutex_unlock(&r->lock);
	}
	set_state(dev, HBK_DEV_READY);
	pthread_mutex_unlock(&dev->lock);
}

/* RQ_CI: the driver consumed replies up to val; their credits come back. */
static void consumed(struct hbk_dev *dev, unsigned q, uint32_t val)
{
	struct fw_rq *r = &dev->rq[q];
	pthread_mutex_lock(&r->lock);
	uint32_t n = val - r->ci;
	if (n > r->pi - r->ci)
		n = 0;  /* beyond what was posted: ignored */
	else
		r->ci = val;
	dev_reg_set(dev, HBK_DEV_REG_RQ_CI(q), r->ci);
	pthread_mutex_unlock(&r->lock);
	if (!n)
		return;
	pthread_mutex_lock(&dev->lock);
	dev->outstanding -= HBK_MIN(n, dev->outstanding);
	unsigned w = fetch(dev);
	fw_end_cancelled(dev);
	pthread_mutex_unlock(&dev->lock);
	dev_wake(dev, w);
}

static void coalescing(struct hbk_dev *dev, unsigned q, uint32_t reg, uint32_t val)
{
	struct fw_rq *r = &dev->rq[q];
	pthread_mutex_lock(&r->lock);
	if (reg == HBK_DEV_REG_IRQ_COUNT(q)) {
		r->count = HBK_MAX(HBK_MIN(val, dev->depth), 1u);
		dev_reg_set(dev, reg, r->count);
	} else if (reg == HBK_DEV_REG_IRQ_USEC(q)) {
		r->usec = HBK_MIN(val, 1000000u);
		dev_reg_set(dev, reg, r->usec);
	} else {
		r->flags = val & HBK_DEV_IRQ_IDLE;
		dev_reg_set(dev, reg, r->flags);
	}
	pthread_mutex_unlock(&r->lock);
	/* The new setting may make what is pending due now, or later. */
	irq_check(dev, r, hbk_now_ns());
	timer_kick(dev);
}

void hbk_dev_write32(struct hbk_dev *dev, uint32_t reg, uint32_t val)
{
	if (reg == HBK_DEV_REG_REQ_PI) {
		pthread_mutex_lock(&dev->lock);
		/* Forward only, and never past what the ring holds: producers
		 * may ring out of order, and frames carry their own seq. */
		if ((int32_t)(val - dev->pi) > 0 && val - dev->ci <= dev->entries) {
			dev->pi = val;
			dev_reg_set(dev, HBK_DEV_REG_REQ_PI, val);
		}
		unsigned w = fetch(dev);
		fw_end_cancelled(dev);   /* what a task management frame cancelled */
		pthread_mutex_unlock(&dev->lock);
		dev_wake(dev, w);
	} else if (reg == HBK_DEV_REG_CONTROL && val == HBK_DEV_CTL_RESET) {
		reset(dev);
	} else if (reg == HBK_DEV_REG_CONTROL && val == HBK_DEV_CTL_ENABLE) {
		pthread_mutex_lock(&dev->lock);
		if (dev->state == HBK_DEV_READY)
			set_state(dev, HBK_DEV_OPERATIONAL);
		unsigned w = fetch(dev);
		fw_end_cancelled(dev);   /* as for the doorbell */
		pthread_mutex_unlock(&dev->lock);
		dev_wake(dev, w);
	} else if (reg >= HBK_DEV_REG_RQ(0) && reg < HBK_DEV_REG_RQ(dev->nqueues)) {
		unsigned q = (reg - HBK_DEV_REG_RQ(0)) / 0x20;
		if (reg == HBK_DEV_REG_RQ_CI(q))
			consumed(dev, q, val);
		else if (reg == HBK_DEV_REG_IRQ_COUNT(q) || reg == HBK_DEV_REG_IRQ_USEC(q) ||
			 reg == HBK_DEV_REG_IRQ_FLAGS(q))
			coalescing(dev, q, reg, val);
	}
}

/* ---- Power on and off --------------------------------------------------------------- */

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;
	while (p < n)
		p <<= 1;
	return p;
}

void hbk_dev_destroy(struct hbk_dev *dev)
{
	if (!dev)
		return;
	if (dev->nthreads)
		reset(dev);
	pthread_mutex_lock(&dev->lock);
	dev->stop = true;
	pthread_cond_broadcast(&dev->work_cond);
	pthread_mutex_unlock(&dev->lock);
	for (unsigned i = 0; i < dev->nthreads; i++)
		pthread_join(dev->threads[i], NULL);
	if (dev->timer_up) {
		pthread_mutex_lock(&dev->timer_lock);
		dev->timer_stop = true;
		pthread_cond_signal(&dev->timer_cond);
		pthread_mutex_unlock(&dev->timer_lock);
		pthread_join(dev->timer, NULL);
	}
	fw_vds_fini(dev);
	for (unsigned q = 0; q < dev->nqueues; q++) {
		if (dev->rq[q].fd >= 0)
			close(dev->rq[q].fd);
		pthread_mutex_destroy(&dev->rq[q].lock);
	}
	for (uint32_t i = 0; dev->ctx && i < dev->nctx; i++)
		pthread_mutex_destroy(&dev->ctx[i].lock);
	free(dev->ctx);
	free(dev->threads);
	pthread_mutex_destroy(&dev->lock);
	pthread_cond_destroy(&dev->work_cond);
	pthread_cond_destroy(&dev->idle_cond);
	pthread_mutex_destroy(&dev->timer_lock);
	pthread_cond_destroy(&dev->timer_cond);
	if (dev->bar)
		munmap(dev->bar, dev->bar_size);
	free(dev);
}

/* Lays out device memory and fills the read-only registers. */
static int map_bar(struct hbk_dev *dev)
{
	size_t req_bytes = (size_t)dev->entries * sizeof(struct hbk_dev_frame);
	size_t rq_bytes = (size_t)dev->depth * sizeof(struct hbk_dev_reply);
	dev->bar_size = REGS_BYTES + req_bytes + dev->nqueues * rq_bytes;
	dev->bar = mmap(NULL, dev->bar_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dev->bar == MAP_FAILED) {
		dev->bar = NULL;
		return -ENOMEM;
	}
	dev->regs = (uint32_t *)dev->bar;
	dev->req = (struct hbk_dev_frame *)(dev->bar + REGS_BYTES);
	dev_reg_set(dev, HBK_DEV_REG_REQ_ENTRIES, dev->entries);
	dev_reg_set(dev, HBK_DEV_REG_RPL_QUEUES, dev->nqueues);
	dev_reg_set(dev, HBK_DEV_REG_RPL_DEPTH, dev->depth);
	dev_reg_set(dev, HBK_DEV_REG_CREDITS, dev->credits);
	dev_reg_set(dev, HBK_DEV_REG_MAX_XFER, dev->max_xfer);
	dev_reg_set(dev, HBK_DEV_REG_ID, HBK_DEV_ID);
	dev_reg_set(dev, HBK_DEV_REG_VERSION, HBK_DEV_VERSION);
	dev_reg_set(dev, HBK_DEV_REG_REQ_OFF, REGS_BYTES);
	dev_reg_set(dev, HBK_DEV_REG_DMA_ALIGN, HBK_DEV_DMA_ALIGN);
	dev_reg_set(dev, HBK_DEV_REG_TARGETS, dev->nvds);
	for (unsigned q = 0; q < dev->nqueues; q++) {
		size_t off = REGS_BYTES + req_bytes + q * rq_bytes;
		dev->rq[q].ring = (struct hbk_dev_reply *)(dev->bar + off);
		dev_reg_set(dev, HBK_DEV_REG_RQ_OFF(q), (uint32_t)off);
		dev_reg_set(dev, HBK_DEV_REG_IRQ_COUNT(q), dev->rq[q].count);
	}
	return 0;
}

/* The contexts, their free lists and the reply queues' locks and eventfds. */
static int init_state(struct hbk_dev *dev)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&dev->lock, NULL);
	pthread_cond_init(&dev->work_cond, NULL);
	pthread_cond_init(&dev->idle_cond, NULL);
	pthread_mutex_init(&dev->timer_lock, NULL);
	pthread_cond_init(&dev->timer_cond, &ca);
	pthread_condattr_destroy(&ca);
	for (unsigned q = 0; q < dev->nqueues; q++) {
		pthread_mutex_init(&dev->rq[q].lock, NULL);
		dev->rq[q].count = 1;
		dev->rq[q].fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (dev->rq[q].fd < 0)
			return -errno;
	}
	dev->ctx = calloc(dev->nctx, sizeof(*dev->ctx));
	if (!dev->ctx)
		return -ENOMEM;
	for (uint32_t i = dev->nctx; i-- > 0;) {
		struct fw_ctx *c = &dev->ctx[i];
		pthread_mutex_init(&c->lock, NULL);
		c->dev = dev;
		atomic_init(&c->refs, 0u);
		c->next = dev->free[is_tm(dev, c)];
		dev->free[is_tm(dev, c)] = c;
	}
	return 0;
}

int hbk_dev_create(const struct hbk_dev_config *cfg, struct hbk_dev **out)
{
	*out = NULL;
	if (!cfg || !cfg->vols || !cfg->nvols || cfg->nvols > HBK_DEV_MAX_TARGETS ||
	    cfg->queues > HBK_DEV_MAX_QUEUES || cfg->credits > 65536 || cfg->threads > 256 ||
	    cfg->max_transfer % HBK_DEV_DMA_ALIGN)
		return -EINVAL;
	struct hbk_dev *dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	for (unsigned q = 0; q < HBK_DEV_MAX_QUEUES; q++)
		dev->rq[q].fd = -1;
	dev->credits = cfg->credits ? cfg->credits : 1024;
	dev->nctx = dev->credits + HBK_DEV_TM_SLOTS;
	dev->entries = dev->depth = pow2_at_least(dev->nctx);
	dev->nqueues = cfg->queues ? cfg->queues : 1;
	dev->max_xfer = cfg->max_transfer ? cfg->max_transfer : 1u << 20;
	dev->nvds = cfg->nvols;
	unsigned nthreads = cfg->threads ? cfg->threads : 16;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	dev->ncpu = ncpu > 0 ? (uint32_t)ncpu : 1;
	int err = init_state(dev);
	if (!err)
		err = fw_vds_init(dev, cfg->vols, cfg->nvols, cfg->serial ? cfg->serial : "HBK0");
	if (!err)
		err = map_bar(dev);
	dev->threads = calloc(nthreads, sizeof(*dev->threads));
	if (!err && !dev->threads)
		err = -ENOMEM;
	if (!err)
		err = -pthread_create(&dev->timer, NULL, timer_thread, dev);
	dev->timer_up = !err;
	while (!err && dev->nthreads < nthreads) {
		err = -pthread_create(&dev->threads[dev->nthreads], NULL, fw_thread, dev);
		dev->nthreads += !err;
	}
	if (err) {
		hbk_dev_destroy(dev);
		return err;
	}
	pthread_mutex_lock(&dev->lock);
	set_state(dev, HBK_DEV_READY);
	pthread_mutex_unlock(&dev->lock);
	*out = dev;
	return 0;
}
