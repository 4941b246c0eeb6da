/* SPDX-License-Identifier: MIT */
/*
 * The controller's cache, in front of the RAID engine.  Writes are
 * absorbed into 4 KiB lines (valid and dirty per 512-byte sector) and
 * acknowledged at once; a flusher thread destages them oldest first, merging
 * adjacent dirty sectors into writes of up to 1 MiB (so sequential data
 * reaches the engine as full stripes), when the cache is half full, when a
 * write waits for room, and on a flush.  A flush completes once every write
 * absorbed before it is on the members and the members are flushed; a FUA
 * write waits the same way.  Only the flusher writes a cached line to the
 * engine, so writes to one sector reach the disks in the order they were
 * acknowledged.
 *
 * Reads are cached too, as a controller's "cached I/O" policy does: a read
 * the lines do not hold whole goes to the engine with every line it covers
 * pinned (lines it lacks are made, empty, when there is room), and when it
 * ends the valid cached sectors are overlaid on what came back and the
 * sectors no line held yet are filled from it.  A line is made before the
 * engine read starts and stays pinned until the fill, so a write absorbed
 * meanwhile marks its sectors valid and the fill leaves them alone.  Writes
 * that go around the cache (discards, big writes, FUA writes where no dirty
 * line is) hold off every fill that overlaps them in time: the fill could
 * carry what the media held before; and a write to their range waits until
 * they are on the members, since the engine keeps no order between writes
 * in flight.
 * Clean lines (destaged, or filled by reads) stay until room is needed, and
 * are then evicted least recently used first.
 *
 * A destage the engine fails lost data (a member error the array's
 * redundancy covers never reaches the cache: the engine writes without that
 * member and succeeds).  The loss is reported to the flushes and FUA writes
 * that cover the writes it carried, until a flush covering all of them has
 * been told; then it is forgotten, and a later flush reports only a later
 * loss.
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
	struct line *cnext, *cprev;    /* clean list (no dirty sector), least recently used first */
	uint8_t valid, dirty;          /* one bit per sector */
	bool busy;                     /* part of a destage write in flight */
	unsigned pins;                 /* reads that overlay or fill it when they end */
	uint8_t data[LINE];
};

struct destage {
	struct hbk_raid_io io;
	struct cache *c;
	uint64_t seq;                  /* the oldest write it carries */
	uint64_t last;                 /* no write after this one is in it (c->wseq then) */
	struct destage *next;
	unsigned nlines;
	struct line *lines[MAX_DESTAGE / LINE + 1];
};

struct missed_read {
	struct hbk_raid_io inner;
	struct hbk_raid_io *io;
	struct cache *c;
	uint64_t passes;               /* c->passes_started when it was sent */
	bool may_fill;                 /* no write around the cache was in flight then */
	unsigned nlines;
	struct line *lines[];
};

/* A write that goes around the cache, tracked so no read fills lines with
 * what the media held before it, and no write to its range is absorbed
 * (and destaged, in no order with it) while it is in flight. */
