/* SPDX-License-Identifier: MIT */
/*
 * The disk core every backend shares: request validation, injected faults,
 * bounce buffers for O_DIRECT, the HDD and SSD latency models with their
 * timer thread, statistics, per-thread plugs that batch kernel submissions,
 * and the blocking helper.  Backends only move data; everything a test or
 * the RAID layer may want to vary lives here.
 */
#include <errno.h>
#include <sched.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk/disk_priv.h"

#define SSD_MAX_CHANNELS 64

const struct hbk_disk_latency hbk_disk_hdd_7200 = {
	.model = HBK_DISK_MODEL_HDD, .rpm = 7200, .seek_min_us = 500,
	.seek_max_us = 15000, .rate = 200000000,
};

const struct hbk_disk_latency hbk_disk_ssd_sata = {
	.model = HBK_DISK_MODEL_SSD, .latency_us = 80, .channels = 8, .rate = 500000000,
};

/* A latency model's state; all of it under the disk's lock. */
struct latency {
	struct hbk_disk_latency m;
	uint64_t head;                        /* HDD: where the last request ended */
	uint64_t free_at[SSD_MAX_CHANNELS];   /* when each channel (HDD: [0]) is idle */
	struct hbk_disk_io *waiting;          /* backend done, sorted by due time */
	pthread_cond_t cond;                  /* CLOCK_MONOTONIC */
	pthread_t thread;
	bool stop;
	bool off;                             /* removed with I/O in flight: no more delays */
};

int (*hbk_disk_open_fn)(const char *path, int flags, ...) = open;

void disk_init(struct hbk_disk *d, const struct disk_ops *ops, const char *kind,
	       const char *name, uint64_t size)
{
	d->ops = ops;
	snprintf(d->info.kind, sizeof(d->info.kind), "%s", kind);
	snprintf(d->info.name, sizeof(d->info.name), "%s", name);
	d->info.size = size;
	d->info.block_size = 512;
	d->info.mem_align = 1;
	pthread_mutex_init(&d->lock, NULL);
	atomic_init(&d->slow, false);
	atomic_init(&d->inflight, 0);
	atomic_init(&d->submitting, 0);
	for (int i = 0; i < ST_COUNT; i++)
		atomic_init(&d->n[i], 0);
}

void disk_count(struct hbk_disk *d, enum disk_stat s, uint64_t v)
{
	atomic_fetch_add_explicit(&d->n[s], v, memory_order_relaxed);
}

void hbk_disk_info(const struct hbk_disk *d, struct hbk_disk_info *out)
{
	*out = d->info;
}

void hbk_disk_stats(const struct hbk_disk *d, struct hbk_disk_stats *out)
{
	uint64_t v[ST_COUNT];
	for (int i = 0; i < ST_COUNT; i++)
		v[i] = atomic_load_explicit(&d->n[i], memory_order_relaxed);
	*out = (struct hbk_disk_stats){
		.reads = v[ST_READS], .writes = v[ST_WRITES], .flushes = v[ST_FLUSHES],
		.discards = v[ST_DISCARDS], .read_bytes = v[ST_READ_BYTES],
		.write_bytes = v[ST_WRITE_BYTES], .errors = v[ST_ERRORS],
		.busy_ns = v[ST_BUSY_NS], .seeks = v[ST_SEEKS],
		.submit_calls = v[ST_SUBMIT_CALLS], .submitted = v[ST_SUBMITTED],
	};
}

/* ---- Latency models -------------------------------------------------------- */

/* Recomputes d->slow from the faults and the model.  d->lock held.  The
 * store is relaxed: a submitter that sees it true takes d->lock, which
 * orders everything else, and one that sees it false touches neither the
 * faults nor the model (a fault set concurrently with a submission may or
 * may not apply to it, as documented for hbk_disk_inject). */
static void slow_update(struct hbk_disk *d)
{
	atomic_store_explicit(&d->slow, d->faulty || (d->lat && !d->lat->off),
			      memory_order_relaxed);
}

static bool moves_data(const struct hbk_disk_io *io)
{
	return io->op == HBK_DISK_READ || io->op == HBK_DISK_WRITE;
}

/*
 * When the modelled device finishes io, given that it arrives at now; books
 * the device's time.  Under d->lock.
 */
