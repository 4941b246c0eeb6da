/* SPDX-License-Identifier: MIT */
/*
 * The RAID engine's I/O paths.  The fast path sends reads and RAID 0/1/10
 * writes straight to the member disks from the submitting thread and ends
 * them from the disks' completion callbacks.  Everything that computes
 * parity, reconstructs a missing column, or meets a busy stripe or a member
 * error runs on a worker thread, one stripe at a time under that stripe's
 * lock, with the member I/Os of a stripe in parallel.  Rebuild and scrub use
 * the same stripe primitives from the management thread or the caller.
 */
#include <errno.h>
#include <isa-l/raid.h>
#include <stdlib.h>
#include <string.h>

#include "raid/raid_priv.h"

static bool modifies(const struct hbk_raid_io *io)
{
	return io->op == HBK_DISK_WRITE || io->op == HBK_DISK_DISCARD;
}

/* ---- Stripe locks ---------------------------------------------------------------- */

void raid_stripe_lock(struct hbk_raid *r, uint64_t s)
{
	pthread_mutex_lock(&r->slock);
	while (r->held[s % NBUCKETS])
		pthread_cond_wait(&r->scond, &r->slock);
	r->held[s % NBUCKETS] = 1;
	pthread_mutex_unlock(&r->slock);
}

static void unlock_range(struct hbk_raid *r, uint64_t s, unsigned n)
{
	pthread_mutex_lock(&r->slock);
	for (unsigned i = 0; i < n; i++)
		r->held[(s + i) % NBUCKETS] = 0;
	pthread_cond_broadcast(&r->scond);
	pthread_mutex_unlock(&r->slock);
}

void raid_stripe_unlock(struct hbk_raid *r, uint64_t s)
{
	unlock_range(r, s, 1);
}

/* Locks stripes [s, s + n) (n < NBUCKETS) if none is held; never waits. */
static bool trylock_range(struct hbk_raid *r, uint64_t s, unsigned n)
{
	bool ok = true;
	pthread_mutex_lock(&r->slock);
	for (unsigned i = 0; i < n && ok; i++)
		ok = !r->held[(s + i) % NBUCKETS];
	for (unsigned i = 0; i < n && ok; i++)
		r->held[(s + i) % NBUCKETS] = 1;
	pthread_mutex_unlock(&r->slock);
	return ok;
}

/* ---- Member I/O batches ------------------------------------------------------------- */

int raid_ctx_init(struct hbk_raid *r, struct ctx *x)
{
	unsigned ncol = 2 * r->n + 1;
	void *mem;
	*x = (struct ctx){ .r = r };
	if (posix_memalign(&mem, 4096, (size_t)ncol * r->chunk))
		return -ENOMEM;
	x->mem = mem;
	x->mio = calloc(2 * r->n + 2, sizeof(*x->mio));
	if (!x->mio) {
		free(mem);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < ncol; i++)
		x->col[i] = x->mem + (size_t)i * r->chunk;
	pthread_mutex_init(&x->b.lock, NULL);
	pthread_cond_init(&x->b.cond, NULL);
	return 0;
}

void raid_ctx_free(struct ctx *x)
{
	if (!x->mem)
		return;
	pthread_mutex_destroy(&x->b.lock);
	pthread_cond_destroy(&x->b.cond);
	free(x->mio);
	free(x->mem);
}

