/* SPDX-License-Identifier: MIT */
/*
 * Data integrity through the whole stack: host library -> hbk-raid driver ->
 * emulated card -> RAID engine -> io_uring -> member files in a temporary
 * directory, for every RAID level (0, 1, 5, 6, 10).  Each test keeps a
 * shadow image of what the array must hold and compares every byte read
 * through the host with it:
 *
 *   healthy   fill, read back, random write load, restart (reassembly),
 *             read back; offline, the resync finished, scrub finds 0
 *             mismatches;
 *   degraded  a member (two at RAID 6) failed offline between runs, as
 *             `hbakit raid fail` does; the driver assembles degraded, reads
 *             back, takes a random write load, reads back;
 *   rebuild   the driver starts with blank spare= files and a slow rebuild
 *             rate, so it rebuilds in the background while the random write
 *             load and the read-back run; offline the rebuild was still
 *             going, finishes, and scrub finds 0 mismatches; a last run
 *             reads everything back;
 *   crash     writes run continuously and the driver is SIGKILLed among
 *             them; restarted on the same files (reassembly, resync), every
 *             acknowledged write reads back, every write in flight at the
 *             kill reads back old or new per sector, and scrub finds 0
 *             mismatches;
 *   flush     the same with a write-back cache: what was acknowledged before
 *             a SYNCHRONIZE CACHE survives the kill; later writes, which a
 *             volatile cache may lose, read back old or new per sector.
 *
 * RAID 0 has no redundancy: no degraded or rebuild variant.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hbk/raid.h"
#include "tests/lib/testlib.h"

#define RAID      "drivers/hbk-raid"
#define MEMBER    (4u << 20)      /* data bytes per member */
#define REGION    (64u << 10)     /* unit of the write loads */
#define DEPTH     32u             /* I/Os in flight */

struct fixture {
	char dir[64];
	int level;
	unsigned members;
	char disks[1024];             /* ",disk=file:..." for every member */
	uint32_t bs;
	uint64_t size;                /* array bytes */
	uint8_t *shadow;              /* what the array must hold */
	uint64_t rng;
};

static const int levels[] = { 0, 1, 5, 6, 10 };

static unsigned members_of(int level)
{
	return level == 0 || level == 1 ? 2 : level == 5 ? 3 : 4;
}

static uint64_t rnd(struct fixture *f)
{
	uint64_t x = f->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return f->rng = x;
}

static void fixture_init(struct fixture *f, int level)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/hbk-integrity-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->level = level;
	f->members = members_of(level);
	f->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)level;
	size_t n = 0;
	for (unsigned i = 0; i < f->members; i++)
		n += (size_t)snprintf(f->disks + n, sizeof(f->disks) - n, ",disk=file:%s/d%u.img", f->dir, i);
	unsigned data = level == 1 ? 1 : level == 10 ? f->members / 2 : level == 5 ? f->members - 1
		      : level == 6 ? f->members - 2 : f->members;
	f->size = (uint64_t)MEMBER * data;
	f->shadow = calloc(1, f->size);
	assert_non_null(f->shadow);
}

static void fixture_fini(struct fixture *f)
{
	DIR *d = opendir(f->dir);
	struct dirent *e;
	char path[sizeof(f->dir) + 258];
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
			unlink(path);
		}
	if (d)
		closedir(d);
	rmdir(f->dir);
	free(f->shadow);
}

/* The array's spec, with extra keys (e.g. ",cache=1m"). */
static const char *spec_of(const struct fixture *f, const char *extra)
{
	static char buf[2048];
	snprintf(buf, sizeof(buf), "level=%d,chunk=16k,size=4m%s%s", f->level, f->disks, extra);
	return buf;
}

/* Starts the driver on the array; returns the controller and its LUN. */
static struct hbk_ctl *start(struct fixture *f, enum hbk_ctl_mode mode, const char *extra,
			     struct hbk_lun **lun)
{
	static char arg[2200];
	snprintf(arg, sizeof(arg), "array=a:%s", spec_of(f, extra));
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open(RAID, mode, (const char *[]){ arg, NULL }, 0, 0, &c), 0);
	assert_int_equal(hbk_ctl_lun_count(c), 1);
	*lun = hbk_ctl_lun(c, 0);
	struct hbk_lun_info li = tl_info(*lun);
	f->bs = li.block_size;
	assert_int_equal(li.nblocks * li.block_size, f->size);
	return c;
}