static uint64_t model_due(struct hbk_disk *d, const struct hbk_disk_io *io, uint64_t now)
{
	struct latency *l = d->lat;
	const struct hbk_disk_latency *m = &l->m;
	uint64_t svc = moves_data(io) ? io->len * 1000000000ull / m->rate : 0;
	unsigned ch = 0;

	if (m->model == HBK_DISK_MODEL_HDD) {
		if (moves_data(io) && io->offset != l->head) {
			uint64_t dist = io->offset > l->head ? io->offset - l->head
							     : l->head - io->offset;
			double share = sqrt((double)dist / (double)d->info.size);
			svc += 1000ull * m->seek_min_us +
			       (uint64_t)(1000.0 * (m->seek_max_us - m->seek_min_us) * share) +
			       30000000000ull / m->rpm;   /* half a rotation */
			disk_count(d, ST_SEEKS, 1);
		}
		if (moves_data(io))
			l->head = io->offset + io->len;
	} else {
		for (unsigned i = 1; i < m->channels; i++)
			if (l->free_at[i] < l->free_at[ch])
				ch = i;
		if (io->op != HBK_DISK_FLUSH)
			svc += 1000ull * m->latency_us;
	}
	if (io->op == HBK_DISK_FLUSH) {
		/* A flush ends when everything before it has ended.  An HDD
		 * has one channel whatever its (SSD) channels field says. */
		uint64_t end = now;
		unsigned nch = m->model == HBK_DISK_MODEL_HDD ? 1 : m->channels;
		for (unsigned i = 0; i < nch; i++)
			end = HBK_MAX(end, l->free_at[i]);
		return end;
	}
	uint64_t start = HBK_MAX(now, l->free_at[ch]);
	l->free_at[ch] = start + svc;
	disk_count(d, ST_BUSY_NS, svc);
	return start + svc;
}

/* One I/O done as pieces (longer than max_io, or a refused discard's
 * zeros), ended once when all have ended. */
struct split {
	struct hbk_disk_io *parent;
	atomic_uint pending;
	atomic_int result;             /* the first piece's error, or 0 */
	struct hbk_disk_io piece[];
};

static void piece_done(struct hbk_disk_io *p, int result)
{
	struct split *s = p->priv;
	int zero = 0;
	if (result)
		atomic_compare_exchange_strong(&s->result, &zero, result);
	if (atomic_fetch_sub_explicit(&s->pending, 1, memory_order_acq_rel) == 1) {
		struct hbk_disk_io *io = s->parent;
		result = atomic_load(&s->result);
		free(s);
		io->done(io, result);
	}
}

/* The largest piece a disk takes: max_io in whole blocks, at most cap. */
static uint64_t piece_max(const struct hbk_disk *d, uint64_t cap)
{
	uint64_t m = d->info.max_io ? HBK_MIN(d->info.max_io, cap) : cap;
	return m - m % d->info.block_size;
}

/*
 * Does io (checked) as op over pieces of at most step bytes, each with
 * io's flags: from io->buf, or from zeros (a buffer of at least step
 * bytes).  io ends once, when all have ended, with the first error.
 */
static void submit_pieces(struct hbk_disk *d, struct hbk_disk_io *io, uint8_t op, uint64_t step,
			  const uint8_t *zeros)
{
	uint64_t n = step ? (io->len + step - 1) / step : 0;
	struct split *s = n && n <= UINT32_MAX ? malloc(sizeof(*s) + n * sizeof(s->piece[0])) : NULL;
	if (!s) {
		disk_count(d, ST_ERRORS, 1);
		io->done(io, step ? -ENOMEM : -EINVAL);
		return;
	}
	s->parent = io;
	atomic_init(&s->pending, (unsigned)n);
	atomic_init(&s->result, 0);
	for (uint64_t k = 0; k < n; k++) {
		uint64_t at = k * step;
		void *buf = zeros ? (void *)zeros : op != HBK_DISK_DISCARD ? (uint8_t *)io->buf + at : NULL;
		s->piece[k] = (struct hbk_disk_io){
			.op = op, .flags = io->flags, .offset = io->offset + at,
			.len = HBK_MIN(step, io->len - at), .done = piece_done, .priv = s, .buf = buf,
		};
	}
	/* s may be gone once the last piece is submitted: count from n. */
	for (uint64_t k = 0; k < n; k++)
		hbk_disk_submit(d, &s->piece[k]);
}

#define ZEROS_LEN (1u << 20)
static uint8_t *zeros;
static pthread_once_t zeros_once = PTHREAD_ONCE_INIT;

static void zeros_alloc(void)
{
	if (!posix_memalign((void **)&zeros, 4096, ZEROS_LEN))
		memset(zeros, 0, ZEROS_LEN);
	else
		zeros = NULL;
}

/* Does discard io as a write of zeros, in pieces (done with err if the
 * disk cannot be written). */
