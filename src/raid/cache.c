/* SPDX-License-Identifier: MIT */
/*
 * The controller's write-back cache, in front of the RAID engine.  Writes
 * are absorbed into 4 KiB lines (dirty per 512-byte sector) and acknowledged
 * at once; a flusher thread destages them oldest first, merging adjacent
 * dirty sectors into writes of up to 1 MiB (so sequential data reaches the
 * engine as full stripes), when the cache is half full, when a write waits
 * for room, and on a flush.  A flush completes once every write absorbed
 * before it is on the members and the members are flushed; a FUA write
 * waits the same way.  Reads overlay the cached sectors on what the engine
 * returns.  Only the flusher writes a cached line to the engine, so writes
 * to one sector reach the disks in the order they were acknowledged.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "raid/raid_priv.h"

#define LINE          4096u
#define SECT          512u
#define MAX_DESTAGE   (1u << 20)
#define MAX_INFLIGHT  16u

struct line {
	uint64_t no;                   /* array offset / LINE */
	struct line *hnext;            /* hash chain */
	struct line *dnext, *dprev;    /* dirty list, oldest first */
	uint64_t seq;                  /* the write that first dirtied it */
	uint8_t valid, dirty;          /* one bit per sector */
	bool busy;                     /* part of a destage write in flight */
	unsigned pins;                 /* reads that overlay it when they end */
	uint8_t data[LINE];
};

struct destage {
	struct hbk_raid_io io;
	struct cache *c;
	uint64_t seq;                  /* the oldest write it carries */
	struct destage *next;
	unsigned nlines;
	struct line *lines[MAX_DESTAGE / LINE + 1];
};

struct missed_read {
	struct hbk_raid_io inner;
	struct hbk_raid_io *io;
	struct cache *c;
	unsigned nlines;
	struct line *lines[];
};

struct cache {
	struct hbk_raid *r;
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* wakes the flusher */
	struct line **hash;
	size_t hmask;
	size_t nlines, max_lines;
	uint64_t dirty_bytes;
	struct line *dhead, *dtail;
	struct destage *inflight;
	unsigned ninflight;
	uint64_t wseq;                 /* writes absorbed so far */
	int error;                     /* a destage failed: flushes report it */
	struct hbk_raid_io *parked_head, *parked_tail;  /* writes waiting, in order */
	struct hbk_raid_io *reads;     /* reads waiting for a destage of their lines */
	struct hbk_raid_io *flushes;   /* flushes and FUA writes waiting for seq_ */
	bool stop;
	pthread_t thread;
};

/* ---- Lines --------------------------------------------------------------------------- */

static struct line **slot_of(struct cache *c, uint64_t no)
{
	return &c->hash[(no * 0x9e3779b97f4a7c15ull >> 20) & c->hmask];
}

static struct line *lookup(struct cache *c, uint64_t no)
{
	struct line *l = *slot_of(c, no);
	while (l && l->no != no)
		l = l->hnext;
	return l;
}

/* Sectors of line `no` that [off, end) covers. */
static uint8_t mask_of(uint64_t no, uint64_t off, uint64_t end)
{
	uint64_t lo = HBK_MAX(off, no * LINE) - no * LINE, hi = HBK_MIN(end, (no + 1) * LINE) - no * LINE;
	return (uint8_t)(((1u << (hi / SECT)) - 1) & ~((1u << (lo / SECT)) - 1));
}

static void dirty_append(struct cache *c, struct line *l)
{
	l->dnext = NULL;
	l->dprev = c->dtail;
	if (c->dtail)
		c->dtail->dnext = l;
	else
		c->dhead = l;
	c->dtail = l;
}

static void dirty_remove(struct cache *c, struct line *l)
{
	*(l->dprev ? &l->dprev->dnext : &c->dhead) = l->dnext;
	*(l->dnext ? &l->dnext->dprev : &c->dtail) = l->dprev;
}

/* Frees l once nothing needs it: clean, not being destaged, not pinned. */
static void maybe_free(struct cache *c, struct line *l)
{
	if (l->dirty || l->busy || l->pins)
		return;
	struct line **pp = slot_of(c, l->no);
	while (*pp != l)
		pp = &(*pp)->hnext;
	*pp = l->hnext;
	c->nlines--;
	free(l);
}

/* Copies the valid cached sectors of [off, off + len) over buf. */
static void overlay(struct line *l, uint64_t off, uint64_t len, uint8_t *buf)
{
	uint8_t m = mask_of(l->no, off, off + len) & l->valid;
	for (unsigned s = 0; s < LINE / SECT; s++)
		if (m & (1u << s))
			memcpy(buf + (l->no * LINE + s * SECT - off), l->data + s * SECT, SECT);
}