struct pass_write {
	struct hbk_raid_io inner;
	struct hbk_raid_io *io;
	struct cache *c;
	struct pass_write *next;       /* c->passes */
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
	struct line *chead, *ctail;    /* clean lines, least recently used first */
	uint64_t passes_started;       /* writes sent around the cache so far */
	unsigned passes_inflight;
	struct pass_write *passes;     /* those in flight */
	uint64_t read_hits, read_misses;
	struct destage *inflight;
	unsigned ninflight;
	/* Destage buffers (MAX_DESTAGE each) that went back, kept for the
	 * next destages: a fresh one is a mapping of its own, and unmapping
	 * it costs every CPU a TLB flush. */
	void *spare[MAX_INFLIGHT];
	unsigned nspare;
	uint64_t wseq;                 /* writes absorbed so far */
	/* Destages failed: the writes in [lost_first, lost_last] may be lost.
	 * A flush or FUA write covering lost_first reports error; a flush
	 * covering lost_last too clears it. */
	int error;
	uint64_t lost_first, lost_last;
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

static void clean_append(struct cache *c, struct line *l)
{
	l->cnext = NULL;
	l->cprev = c->ctail;
	if (c->ctail)
		c->ctail->cnext = l;
	else
		c->chead = l;
	c->ctail = l;
}

static void clean_remove(struct cache *c, struct line *l)
{
	*(l->cprev ? &l->cprev->cnext : &c->chead) = l->cnext;
	*(l->cnext ? &l->cnext->cprev : &c->ctail) = l->cprev;
}

/* A new line for `no`, empty and clean (NULL without memory). */
static struct line *line_new(struct cache *c, uint64_t no)
{
	struct line *l = malloc(sizeof(*l));
	if (!l)
		return NULL;
	*l = (struct line){ .no = no };
	struct line **pp = slot_of(c, no);
	l->hnext = *pp;
	*pp = l;
	c->nlines++;
	clean_append(c, l);
	return l;
}

/* Whether a clean line can go: nothing reads, fills or destages it. */
static bool evictable(const struct line *l)
{
	return !l->dirty && !l->busy && !l->pins;
}

static void line_free(struct cache *c, struct line *l)
{
	struct line **pp = slot_of(c, l->no);
	while (*pp != l)
		pp = &(*pp)->hnext;
	*pp = l->hnext;
	clean_remove(c, l);
	c->nlines--;
	free(l);
}

/* Frees a line that holds nothing (a read's fill did not happen). */
static void maybe_free(struct cache *c, struct line *l)
{
	if (!l->valid && evictable(l))
		line_free(c, l);
}

/* Evicts clean lines, least recently used first, until n more fit.  Lines
 * in use are skipped (a bounded look, so a cache full of them gives up). */
static bool make_room(struct cache *c, size_t n)
{
	struct line *l = c->chead;
	for (unsigned looked = 0; c->nlines + n > c->max_lines && l && looked < 256; looked++) {
		struct line *next = l->cnext;
		if (evictable(l))
			line_free(c, l);
		l = next;
	}
	return c->nlines + n <= c->max_lines;
}

/* Drops the clean lines in [first, last] that nothing uses; true when no
 * line is left there. */
static bool drop_clean(struct cache *c, uint64_t first, uint64_t last)
{
	bool clear = true;
	for (uint64_t no = first; no <= last; no++) {
		struct line *l = lookup(c, no);
		if (l && evictable(l))
			line_free(c, l);
		else if (l)
			clear = false;
	}
	return clear;
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

/* Fills the sectors of l that [off, off + len) covers and l does not hold
 * from buf, what the engine returned. */
static void fill(struct line *l, uint64_t off, uint64_t len, const uint8_t *buf)
{
	uint8_t m = mask_of(l->no, off, off + len) & (uint8_t)~l->valid;
	for (unsigned s = 0; s < LINE / SECT; s++)
		if (m & (1u << s))
			memcpy(l->data + s * SECT, buf + (l->no * LINE + s * SECT - off), SECT);
	l->valid |= m;
}

static void read_done(struct hbk_raid_io *inner, int result)
{
	struct missed_read *m = inner->priv;
	struct cache *c = m->c;
	struct hbk_raid_io *io = m->io;
	pthread_mutex_lock(&c->lock);
	bool may_fill = !result && m->may_fill && c->passes_started == m->passes;
	for (unsigned i = 0; i < m->nlines; i++) {
		if (!result)
			overlay(m->lines[i], io->offset, io->len, io->buf);
		if (may_fill)
			fill(m->lines[i], io->offset, io->len, io->buf);
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
	if (hit) {
		for (uint64_t no = first; no <= last; no++) {
			struct line *l = lookup(c, no);
			overlay(l, io->offset, io->len, io->buf);
			if (!l->dirty) {   /* most recently used */
				clean_remove(c, l);
				clean_append(c, l);
			}
		}
		c->read_hits++;
		pthread_mutex_unlock(&c->lock);
		io->done(io, 0);
		return;
	}
	c->read_misses++;
	/* Read from the engine with the lines of the range pinned (so they
	 * outlive a destage): the ones that exist now, and new empty ones for
	 * the fill while there is room for all of them. */
	size_t nl = last - first + 1, missing = nl - found;
	bool make = nl <= c->max_lines / 4 && make_room(c, missing);
	if (!make && !found) {
		pthread_mutex_unlock(&c->lock);
		raid_engine_submit(c->r, io);
		return;
	}
	struct missed_read *m = malloc(sizeof(*m) + (make ? nl : found) * sizeof(m->lines[0]));
	if (!m) {
		pthread_mutex_unlock(&c->lock);
		io->done(io, -ENOMEM);
		return;
	}
	*m = (struct missed_read){ .io = io, .c = c, .passes = c->passes_started,
		.may_fill = make && !c->passes_inflight,
		.inner = { .op = HBK_DISK_READ, .offset = io->offset, .len = io->len, .buf = io->buf,
			   .done = read_done } };
	m->inner.priv = m;
	for (uint64_t no = first; no <= last; no++) {
		struct line *l = lookup(c, no);
		if (!l && make && !(l = line_new(c, no)))
			m->may_fill = false;
		if (l) {
			l->pins++;
			m->lines[m->nlines++] = l;
		}
	}
	pthread_mutex_unlock(&c->lock);
	raid_engine_submit(c->r, &m->inner);
}

/* ---- Writes and flushes ------------------------------------------------------------------ */

enum action { PARK, PASS, DONE, WAIT, REFUSE };

static void pass_done(struct hbk_raid_io *inner, int result);

/*
 * Decides what to do with a write, discard or flush (under c->lock): absorb
 * it (DONE, or WAIT for a FUA write), send it to the engine (PASS: it is a
 * discard, FUA or too big to absorb, and no line is left where it goes once
 * the clean ones are dropped), PARK it until room is made or the lines it
 * overlaps are gone, or REFUSE it (-EIO: the array has failed).
 */
static enum action admit(struct cache *c, struct hbk_raid_io *io)
{
	if (io->op == HBK_DISK_FLUSH) {
		io->seq_ = c->wseq;
		return WAIT;
	}
	if (atomic_load(&c->r->failed))
		return REFUSE;   /* parked until after the array failed */
	uint64_t first = io->offset / LINE, last = (io->offset + io->len - 1) / LINE, end = io->offset + io->len;
	bool big = io->op == HBK_DISK_DISCARD || io->len > c->max_lines * LINE / 4;
	/* The engine keeps no order between writes in flight: one to the range
	 * of a write going around waits until that write is on the members
	 * (pass_done retries it), so the two land in the order they came. */
	for (const struct pass_write *p = c->passes; p; p = p->next)
		if (io->offset < p->inner.offset + p->inner.len && p->inner.offset < end)
			return PARK;
	if (big || (io->flags & HBK_DISK_FUA)) {
		if (drop_clean(c, first, last)) {
			c->passes_started++;   /* no read fills from before it (read_done) */
			c->passes_inflight++;
			/* Tracked from now, under the lock that admits the writes
			 * it must hold off; act() sends it (NULL: no memory). */
			struct pass_write *p = malloc(sizeof(*p));
			if (p) {
				*p = (struct pass_write){ .io = io, .c = c, .next = c->passes,
					.inner = { .op = io->op, .flags = io->flags, .offset = io->offset,
						   .len = io->len, .buf = io->buf, .done = pass_done } };
				p->inner.priv = p;
				c->passes = p;
			}
			io->next_ = (struct hbk_raid_io *)(void *)p;
			return PASS;
		}
		if (big)
			return PARK;
	}
	size_t missing = 0;
	for (uint64_t no = first; no <= last; no++)
		missing += !lookup(c, no);
	if (!make_room(c, missing))
		return PARK;

	uint64_t seq = ++c->wseq;
	for (uint64_t no = first; no <= last; no++) {
		struct line *l = lookup(c, no);
		if (!l && !(l = line_new(c, no)))
			return PARK;   /* retried once memory is back */
		uint8_t m = mask_of(no, io->offset, end);
		uint64_t lo = HBK_MAX(io->offset, no * LINE);
		memcpy(l->data + (lo - no * LINE), (uint8_t *)io->buf + (lo - io->offset),
		       HBK_MIN(end, (no + 1) * LINE) - lo);
		if (!l->dirty) {
			l->seq = seq;
			clean_remove(c, l);
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

static void pass_done(struct hbk_raid_io *inner, int result)
{
	struct pass_write *p = inner->priv;
	struct cache *c = p->c;
	struct hbk_raid_io *io = p->io;
	pthread_mutex_lock(&c->lock);
	c->passes_inflight--;
	struct pass_write **pp = &c->passes;
	while (*pp != p)
		pp = &(*pp)->next;
	*pp = p->next;
	if (c->parked_head)
		pthread_cond_signal(&c->cond);   /* a parked write may wait for it */
	pthread_mutex_unlock(&c->lock);
	free(p);
	io->done(io, result);
}

/* Carries out admit()'s decision; called without c->lock for PASS, DONE and REFUSE. */
static void act(struct cache *c, struct hbk_raid_io *io, enum action a)
{
	if (a == PASS) {
		struct pass_write *p = (struct pass_write *)(void *)io->next_;
		io->next_ = NULL;
		if (!p) {
			pthread_mutex_lock(&c->lock);
			c->passes_inflight--;
			pthread_mutex_unlock(&c->lock);
			io->done(io, -ENOMEM);
			return;
		}
		raid_engine_submit(c->r, &p->inner);
	} else if (a == DONE) {
		io->done(io, 0);
	} else if (a == REFUSE) {
		io->done(io, -EIO);
	}
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
	/* A failed array takes nothing more: absorbing a write would
	 * acknowledge data no destage can carry out, and a read would show
	 * lines the members never got.  The engine ends it with -EIO. */
	if (atomic_load(&c->r->failed) || io->op > HBK_DISK_DISCARD || !io->done ||
	    ((io->op == HBK_DISK_READ || io->op == HBK_DISK_WRITE) && !io->buf) ||
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

void raid_cache_status(struct cache *c, struct hbk_raid_status *out)
{
	pthread_mutex_lock(&c->lock);
	out->cache_dirty = c->dirty_bytes;
	out->cache_read_hits = c->read_hits;
	out->cache_read_misses = c->read_misses;
	pthread_mutex_unlock(&c->lock);
}

/* ---- Destaging ---------------------------------------------------------------------------- */

static void destage_done(struct hbk_raid_io *io, int result)
{
	struct destage *d = io->priv;
	struct cache *c = d->c;
	pthread_mutex_lock(&c->lock);
	if (result) {
		c->lost_first = c->error ? HBK_MIN(c->lost_first, d->seq) : d->seq;
		c->lost_last = c->error ? HBK_MAX(c->lost_last, d->last) : d->last;
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
	void *buf = io->buf;
	if (c->nspare < MAX_INFLIGHT) {
		c->spare[c->nspare++] = buf;
		buf = NULL;
	}
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	free(buf);
	free(d);
	while (reads) {
		struct hbk_raid_io *next = reads->next_;
		raid_cache_submit(c, reads);   /* a failed array fails it */
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
	void *buf = c->nspare ? c->spare[--c->nspare] : NULL;
	if (!d || (!buf && posix_memalign(&buf, 4096, MAX_DESTAGE))) {
		if (buf)
			c->spare[c->nspare++] = buf;
		free(d);
		return NULL;
	}
	*d = (struct destage){ .c = c, .seq = l->seq, .last = c->wseq };
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
		if (!l->dirty) {
			dirty_remove(c, l);
			clean_append(c, l);
		}
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
	int error;                     /* a destage that lost writes it covers */
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
	hbk_thread_name("hbk-raid-flush");
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
			struct hbk_raid_io *io = c->parked_head, *next = io->next_;
			enum action a = admit(c, io);   /* a PASS takes io->next_ */
			if (a != PARK) {
				if (!(c->parked_head = next))
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
			/* Every write a ready flush covers has ended, so a
			 * destage failing later carries none of them.  A flush
			 * told of every loss clears it; a FUA write, which
			 * speaks for its own data only, does not. */
			int error = c->error;
			uint64_t first = c->lost_first;
			for (const struct hbk_raid_io *io = ready; io && c->error; io = io->next_)
				if (io->op == HBK_DISK_FLUSH && io->seq_ >= c->lost_last)
					c->error = 0;
			pthread_mutex_unlock(&c->lock);
			while (ready) {
				struct hbk_raid_io *io = ready;
				ready = io->next_;
				struct flush_wait *w = malloc(sizeof(*w));
				if (!w) {
					io->done(io, -ENOMEM);
					continue;
				}
				*w = (struct flush_wait){ .io = io, .error = io->seq_ >= first ? error : 0,
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
	for (struct line *l = c->chead, *next; l; l = next) {
		next = l->cnext;
		if (evictable(l))
			line_free(c, l);
	}
	if (c->nlines)
		hbk_log(HBK_LOG_ERR, "raid cache: %zu lines in use at close (I/O in flight?)", c->nlines);
	while (c->nspare)
		free(c->spare[--c->nspare]);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->hash);
	free(c);
}