static void write_zeros(struct hbk_disk *d, struct hbk_disk_io *io, int err)
{
	pthread_once(&zeros_once, zeros_alloc);
	if (!zeros || d->info.read_only) {
		io->done(io, err);
		return;
	}
	submit_pieces(d, io, HBK_DISK_WRITE, piece_max(d, ZEROS_LEN), zeros);
}

/*
 * A discard the device refused (result, an error): where the disk promises
 * that discarded blocks read as zeros (the RAID layer keeps copies and
 * parity consistent on that promise) it becomes a write of zeros, which
 * fails only as a write does, as it does when the caller needs zeros
 * (HBK_DISK_ZERO); elsewhere it succeeds, as a discard is advisory.
 * Either way a refused discard alone never fails a disk.
 */
static void discard_refused(struct hbk_disk *d, struct hbk_disk_io *io, int result)
{
	if (!d->info.discard_zeroes && !(io->flags & HBK_DISK_ZERO)) {
		io->done(io, 0);
		return;
	}
	write_zeros(d, io, result);
}

static void finish(struct hbk_disk *d, struct hbk_disk_io *io, int result)
{
	if (result)
		disk_count(d, ST_ERRORS, 1);
	atomic_fetch_sub_explicit(&d->inflight, 1, memory_order_release);
	if (result && io->op == HBK_DISK_DISCARD)
		discard_refused(d, io, result);
	else
		io->done(io, result);   /* d may be closed from here on */
}