/* ---- Reads ------------------------------------------------------------------------------- */

static void read_done(struct hbk_raid_io *inner, int result)
{
	struct missed_read *m = inner->priv;
	struct cache *c = m->c;
	struct hbk_raid_io *io = m->io;
	pthread_mutex_lock(&c->lock);
	for (unsigned i = 0; i < m->nlines; i++) {
		if (!result)
			overlay(m->lines[i], io->offset, io->len, io->buf);
		m->lines[i]->pins--;
		maybe_free(c, m->lines[i]);
	}
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	free(m);
	io->done(io, result);
}

static void cache_read(struct cache *c, struct hbk_raid_io *io)
{
	uint64_t first = io->offset / LINE, last = (io->offset + io->len - 1) / LINE;
	unsigned found = 0;
	bool hit = true, busy = false;
	pthread_mutex_lock(&c->lock);
	for (uint64_t no = first; no <= last; no++) {
		struct line *l = lookup(c, no);
		uint8_t m = mask_of(no, io->offset, io->offset + io->len);
		found += l != NULL;
		hit &= l && (l->valid & m) == m;
		busy |= l && l->busy;
	}
	if (busy && !hit) {
		/* Reading the members while a destage writes them would race on
		 * the media: wait for the destage, then look again. */
		io->next_ = c->reads;
		c->reads = io;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (hit || !found) {
		for (uint64_t no = first; hit && no <= last; no++)
			overlay(lookup(c, no), io->offset, io->len, io->buf);
		pthread_mutex_unlock(&c->lock);
		if (hit)
			io->done(io, 0);
		else
			raid_engine_submit(c->r, io);
		return;
	}
	/* A partial hit: read from the engine, and overlay the lines that exist
	 * now (pinned so they outlive a destage) on what comes back. */
	struct missed_read *m = malloc(sizeof(*m) + found * sizeof(m->lines[0]));
	if (!m) {
		pthread_mutex_unlock(&c->lock);
		io->done(io, -ENOMEM);
		return;
	}
	*m = (struct missed_read){ .io = io, .c = c,
		.inner = { .op = HBK_DISK_READ, .offset = io->offset, .len = io->len, .buf = io->buf,
			   .done = read_done } };
	m->inner.priv = m;
	for (uint64_t no = first; no <= last; no++) {
		struct line *l = lookup(c, no);
		if (l) {
			l->pins++;
			m->lines[m->nlines++] = l;
		}
	}
	pthread_mutex_unlock(&c->lock);
	raid_engine_submit(c->r, &m->inner);
}

/* ---- Writes and flushes ------------------------------------------------------------------ */

enum action { PARK, PASS, DONE, WAIT };

/*
 * Decides what to do with a write, discard or flush (under c->lock): absorb
 * it (DONE, or WAIT for a FUA write), send it to the engine (PASS: it
 * overlaps no cached line and is a discard, FUA or too big to absorb), or
 * PARK it until room is made or the lines it overlaps are gone.
 */
static enum action admit(struct cache *c, struct hbk_raid_io *io)
{
	if (io->op == HBK_DISK_FLUSH) {
		io->seq_ = c->wseq;
		return WAIT;
	}
	uint64_t first = io->offset / LINE, last = (io->offset + io->len - 1) / LINE, end = io->offset + io->len;
	size_t missing = 0;
	for (uint64_t no = first; no <= last; no++)
		missing += !lookup(c, no);
	bool overlap = missing < last - first + 1;
	bool big = io->op == HBK_DISK_DISCARD || io->len > c->max_lines * LINE / 4;
	if (!overlap && (big || (io->flags & HBK_DISK_FUA)))
		return PASS;
	if (big || c->nlines + missing > c->max_lines)
		return PARK;

	uint64_t seq = ++c->wseq;
	for (uint64_t no = first; no <= last; no++) {
		struct line *l = lookup(c, no);
		if (!l) {
			if (!(l = malloc(sizeof(*l))))
				return PARK;   /* retried once memory is back */
			*l = (struct line){ .no = no };
			struct line **pp = slot_of(c, no);
			l->hnext = *pp;
			*pp = l;
			c->nlines++;
		}
		uint8_t m = mask_of(no, io->offset, end);
		uint64_t lo = HBK_MAX(io->offset, no * LINE);
		memcpy(l->data + (lo - no * LINE), (uint8_t *)io->buf + (lo - io->offset),
		       HBK_MIN(end, (no + 1) * LINE) - lo);
		if (!l->dirty) {
			l->seq = seq;
			dirty_append(c, l);
		}
		c->dirty_bytes += (uint64_t)__builtin_popcount(m & ~l->dirty) * SECT;
		l->valid |= m;
		l->dirty |= m;
	}
	if (c->dirty_bytes > c->max_lines * LINE / 2)
		pthread_cond_signal(&c->cond);
	io->seq_ = seq;
	return io->flags & HBK_DISK_FUA ? WAIT : DONE;
}

/* Carries out admit()'s decision; called without c->lock for PASS and DONE. */
static void act(struct cache *c, struct hbk_raid_io *io, enum action a)
{
	if (a == PASS)
		raid_engine_submit(c->r, io);
	else if (a == DONE)
		io->done(io, 0);
}

/* Queues io behind the parked writes or the flush waiters (under c->lock). */
static void wait_for(struct cache *c, struct hbk_raid_io *io, enum action a)
{
	io->next_ = NULL;
	if (a == WAIT) {
		io->next_ = c->flushes;
		c->flushes = io;
	} else if (c->parked_tail) {
		c->parked_tail->next_ = io;
		c->parked_tail = io;
	} else {
		c->parked_head = c->parked_tail = io;
	}
	pthread_cond_signal(&c->cond);
}

void raid_cache_submit(struct cache *c, struct hbk_raid_io *io)
{
	if (io->op > HBK_DISK_DISCARD || !io->done ||
	    (io->op != HBK_DISK_FLUSH && (io->offset % c->r->block_size ||
					  io->len % c->r->block_size || !io->len ||
	     io->offset + io->len > c->r->size || io->offset + io->len < io->offset))) {
		raid_engine_submit(c->r, io);   /* the engine refuses or ends it */
		return;
	}
	if (io->op == HBK_DISK_READ) {
		cache_read(c, io);
		return;
	}
	pthread_mutex_lock(&c->lock);
	/* Behind parked writes, to keep the order of overlapping writes. */
	enum action a = c->parked_head && io->op != HBK_DISK_FLUSH ? PARK : admit(c, io);
	if (a == PARK || a == WAIT)
		wait_for(c, io, a);
	pthread_mutex_unlock(&c->lock);
	act(c, io, a);
}

uint64_t raid_cache_dirty(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	uint64_t v = c->dirty_bytes;
	pthread_mutex_unlock(&c->lock);
	return v;
}

/* ---- Destaging ---------------------------------------------------------------------------- */

static void destage_done(struct hbk_raid_io *io, int result)
{
	struct destage *d = io->priv;
	struct cache *c = d->c;
	pthread_mutex_lock(&c->lock);
	if (result) {
		c->error = result;
		hbk_log(HBK_LOG_ERR, "raid cache: destage of %llu bytes at %llu failed: %s",
			(unsigned long long)io->len, (unsigned long long)io->offset, hbk_strerror(result));
	}
	for (unsigned i = 0; i < d->nlines; i++) {
		d->lines[i]->busy = false;
		maybe_free(c, d->lines[i]);
	}
	struct destage **pp = &c->inflight;
	while (*pp != d)
		pp = &(*pp)->next;
	*pp = d->next;
	c->ninflight--;
	struct hbk_raid_io *reads = c->reads;
	c->reads = NULL;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	free(io->buf);
	free(d);
	while (reads) {
		struct hbk_raid_io *next = reads->next_;
		cache_read(c, reads);
		reads = next;
	}
}

/*
 * Takes the oldest dirty line that is not being destaged and the dirty
 * sectors that follow it without a gap (into the next lines too), up to
 * MAX_DESTAGE; copies them out and marks them clean.  Under c->lock.
 */
static struct destage *build_destage(struct cache *c)
{
	struct line *l = c->dhead;
	while (l && l->busy)
		l = l->dnext;
	if (!l)
		return NULL;
	struct destage *d = malloc(sizeof(*d));
	void *buf;
	if (!d || posix_memalign(&buf, 4096, MAX_DESTAGE)) {
		free(d);
		return NULL;
	}
	*d = (struct destage){ .c = c, .seq = l->seq };
	unsigned s = (unsigned)__builtin_ctz(l->dirty);
	uint64_t start = l->no * LINE + s * SECT, len = 0;
	while (l && !l->busy && len < MAX_DESTAGE) {
		uint8_t take = 0;
		for (; s < LINE / SECT && (l->dirty & (1u << s)) && len < MAX_DESTAGE; s++, len += SECT)
			take |= (uint8_t)(1u << s);
		if (!take)
			break;
		memcpy((uint8_t *)buf + (l->no * LINE + (unsigned)__builtin_ctz(take) * SECT - start),
		       l->data + (unsigned)__builtin_ctz(take) * SECT,
		       (size_t)__builtin_popcount(take) * SECT);
		l->dirty &= (uint8_t)~take;
		l->busy = true;
		c->dirty_bytes -= (uint64_t)__builtin_popcount(take) * SECT;
		d->seq = HBK_MIN(d->seq, l->seq);
		d->lines[d->nlines++] = l;
		if (!l->dirty)
			dirty_remove(c, l);
		if (s < LINE / SECT)
			break;   /* the run ends inside this line */
		l = lookup(c, l->no + 1);
		s = 0;
	}
	d->io = (struct hbk_raid_io){ .op = HBK_DISK_WRITE, .offset = start, .len = len, .buf = buf,
				      .done = destage_done, .priv = d };
	d->next = c->inflight;
	c->inflight = d;
	c->ninflight++;
	return d;
}

/* The oldest absorbed write not yet on the engine (UINT64_MAX: none). */
static uint64_t oldest_unsaved(const struct cache *c)
{
	uint64_t v = c->dhead ? c->dhead->seq : UINT64_MAX;
	for (const struct destage *d = c->inflight; d; d = d->next)
		v = HBK_MIN(v, d->seq);
	return v;
}

struct flush_wait {
	struct hbk_raid_io flush;
	struct hbk_raid_io *io;
	int error;
};

static void flush_done(struct hbk_raid_io *f, int result)
{
	struct flush_wait *w = f->priv;
	struct hbk_raid_io *io = w->io;
	int err = result ? result : w->error;
	free(w);
	io->done(io, err);
}

static void *flusher_main(void *arg)
{
	struct cache *c = arg;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		bool pressure = c->dirty_bytes > c->max_lines * LINE / 2 || c->parked_head ||
				c->flushes || c->stop;
		struct destage *d;
		if (pressure && c->ninflight < MAX_INFLIGHT && (d = build_destage(c))) {
			pthread_mutex_unlock(&c->lock);
			raid_engine_submit(c->r, &d->io);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (c->parked_head) {
			struct hbk_raid_io *io = c->parked_head;
			enum action a = admit(c, io);
			if (a != PARK) {
				if (!(c->parked_head = io->next_))
					c->parked_tail = NULL;
				if (a == WAIT)
					wait_for(c, io, a);
				pthread_mutex_unlock(&c->lock);
				act(c, io, a);
				pthread_mutex_lock(&c->lock);
				continue;
			}
		}
		/* Flushes whose writes are all on the engine: flush the members. */
		uint64_t oldest = oldest_unsaved(c);
		struct hbk_raid_io **pp = &c->flushes, *ready = NULL;
		while (*pp) {
			struct hbk_raid_io *io = *pp;
			if (io->seq_ < oldest) {
				*pp = io->next_;
				io->next_ = ready;
				ready = io;
			} else {
				pp = &io->next_;
			}
		}
		if (ready) {
			int error = c->error;
			pthread_mutex_unlock(&c->lock);
			while (ready) {
				struct hbk_raid_io *io = ready;
				ready = io->next_;
				struct flush_wait *w = malloc(sizeof(*w));
				if (!w) {
					io->done(io, -ENOMEM);
					continue;
				}
				*w = (struct flush_wait){ .io = io, .error = error,
					.flush = { .op = HBK_DISK_FLUSH, .done = flush_done } };
				w->flush.priv = w;
				raid_engine_submit(c->r, &w->flush);
			}
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (c->stop && !c->dhead && !c->ninflight && !c->flushes && !c->parked_head)
			break;
		pthread_cond_wait(&c->cond, &c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

int raid_cache_create(struct hbk_raid *r, uint64_t bytes)
{
	struct cache *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->r = r;
	c->max_lines = HBK_MAX(bytes / LINE, 16u);
	size_t buckets = 64;
	while (buckets < c->max_lines)
		buckets <<= 1;
	c->hash = calloc(buckets, sizeof(*c->hash));
	if (!c->hash) {
		free(c);
		return -ENOMEM;
	}
	c->hmask = buckets - 1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	int err = pthread_create(&c->thread, NULL, flusher_main, c);
	if (err) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		free(c->hash);
		free(c);
		return -err;
	}
	r->cache = c;
	return 0;
}

void raid_cache_destroy(struct cache *c)
{
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	if (c->nlines)
		hbk_log(HBK_LOG_ERR, "raid cache: %zu lines left at close (I/O in flight?)", c->nlines);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->hash);
	free(c);
}