static void batch_done(struct hbk_disk_io *d, int result)
{
	struct mio *m = HBK_CONTAINER_OF(d, struct mio, d);
	struct batch *b = d->priv;
	m->result = result;
	pthread_mutex_lock(&b->lock);
	if (--b->pending == 0)
		pthread_cond_signal(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

void raid_mio_run(struct batch *b, struct mio *mio, unsigned n)
{
	if (!n)
		return;
	pthread_mutex_lock(&b->lock);
	b->pending = n;
	pthread_mutex_unlock(&b->lock);
	struct hbk_disk_plug plug;
	hbk_disk_plug(&plug);   /* one kernel submission per member disk */
	for (unsigned i = 0; i < n; i++) {
		mio[i].d.done = batch_done;
		mio[i].d.priv = b;
		hbk_disk_submit(mio[i].disk, &mio[i].d);
	}
	hbk_disk_unplug(&plug);
	hbk_disk_plug_flush();  /* an outer plug of this thread holds them too */
	pthread_mutex_lock(&b->lock);
	while (b->pending)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

unsigned raid_batch_run(struct ctx *x, unsigned n)
{
	raid_mio_run(&x->b, x->mio, n);
	return raid_fail_mios(x->r, x->mio, n);
}

/* Adds one member I/O to x->mio[n]; returns n + 1. */
static unsigned add_mio(struct ctx *x, unsigned n, unsigned member, struct hbk_disk *d,
			uint8_t op, uint32_t flags, uint64_t moff, uint64_t len, void *buf)
{
	x->mio[n] = (struct mio){ .member = member, .disk = d,
		.d = { .op = op, .flags = flags, .offset = moff, .len = len, .buf = buf } };
	return n + 1;
}

/*
 * Reads columns `cols` of stripe s, in-chunk bytes [lo, lo + len), into
 * x->col[c].  Returns false if a member was not usable or failed (it is then
 * failed, and the caller starts over with the new member states).
 */
static bool read_cols(struct ctx *x, uint64_t s, uint32_t cols, uint32_t lo, uint32_t len)
{
	struct hbk_raid *r = x->r;
	unsigned n = 0;
	for (unsigned c = 0; c < r->k + r->np; c++) {
		if (!(cols & (1u << c)))
			continue;
		unsigned i = raid_col_member(r, s, c);
		struct hbk_disk *d = raid_member_disk(r, i, s);
		if (!d)
			return false;
		n = add_mio(x, n, i, d, HBK_DISK_READ, 0, DATA_OFFSET + s * r->chunk + lo, len, x->col[c]);
	}
	return raid_batch_run(x, n) == 0;
}

/* ---- Parity stripes --------------------------------------------------------------------- */

/* The part of an I/O that falls in one stripe: per data column, the in-chunk
 * range [nlo, nhi) it covers, and their union [lo, hi). */
struct span {
	uint32_t lo, hi;
	uint32_t nlo[HBK_RAID_MAX_MEMBERS], nhi[HBK_RAID_MAX_MEMBERS];
	uint32_t touched, full;        /* columns with new data / covering all of [lo, hi) */
};

static void span_of(const struct hbk_raid *r, const struct hbk_raid_io *io, uint64_t s,
		    struct span *sp)
{
	uint64_t base = s * r->stripe_bytes, end = io->offset + io->len;
	sp->lo = r->chunk;
	sp->hi = 0;
	sp->touched = sp->full = 0;
	for (unsigned c = 0; c < r->k; c++) {
		uint64_t cs = base + (uint64_t)c * r->chunk;
		uint64_t x0 = HBK_MAX(io->offset, cs), x1 = HBK_MIN(end, cs + r->chunk);
		sp->nlo[c] = sp->nhi[c] = 0;
		if (x0 >= x1)
			continue;
		sp->nlo[c] = (uint32_t)(x0 - cs);
		sp->nhi[c] = (uint32_t)(x1 - cs);
		sp->touched |= 1u << c;
		sp->lo = HBK_MIN(sp->lo, sp->nlo[c]);
		sp->hi = HBK_MAX(sp->hi, sp->nhi[c]);
	}
	for (unsigned c = 0; c < r->k; c++)
		if (sp->nlo[c] == sp->lo && sp->nhi[c] == sp->hi && (sp->touched & (1u << c)))
			sp->full |= 1u << c;
}

/* Where the caller's bytes for column c of stripe s begin. */
static uint8_t *user_ptr(const struct hbk_raid *r, const struct hbk_raid_io *io, uint64_t s,
			 unsigned c, const struct span *sp)
{
	return (uint8_t *)io->buf + (s * r->stripe_bytes + (uint64_t)c * r->chunk + sp->nlo[c] -
				     io->offset);
}

/* Columns whose member cannot serve stripe s. */
static uint32_t missing_cols(const struct hbk_raid *r, uint64_t s)
{
	uint32_t m = 0;
	for (unsigned c = 0; c < r->k + r->np; c++)
		if (!raid_member_ok(r, raid_col_member(r, s, c), s))
			m |= 1u << c;
	return m;
}

static int parity_read(struct ctx *x, struct hbk_raid_io *io, uint64_t s)
{
	struct hbk_raid *r = x->r;
	struct span sp;
	span_of(r, io, s, &sp);
	uint32_t len = sp.hi - sp.lo, all = raid_mask(r->k + r->np);
	for (unsigned tries = 0; tries <= r->n; tries++) {
		uint32_t missing = missing_cols(r, s);
		if ((unsigned)__builtin_popcount(missing) > r->np)
			return -EIO;
		bool rebuild = sp.touched & missing;
		if (!read_cols(x, s, rebuild ? all & ~missing : sp.touched, sp.lo, len))
			continue;
		if (rebuild) {
			raid_count(r, C_DEGRADED);
			raid_recover(r, x->col, missing, len);
		}
		for (unsigned c = 0; c < r->k; c++)
			if (sp.touched & (1u << c))
				memcpy(user_ptr(r, io, s, c, &sp), x->col[c] + sp.nlo[c] - sp.lo,
				       sp.nhi[c] - sp.nlo[c]);
		return 0;
	}
	return -EIO;
}

/*
 * Read-modify-write of a healthy stripe: the old data of the touched columns
 * and the old parity are read; new parity = old parity + the change of each
 * touched column.  Leaves what to write in out[].
 */
static void rmw_compute(struct ctx *x, struct hbk_raid_io *io, uint64_t s,
			const struct span *sp, uint8_t **out)
{
	struct hbk_raid *r = x->r;
	unsigned k = r->k, np = r->np;
	uint32_t len = sp->hi - sp->lo;
	uint8_t *tmp = x->col[2 * r->n], *src[2 * HBK_RAID_MAX_MEMBERS + 2];
	unsigned ns = 0;
	src[ns++] = x->col[k];
	for (unsigned c = 0; c < k; c++) {
		if (!(sp->touched & (1u << c)))
			continue;
		uint8_t *nw = x->col[k + np + c];
		memcpy(nw, x->col[c], len);
		memcpy(nw + sp->nlo[c] - sp->lo, user_ptr(r, io, s, c, sp), sp->nhi[c] - sp->nlo[c]);
		out[c] = nw;
		if (np == 1) {
			src[ns++] = x->col[c];
			src[ns++] = nw;
		} else {
			uint8_t *v[3] = { x->col[c], nw, tmp };
			xor_gen(3, (int)len, (void **)v);
			raid_update_pq(r, c, tmp, &x->col[k], len);
		}
	}
	if (np == 1) {
		src[ns++] = tmp;   /* P' = P + the old and new data of every touched column */
		xor_gen((int)ns, (int)len, (void **)src);
		out[k] = tmp;
	}
}

static int parity_write(struct ctx *x, struct hbk_raid_io *io, uint64_t s)
{
	struct hbk_raid *r = x->r;
	unsigned k = r->k, np = r->np;
	uint32_t data = raid_mask(k), par = raid_mask(np) << k, all = data | par;
	struct span sp;
	span_of(r, io, s, &sp);
	uint32_t len = sp.hi - sp.lo;
	for (unsigned tries = 0; tries <= r->n; tries++) {
		uint32_t missing = missing_cols(r, s);
		if ((unsigned)__builtin_popcount(missing) > np)
			return -EIO;
		unsigned touched = (unsigned)__builtin_popcount(sp.touched);
		unsigned rcw_reads = k - (unsigned)__builtin_popcount(sp.full);
		/* Read-modify-write carries the old parity forward, so only
		 * where it is known to match the data: not on a stripe the
		 * resync has yet to reach (we hold its stripe lock). */
		bool synced = (s + 1) * r->chunk <= atomic_load(&r->resync_pos);
		bool rmw = !missing && synced && touched + np < rcw_reads;
		uint32_t rd = missing ? all & ~missing : rmw ? sp.touched | par : data & ~sp.full;
		if (!read_cols(x, s, rd, sp.lo, len))
			continue;
		raid_count(r, missing ? C_DEGRADED : rmw ? C_RMW : rcw_reads ? C_RCW : C_FULL);

		uint8_t *out[HBK_RAID_MAX_MEMBERS + 2];
		memcpy(out, x->col, sizeof(out));
		if (rmw) {
			rmw_compute(x, io, s, &sp, out);
		} else {
			raid_recover(r, x->col, missing, len);
			for (unsigned c = 0; c < k; c++)
				if (sp.touched & (1u << c))
					memcpy(x->col[c] + sp.nlo[c] - sp.lo, user_ptr(r, io, s, c, &sp),
					       sp.nhi[c] - sp.nlo[c]);
			raid_gen_parity(r, x->col, len);
		}

		/* Every write goes out; a member failing now leaves the stripe
		 * consistent without it (its column is what the parity says). */
		unsigned n = 0;
		uint32_t flags = io->flags & HBK_DISK_FUA;
		for (unsigned c = 0; c < k + np; c++) {
			if (!((sp.touched | par) & (1u << c)) || (missing & (1u << c)))
				continue;
			unsigned i = raid_col_member(r, s, c);
			struct hbk_disk *d = raid_member_disk(r, i, s);
			if (!d)
				continue;   /* failed since: its column is now the parity's business */
			uint32_t off = c < k ? sp.nlo[c] : sp.lo, l = c < k ? sp.nhi[c] - sp.nlo[c] : len;
			n = add_mio(x, n, i, d, HBK_DISK_WRITE, flags, DATA_OFFSET + s * r->chunk + off,
				    l, out[c] + off - sp.lo);
		}
		raid_batch_run(x, n);
		return raid_tolerable(r) ? 0 : -EIO;
	}
	return -EIO;
}

/* Discards whole stripes, each member's chunk reading back as zeros (then
 * P and Q of the zeros are zeros too); partial stripes keep their data. */
static int parity_discard(struct ctx *x, struct hbk_raid_io *io, uint64_t s)
{
	struct hbk_raid *r = x->r;
	uint64_t base = s * r->stripe_bytes;
	unsigned n = 0;
	if (io->offset > base || io->offset + io->len < base + r->stripe_bytes)
		return 0;
	for (unsigned c = 0; c < r->k + r->np; c++) {
		unsigned i = raid_col_member(r, s, c);
		struct hbk_disk *d = raid_member_disk(r, i, s);
		if (!d)
			return 0;
		n = add_mio(x, n, i, d, HBK_DISK_DISCARD, HBK_DISK_ZERO, DATA_OFFSET + s * r->chunk,
			    r->chunk, NULL);
	}
	raid_batch_run(x, n);
	return 0;
}

/* Levels 0/1/10 (and nothing else): plan the stripe's pieces, run them, and
 * start over with the new member states when one fails. */
static int mirror_stripe(struct ctx *x, struct hbk_raid_io *io, uint64_t s)
{
	struct hbk_raid *r = x->r;
	uint64_t a0 = HBK_MAX(io->offset, s * r->stripe_bytes);
	uint64_t a1 = HBK_MIN(io->offset + io->len, (s + 1) * r->stripe_bytes);
	for (unsigned tries = 0; tries <= r->n; tries++) {
		int n = raid_plan(r, io, a0, a1, x->mio, 2 * r->n + 2);
		if (n < 0)
			return n;
		if (!raid_batch_run(x, (unsigned)n))
			return 0;
	}
	return -EIO;
}

static int stripe_io(struct ctx *x, struct hbk_raid_io *io, uint64_t s)
{
	if (!x->r->np)
		return mirror_stripe(x, io, s);
	switch (io->op) {
	case HBK_DISK_READ:
		return parity_read(x, io, s);
	case HBK_DISK_WRITE:
		return parity_write(x, io, s);
	default:
		return parity_discard(x, io, s);
	}
}

/* ---- Rebuild and scrub --------------------------------------------------------------------- */

int raid_rebuild_stripe(struct ctx *x, uint64_t s, uint32_t targets)
{
	struct hbk_raid *r = x->r;
	unsigned n = 0, cp[HBK_RAID_MAX_MEMBERS];
	if (r->np) {
		uint32_t missing = missing_cols(r, s);
		if (!read_cols(x, s, raid_mask(r->k + r->np) & ~missing, 0, r->chunk) ||
		    raid_recover(r, x->col, missing, r->chunk))
			return -EIO;
		for (unsigned c = 0; c < r->k + r->np; c++) {
			unsigned i = raid_col_member(r, s, c);
			if (targets & (1u << i))
				n = add_mio(x, n, i, r->m[i].disk, HBK_DISK_WRITE, 0,
					    DATA_OFFSET + s * r->chunk, r->chunk, x->col[c]);
		}
		return raid_batch_run(x, n) ? -EIO : 0;
	}
	/* Mirrors: read each column that has a target from a valid copy... */
	uint32_t cols = 0;
	for (unsigned c = 0; c < r->k; c++) {
		unsigned nc = raid_copies(r, s, c, cp);
		struct hbk_disk *src = NULL;
		unsigned from = 0;
		bool wanted = false;
		for (unsigned j = 0; j < nc; j++) {
			wanted |= (targets >> cp[j]) & 1;
			if (!src && (src = raid_member_disk(r, cp[j], s)))
				from = cp[j];
		}
		if (!wanted)
			continue;
		if (!src)
			return -EIO;
		cols |= 1u << c;
		n = add_mio(x, n, from, src, HBK_DISK_READ, 0, DATA_OFFSET + s * r->chunk, r->chunk,
			    x->col[c]);
	}
	if (raid_batch_run(x, n))
		return -EIO;
	/* ...and write it to the targets. */
	n = 0;
	for (unsigned c = 0; c < r->k; c++) {
		unsigned nc = cols & (1u << c) ? raid_copies(r, s, c, cp) : 0;
		for (unsigned j = 0; j < nc; j++)
			if (targets & (1u << cp[j]))
				n = add_mio(x, n, cp[j], r->m[cp[j]].disk, HBK_DISK_WRITE, 0,
					    DATA_OFFSET + s * r->chunk, r->chunk, x->col[c]);
	}
	return raid_batch_run(x, n) ? -EIO : 0;
}

int raid_scrub_stripe(struct ctx *x, uint64_t s, bool repair)
{
	struct hbk_raid *r = x->r;
	uint64_t moff = DATA_OFFSET + s * r->chunk;
	unsigned cp[HBK_RAID_MAX_MEMBERS], n = 0;
	bool mismatch = false;
	if (r->level == HBK_RAID0)
		return 0;
	if (r->np) {
		if (missing_cols(r, s))
			return -EBUSY;
		if (!read_cols(x, s, raid_mask(r->k + r->np), 0, r->chunk))
			return -EIO;
		if (raid_parity_ok(r, x->col, r->chunk))
			return 0;
		if (repair) {
			raid_gen_parity(r, x->col, r->chunk);
			for (unsigned c = r->k; c < r->k + r->np; c++) {
				unsigned i = raid_col_member(r, s, c);
				n = add_mio(x, n, i, r->m[i].disk, HBK_DISK_WRITE, 0, moff, r->chunk,
					    x->col[c]);
			}
		}
		return raid_batch_run(x, n) ? -EIO : 1;
	}
	for (unsigned c = 0; c < r->k; c++) {
		unsigned nc = raid_copies(r, s, c, cp);
		struct hbk_disk *d[HBK_RAID_MAX_MEMBERS];
		n = 0;
		for (unsigned j = 0; j < nc; j++) {
			if (!(d[j] = raid_member_disk(r, cp[j], s)))
				return -EBUSY;
			n = add_mio(x, n, cp[j], d[j], HBK_DISK_READ, 0, moff, r->chunk, x->col[j]);
		}
		if (raid_batch_run(x, n))
			return -EIO;
		n = 0;
		for (unsigned j = 1; j < nc; j++)
			if (memcmp(x->col[0], x->col[j], r->chunk)) {
				mismatch = true;
				if (repair)   /* the first copy is the truth, as for a resync */
					n = add_mio(x, n, cp[j], d[j], HBK_DISK_WRITE, 0, moff,
						    r->chunk, x->col[0]);
			}
		if (raid_batch_run(x, n))
			return -EIO;
	}
	return mismatch;
}

/* ---- Workers (the slow path) ------------------------------------------------------------------ */

static void enqueue(struct hbk_raid *r, struct hbk_raid_io *io)
{
	io->next_ = NULL;
	pthread_mutex_lock(&r->wlock);
	if (r->wtail)
		r->wtail->next_ = io;
	else
		r->whead = io;
	r->wtail = io;
	pthread_cond_signal(&r->wcond);
	pthread_mutex_unlock(&r->wlock);
}

int raid_flush_members(struct ctx *x)
{
	struct hbk_raid *r = x->r;
	unsigned n = 0;
	for (unsigned i = 0; i < r->n; i++) {
		struct hbk_disk *d = atomic_load_explicit(&r->m[i].disk, memory_order_acquire);
		if (d && member_state(r, i) != HBK_RAID_MEMBER_FAILED)
			n = add_mio(x, n, i, d, HBK_DISK_FLUSH, 0, 0, 0, NULL);
	}
	raid_batch_run(x, n);
	return raid_tolerable(r) ? 0 : -EIO;
}

static void slow_exec(struct ctx *x, struct hbk_raid_io *io)
{
	struct hbk_raid *r = x->r;
	int rc = 0;
	if (!x->mem) {
		rc = -ENOMEM;
	} else if (io->op == HBK_DISK_FLUSH) {
		rc = raid_flush_members(x);
	} else {
		uint64_t last = (io->offset + io->len - 1) / r->stripe_bytes;
		for (uint64_t s = io->offset / r->stripe_bytes; s <= last && !rc; s++) {
			raid_stripe_lock(r, s);
			rc = stripe_io(x, io, s);
			raid_stripe_unlock(r, s);
		}
	}
	raid_complete(r, io, rc);
}

static void *worker_main(void *arg)
{
	hbk_thread_name("hbk-raid-work");
	struct hbk_raid *r = arg;
	struct ctx x;
	if (raid_ctx_init(r, &x))
		hbk_log(HBK_LOG_ERR, "raid: worker out of memory; its I/O fails");
	pthread_mutex_lock(&r->wlock);
	for (;;) {
		struct hbk_raid_io *io = r->whead;
		if (!io) {
			if (r->wstop)
				break;
			pthread_cond_wait(&r->wcond, &r->wlock);
			continue;
		}
		r->whead = io->next_;
		if (!r->whead)
			r->wtail = NULL;
		pthread_mutex_unlock(&r->wlock);
		slow_exec(&x, io);
		pthread_mutex_lock(&r->wlock);
	}
	pthread_mutex_unlock(&r->wlock);
	raid_ctx_free(&x);
	return NULL;
}

int raid_workers_start(struct hbk_raid *r, unsigned n)
{
	r->workers = calloc(n, sizeof(*r->workers));
	if (!r->workers)
		return -ENOMEM;
	for (; r->nworkers < n; r->nworkers++) {
		int err = pthread_create(&r->workers[r->nworkers], NULL, worker_main, r);
		if (err) {
			raid_workers_stop(r);
			return -err;
		}
	}
	return 0;
}

void raid_workers_stop(struct hbk_raid *r)
{
	pthread_mutex_lock(&r->wlock);
	r->wstop = true;
	pthread_cond_broadcast(&r->wcond);
	pthread_mutex_unlock(&r->wlock);
	for (unsigned i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i], NULL);
	free(r->workers);
	r->workers = NULL;
	r->nworkers = 0;
}

/* ---- The fast path --------------------------------------------------------------------------- */

struct req {
	struct hbk_raid *r;
	struct hbk_raid_io *io;
	atomic_uint pending;
	uint64_t s0;
	unsigned nlocked;              /* stripes [s0, s0 + nlocked) are locked */
	unsigned n;
	struct mio mio[];
};

static void fast_end(struct req *q)
{
	struct hbk_raid *r = q->r;
	struct hbk_raid_io *io = q->io;
	if (q->nlocked)
		unlock_range(r, q->s0, q->nlocked);
	unsigned failed = raid_fail_mios(r, q->mio, q->n);
	free(q);
	if (!failed)
		raid_complete(r, io, 0);
	else if (io->op == HBK_DISK_FLUSH)
		raid_complete(r, io, raid_tolerable(r) ? 0 : -EIO);
	else
		enqueue(r, io);   /* redo it without the failed member */
}

static void fast_done(struct hbk_disk_io *d, int result)
{
	struct req *q = d->priv;
	HBK_CONTAINER_OF(d, struct mio, d)->result = result;
	if (atomic_fetch_sub_explicit(&q->pending, 1, memory_order_acq_rel) == 1)
		fast_end(q);
}

static void fast_submit(struct hbk_raid *r, struct hbk_raid_io *io)
{
	bool flush = io->op == HBK_DISK_FLUSH;
	uint64_t s0 = flush ? 0 : io->offset / r->stripe_bytes;
	unsigned nl = 0, max = flush ? r->n : raid_plan_max(r, io->offset, io->len);
	int n = 0;
	if (modifies(io) && r->level != HBK_RAID0) {
		/* Writes to mirrors hold their stripes against rebuild and scrub. */
		nl = (unsigned)((io->offset + io->len - 1) / r->stripe_bytes - s0 + 1);
		if (nl > FAST_STRIPES || !trylock_range(r, s0, nl)) {
			enqueue(r, io);
			return;
		}
	}
	struct req *q = malloc(sizeof(*q) + max * sizeof(struct mio));
	if (!q) {
		n = -ENOMEM;
	} else if (flush) {
		for (unsigned i = 0; i < r->n; i++) {
			struct hbk_disk *d = atomic_load_explicit(&r->m[i].disk, memory_order_acquire);
			if (d && member_state(r, i) != HBK_RAID_MEMBER_FAILED)
				q->mio[n++] = (struct mio){ .member = i, .disk = d,
							    .d = { .op = HBK_DISK_FLUSH } };
		}
	} else {
		n = raid_plan(r, io, io->offset, io->offset + io->len, q->mio, max);
	}
	if (n < 0) {
		if (nl)
			unlock_range(r, s0, nl);
		free(q);
		if (n == -EAGAIN)
			enqueue(r, io);   /* a column to reconstruct */
		else
			raid_complete(r, io, n);
		return;
	}
	*q = (struct req){ .r = r, .io = io, .s0 = s0, .nlocked = nl, .n = (unsigned)n };
	/* One extra count until every I/O is out: completions may come inline. */
	atomic_init(&q->pending, (unsigned)n + 1);
	struct hbk_disk_plug plug;
	hbk_disk_plug(&plug);   /* the member I/Os go to each disk in one submission */
	for (int i = 0; i < n; i++) {
		q->mio[i].d.done = fast_done;
		q->mio[i].d.priv = q;
		hbk_disk_submit(q->mio[i].disk, &q->mio[i].d);
	}
	hbk_disk_unplug(&plug);
	if (atomic_fetch_sub_explicit(&q->pending, 1, memory_order_acq_rel) == 1)
		fast_end(q);
}

/* ---- Entry points -------------------------------------------------------------------------------- */

static int check(const struct hbk_raid *r, const struct hbk_raid_io *io)
{
	if (io->op > HBK_DISK_DISCARD || !io->done)
		return -EINVAL;
	if (io->op == HBK_DISK_FLUSH)
		return 0;
	if (io->offset % r->block_size || io->len % r->block_size || io->offset > r->size ||
	    io->len > r->size - io->offset ||
	    ((io->op == HBK_DISK_READ || io->op == HBK_DISK_WRITE) && !io->buf))
		return -EINVAL;
	return 0;
}

/* Whether discards reach the members: at RAID 0 when every member takes
 * them; elsewhere always, as HBK_DISK_ZERO (a member whose discards do not
 * zero writes zeros), so the copies and the parity stay consistent and a
 * volume that promised zeros (LBPRZ) keeps the promise whatever spare or
 * replacement joined since. */
static bool discard_ok(const struct hbk_raid *r)
{
	if (r->level != HBK_RAID0)
		return true;
	for (unsigned i = 0; i < r->n; i++) {
		struct hbk_disk *d = atomic_load_explicit(&r->m[i].disk, memory_order_acquire);
		struct hbk_disk_info di;
		if (!d)
			continue;
		hbk_disk_info(d, &di);
		if (!di.discard)
			return false;
	}
	return true;
}

void raid_engine_submit(struct hbk_raid *r, struct hbk_raid_io *io)
{
	int err = check(r, io);
	io->state_ = 0;
	io->next_ = NULL;
	if (!err && atomic_load(&r->failed))
		err = -EIO;
	if (err || (io->op != HBK_DISK_FLUSH && !io->len) ||
	    (io->op == HBK_DISK_DISCARD && !discard_ok(r))) {
		io->done(io, err);
		return;
	}
	if (modifies(io) && r->level != HBK_RAID0) {
		/* The dirty gate: no write reaches a member before the metadata
		 * says the array is not clean (docs/raid.md, crash consistency). */
		pthread_mutex_lock(&r->lock);
		if (!r->dirty_ok) {
			if (r->dirty_tail)
				r->dirty_tail->next_ = io;
			else
				r->dirty_head = io;
			r->dirty_tail = io;
			pthread_cond_signal(&r->mgmt_cond);
			pthread_mutex_unlock(&r->lock);
			return;
		}
		r->writes++;
		io->state_ |= IO_ADMITTED;
		pthread_mutex_unlock(&r->lock);
	}
	if (r->np && modifies(io))
		enqueue(r, io);
	else
		fast_submit(r, io);
}

void raid_complete(struct hbk_raid *r, struct hbk_raid_io *io, int result)
{
	if (io->op != HBK_DISK_READ) {
		pthread_mutex_lock(&r->lock);
		if (io->state_ & IO_ADMITTED) {
			r->writes--;
			r->last_write_ns = hbk_now_ns();
			io->state_ &= ~IO_ADMITTED;
		}
		if (!result && r->meta_done < r->meta_want) {
			/* A member failure this write may have stepped around is not
			 * on disk yet: acknowledge once it is. */
			io->seq_ = r->meta_want;
			io->result_ = result;
			io->next_ = r->meta_waiters;
			r->meta_waiters = io;
			pthread_cond_signal(&r->mgmt_cond);
			pthread_mutex_unlock(&r->lock);
			return;
		}
		pthread_mutex_unlock(&r->lock);
	}
	io->done(io, result);
}

void hbk_raid_submit(struct hbk_raid *r, struct hbk_raid_io *io)
{
	if (r->cache)
		raid_cache_submit(r->cache, io);
	else
		raid_engine_submit(r, io);
}

static void rw_done(struct hbk_raid_io *io, int result)
{
	hbk_latch_open(io->priv, result);
}

int hbk_raid_rw(struct hbk_raid *r, enum hbk_disk_op op, void *buf, uint64_t offset,
		uint64_t len, uint32_t flags)
{
	struct hbk_latch w = HBK_LATCH_INIT;
	struct hbk_raid_io io = { .op = (uint8_t)op, .flags = flags, .offset = offset, .len = len,
				  .buf = buf, .done = rw_done, .priv = &w };
	hbk_raid_submit(r, &io);
	hbk_disk_plug_flush();  /* its member I/O may sit in this thread's plug */
	return hbk_latch_wait(&w);
}
