/* SPDX-License-Identifier: MIT */
/*
 * Volumes, the storage behind the controller's virtual drives: a memory
 * volume (thin: an allocation bitmap records which blocks hold data, and
 * unmapped blocks read back as zeros), with a hold to inject a hung I/O, and
 * an adapter that serves a volume from a RAID array of include/hbk/raid.h.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/common.h"
#include "hbk/device.h"
#include "hbk/raid.h"

void hbk_dev_vol_close(struct hbk_vol *v)
{
	if (v)
		v->ops->close(v);
}

static int vol_setup(struct hbk_vol *v, const struct hbk_vol_ops *ops, const char *name,
		     uint32_t block_size, uint64_t nblocks)
{
	if (!name || strlen(name) >= sizeof(v->name) ||
	    (block_size != 512 && block_size != 4096) || !nblocks)
		return -EINVAL;
	v->ops = ops;
	strcpy(v->name, name);
	v->block_size = block_size;
	v->nblocks = nblocks;
	return 0;
}

static bool in_range(const struct hbk_vol *v, const struct hbk_vol_io *io)
{
	return io->op == HBK_VOL_FLUSH ||
	       (io->lba <= v->nblocks && io->nblocks <= v->nblocks - io->lba);
}

/* ---- Memory volume -------------------------------------------------------------- */

struct mem_vol {
	struct hbk_vol v;
	uint8_t *mem;
	size_t size;
	_Atomic uint64_t *map;        /* bit per block: holds data */
	_Atomic uint64_t hold;        /* held block, UINT64_MAX: none */
	bool stuck;                   /* held I/O refuses cancel (under lock) */
	pthread_mutex_t lock;         /* held list */
	struct hbk_vol_io *held;
};

static const struct hbk_vol_ops mem_ops;

static void map_set(struct mem_vol *m, uint64_t lba, uint64_t n, bool mapped)
{
	for (uint64_t b = lba; b < lba + n; b++) {
		uint64_t bit = 1ull << (b % 64);
		if (mapped)
			atomic_fetch_or_explicit(&m->map[b / 64], bit, memory_order_relaxed);
		else
			atomic_fetch_and_explicit(&m->map[b / 64], ~bit, memory_order_relaxed);
	}
}

static bool map_get(struct mem_vol *m, uint64_t b)
{
	return atomic_load_explicit(&m->map[b / 64], memory_order_relaxed) >> (b % 64) & 1;
}

/* Unmapped memory gives its pages back: whole pages inside the range are
 * dropped (they read back as zeros), the edges are zeroed. */
static void mem_discard(struct mem_vol *m, uint64_t off, uint64_t len)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t a = (off + page - 1) / page * page, b = (off + len) / page * page;
	if (a >= b) {
		memset(m->mem + off, 0, len);
		return;
	}
	memset(m->mem + off, 0, a - off);
	madvise(m->mem + a, b - a, MADV_DONTNEED);
	memset(m->mem + b, 0, off + len - b);
}

static void mem_do(struct mem_vol *m, struct hbk_vol_io *io)
{
	uint64_t off = io->lba * m->v.block_size, len = io->nblocks * m->v.block_size;
	switch (io->op) {
	case HBK_VOL_READ:
		memcpy(io->buf, m->mem + off, len);
		break;
	case HBK_VOL_WRITE:
		memcpy(m->mem + off, io->buf, len);
		map_set(m, io->lba, io->nblocks, true);
		break;
	case HBK_VOL_UNMAP:
		map_set(m, io->lba, io->nblocks, false);
		mem_discard(m, off, len);
		break;
	}
	io->done(io, 0);
}

/* Parks io if it touches the held block.  Returns true if it did. */
static bool mem_held(struct mem_vol *m, struct hbk_vol_io *io)
{
	if (io->op > HBK_VOL_WRITE || atomic_load(&m->hold) == UINT64_MAX)
		return false;
	pthread_mutex_lock(&m->lock);
	uint64_t h = atomic_load(&m->hold);
	bool held = h >= io->lba && h - io->lba < io->nblocks;
	if (held) {
		io->next_ = m->held;
		m->held = io;
	}
	pthread_mutex_unlock(&m->lock);
	return held;
}