/* ---- Batches of asynchronous I/O ------------------------------------------------------- */

struct batch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned outstanding;
	struct hbk_blk_io io[DEPTH];
	uint8_t *buf[DEPTH];
};

static void batch_done(struct hbk_blk_io *io)
{
	struct batch *b = io->priv;
	pthread_mutex_lock(&b->lock);
	b->outstanding--;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static void batch_init(struct batch *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	for (unsigned i = 0; i < DEPTH; i++)
		assert_non_null(b->buf[i] = malloc(REGION));
}

static void batch_fini(struct batch *b)
{
	for (unsigned i = 0; i < DEPTH; i++)
		free(b->buf[i]);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
}

static void batch_submit(struct batch *b, unsigned i, struct hbk_lun *l, uint8_t op,
			 uint64_t off, uint64_t len, uint32_t bs)
{
	b->io[i] = (struct hbk_blk_io){ .lun = l, .op = op, .lba = off / bs, .nblocks = (uint32_t)(len / bs),
					.buf = b->buf[i], .done = batch_done, .priv = b };
	pthread_mutex_lock(&b->lock);
	b->outstanding++;
	pthread_mutex_unlock(&b->lock);
	int err = hbk_blk_submit(&b->io[i]);
	if (err) {
		b->io[i].error = err;
		batch_done(&b->io[i]);
	}
}

static void batch_wait(struct batch *b)
{
	pthread_mutex_lock(&b->lock);
	while (b->outstanding)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

/* ---- Loads and checks ------------------------------------------------------------------------ */

/* Writes regions [0, size) with a fresh pattern, DEPTH at a time. */
static void fill(struct fixture *f, struct hbk_lun *l, uint32_t seed)
{
	struct batch b;
	batch_init(&b);
	for (uint64_t off = 0; off < f->size; off += DEPTH * REGION) {
		for (unsigned i = 0; i < DEPTH && off + i * REGION < f->size; i++) {
			uint64_t o = off + i * REGION;
			tl_fill(b.buf[i], o / f->bs, REGION / f->bs, f->bs, seed);
			memcpy(f->shadow + o, b.buf[i], REGION);
			batch_submit(&b, i, l, HBK_BLK_WRITE, o, REGION, f->bs);
		}
		batch_wait(&b);
		for (unsigned i = 0; i < DEPTH; i++)
			assert_int_equal(b.io[i].error, 0);
	}
	batch_fini(&b);
}

/*
 * Random writes: `rounds` batches of DEPTH writes in flight at once, each
 * in a distinct region at a random block offset and length (partial and
 * full stripes, read-modify-write and reconstruct-write).  Returns how many.
 */
static unsigned random_load(struct fixture *f, struct hbk_lun *l, unsigned rounds, uint32_t seed)
{
	struct batch b;
	batch_init(&b);
	uint64_t nreg = f->size / REGION, bpr = REGION / f->bs;
	unsigned n = 0;
	for (unsigned r = 0; r < rounds; r++) {
		uint64_t used[DEPTH];
		for (unsigned i = 0; i < DEPTH; i++) {
			uint64_t reg;
			bool dup;
			do {
				reg = rnd(f) % nreg;
				dup = false;
				for (unsigned k = 0; k < i; k++)
					dup = dup || used[k] == reg;
			} while (dup);
			used[i] = reg;
			uint64_t first = rnd(f) % bpr, count = 1 + rnd(f) % (bpr - first);
			uint64_t off = reg * REGION + first * f->bs, len = count * f->bs;
			tl_fill(b.buf[i], off / f->bs, (uint32_t)count, f->bs, seed + r);
			memcpy(f->shadow + off, b.buf[i], len);
			batch_submit(&b, i, l, HBK_BLK_WRITE, off, len, f->bs);
		}
		batch_wait(&b);
		for (unsigned i = 0; i < DEPTH; i++)
			assert_int_equal(b.io[i].error, 0);
		n += DEPTH;
	}
	batch_fini(&b);
	return n;
}

/* Reads the whole array through the host and compares it with the shadow. */
static void check_all(struct fixture *f, struct hbk_lun *l)
{
	struct batch b;
	batch_init(&b);
	for (uint64_t off = 0; off < f->size; off += DEPTH * REGION) {
		for (unsigned i = 0; i < DEPTH && off + i * REGION < f->size; i++)
			batch_submit(&b, i, l, HBK_BLK_READ, off + i * REGION, REGION, f->bs);
		batch_wait(&b);
		for (unsigned i = 0; i < DEPTH && off + i * REGION < f->size; i++) {
			uint64_t o = off + i * REGION;
			assert_int_equal(b.io[i].error, 0);
			if (memcmp(b.buf[i], f->shadow + o, REGION))
				fail_msg("raid%d: bytes %llu..%llu differ from what was written", f->level,
					 (unsigned long long)o, (unsigned long long)(o + REGION));
		}
	}
	batch_fini(&b);
}

/* ---- Offline: the array opened in this process, as hbakit raid does ------------------ */

struct offline {
	struct hbk_raid_spec *spec;
	struct hbk_raid_spec_array a;
};

static void offline_open(struct offline *o, struct fixture *f, const char *extra)
{
	char err[256];
	assert_int_equal(hbk_raid_spec_parse(spec_of(f, extra), &o->spec, err, sizeof(err)), 0);
	int rc = hbk_raid_spec_open(o->spec, HBK_RAID_SPEC_ASSEMBLE, &o->a);
	if (rc)
		fail_msg("offline assembly: %s", o->a.message);
}

static void offline_close(struct offline *o)
{
	hbk_raid_spec_close(&o->a);
	hbk_raid_spec_free(o->spec);
}

/* Waits for any resync or rebuild and scrubs: the copies and the parity
 * must agree (RAID 0 has nothing to compare). */
static void offline_scrub(struct fixture *f, const char *extra)
{
	struct offline o;
	offline_open(&o, f, extra);
	hbk_raid_set_rebuild_rate(o.a.raid, 0);
	assert_int_equal(hbk_raid_wait(o.a.raid, 0), 0);
	struct hbk_raid_status st;
	hbk_raid_status(o.a.raid, &st);
	assert_int_equal(st.state, HBK_RAID_OPTIMAL);
	if (f->level) {
		struct hbk_raid_scrub s;
		assert_int_equal(hbk_raid_scrub(o.a.raid, false, &s), 0);
		assert_int_equal(s.stripes, MEMBER / (16u << 10));
		assert_int_equal(s.mismatches, 0);
		printf("# raid%d: scrub of %llu stripes: 0 mismatches\n", f->level,
		       (unsigned long long)s.stripes);
	}
	offline_close(&o);
}

/* Fails the members in slots[0..n) while the array is not running, as
 * `hbakit raid fail` does. */
static void offline_fail(struct fixture *f, const unsigned *slots, unsigned n)
{
	struct offline o;
	offline_open(&o, f, "");
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(hbk_raid_fail(o.a.raid, slots[i]), 0);
	offline_close(&o);
}

/* ---- The variants ------------------------------------------------------------------------------ */

static int level_of(void **state)
{
	return *(const int *)*state;
}

static void healthy(void **state)
{
	struct fixture f;
	fixture_init(&f, level_of(state));
	struct hbk_lun *l;
	struct hbk_ctl *c = start(&f, HBK_MODE_BUNDLED, "", &l);
	fill(&f, l, 1);
	check_all(&f, l);
	unsigned n = random_load(&f, l, 16, 100);
	check_all(&f, l);
	hbk_ctl_close(c);
	/* Reassembled from the files, on the other path. */
	c = start(&f, HBK_MODE_PER_TASK, "", &l);
	check_all(&f, l);
	hbk_ctl_close(c);
	offline_scrub(&f, "");
	printf("# raid%d healthy: %llu bytes filled, %u random writes, 3 full read-backs\n", f.level,
	       (unsigned long long)f.size, n);
	fixture_fini(&f);
}

/* The slots failed for the degraded and rebuild variants. */
static unsigned failed_slots(const struct fixture *f, unsigned *slots)
{
	slots[0] = 1;
	slots[1] = 2;
	return f->level == 6 ? 2 : 1;
}

static void degraded(void **state)
{
	struct fixture f;
	fixture_init(&f, level_of(state));
	struct hbk_lun *l;
	struct hbk_ctl *c = start(&f, HBK_MODE_BUNDLED, "", &l);
	fill(&f, l, 2);
	hbk_ctl_close(c);
	unsigned slots[2], nfail = failed_slots(&f, slots);
	offline_fail(&f, slots, nfail);
	c = start(&f, HBK_MODE_BUNDLED, "", &l);
	check_all(&f, l);
	unsigned n = random_load(&f, l, 16, 200);
	check_all(&f, l);
	hbk_ctl_close(c);
	/* Still degraded after a restart, and the data still there. */
	struct offline o;
	offline_open(&o, &f, "");
	struct hbk_raid_status st;
	hbk_raid_status(o.a.raid, &st);
	assert_int_equal(st.state, HBK_RAID_DEGRADED);
	offline_close(&o);
	c = start(&f, HBK_MODE_PER_TASK, "", &l);
	check_all(&f, l);
	hbk_ctl_close(c);
	printf("# raid%d degraded (%u member(s) failed): %u random writes, 3 full read-backs\n",
	       f.level, nfail, n);
	fixture_fini(&f);
}

static void rebuild(void **state)
{
	struct fixture f;
	fixture_init(&f, level_of(state));
	struct hbk_lun *l;
	struct hbk_ctl *c = start(&f, HBK_MODE_BUNDLED, "", &l);
	fill(&f, l, 3);
	hbk_ctl_close(c);
	unsigned slots[2], nfail = failed_slots(&f, slots);
	offline_fail(&f, slots, nfail);
	/* Blank spares: the driver's assembly adds them, the failed slots take
	 * them and rebuild at 512 KiB/s (8 s a member) while I/O runs. */
	char spares[256];
	size_t len = 0;
	for (unsigned i = 0; i < nfail; i++)
		len += (size_t)snprintf(spares + len, sizeof(spares) - len, ",spare=file:%s/s%u.img", f.dir, i);
	snprintf(spares + len, sizeof(spares) - len, ",rebuild-rate=512k");
	c = start(&f, HBK_MODE_BUNDLED, spares, &l);
	unsigned n = random_load(&f, l, 16, 300);
	check_all(&f, l);
	hbk_ctl_close(c);
	/* The rebuild was still going when the driver stopped (the I/O above
	 * ran during it); it goes on from its cursor and ends consistent. */
	struct offline o;
	offline_open(&o, &f, spares);
	struct hbk_raid_status st;
	hbk_raid_status(o.a.raid, &st);
	assert_int_equal(st.state, HBK_RAID_REBUILDING);
	assert_true(st.rebuild_done < st.rebuild_total);
	printf("# raid%d rebuild: %llu of %llu bytes rebuilt when the driver stopped\n", f.level,
	       (unsigned long long)st.rebuild_done, (unsigned long long)st.rebuild_total);
	offline_close(&o);
	offline_scrub(&f, spares);
	c = start(&f, HBK_MODE_PER_TASK, spares, &l);
	check_all(&f, l);
	hbk_ctl_close(c);
	printf("# raid%d rebuild (%u member(s)): %u random writes during it, 2 full read-backs\n",
	       f.level, nfail, n);
	fixture_fini(&f);
}

/* ---- Crash: SIGKILL among continuous writes --------------------------------------------------- */

/*
 * Slot i of DEPTH writes regions i, i + DEPTH, i + 2 DEPTH, ... one after the
 * other, each with a new pattern, so a region has at most one write in
 * flight.  The shadow holds what was acknowledged; a write in flight at
 * the kill is kept in `pending` to accept old or new data per sector.
 */
struct crash {
	struct fixture *f;
	struct hbk_lun *l;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct hbk_blk_io io[DEPTH];
	uint8_t *buf[DEPTH];
	uint64_t off[DEPTH], len[DEPTH];
	bool pending[DEPTH];          /* io[i] in flight */
	uint64_t next[DEPTH];         /* region sequence of slot i */
	unsigned acked, failed, outstanding;
	bool stop;
	uint32_t flush_at;            /* issue a flush after this many acks (0: never) */
	bool flushing, flushed;
	bool after_flush;             /* the flush was issued */
	uint64_t flushed_acked;       /* acks covered by the flush */
	struct hbk_blk_io flush;
	uint8_t *durable;             /* the shadow when the flush was issued */
	bool *touched;                /* region written by a write the flush does not cover */
};

static void crash_issue(struct crash *k, unsigned i);

static void crash_done(struct hbk_blk_io *io)
{
	struct crash *k = io->priv;
	unsigned i = (unsigned)(io - k->io);
	pthread_mutex_lock(&k->lock);
	k->pending[i] = false;
	if (!io->error) {
		memcpy(k->f->shadow + k->off[i], k->buf[i], k->len[i]);
		k->acked++;
	} else {
		k->failed++;
		k->stop = true;   /* the driver is gone */
	}
	bool go = !k->stop;
	if (!go)
		k->outstanding--;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	if (go)
		crash_issue(k, i);
}

static void flush_done(struct hbk_blk_io *io)
{
	struct crash *k = io->priv;
	pthread_mutex_lock(&k->lock);
	k->flushed = !io->error;
	k->flushing = false;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

static void crash_issue(struct crash *k, unsigned i)
{
	struct fixture *f = k->f;
	uint64_t nreg = f->size / REGION, bpr = REGION / f->bs;
	pthread_mutex_lock(&k->lock);
	uint64_t reg = (i + k->next[i]++ * DEPTH) % nreg;
	if (k->after_flush)
		k->touched[reg] = true;
	uint64_t first = rnd(f) % bpr, count = 1 + rnd(f) % (bpr - first);
	k->off[i] = reg * REGION + first * f->bs;
	k->len[i] = count * f->bs;
	tl_fill(k->buf[i], k->off[i] / f->bs, (uint32_t)count, f->bs, (uint32_t)(1000 + k->next[i]));
	k->pending[i] = true;
	pthread_mutex_unlock(&k->lock);
	k->io[i] = (struct hbk_blk_io){ .lun = k->l, .op = HBK_BLK_WRITE, .lba = k->off[i] / f->bs,
					.nblocks = (uint32_t)count, .buf = k->buf[i], .done = crash_done,
					.priv = k };
	int err = hbk_blk_submit(&k->io[i]);
	if (err) {
		k->io[i].error = err;
		crash_done(&k->io[i]);
	}
}

/* Each sector of [off, off+len) must hold the acknowledged data (the
 * shadow) or the data of the write in flight at the kill (alt, or NULL). */
static void check_sectors(struct fixture *f, const uint8_t *got, uint64_t off, uint64_t len,
			  const uint8_t *alt, uint64_t alt_off, uint64_t alt_len)
{
	for (uint64_t s = 0; s < len; s += 512) {
		uint64_t a = off + s;
		if (!memcmp(got + s, f->shadow + a, 512))
			continue;
		if (alt && a >= alt_off && a < alt_off + alt_len && !memcmp(got + s, alt + (a - alt_off), 512))
			continue;
		fail_msg("raid%d: sector at byte %llu lost an acknowledged write", f->level,
			 (unsigned long long)a);
	}
}

static void crash_run(void **state, bool cache)
{
	struct fixture f;
	fixture_init(&f, level_of(state));
	const char *extra = cache ? ",cache=1m" : "";
	struct hbk_lun *l;
	struct hbk_ctl *c = start(&f, HBK_MODE_BUNDLED, extra, &l);
	fill(&f, l, 4);
	if (cache) {
		struct hbk_blk_io fl = { .lun = l, .op = HBK_BLK_FLUSH };
		assert_int_equal(hbk_blk_exec(&fl), 0);
	}
	struct crash k = { .f = &f, .l = l, .lock = PTHREAD_MUTEX_INITIALIZER,
			   .cond = PTHREAD_COND_INITIALIZER, .outstanding = DEPTH,
			   .flush_at = cache ? 200 : 0 };
	assert_non_null(k.durable = malloc(f.size));
	assert_non_null(k.touched = calloc(f.size / REGION, sizeof(*k.touched)));
	memcpy(k.durable, f.shadow, f.size);
	for (unsigned i = 0; i < DEPTH; i++)
		assert_non_null(k.buf[i] = malloc(REGION));
	for (unsigned i = 0; i < DEPTH; i++)
		crash_issue(&k, i);
	/* With the cache: a SYNCHRONIZE CACHE once 200 writes are acknowledged;
	 * what was acknowledged before it was issued must survive the kill. */
	pthread_mutex_lock(&k.lock);
	while (cache && k.acked < k.flush_at)
		pthread_cond_wait(&k.cond, &k.lock);
	if (cache) {
		memcpy(k.durable, f.shadow, f.size);
		k.flushed_acked = k.acked;
		k.after_flush = true;
		for (unsigned i = 0; i < DEPTH; i++)
			if (k.pending[i])
				k.touched[k.off[i] / REGION] = true;
		k.flushing = true;
		k.flush = (struct hbk_blk_io){ .lun = l, .op = HBK_BLK_FLUSH, .done = flush_done, .priv = &k };
		pthread_mutex_unlock(&k.lock);
		assert_int_equal(hbk_blk_submit(&k.flush), 0);
		pthread_mutex_lock(&k.lock);
		while (k.flushing)
			pthread_cond_wait(&k.cond, &k.lock);
		assert_true(k.flushed);
	}
	/* Then the kill, among writes in flight. */
	unsigned target = k.acked + 300;
	while (k.acked < target)
		pthread_cond_wait(&k.cond, &k.lock);
	pthread_mutex_unlock(&k.lock);
	int pid = hbk_ctl_driver_pid(c);
	assert_true(pid > 0);
	assert_int_equal(kill(pid, SIGKILL), 0);
	pthread_mutex_lock(&k.lock);
	while (k.outstanding)
		pthread_cond_wait(&k.cond, &k.lock);
	unsigned in_flight = 0;
	for (unsigned i = 0; i < DEPTH; i++)
		in_flight += k.io[i].error != 0;
	pthread_mutex_unlock(&k.lock);
	hbk_ctl_close(c);

	/* Restarted on the same files: reassembled, resynced (not RAID 0:
	 * it has no redundancy to make agree, so it never goes dirty). */
	tl_capture_begin();
	c = start(&f, HBK_MODE_BUNDLED, extra, &l);
	const char *log = tl_capture_end();
	assert_non_null(strstr(log, "hbk-raid: array a: assembled"));
	if (f.level)
		assert_non_null(strstr(log, "not shut down cleanly: resyncing"));
	/* What must be there: without a cache, every acknowledged write (the
	 * shadow) or, where a write was in flight, its new data; with the
	 * cache, what was flushed, or anything written after the flush. */
	uint8_t *img = malloc(f.size);
	assert_non_null(img);
	struct batch b;
	batch_init(&b);
	for (uint64_t off = 0; off < f.size; off += DEPTH * REGION) {
		for (unsigned i = 0; i < DEPTH && off + i * REGION < f.size; i++)
			batch_submit(&b, i, l, HBK_BLK_READ, off + i * REGION, REGION, f.bs);
		batch_wait(&b);
		for (unsigned i = 0; i < DEPTH && off + i * REGION < f.size; i++) {
			assert_int_equal(b.io[i].error, 0);
			memcpy(img + off + i * REGION, b.buf[i], REGION);
		}
	}
	batch_fini(&b);
	unsigned kept = 0;
	for (uint64_t reg = 0; reg < f.size / REGION; reg++) {
		uint64_t o = reg * REGION;
		unsigned slot = (unsigned)(reg % DEPTH);
		bool pending = k.io[slot].error && k.off[slot] / REGION == reg;
		if (!cache) {
			check_sectors(&f, img + o, o, REGION, pending ? k.buf[slot] : NULL, k.off[slot],
				      k.len[slot]);
		} else if (!k.touched[reg] && memcmp(img + o, k.durable + o, REGION)) {
			/* No write after the flush touched it: the flushed data. */
			fail_msg("raid%d: bytes %llu..%llu lost flushed data", f.level,
				 (unsigned long long)o, (unsigned long long)(o + REGION));
		}
		kept += !memcmp(img + o, f.shadow + o, REGION);
	}
	/* From here on the array holds what was read. */
	memcpy(f.shadow, img, f.size);
	free(img);
	unsigned n = random_load(&f, l, 8, 500);
	check_all(&f, l);
	hbk_ctl_close(c);
	offline_scrub(&f, extra);
	printf("# raid%d crash%s: %u writes acknowledged (%llu before the flush), %u in flight at the "
	       "kill, %u of %llu regions as acknowledged; then %u random writes\n", f.level,
	       cache ? " with cache" : "", k.acked, (unsigned long long)k.flushed_acked, in_flight, kept,
	       (unsigned long long)(f.size / REGION), n);
	for (unsigned i = 0; i < DEPTH; i++)
		free(k.buf[i]);
	free(k.durable);
	free(k.touched);
	fixture_fini(&f);
}

static void crash(void **state)
{
	crash_run(state, false);
}

static void crash_flushed(void **state)
{
	crash_run(state, true);
}

/* Test f at levels[i], named f_raidL. */
#define LEVEL(f, i, l) { #f "_raid" #l, f, NULL, NULL, (void *)&levels[i] }
#define REDUNDANT(f) LEVEL(f, 1, 1), LEVEL(f, 2, 5), LEVEL(f, 3, 6), LEVEL(f, 4, 10)
#define ALL(f) LEVEL(f, 0, 0), REDUNDANT(f)

int main(void)
{
	const struct CMUnitTest tests[] = {
		ALL(healthy), REDUNDANT(degraded), REDUNDANT(rebuild), ALL(crash), ALL(crash_flushed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