static void *latency_main(void *arg)
{
	hbk_thread_name("hbk-disk-lat");
	struct hbk_disk *d = arg;
	struct latency *l = d->lat;

	pthread_mutex_lock(&d->lock);
	for (;;) {
		struct hbk_disk_io *io = l->waiting;
		if (!io) {
			if (l->stop)
				break;
			pthread_cond_wait(&l->cond, &d->lock);
			continue;
		}
		if (!l->off && io->due_ns_ > hbk_now_ns()) {
			struct timespec ts = { .tv_sec = (time_t)(io->due_ns_ / 1000000000u),
					       .tv_nsec = (long)(io->due_ns_ % 1000000000u) };
			pthread_cond_timedwait(&l->cond, &d->lock, &ts);
			continue;
		}
		l->waiting = io->next_;
		pthread_mutex_unlock(&d->lock);
		finish(d, io, io->result_);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static void latency_stop(struct hbk_disk *d)
{
	struct latency *l = d->lat;
	if (!l)
		return;
	pthread_mutex_lock(&d->lock);
	l->stop = true;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&d->lock);
	pthread_join(l->thread, NULL);
	pthread_cond_destroy(&l->cond);
	free(l);
	pthread_mutex_lock(&d->lock);
	d->lat = NULL;
	slow_update(d);
	pthread_mutex_unlock(&d->lock);
}

int hbk_disk_set_latency(struct hbk_disk *d, const struct hbk_disk_latency *m)
{
	if (m && m->model != HBK_DISK_MODEL_NONE &&
	    (!m->rate || (m->model == HBK_DISK_MODEL_HDD && !m->rpm) ||
	     (m->model == HBK_DISK_MODEL_SSD && (!m->channels || m->channels > SSD_MAX_CHANNELS)) ||
	     m->seek_min_us > m->seek_max_us))
		return -EINVAL;
	if (!m || m->model == HBK_DISK_MODEL_NONE) {
		/* Removing a model, even under I/O: what waits completes at
		 * once and new I/O is not delayed; the timer thread goes with
		 * the next model or at close. */
		if (d->lat) {
			pthread_mutex_lock(&d->lock);
			d->lat->off = true;
			slow_update(d);
			pthread_cond_signal(&d->lat->cond);
			pthread_mutex_unlock(&d->lock);
		}
		return 0;
	}
	if (atomic_load(&d->inflight))
		return -EBUSY;
	latency_stop(d);

	struct latency *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->m = *m;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_lock(&d->lock);
	d->lat = l;
	slow_update(d);
	pthread_mutex_unlock(&d->lock);
	int err = pthread_create(&l->thread, NULL, latency_main, d);
	if (err) {
		pthread_mutex_lock(&d->lock);
		d->lat = NULL;
		slow_update(d);
		pthread_mutex_unlock(&d->lock);
		pthread_cond_destroy(&l->cond);
		free(l);
		return -err;
	}
	return 0;
}

/* ---- Submission and completion ----------------------------------------------- */

void hbk_disk_inject(struct hbk_disk *d, const struct hbk_disk_fault *f)
{
	pthread_mutex_lock(&d->lock);
	d->faulty = f != NULL;
	d->fault = f ? *f : (struct hbk_disk_fault){ 0 };
	if (!d->fault.error)
		d->fault.error = -EIO;
	d->written = 0;
	slow_update(d);
	pthread_mutex_unlock(&d->lock);
}

static int check(const struct hbk_disk *d, const struct hbk_disk_io *io)
{
	const struct hbk_disk_info *i = &d->info;
	if (io->op > HBK_DISK_DISCARD || !io->done)
		return -EINVAL;
	if (io->op == HBK_DISK_FLUSH)
		return 0;
	if (io->offset % i->block_size || io->len % i->block_size ||
	    io->offset > i->size || io->len > i->size - io->offset ||
	    (moves_data(io) && !io->buf))
		return -EINVAL;
	if (io->op == HBK_DISK_WRITE && i->read_only)
		return -EROFS;
	return 0;
}

/*
 * Applies the injected faults to io under d->lock: returns an error to fail
 * it with at once, 1 to report success without doing it, or 0 to go on
 * (possibly shortened, with io->fault_ set to fail it afterwards).
 */
static int apply_fault(struct hbk_disk *d, struct hbk_disk_io *io)
{
	const struct hbk_disk_fault *f = &d->fault;
	if (f->fail_all || (f->refuse_discards && io->op == HBK_DISK_DISCARD))
		return f->error;
	if (io->op != HBK_DISK_WRITE && io->op != HBK_DISK_FLUSH)
		return 0;
	if (f->drop_writes)
		return 1;
	if (io->op == HBK_DISK_FLUSH || !f->write_budget)
		return 0;
	uint64_t left = f->write_budget - d->written;
	if (io->len <= left) {
		d->written += io->len;
		return 0;
	}
	d->written = f->write_budget;
	io->len = left / d->info.block_size * d->info.block_size;
	io->fault_ = f->error;
	return io->len ? 0 : f->error;
}

static void submit(struct hbk_disk *d, struct hbk_disk_io *io)
{
	int err = check(d, io);
	if (err) {
		disk_count(d, ST_ERRORS, 1);
		io->done(io, err);
		return;
	}
	if (io->op == HBK_DISK_DISCARD && (io->flags & HBK_DISK_ZERO) &&
	    !(d->info.discard && d->info.discard_zeroes)) {
		write_zeros(d, io, -EROFS);   /* its discards would not read back zeros */
		return;
	}
	if (io->op != HBK_DISK_FLUSH && d->info.max_io && io->len > d->info.max_io) {
		submit_pieces(d, io, io->op, piece_max(d, UINT64_MAX), NULL);
		return;
	}
	static const enum disk_stat op_stat[] = { ST_READS, ST_WRITES, ST_FLUSHES, ST_DISCARDS };
	disk_count(d, op_stat[io->op], 1);
	if (moves_data(io))
		disk_count(d, io->op == HBK_DISK_READ ? ST_READ_BYTES : ST_WRITE_BYTES, io->len);
	io->disk_ = d;
	io->len_ = io->len;
	io->fault_ = 0;
	io->bounce_ = NULL;
	io->moved_ = 0;
	io->due_ns_ = 0;
	io->next_ = NULL;

	int f = 0;
	/* Relaxed: see slow_update; without faults or a model no lock. */
	if (atomic_load_explicit(&d->slow, memory_order_relaxed)) {
		pthread_mutex_lock(&d->lock);
		f = d->faulty ? apply_fault(d, io) : 0;
		if (!f && d->lat && !d->lat->off)
			io->due_ns_ = model_due(d, io, hbk_now_ns());
		pthread_mutex_unlock(&d->lock);
	}
	if (!f)
		atomic_fetch_add_explicit(&d->inflight, 1, memory_order_relaxed);
	if (f) {
		if (f < 0)
			disk_count(d, ST_ERRORS, 1);
		if (f < 0 && io->op == HBK_DISK_DISCARD)
			discard_refused(d, io, f);
		else
			io->done(io, f < 0 ? f : 0);
		return;
	}
	if (io->len == 0 && io->op != HBK_DISK_FLUSH) {
		disk_complete(d, io, 0);
		return;
	}
	if (moves_data(io) && ((uintptr_t)io->buf & (d->info.mem_align - 1))) {
		void *b;
		if (posix_memalign(&b, d->info.mem_align, io->len)) {
			disk_complete(d, io, -ENOMEM);
			return;
		}
		if (io->op == HBK_DISK_WRITE)
			memcpy(b, io->buf, io->len);
		io->bounce_ = io->buf;
		io->buf = b;
	}
	d->ops->submit(d, io);
}

void hbk_disk_submit(struct hbk_disk *d, struct hbk_disk_io *io)
{
	/* The I/O may end, and the disk be closed by whoever waited for it,
	 * before this thread has left the backend's submit: close waits for
	 * d->submitting to fall to 0.  Seq_cst, so the count is up before the
	 * I/O is published; release at the end: pairs with close's acquire. */
	atomic_fetch_add(&d->submitting, 1);
	submit(d, io);
	atomic_fetch_sub_explicit(&d->submitting, 1, memory_order_release);
}

void disk_complete(struct hbk_disk *d, struct hbk_disk_io *io, int result)
{
	if (!result)
		result = io->fault_;
	if (io->bounce_) {
		if (io->op == HBK_DISK_READ && !result)
			memcpy(io->bounce_, io->buf, io->len);
		free(io->buf);
		io->buf = io->bounce_;
		io->bounce_ = NULL;
	}
	io->len = io->len_;
	if (io->due_ns_ > hbk_now_ns()) {
		io->result_ = result;
		pthread_mutex_lock(&d->lock);
		struct latency *l = d->lat;   /* kept while I/O is in flight (set_latency) */
		struct hbk_disk_io **pp = &l->waiting;
		while (*pp && (*pp)->due_ns_ <= io->due_ns_)
			pp = &(*pp)->next_;
		io->next_ = *pp;
		*pp = io;
		if (l->waiting == io)
			pthread_cond_signal(&l->cond);
		pthread_mutex_unlock(&d->lock);
		return;
	}
	finish(d, io, result);
}

static void plug_forget(struct hbk_disk *d);

void hbk_disk_close(struct hbk_disk *d)
{
	if (!d)
		return;
	plug_forget(d);
	/* Acquire: pairs with the release in hbk_disk_submit; a submitter
	 * is at most a few instructions from leaving. */
	while (atomic_load_explicit(&d->submitting, memory_order_acquire))
		sched_yield();
	unsigned n = atomic_load(&d->inflight);
	if (n)
		hbk_log(HBK_LOG_ERR, "disk %s closed with %u I/Os in flight", d->info.name, n);
	latency_stop(d);
	pthread_mutex_destroy(&d->lock);
	d->ops->close(d);
}

/* ---- Blocking helper ---------------------------------------------------------- */

static void rw_done(struct hbk_disk_io *io, int result)
{
	hbk_latch_open(io->priv, result);
}

int hbk_disk_rw(struct hbk_disk *d, enum hbk_disk_op op, void *buf, uint64_t offset,
		uint64_t len, uint32_t flags)
{
	struct hbk_latch w = HBK_LATCH_INIT;
	struct hbk_disk_io io = { .op = (uint8_t)op, .flags = flags, .offset = offset,
				  .len = len, .buf = buf, .done = rw_done, .priv = &w };
	hbk_disk_submit(d, &io);
	hbk_disk_plug_flush();   /* the I/O may sit in this thread's plug */
	return hbk_latch_wait(&w);
}

/* ---- Plugs ---------------------------------------------------------------------- */

/* The calling thread's outermost plug, or NULL. */
static __thread struct hbk_disk_plug *plug_cur;

void hbk_disk_plug(struct hbk_disk_plug *p)
{
	p->active = !plug_cur;
	p->n = 0;
	if (p->active)
		plug_cur = p;
}

static void plug_kick(struct hbk_disk_plug *p)
{
	/* Emptied first: a kick that submits may end I/O inline, and its
	 * callback may submit more under this plug. */
	while (p->n) {
		struct hbk_disk *d = p->disk[--p->n];
		d->ops->kick(d);
	}
}

void hbk_disk_unplug(struct hbk_disk_plug *p)
{
	if (!p->active)
		return;
	plug_kick(p);
	plug_cur = NULL;
	p->active = false;
}

void hbk_disk_plug_flush(void)
{
	if (plug_cur)
		plug_kick(plug_cur);
}

/* A disk being closed leaves the calling thread's plug: its end must not
 * kick a freed disk. */
static void plug_forget(struct hbk_disk *d)
{
	struct hbk_disk_plug *p = plug_cur;
	for (unsigned i = 0; p && i < p->n; i++)
		if (p->disk[i] == d) {
			p->disk[i] = p->disk[--p->n];
			return;
		}
}

bool disk_plug_hold(struct hbk_disk *d)
{
	struct hbk_disk_plug *p = plug_cur;
	if (!p || !d->ops->kick)
		return false;
	for (unsigned i = 0; i < p->n; i++)
		if (p->disk[i] == d)
			return true;
	if (p->n == HBK_DISK_PLUG_DISKS)
		return false;
	p->disk[p->n++] = d;
	return true;
}