static void mem_submit(struct hbk_vol *v, struct hbk_vol_io *io)
{
	struct mem_vol *m = (struct mem_vol *)v;
	if (io->op > HBK_VOL_UNMAP || !in_range(v, io))
		io->done(io, -EINVAL);
	else if (!mem_held(m, io))
		mem_do(m, io);
}

static int mem_cancel(struct hbk_vol *v, struct hbk_vol_io *io)
{
	struct mem_vol *m = (struct mem_vol *)v;
	bool found = false, stuck;
	pthread_mutex_lock(&m->lock);
	stuck = m->stuck;
	for (struct hbk_vol_io **p = &m->held; *p && !stuck; p = &(*p)->next_)
		if (*p == io) {
			*p = io->next_;
			found = true;
			break;
		}
	pthread_mutex_unlock(&m->lock);
	if (stuck)
		return -EBUSY;
	if (!found)
		return -ENOENT;
	io->done(io, -ECANCELED);
	return 0;
}

static int mem_lba_status(struct hbk_vol *v, uint64_t lba, uint32_t *n, bool *mapped)
{
	struct mem_vol *m = (struct mem_vol *)v;
	uint32_t run = 1;
	*mapped = map_get(m, lba);
	while (run < *n && lba + run < v->nblocks && map_get(m, lba + run) == *mapped)
		run++;
	*n = run;
	return 0;
}

static void mem_close(struct hbk_vol *v)
{
	struct mem_vol *m = (struct mem_vol *)v;
	munmap(m->mem, m->size);
	free(m->map);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static const struct hbk_vol_ops mem_ops = {
	.submit = mem_submit, .cancel = mem_cancel, .lba_status = mem_lba_status,
	.close = mem_close,
};

int hbk_dev_vol_mem(const char *name, uint64_t size, uint32_t block_size, struct hbk_vol **out)
{
	*out = NULL;
	struct mem_vol *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	int err = vol_setup(&m->v, &mem_ops, name, block_size, block_size ? size / block_size : 0);
	if (err) {
		free(m);
		return err;
	}
	m->v.flags = HBK_VOL_THIN | HBK_VOL_LBPRZ;
	m->size = m->v.nblocks * block_size;
	m->mem = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	m->map = calloc((m->v.nblocks + 63) / 64, sizeof(*m->map));
	if (m->mem == MAP_FAILED || !m->map) {
		if (m->mem != MAP_FAILED)
			munmap(m->mem, m->size);
		free(m->map);
		free(m);
		return -ENOMEM;
	}
	/* Huge pages where the kernel allows them: random small writes over a
	 * volume then fault (and zero, and shoot down TLBs) 512 times less. */
	madvise(m->mem, m->size, MADV_HUGEPAGE);
	atomic_init(&m->hold, UINT64_MAX);
	pthread_mutex_init(&m->lock, NULL);
	*out = &m->v;
	return 0;
}

int hbk_dev_vol_mem_stick(struct hbk_vol *v, bool stuck)
{
	if (!v || v->ops != &mem_ops)
		return -EINVAL;
	struct mem_vol *m = (struct mem_vol *)v;
	pthread_mutex_lock(&m->lock);
	m->stuck = stuck;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int hbk_dev_vol_mem_hold(struct hbk_vol *v, uint64_t lba)
{
	if (!v || v->ops != &mem_ops)
		return -EINVAL;
	struct mem_vol *m = (struct mem_vol *)v;
	pthread_mutex_lock(&m->lock);
	atomic_store(&m->hold, lba);
	struct hbk_vol_io *held = lba == UINT64_MAX ? m->held : NULL;
	if (held)
		m->held = NULL;
	pthread_mutex_unlock(&m->lock);
	for (struct hbk_vol_io *io = held, *next; io; io = next) {
		next = io->next_;
		mem_do(m, io);
	}
	return 0;
}

/* ---- RAID array volume ------------------------------------------------------------ */

struct raid_vol {
	struct hbk_vol v;
	struct hbk_raid *r;
};

static void raid_done(struct hbk_raid_io *rio, int result)
{
	struct hbk_vol_io *io = rio->priv;
	free(rio);
	io->done(io, result);
}

static void raid_submit(struct hbk_vol *v, struct hbk_vol_io *io)
{
	static const uint8_t op[] = {
		[HBK_VOL_READ] = HBK_DISK_READ, [HBK_VOL_WRITE] = HBK_DISK_WRITE,
		[HBK_VOL_FLUSH] = HBK_DISK_FLUSH, [HBK_VOL_UNMAP] = HBK_DISK_DISCARD,
	};
	if (io->op > HBK_VOL_UNMAP || !in_range(v, io)) {
		io->done(io, -EINVAL);
		return;
	}
	struct hbk_raid_io *rio = calloc(1, sizeof(*rio));
	if (!rio) {
		io->done(io, -ENOMEM);
		return;
	}
	rio->op = op[io->op];
	rio->flags = io->fua ? HBK_DISK_FUA : 0;
	rio->offset = io->lba * v->block_size;
	rio->len = io->nblocks * v->block_size;
	rio->buf = io->buf;
	rio->done = raid_done;
	rio->priv = io;
	hbk_raid_submit(((struct raid_vol *)v)->r, rio);
}

static void raid_close(struct hbk_vol *v)
{
	free(v);
}

static const struct hbk_vol_ops raid_ops = { .submit = raid_submit, .close = raid_close };

int hbk_dev_vol_raid(const char *name, struct hbk_raid *r, struct hbk_vol **out)
{
	*out = NULL;
	if (!r)
		return -EINVAL;
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	struct raid_vol *rv = calloc(1, sizeof(*rv));
	if (!rv)
		return -ENOMEM;
	int err = vol_setup(&rv->v, &raid_ops, name, st.block_size,
			    st.block_size ? st.size / st.block_size : 0);
	if (err) {
		free(rv);
		return err;
	}
	/* A full stripe is the optimal transfer: parity levels write it
	 * without reading anything back. */
	unsigned data = st.members;
	if (st.level == HBK_RAID1)
		data = 1;
	else if (st.level == HBK_RAID10)
		data = st.members / 2;
	else if (st.level == HBK_RAID5 || st.level == HBK_RAID6)
		data = st.members - (st.level == HBK_RAID5 ? 1 : 2);
	rv->v.opt_blocks = (uint32_t)((uint64_t)st.chunk * data / st.block_size);
	rv->v.flags = st.cache_bytes ? HBK_VOL_WRITE_CACHE : 0;
	/* Thin only where the array honours UNMAP: at RAID 0/1/10 every
	 * discard reaches the members when each of them discards (and, with
	 * copies, reads discarded ranges back as zeros, so the copies stay
	 * equal); RAID 5/6 discard whole stripes only and keep partial ones, so
	 * they are not offered as thin.  LBPRZ when every member reads zeros. */
	bool thin = st.level == HBK_RAID0 || st.level == HBK_RAID1 || st.level == HBK_RAID10;
	bool zeroes = true;
	for (unsigned i = 0; i < st.members; i++) {
		struct hbk_disk_info di;
		if (!st.member[i].disk)
			continue;
		hbk_disk_info(st.member[i].disk, &di);
		thin = thin && di.discard && (st.level == HBK_RAID0 || di.discard_zeroes);
		zeroes = zeroes && di.discard_zeroes;
	}
	if (thin)
		rv->v.flags |= HBK_VOL_THIN | (zeroes ? HBK_VOL_LBPRZ : 0);
	rv->r = r;
	*out = &rv->v;
	return 0;
}
