/* SPDX-License-Identifier: MIT */
/*
 * Tests of the RAID engine on memory disks (and one array of files): the
 * layouts and ISA-L parity arithmetic, pattern write/read-back on every level
 * healthy, degraded with each member failed in turn, during a rebuild onto a
 * hot spare and after a simulated power cut and reassembly; scrub after a
 * random write load and against injected corruption; metadata verdicts
 * (missing, stale, foreign, blank, bad CRC or torn, dirty and degraded); the
 * write-back cache; and a member dying in the middle of a write.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <isa-l/crc.h>

#include "hbk/raid.h"
#include "raid/raid_priv.h"

#define KiB 1024u
#define MiB (1024u * 1024u)
#define CHUNK (16 * KiB)
#define MEMBER (512 * KiB)               /* data bytes per member */
#define DISK (MEMBER + DATA_OFFSET)
#define SLOT (32 * KiB)                  /* unit of the verified random I/O */

struct level { enum hbk_raid_level level; unsigned n; };
static const struct level all_levels[] = {
	{ HBK_RAID0, 3 }, { HBK_RAID1, 2 }, { HBK_RAID5, 4 }, { HBK_RAID6, 5 }, { HBK_RAID10, 4 },
};
static const struct level redundant[] = {
	{ HBK_RAID1, 3 }, { HBK_RAID5, 4 }, { HBK_RAID6, 5 }, { HBK_RAID10, 4 },
};

/* ---- Patterns ----------------------------------------------------------------------------- */

static uint64_t word(uint64_t off, uint32_t seed)
{
	uint64_t v = (off + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32 | seed);
	return v ^ v >> 29;
}

static void fill(uint8_t *p, uint64_t off, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = word(off + i, seed);
		memcpy(p + i, &v, 8);
	}
}

/* Whether the 512-byte sector at p holds array offset off written with seed. */
static bool sector_is(const uint8_t *p, uint64_t off, uint32_t seed)
{
	for (size_t i = 0; i < 512; i += 8) {
		uint64_t v;
		memcpy(&v, p + i, 8);
		if (v != word(off + i, seed))
			return false;
	}
	return true;
}

static void *aligned(size_t len)
{
	void *p = NULL;
	assert_int_equal(posix_memalign(&p, 4096, len), 0);
	return p;
}

/* Writes [from, to) with seed in pieces of varied sizes (some cross chunks
 * and stripes, some are full stripes). */
static void write_range(struct hbk_raid *r, uint64_t from, uint64_t to, uint32_t seed)
{
	static const uint32_t sizes[] = { 4 * KiB, 12 * KiB, 64 * KiB, 36 * KiB, 128 * KiB,
					  8 * KiB, 200 * KiB, 512 };
	uint8_t *buf = aligned(200 * KiB);
	unsigned i = 0;
	for (uint64_t off = from; off < to; i++) {
		uint64_t len = HBK_MIN(sizes[i % HBK_ARRAY_SIZE(sizes)], to - off);
		fill(buf, off, len, seed);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, off, len, 0), 0);
		off += len;
	}
	free(buf);
}

static void check_range(struct hbk_raid *r, uint64_t from, uint64_t to, uint32_t seed)
{
	uint8_t *buf = aligned(100 * KiB);
	for (uint64_t off = from; off < to;) {
		uint64_t len = HBK_MIN(100 * KiB - 4 * KiB * (off / 4096 % 7), to - off);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, off, len, 0), 0);
		for (uint64_t s = 0; s < len; s += 512)
			if (!sector_is(buf + s, off + s, seed))
				fail_msg("sector at %llu does not hold seed %u",
					 (unsigned long long)(off + s), seed);
		off += len;
	}
	free(buf);
}

static uint64_t array_size(struct hbk_raid *r)
{
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	return st.size;
}

static void write_all(struct hbk_raid *r, uint32_t seed)
{
	write_range(r, 0, array_size(r), seed);
}

static void check_all(struct hbk_raid *r, uint32_t seed)
{
	check_range(r, 0, array_size(r), seed);
}

/* ---- Arrays ------------------------------------------------------------------------------------ */

static void make_disks(struct hbk_disk **d, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(hbk_disk_open_mem(DISK, &d[i]), 0);
}

static void close_disks(struct hbk_disk **d, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		hbk_disk_close(d[i]);
}

/* Opens n member files /tmp/hbk-raid-NAME-PID-i (made DISK bytes long
 * when create), their paths in path[i]. */
static void open_file_disks(struct hbk_disk **d, char (*path)[64], unsigned n,
			    const char *name, bool create)
{
	struct hbk_disk_file_opts fo = { .create_size = create ? DISK : 0 };
	for (unsigned i = 0; i < n; i++) {
		snprintf(path[i], sizeof(path[i]), "/tmp/hbk-raid-%s-%d-%u", name, (int)getpid(), i);
		assert_int_equal(hbk_disk_open_file(path[i], &fo, &d[i]), 0);
	}
}

static struct hbk_raid *create(const struct level *l, struct hbk_disk **d,
			       const struct hbk_raid_opts *o)
{
	struct hbk_raid_config cfg = { .level = l->level, .chunk = CHUNK, .assume_clean = true };
	struct hbk_raid *r = NULL;
	assert_int_equal(hbk_raid_create(&cfg, d, l->n, o, &r), 0);
	return r;
}

static struct hbk_raid *assemble(struct hbk_disk **d, unsigned n, struct hbk_raid_report *rep)
{
	struct hbk_raid *r = NULL;
	assert_int_equal(hbk_raid_assemble(d, n, NULL, rep, &r), 0);
	return r;
}

static uint8_t state_of(struct hbk_raid *r)
{
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	return st.state;
}

static void scrub_clean(struct hbk_raid *r)
{
	struct hbk_raid_scrub sc;
	assert_int_equal(hbk_raid_scrub(r, false, &sc), 0);
	if (sc.mismatches)
		fail_msg("scrub: %llu mismatches, first at stripe %llu",
			 (unsigned long long)sc.mismatches, (unsigned long long)sc.first_mismatch);
}

/* ---- Asynchronous I/O with a bounded depth ---------------------------------------------------- */

struct load {
	struct hbk_raid *r;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned inflight, done, errors, depth;
	uint32_t *slot_seed;          /* expected seed per SLOT, for verified reads */
	uint8_t *busy;                /* slots with I/O in flight */
};

struct lio {
	struct hbk_raid_io io;
	struct load *l;
	uint32_t seed;
	uint8_t data[];
};

static void lio_done(struct hbk_raid_io *io, int result)
{
	struct lio *x = HBK_CONTAINER_OF(io, struct lio, io);
	struct load *l = x->l;
	bool bad = result != 0;
	if (!result && io->op == HBK_DISK_READ && x->seed)
		for (uint64_t s = 0; s < io->len && !bad; s += 512)
			bad = !sector_is(x->data + s, io->offset + s, x->seed);
	pthread_mutex_lock(&l->lock);
	l->errors += bad;
	l->done++;
	l->inflight--;
	if (l->busy)
		l->busy[io->offset / SLOT] = 0;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	free(x);
}

/* Submits one I/O once fewer than depth are in flight (and, with slots,
 * none on the same slot).  seed: the pattern to write, or to expect on a
 * read (0: do not check; with slots, reads expect the slot's last write). */
static void load_submit(struct load *l, uint8_t op, uint64_t off, uint64_t len, uint32_t seed,
			uint32_t flags)
{
	struct lio *x = malloc(sizeof(*x) + len);
	assert_non_null(x);
	*x = (struct lio){ .l = l, .seed = seed,
		.io = { .op = op, .flags = flags, .offset = off, .len = len, .buf = x->data,
			.done = lio_done } };
	if (op == HBK_DISK_WRITE)
		fill(x->data, off, len, seed);
	pthread_mutex_lock(&l->lock);
	while (l->inflight >= l->depth || (l->busy && l->busy[off / SLOT]))
		pthread_cond_wait(&l->cond, &l->lock);
	l->inflight++;
	if (l->busy)
		l->busy[off / SLOT] = 1;
	if (l->slot_seed && op == HBK_DISK_WRITE)
		l->slot_seed[off / SLOT] = seed;
	else if (l->slot_seed)
		x->seed = l->slot_seed[off / SLOT];
	pthread_mutex_unlock(&l->lock);
	hbk_raid_submit(l->r, &x->io);
}

static void load_wait(struct load *l)
{
	pthread_mutex_lock(&l->lock);
	while (l->inflight)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
}

static void load_init(struct load *l, struct hbk_raid *r, unsigned depth, bool slots)
{
	uint64_t nslots = array_size(r) / SLOT;
	*l = (struct load){ .r = r, .depth = depth, .lock = PTHREAD_MUTEX_INITIALIZER,
			    .cond = PTHREAD_COND_INITIALIZER };
	if (slots) {
		l->slot_seed = calloc(nslots, sizeof(*l->slot_seed));
		l->busy = calloc(nslots, 1);
	}
}

static void load_free(struct load *l)
{
	free(l->slot_seed);
	free(l->busy);
}

/* ---- Layout and parity ------------------------------------------------------------------------- */

static void test_layout(void **state)
{
	(void)state;
	struct hbk_raid *r = calloc(1, sizeof(*r));
	*r = (struct hbk_raid){ .level = HBK_RAID5, .n = 4, .chunk = 4096, .block_size = 512,
				.member_size = 4096 };
	assert_int_equal(raid_geometry(r), 0);
	/* Left-symmetric: parity from the last member down, data after it. */
	static const unsigned r5[4][4] = { { 0, 1, 2, 3 }, { 3, 0, 1, 2 }, { 2, 3, 0, 1 }, { 1, 2, 3, 0 } };
	for (unsigned s = 0; s < 4; s++)
		for (unsigned c = 0; c < 4; c++)   /* c == 3 is P */
			assert_int_equal(raid_col_member(r, s, c), r5[s][c]);
	r->level = HBK_RAID6;
	r->n = 5;
	assert_int_equal(raid_geometry(r), 0);
	/* RAID 6: P as RAID 5, Q on the next member, data after Q. */
	static const unsigned r6[2][5] = { { 1, 2, 3, 4, 0 }, { 0, 1, 2, 3, 4 } };
	for (unsigned s = 0; s < 2; s++)
		for (unsigned c = 0; c < 5; c++)
			assert_int_equal(raid_col_member(r, s, c), r6[s][c]);
	r->level = HBK_RAID10;
	r->n = 3;
	assert_int_equal(raid_geometry(r), -EINVAL);
	r->n = 4;
	r->chunk = 3000;
	assert_int_equal(raid_geometry(r), -EINVAL);
	free(r);
}

static void test_parity_math(void **state)
{
	(void)state;
	enum { LEN = 4096, K = 4 };
	struct hbk_raid *r = calloc(1, sizeof(*r));
	*r = (struct hbk_raid){ .level = HBK_RAID6, .n = K + 2, .chunk = LEN, .block_size = 512,
				.member_size = LEN };
	assert_int_equal(raid_geometry(r), 0);
	uint8_t *mem = aligned((K + 3) * LEN), *cols[K + 2], *keep = aligned((K + 2) * LEN);
	for (unsigned c = 0; c < K + 2; c++)
		cols[c] = mem + c * LEN;
	for (unsigned c = 0; c < K; c++)
		fill(cols[c], c * LEN, LEN, 11);
	raid_gen_parity(r, cols, LEN);
	assert_true(raid_parity_ok(r, cols, LEN));
	memcpy(keep, mem, (K + 2) * LEN);

	/* ISA-L's decoder rebuilds every pair of lost columns. */
	for (unsigned a = 0; a < K + 2; a++)
		for (unsigned b = a; b < K + 2; b++) {
			memset(cols[a], 0, LEN);
			memset(cols[b], 0, LEN);
			assert_int_equal(raid_recover(r, cols, 1u << a | 1u << b, LEN), 0);
			assert_memory_equal(mem, keep, (K + 2) * LEN);
		}
	assert_int_equal(raid_recover(r, cols, 7, LEN), -EIO);

	/* Read-modify-write of column 2 gives the parity a full recompute gives. */
	uint8_t *delta = mem + (K + 2) * LEN;
	fill(delta, 0, LEN, 12);                       /* the change */
	for (unsigned i = 0; i < LEN; i++)
		cols[2][i] ^= delta[i];
	raid_update_pq(r, 2, delta, &cols[K], LEN);
	assert_true(raid_parity_ok(r, cols, LEN));
	cols[K + 1][100] ^= 1;
	assert_false(raid_parity_ok(r, cols, LEN));

	/* RAID 5: the xor of the others. */
	r->level = HBK_RAID5;
	r->n = K + 1;
	assert_int_equal(raid_geometry(r), 0);
	raid_gen_parity(r, cols, LEN);
	memcpy(keep, mem, (K + 1) * LEN);
	for (unsigned a = 0; a < K + 1; a++) {
		memset(cols[a], 0xee, LEN);
		assert_int_equal(raid_recover(r, cols, 1u << a, LEN), 0);
		assert_memory_equal(mem, keep, (K + 1) * LEN);
	}
	free(mem);
	free(keep);
	free(r);
}

/* ---- Healthy, degraded, rebuilding ------------------------------------------------------------- */

static void test_healthy_every_level(void **state)
{
	(void)state;
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(all_levels); li++) {
		const struct level *l = &all_levels[li];
		struct hbk_disk *d[8];
		struct hbk_raid_report rep;
		make_disks(d, l->n);
		struct hbk_raid *r = create(l, d, NULL);
		assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
		write_all(r, 1 + li);
		check_all(r, 1 + li);
		scrub_clean(r);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
		hbk_raid_close(r);

		/* Reassembled from the disks in another order. */
		struct hbk_disk *rev[8];
		for (unsigned i = 0; i < l->n; i++)
			rev[i] = d[l->n - 1 - i];
		r = assemble(rev, l->n, &rep);
		assert_false(rep.dirty);
		assert_int_equal(rep.nmissing + rep.nstale + rep.nforeign + rep.nblank, 0);
		for (unsigned i = 0; i < l->n; i++)
			assert_int_equal(rep.disk[i].slot, (int)(l->n - 1 - i));
		check_all(r, 1 + li);
		hbk_raid_close(r);
		close_disks(d, l->n);
	}
}

/* hbk_raid_fail_stops: which failure would leave each level without the
 * members it needs.  Failing in slot order: RAID 0 stops at the first,
 * RAID 1 (2 copies) and RAID 5 at the second, RAID 6 at the third; RAID
 * 10 (pairs 0-1, 2-3) not at slot 2 once 0 failed, but at 1. */
static void test_fail_stops(void **state)
{
	(void)state;
	static const unsigned first_stop[] = { 0, 1, 1, 2 };   /* all_levels[0..3] */
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(all_levels); li++) {
		const struct level *l = &all_levels[li];
		struct hbk_disk *d[5];
		make_disks(d, l->n);
		struct hbk_raid *r = create(l, d, NULL);
		assert_false(hbk_raid_fail_stops(r, l->n));     /* no such slot */
		if (l->level == HBK_RAID10) {
			assert_int_equal(hbk_raid_fail(r, 0), 0);
			assert_false(hbk_raid_fail_stops(r, 2));
			assert_true(hbk_raid_fail_stops(r, 1));
		} else {
			for (unsigned s = 0; s < first_stop[li]; s++) {
				assert_false(hbk_raid_fail_stops(r, s));
				assert_int_equal(hbk_raid_fail(r, s), 0);
			}
			assert_true(hbk_raid_fail_stops(r, first_stop[li]));
			assert_int_equal(hbk_raid_fail(r, first_stop[li]), 0);
			assert_int_equal(state_of(r), HBK_RAID_FAILED);
			assert_false(hbk_raid_fail_stops(r, l->n - 1));  /* stopped already */
		}
		hbk_raid_close(r);
		close_disks(d, l->n);
	}
}

/* An array that failed comes back under force with the members that
 * failed last, which saw every acknowledged write; an earlier failed one,
 * which missed the writes taken without it, never does.  (A RAID 1 fails
 * only with its last member, whose failure no member is left to record.) */
static void test_failed_array_forced_back(void **state)
{
	(void)state;
	static const unsigned fails[] = { 1, 2, 2, 3, 2 };   /* all_levels: failures to stop */
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(all_levels); li++) {
		const struct level *l = &all_levels[li];
		struct hbk_disk *d[5];
		struct hbk_raid_report rep;
		struct hbk_raid_opts force = { .force = true };
		struct hbk_raid *r;
		make_disks(d, l->n);
		r = create(l, d, NULL);
		uint64_t size = array_size(r), part = size / 4;
		write_all(r, 1100);
		/* Slots 0, 1, 2 fail in turn, a part written after each but the last. */
		for (unsigned s = 0; s < fails[li]; s++) {
			assert_int_equal(hbk_raid_fail(r, s), 0);
			if (s + 1 < fails[li])
				write_range(r, s * part, (s + 1) * part, 1101 + s);
		}
		assert_int_equal(state_of(r), HBK_RAID_FAILED);
		hbk_raid_close(r);
		unsigned last = fails[li] - 1;

		if (l->level == HBK_RAID1) {
			/* No member was left to record the last failure: the
			 * last disk's superblock still has it in use. */
			r = assemble(d, l->n, &rep);
			assert_int_equal(rep.forced, 0);
			assert_int_equal(rep.disk[last].verdict, HBK_RAID_DISK_MEMBER);
			check_range(r, 0, part, 1101);
			check_range(r, part, size, 1100);
			hbk_raid_close(r);
			close_disks(d, l->n);
			continue;
		}
		assert_int_equal(hbk_raid_assemble(d, l->n, NULL, &rep, &r), -ENODEV);
		assert_int_equal(rep.forced, 0);
		if (last > 0) {
			/* Without the last one, force has nothing to take. */
			struct hbk_disk *without[5];
			unsigned m = 0;
			for (unsigned i = 0; i < l->n; i++)
				if (i != last)
					without[m++] = d[i];
			assert_int_equal(hbk_raid_assemble(without, m, &force, &rep, &r), -ENODEV);
			assert_int_equal(rep.forced, 0);
		}
		assert_int_equal(hbk_raid_assemble(d, l->n, &force, &rep, &r), 0);
		assert_int_equal(rep.forced, 1u << last);
		assert_int_equal(rep.disk[last].verdict, HBK_RAID_DISK_MEMBER);
		for (unsigned s = 0; s < last; s++)
			assert_int_equal(rep.disk[s].verdict, HBK_RAID_DISK_STALE);
		assert_true(rep.dirty);
		assert_int_equal(state_of(r), last ? HBK_RAID_DEGRADED : HBK_RAID_OPTIMAL);
		for (unsigned s = 0; s < last; s++)
			check_range(r, s * part, (s + 1) * part, 1101 + s);
		check_range(r, last * part, size, 1100);
		write_range(r, 0, part, 1110);
		hbk_raid_close(r);

		/* Recorded: the next assembly needs no force. */
		r = assemble(d, l->n, &rep);
		assert_int_equal(rep.forced, 0);
		check_range(r, 0, part, 1110);
		if (last) {
			/* The stale ones are put back by a rebuild. */
			for (unsigned s = 0; s < last; s++)
				assert_int_equal(hbk_raid_replace(r, s, d[s]), 0);
			assert_int_equal(hbk_raid_wait(r, 20000), 0);
			assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
			if (l->level != HBK_RAID0)
				scrub_clean(r);
			check_range(r, 0, part, 1110);
		}
		hbk_raid_close(r);
		close_disks(d, l->n);
	}
}

/* Reads the whole array and checks every byte is c. */
static void check_fill(struct hbk_raid *r, char c)
{
	uint64_t size = array_size(r);
	uint8_t *buf = aligned(size);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 0, size, 0), 0);
	for (uint64_t i = 0; i < size; i++)
		if (buf[i] != (uint8_t)c)
			fail_msg("byte %llu is 0x%02x, not '%c'", (unsigned long long)i, buf[i], c);
	free(buf);
}

static void write_fill(struct hbk_raid *r, char c, uint64_t len)
{
	uint8_t *buf = aligned(len);
	memset(buf, c, len);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, len, 0), 0);
	free(buf);
}

/* Where force takes nothing back, or only what holds every acknowledged
 * write: two disks of the same last generation where one would do (which
 * failed first, missing writes, cannot be told), a replacement that was
 * still rebuilding, and disks an accepted split brain dismissed. */
static void test_forced_back_only_what_is_certain(void **state)
{
	(void)state;
	struct hbk_raid_opts force = { .force = true };
	struct hbk_raid_report rep;
	struct hbk_raid *r;
	struct hbk_disk *d[4];

	/* RAID 5 of 3: a write fails member 0 and is redone degraded; the
	 * round recording that fails member 1's superblock write, and the
	 * array with it.  The write is not acknowledged, and members 0 and 1
	 * share the last generation: neither is taken. */
	make_disks(d, 3);
	struct hbk_raid_opts slow_clean = { .clean_delay_ms = 600000 };
	struct hbk_raid_config cfg = { .level = HBK_RAID5, .chunk = CHUNK, .assume_clean = true };
	assert_int_equal(hbk_raid_create(&cfg, d, 3, &slow_clean, &r), 0);
	write_fill(r, 'A', array_size(r));
	unsigned x = raid_col_member(r, 0, 0), y = raid_col_member(r, 0, 1);
	struct hbk_disk_fault dead = { .fail_all = true }, one_more = { .write_budget = 1 };
	hbk_disk_inject(d[x], &dead);
	hbk_disk_inject(d[y], &one_more);
	uint8_t *buf = aligned(CHUNK);
	memset(buf, 'B', CHUNK);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, CHUNK, 0), -EIO);
	free(buf);
	assert_int_equal(state_of(r), HBK_RAID_FAILED);
	hbk_raid_close(r);
	hbk_disk_inject(d[x], NULL);
	hbk_disk_inject(d[y], NULL);
	assert_int_equal(hbk_raid_assemble(d, 3, &force, &rep, &r), -ENODEV);
	assert_int_equal(rep.forced, 0);
	close_disks(d, 3);

	/* RAID 5 of 3: slot 0's replacement (disk 3) fails mid-rebuild, and
	 * the round recording it fails slot 2.  Slot 2 comes back; the half
	 * rebuilt disk 3 does not. */
	make_disks(d, 4);
	struct hbk_raid_opts slow_rebuild = { .rebuild_rate = 32 * KiB };
	assert_int_equal(hbk_raid_create(&cfg, d, 3, &slow_rebuild, &r), 0);
	write_fill(r, 'A', array_size(r));
	assert_int_equal(hbk_raid_fail(r, 0), 0);
	assert_int_equal(hbk_raid_replace(r, 0, d[3]), 0);
	usleep(300000);
	assert_int_equal(state_of(r), HBK_RAID_REBUILDING);
	hbk_disk_inject(d[2], &one_more);
	assert_int_equal(hbk_raid_fail(r, 0), 0);
	assert_int_equal(state_of(r), HBK_RAID_FAILED);
	hbk_raid_close(r);
	hbk_disk_inject(d[2], NULL);
	struct hbk_disk *as[3] = { d[3], d[1], d[2] };
	assert_int_equal(hbk_raid_assemble(as, 3, &force, &rep, &r), 0);
	assert_int_equal(rep.forced, 1u << 2);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	check_fill(r, 'A');
	hbk_raid_close(r);
	close_disks(d, 4);

	/* RAID 10 of 4: {0,2} and {1,3} each ran alone; the split brain is
	 * accepted for {1,3}, which then loses slot 1.  Forced, {0,2,3} is
	 * refused: 0 and 2 were dismissed, their data is the dropped side's. */
	make_disks(d, 4);
	struct hbk_raid_opts quick = { .clean_delay_ms = 20 };
	struct hbk_raid_config cfg10 = { .level = HBK_RAID10, .chunk = CHUNK, .assume_clean = true };
	assert_int_equal(hbk_raid_create(&cfg10, d, 4, &quick, &r), 0);
	uint64_t size = array_size(r);
	write_fill(r, 'A', size);
	hbk_raid_close(r);
	struct hbk_raid_opts alone = { .clean_delay_ms = 20, .force = true };
	struct hbk_disk *s1[2] = { d[0], d[2] }, *s2[2] = { d[1], d[3] };
	assert_int_equal(hbk_raid_assemble(s1, 2, &alone, &rep, &r), 0);
	write_fill(r, 'S', size);
	hbk_raid_close(r);
	assert_int_equal(hbk_raid_assemble(s2, 2, &alone, &rep, &r), 0);
	for (int i = 0; i < 5; i++) {
		write_fill(r, 'K', size);
		usleep(100000);
	}
	hbk_raid_close(r);
	struct hbk_raid_opts accept = { .clean_delay_ms = 20, .accept_split_brain = true };
	assert_int_equal(hbk_raid_assemble(d, 4, &accept, &rep, &r), 0);
	assert_true(rep.split_brain);
	write_fill(r, 'W', size);
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	assert_int_equal(state_of(r), HBK_RAID_FAILED);
	hbk_raid_close(r);
	struct hbk_disk *rest[3] = { d[0], d[2], d[3] };
	assert_int_equal(hbk_raid_assemble(rest, 3, &force, &rep, &r), -ENODEV);
	assert_int_equal(rep.forced, 0);
	close_disks(d, 4);
}

static void test_bad_requests(void **state)
{
	(void)state;
	struct hbk_disk *d[3];
	uint8_t *buf = aligned(8192);
	make_disks(d, 3);
	struct hbk_raid *r = create(&all_levels[0], d, NULL);
	uint64_t size = array_size(r);
	assert_int_equal(size, 3 * MEMBER);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 100, 512, 0), -EINVAL);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 0, 100, 0), -EINVAL);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, size - 512, 1024, 0), -EINVAL);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, NULL, 0, 512, 0), -EINVAL);
	/* RAID 0 without a member has lost data: everything fails. */
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	assert_int_equal(hbk_raid_fail(r, 1), -EALREADY);
	assert_int_equal(state_of(r), HBK_RAID_FAILED);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 0, 4096, 0), -EIO);
	assert_int_equal(hbk_raid_replace(r, 1, d[1]), -EINVAL);
	hbk_raid_close(r);
	/* The same checks in front of the write-back cache. */
	r = create(&all_levels[1], d, &(struct hbk_raid_opts){ .cache_bytes = 256 * KiB });
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, NULL, 0, 512, 0), -EINVAL);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, NULL, 0, 512, 0), -EINVAL);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 100, 512, 0), -EINVAL);
	hbk_raid_close(r);

	struct hbk_raid_config cfg = { .level = HBK_RAID5, .chunk = CHUNK };
	assert_int_equal(hbk_raid_create(&cfg, d, 2, NULL, &r), -EINVAL);
	/* A cache the machine cannot hold would take acknowledged writes
	 * with it when the process is killed for memory. */
	struct hbk_raid_opts huge = { .cache_bytes = UINT64_MAX / 2 };
	assert_int_equal(hbk_raid_create(&cfg, d, 3, &huge, &r), -E2BIG);
	assert_int_equal(hbk_raid_assemble(d, 3, &huge, NULL, &r), -E2BIG);
	cfg.chunk = 3 * KiB;
	assert_int_equal(hbk_raid_create(&cfg, d, 3, NULL, &r), -EINVAL);
	struct hbk_disk *same[3] = { d[0], d[1], d[0] };
	cfg.chunk = CHUNK;
	assert_int_equal(hbk_raid_create(&cfg, same, 3, NULL, &r), -EINVAL);
	close_disks(d, 3);
	free(buf);
}

/* Fails the members in `mask`, checks the data, writes and checks more,
 * then replaces them with new disks and lets them rebuild. */
static void degrade_and_rebuild(const struct level *l, uint32_t mask, uint32_t seed)
{
	struct hbk_disk *d[8], *fresh[8];
	make_disks(d, l->n);
	struct hbk_raid *r = create(l, d, NULL);
	uint64_t size = array_size(r);
	write_all(r, seed);
	for (unsigned i = 0; i < l->n; i++)
		if (mask & (1u << i))
			assert_int_equal(hbk_raid_fail(r, i), 0);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	check_all(r, seed);                           /* degraded reads */
	write_range(r, size / 4, size * 3 / 4, seed + 100);   /* degraded writes */
	check_range(r, 0, size / 4, seed);
	check_range(r, size / 4, size * 3 / 4, seed + 100);
	for (unsigned i = 0; i < l->n; i++)
		if (mask & (1u << i)) {
			assert_int_equal(hbk_disk_open_mem(DISK, &fresh[i]), 0);
			assert_int_equal(hbk_raid_replace(r, i, fresh[i]), 0);
		}
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	scrub_clean(r);
	hbk_raid_close(r);
	for (unsigned i = 0; i < l->n; i++)
		if (mask & (1u << i)) {
			hbk_disk_close(d[i]);
			d[i] = fresh[i];
		}
	/* Reassembled with the rebuilt disks in place of the failed ones. */
	struct hbk_raid_report rep;
	r = assemble(d, l->n, &rep);
	assert_int_equal(rep.nstale, 0);
	check_range(r, 0, size / 4, seed);
	check_range(r, size / 4, size * 3 / 4, seed + 100);
	check_range(r, size * 3 / 4, size, seed);
	hbk_raid_close(r);
	close_disks(d, l->n);
}

static void test_degraded_each_member(void **state)
{
	(void)state;
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(redundant); li++)
		for (unsigned i = 0; i < redundant[li].n; i++)
			degrade_and_rebuild(&redundant[li], 1u << i, 10 * li + i + 1);
}

static void test_raid6_two_failures(void **state)
{
	(void)state;
	static const struct level r6 = { HBK_RAID6, 5 };
	for (unsigned i = 0; i < r6.n; i++)
		degrade_and_rebuild(&r6, 1u << i | 1u << ((i + 2) % r6.n), 50 + i);
	static const struct level r10 = { HBK_RAID10, 4 };
	degrade_and_rebuild(&r10, 1u << 0 | 1u << 3, 60);   /* one of each pair */
}

/* A member fails with a hot spare present; verified I/O runs while the spare
 * is rebuilt (slowly) and after. */
static void rebuild_under_io(const struct level *l, uint32_t seed)
{
	struct hbk_disk *d[8], *spare;
	make_disks(d, l->n);
	assert_int_equal(hbk_disk_open_mem(DISK, &spare), 0);
	struct hbk_raid *r = create(l, d, NULL);
	write_all(r, seed);
	assert_int_equal(hbk_raid_add_spare(r, spare), 0);
	hbk_raid_set_rebuild_rate(r, 4 * MiB);        /* a member takes ~125 ms */

	struct load ld;
	load_init(&ld, r, 8, true);
	uint64_t nslots = array_size(r) / SLOT;
	for (uint64_t s = 0; s < nslots; s++)
		ld.slot_seed[s] = seed;
	assert_int_equal(hbk_raid_fail(r, 1), 0);

	struct hbk_raid_status st;
	bool seen_progress = false;
	unsigned i = 0;
	do {
		uint64_t s = (i * 2654435761u) % nslots;
		if (i % 3)
			load_submit(&ld, HBK_DISK_READ, s * SLOT, SLOT, 0, 0);
		else
			load_submit(&ld, HBK_DISK_WRITE, s * SLOT, SLOT, seed + 1000 + i, 0);
		hbk_raid_status(r, &st);
		seen_progress |= st.state == HBK_RAID_REBUILDING && st.rebuild_done > 0 &&
				 st.rebuild_done < st.rebuild_total;
		i++;
	} while (st.state == HBK_RAID_REBUILDING || i < 64);
	load_wait(&ld);
	assert_int_equal(ld.errors, 0);
	assert_true(seen_progress);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	hbk_raid_status(r, &st);
	assert_int_equal(st.state, HBK_RAID_OPTIMAL);
	assert_true(st.member[1].disk == spare);
	assert_int_equal(st.spares, 0);
	for (uint64_t s = 0; s < nslots; s++)
		check_range(r, s * SLOT, (s + 1) * SLOT, ld.slot_seed[s]);
	scrub_clean(r);
	load_free(&ld);
	hbk_raid_close(r);
	close_disks(d, l->n);
	hbk_disk_close(spare);
}

static void test_rebuild_under_io(void **state)
{
	(void)state;
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(redundant); li++)
		rebuild_under_io(&redundant[li], 200 + 10 * li);
}

/* A rebuild stopped by a clean shutdown goes on from where it was. */
static void test_rebuild_resumes_after_restart(void **state)
{
	(void)state;
	const struct level *l = &all_levels[2];   /* RAID 5 of 4 */
	struct hbk_disk *d[5];
	struct hbk_raid_status st;
	struct hbk_raid_report rep;
	make_disks(d, 5);
	struct hbk_raid *r = create(l, d, NULL);
	write_all(r, 250);
	assert_int_equal(hbk_raid_add_spare(r, d[4]), 0);
	hbk_raid_set_rebuild_rate(r, 1 * MiB);
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	do {
		usleep(5000);
		hbk_raid_status(r, &st);
	} while (st.rebuild_done < 64 * KiB);
	hbk_raid_close(r);

	struct hbk_disk *set[4] = { d[0], d[4], d[2], d[3] };   /* the spare holds slot 1 now */
	struct hbk_raid_opts o = { .rebuild_rate = 1 * MiB };
	assert_int_equal(hbk_raid_assemble(set, 4, &o, &rep, &r), 0);
	hbk_raid_status(r, &st);
	assert_int_equal(st.state, HBK_RAID_REBUILDING);
	assert_true(st.member[1].disk == d[4]);
	assert_true(st.member[1].rebuilt >= 64 * KiB);
	check_all(r, 250);   /* rebuilt part from the spare, the rest from parity */
	hbk_raid_set_rebuild_rate(r, 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	check_all(r, 250);
	scrub_clean(r);
	hbk_raid_close(r);
	close_disks(d, 5);
}

/* Discards reach the members where they keep the redundancy consistent. */
/* Discards read back as zeros, and leave copies and parity consistent,
 * also when a member's device refuses them (it then writes zeros): a
 * refused discard fails no member. */
static void test_discard(void **state)
{
	(void)state;
	static const struct level lv[] = { { HBK_RAID0, 3 }, { HBK_RAID1, 2 }, { HBK_RAID5, 4 } };
	uint8_t *buf = aligned(256 * KiB);
	for (unsigned li = 0; li < 2 * HBK_ARRAY_SIZE(lv); li++) {
		bool refuse = li >= HBK_ARRAY_SIZE(lv);
		struct hbk_disk *d[4];
		make_disks(d, lv[li % 3].n);
		struct hbk_raid *r = create(&lv[li % 3], d, NULL);
		write_range(r, 0, 256 * KiB, 260 + li);
		if (refuse)
			hbk_disk_inject(d[0], &(struct hbk_disk_fault){ .refuse_discards = true,
								       .error = -EOPNOTSUPP });
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_DISCARD, NULL, 40 * KiB, 160 * KiB, 0), 0);
		assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
		/* RAID 5 (48 KiB stripes) only drops whole stripes. */
		uint64_t z0 = lv[li % 3].level == HBK_RAID5 ? 48 * KiB : 40 * KiB;
		uint64_t z1 = lv[li % 3].level == HBK_RAID5 ? 192 * KiB : 200 * KiB;
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 0, 256 * KiB, 0), 0);
		for (uint64_t off = 0; off < 256 * KiB; off += 512) {
			bool zero = off >= z0 && off < z1;
			if (zero)
				for (unsigned i = 0; i < 512; i++)
					assert_int_equal(buf[off + i], 0);
			else
				assert_true(sector_is(buf + off, off, 260 + li));
		}
		scrub_clean(r);
		hbk_raid_close(r);
		close_disks(d, lv[li % 3].n);
	}
	free(buf);
}

/* ---- Crashes ------------------------------------------------------------------------------------ */

static void power_cut(struct hbk_disk **d, unsigned n, bool on)
{
	struct hbk_disk_fault f = { .drop_writes = true };
	for (unsigned i = 0; i < n; i++)
		hbk_disk_inject(d[i], on ? &f : NULL);
}

/*
 * Writes pattern A everywhere, then overwrites 32 slots with B while the
 * power goes (writes stop reaching the disks, nobody is told), "crashes"
 * the array and reassembles it: every sector must hold A, or A or B in the
 * slots B was written to, and after the resync the redundancy must agree.
 */
static void crash(const struct level *l, const struct hbk_raid_opts *o, uint32_t a, uint32_t b)
{
	struct hbk_disk *d[8];
	struct hbk_raid_report rep;
	make_disks(d, l->n);
	struct hbk_raid *r = create(l, d, o);
	uint64_t nslots = array_size(r) / SLOT;
	write_all(r, a);
	if (o && o->cache_bytes)
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);

	struct load ld;
	load_init(&ld, r, 8, false);
	uint8_t *hit = calloc(nslots, 1);
	for (unsigned i = 0; i < 32; i++) {
		uint64_t s = (i * 40503u + 7) % nslots;
		hit[s] = 1;
		load_submit(&ld, HBK_DISK_WRITE, s * SLOT, SLOT, b, 0);
		if (i == 12)
			power_cut(d, l->n, true);
	}
	load_wait(&ld);
	assert_int_equal(ld.errors, 0);
	hbk_raid_close(r);
	power_cut(d, l->n, false);

	r = assemble(d, l->n, &rep);
	if (!o)   /* with a cache, the cut may come before any write reached the members */
		assert_int_equal(rep.dirty, l->level != HBK_RAID0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	scrub_clean(r);
	uint8_t *buf = aligned(SLOT);
	unsigned torn = 0;
	for (uint64_t s = 0; s < nslots; s++) {
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, s * SLOT, SLOT, 0), 0);
		for (unsigned x = 0; x < SLOT; x += 512) {
			uint64_t off = s * SLOT + x;
			if (sector_is(buf + x, off, a))
				continue;
			if (!hit[s] || !sector_is(buf + x, off, b))
				fail_msg("%s: sector %llu holds neither pattern",
					 hbk_raid_level_name(l->level), (unsigned long long)off);
			torn++;
		}
	}
	hbk_raid_close(r);
	close_disks(d, l->n);
	free(buf);
	free(hit);
	load_free(&ld);
}

static void test_crash_every_level(void **state)
{
	(void)state;
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(all_levels); li++)
		crash(&all_levels[li], NULL, 300 + li, 400 + li);
}

static void test_crash_with_cache(void **state)
{
	(void)state;
	struct hbk_raid_opts o = { .cache_bytes = 256 * KiB };
	crash(&all_levels[2], &o, 500, 501);   /* RAID 5 */
	crash(&all_levels[4], &o, 502, 503);   /* RAID 10 */
}

/* A member dies in the middle of a write load: the array goes on degraded,
 * nothing is lost, and the dead disk is stale at the next assembly. */
static void test_member_dies_mid_write(void **state)
{
	(void)state;
	const struct level *l = &all_levels[2];   /* RAID 5 */
	struct hbk_disk *d[4];
	struct hbk_raid_report rep;
	make_disks(d, l->n);
	struct hbk_raid *r = create(l, d, NULL);
	hbk_disk_inject(d[2], &(struct hbk_disk_fault){ .write_budget = 100 * KiB + 512 });
	write_all(r, 600);
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	assert_int_equal(st.state, HBK_RAID_DEGRADED);
	assert_int_equal(st.member[2].state, HBK_RAID_MEMBER_FAILED);
	assert_true(st.member_errors >= 1);
	check_all(r, 600);
	hbk_raid_close(r);
	hbk_disk_inject(d[2], NULL);

	r = assemble(d, l->n, &rep);
	assert_int_equal(rep.disk[2].verdict, HBK_RAID_DISK_STALE);
	assert_int_equal(rep.nstale, 1);
	assert_int_equal(rep.missing, 1u << 2);
	check_all(r, 600);
	hbk_raid_close(r);
	close_disks(d, l->n);
}

/* ---- Scrub --------------------------------------------------------------------------------------- */

static void *write_load(void *arg)
{
	struct load *l = arg;
	uint64_t size = array_size(l->r);
	uint32_t x = (uint32_t)(uintptr_t)l ^ 0x1234567u;
	for (unsigned i = 0; i < 80; i++) {
		x = x * 1103515245u + 12345u;
		uint64_t len = (1 + (x >> 8) % 24) * 4 * KiB;
		uint64_t off = ((x >> 4) % (size / 512)) * 512;
		if (off + len > size)
			off = size - len;
		load_submit(l, HBK_DISK_WRITE, off, len, i + 1, 0);
	}
	load_wait(l);
	return NULL;
}

static void test_scrub_after_random_load(void **state)
{
	(void)state;
	static const struct level lv[] = { { HBK_RAID5, 5 }, { HBK_RAID6, 7 }, { HBK_RAID10, 4 },
					   { HBK_RAID1, 2 } };
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(lv); li++) {
		struct hbk_disk *d[8];
		make_disks(d, lv[li].n);
		struct hbk_raid *r = create(&lv[li], d, NULL);
		struct load ld[3];
		pthread_t t[3];
		for (unsigned i = 0; i < 3; i++) {
			load_init(&ld[i], r, 8, false);
			assert_int_equal(pthread_create(&t[i], NULL, write_load, &ld[i]), 0);
		}
		for (unsigned i = 0; i < 3; i++) {
			pthread_join(t[i], NULL);
			assert_int_equal(ld[i].errors, 0);
			load_free(&ld[i]);
		}
		scrub_clean(r);
		struct hbk_raid_status st;
		hbk_raid_status(r, &st);
		if (lv[li].level == HBK_RAID5 || lv[li].level == HBK_RAID6) {
			assert_true(st.rmw_writes > 0);
			assert_true(st.rcw_writes + st.full_stripe_writes > 0);
			printf("# %s: %llu full-stripe, %llu read-modify-write, %llu reconstruct-write stripes\n",
			       hbk_raid_level_name(lv[li].level), (unsigned long long)st.full_stripe_writes,
			       (unsigned long long)st.rmw_writes, (unsigned long long)st.rcw_writes);
		}
		hbk_raid_close(r);
		close_disks(d, lv[li].n);
	}
}

static void test_scrub_finds_corruption(void **state)
{
	(void)state;
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(redundant); li++) {
		const struct level *l = &redundant[li];
		struct hbk_disk *d[8];
		make_disks(d, l->n);
		struct hbk_raid *r = create(l, d, NULL);
		write_all(r, 700 + li);
		scrub_clean(r);

		/* Flip a byte on one member in stripe 5: a parity column at
		 * RAID 5/6, the second copy at RAID 1/10. */
		uint64_t stripe = 5;
		unsigned victim = r->np ? raid_col_member(r, stripe, r->k) : 1;
		uint8_t *buf = aligned(4096);
		uint64_t at = DATA_OFFSET + stripe * CHUNK + 4096;
		assert_int_equal(hbk_disk_rw(d[victim], HBK_DISK_READ, buf, at, 4096, 0), 0);
		buf[123] ^= 0x40;
		assert_int_equal(hbk_disk_rw(d[victim], HBK_DISK_WRITE, buf, at, 4096, 0), 0);

		struct hbk_raid_scrub sc;
		assert_int_equal(hbk_raid_scrub(r, false, &sc), 0);
		assert_int_equal(sc.stripes, MEMBER / CHUNK);
		assert_int_equal(sc.mismatches, 1);
		assert_int_equal(sc.first_mismatch, stripe);
		struct hbk_disk_stats before, after;
		hbk_disk_stats(d[victim], &before);
		assert_int_equal(hbk_raid_scrub(r, true, &sc), 0);
		assert_int_equal(sc.repaired, 1);
		hbk_disk_stats(d[victim], &after);
		assert_true(after.flushes > before.flushes);   /* repaired means on the media */
		scrub_clean(r);
		check_all(r, 700 + li);
		free(buf);
		hbk_raid_close(r);
		close_disks(d, l->n);
	}
}

/* ---- Metadata ------------------------------------------------------------------------------------- */

static void test_metadata_verdicts(void **state)
{
	(void)state;
	const struct level *l = &all_levels[2];   /* RAID 5 of 4 */
	struct hbk_disk *d[4], *other[2], *blank;
	struct hbk_raid_report rep;
	struct hbk_raid *r;
	make_disks(d, 4);
	make_disks(other, 2);
	assert_int_equal(hbk_disk_open_mem(DISK, &blank), 0);
	r = create(l, d, NULL);
	write_all(r, 800);
	hbk_raid_close(r);

	/* Missing: slot 2 absent; the array runs degraded. */
	struct hbk_disk *three[3] = { d[3], d[0], d[1] };
	r = assemble(three, 3, &rep);
	assert_int_equal(rep.nmissing, 1);
	assert_int_equal(rep.missing, 1u << 2);
	assert_int_equal(rep.disk[0].slot, 3);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	check_all(r, 800);
	uint64_t gen = rep.generation;
	hbk_raid_close(r);

	/* Stale: slot 2's disk is back, but the array moved on without it. */
	r = assemble(d, 4, &rep);
	assert_int_equal(rep.disk[2].verdict, HBK_RAID_DISK_STALE);
	assert_true(rep.disk[2].generation < rep.generation);
	assert_true(rep.generation > gen);
	assert_int_equal(rep.nstale, 1);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	assert_int_equal(hbk_raid_replace(r, 2, d[2]), 0);   /* taken back by a rebuild */
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	hbk_raid_close(r);

	/* Foreign: another array's disk; blank: a disk never used. */
	struct hbk_raid_config cfg = { .level = HBK_RAID1, .chunk = CHUNK, .assume_clean = true };
	struct hbk_raid *r1;
	assert_int_equal(hbk_raid_create(&cfg, other, 2, NULL, &r1), 0);
	struct hbk_raid_status st1;
	hbk_raid_status(r1, &st1);
	hbk_raid_close(r1);
	struct hbk_disk *mix[6] = { d[0], other[0], d[1], blank, d[2], d[3] };
	r = assemble(mix, 6, &rep);
	assert_int_equal(rep.disk[1].verdict, HBK_RAID_DISK_FOREIGN);
	assert_int_equal(rep.disk[3].verdict, HBK_RAID_DISK_BLANK);
	assert_int_equal(rep.nforeign, 1);
	assert_int_equal(rep.nblank, 1);
	assert_int_equal(rep.nmissing, 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	check_all(r, 800);
	hbk_raid_close(r);

	/* The same disks, asking for the other array by UUID. */
	struct hbk_disk *mix2[6] = { d[0], other[0], d[1], other[1], d[2], d[3] };
	struct hbk_raid_opts o = { .uuid = st1.uuid };
	assert_int_equal(hbk_raid_assemble(mix2, 6, &o, &rep, &r1), 0);
	assert_int_equal(rep.nforeign, 4);
	assert_int_equal(rep.disk[3].slot, 1);
	hbk_raid_close(r1);

	/* A bad CRC makes a disk damaged, never a member. */
	uint8_t *sb = aligned(4096);
	assert_int_equal(hbk_disk_rw(d[3], HBK_DISK_READ, sb, 0, 4096, 0), 0);
	sb[2000] ^= 1;
	assert_int_equal(hbk_disk_rw(d[3], HBK_DISK_WRITE, sb, 0, 4096, 0), 0);
	r = assemble(d, 4, &rep);
	assert_int_equal(rep.disk[3].verdict, HBK_RAID_DISK_DAMAGED);
	assert_int_equal(rep.missing, 1u << 3);
	check_all(r, 800);
	hbk_raid_close(r);

	/* Nothing to assemble. */
	assert_int_equal(hbk_raid_assemble(&blank, 1, NULL, &rep, &r), -ENODEV);
	assert_int_equal(rep.nblank, 1);
	free(sb);
	close_disks(d, 4);
	close_disks(other, 2);
	hbk_disk_close(blank);
}

/* Disk 0 of RAID 1 pair d runs alone and is written (seed); then both are
 * given: no split brain, disk 1 stale, disk 0's data. */
static void lone_run_leaves_other_stale(struct hbk_disk **d, uint32_t seed)
{
	struct hbk_raid_report rep;
	struct hbk_raid *r = assemble(&d[0], 1, &rep);
	write_range(r, 0, 128 * KiB, seed);
	hbk_raid_close(r);
	r = assemble(d, 2, &rep);
	assert_false(rep.split_brain);
	assert_int_equal(rep.nstale, 1);
	check_range(r, 0, 128 * KiB, seed);
	hbk_raid_close(r);
}

/* The same disk given twice is refused: as a spare it would fill two
 * failed slots, one disk holding two members' data. */
static void test_assemble_refuses_a_disk_twice(void **state)
{
	(void)state;
	static const struct level l = { HBK_RAID6, 4 };
	struct hbk_disk *d[5];
	struct hbk_raid_report rep;
	struct hbk_raid *r;
	make_disks(d, 5);
	r = create(&l, d, NULL);
	assert_int_equal(hbk_raid_add_spare(r, d[4]), 0);
	write_all(r, 1130);
	hbk_raid_close(r);

	struct hbk_disk *spare_twice[] = { d[0], d[1], d[2], d[3], d[4], d[4] };
	struct hbk_disk *member_twice[] = { d[0], d[1], d[2], d[3], d[4], d[1] };
	r = NULL;
	assert_int_equal(hbk_raid_assemble(spare_twice, 6, NULL, &rep, &r), -EINVAL);
	assert_null(r);
	assert_int_equal(hbk_raid_assemble(member_twice, 6, NULL, &rep, &r), -EINVAL);
	assert_null(r);

	r = assemble(d, 5, &rep);
	assert_int_equal(rep.disk[4].verdict, HBK_RAID_DISK_SPARE);
	check_all(r, 1130);
	hbk_raid_close(r);
	close_disks(d, 5);
}

/* A spare's disk opened twice (or copied) is one spare: as two, a second
 * failed slot would take the disk that already holds the first one's
 * rebuild, and the two slots would overwrite each other. */
static void test_spare_opened_twice_is_one_spare(void **state)
{
	(void)state;
	static const struct level l = { HBK_RAID6, 4 };
	struct hbk_disk *d[6];
	char path[5][64];
	struct hbk_raid_report rep;
	struct hbk_raid_status st;
	open_file_disks(d, path, 5, "spare2", true);
	struct hbk_raid *r = create(&l, d, NULL);
	assert_int_equal(hbk_raid_add_spare(r, d[4]), 0);
	write_all(r, 1140);
	hbk_raid_close(r);

	assert_int_equal(hbk_disk_open_file(path[4], NULL, &d[5]), 0);
	r = assemble(d, 6, &rep);
	assert_int_equal(rep.disk[4].verdict, HBK_RAID_DISK_SPARE);
	assert_int_equal(rep.disk[5].verdict, HBK_RAID_DISK_FOREIGN);
	hbk_raid_status(r, &st);
	assert_int_equal(st.spares, 1);
	assert_int_equal(hbk_raid_fail(r, 0), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	write_all(r, 1141);
	check_all(r, 1141);
	hbk_raid_close(r);
	close_disks(d, 6);
	for (unsigned i = 0; i < 5; i++)
		unlink(path[i]);
}

/* A member's or a spare's disk opened a second time is already in the
 * array: as a replacement or a new spare, a rebuild would write another
 * slot's data over that member. */
static void test_replace_refuses_a_disk_in_use(void **state)
{
	(void)state;
	static const struct level l = { HBK_RAID5, 3 };
	struct hbk_disk *d[4], *again[3];
	char path[4][64];
	open_file_disks(d, path, 4, "inuse", true);
	struct hbk_raid *r = create(&l, d, NULL);
	assert_int_equal(hbk_raid_add_spare(r, d[3]), 0);
	write_all(r, 1150);
	assert_int_equal(hbk_raid_fail(r, 0), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);   /* the spare took slot 0 */
	assert_int_equal(hbk_raid_fail(r, 2), 0);

	assert_int_equal(hbk_disk_open_file(path[1], NULL, &again[0]), 0);
	assert_int_equal(hbk_raid_replace(r, 2, again[0]), -EINVAL);
	assert_int_equal(hbk_raid_add_spare(r, again[0]), -EINVAL);
	assert_int_equal(hbk_disk_open_file(path[3], NULL, &again[1]), 0);
	assert_int_equal(hbk_raid_replace(r, 2, again[1]), -EINVAL);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	check_all(r, 1150);
	/* The slot's own disk, failed, may come back (opened anew). */
	assert_int_equal(hbk_disk_open_file(path[2], NULL, &again[2]), 0);
	assert_int_equal(hbk_raid_replace(r, 2, again[2]), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	scrub_clean(r);
	check_all(r, 1150);
	hbk_raid_close(r);
	close_disks(again, 3);
	close_disks(d, 4);
	for (unsigned i = 0; i < 4; i++)
		unlink(path[i]);
}

/* A spare whose superblock cannot be written is not a spare: adding it
 * says so, and a failed member then waits for a replacement. */
static void test_spare_that_cannot_be_written_is_refused(void **state)
{
	(void)state;
	static const struct level l = { HBK_RAID1, 2 };
	struct hbk_disk *d[2], *spare;
	make_disks(d, l.n);
	assert_int_equal(hbk_disk_open_mem(DISK, &spare), 0);
	struct hbk_raid *r = create(&l, d, NULL);
	write_all(r, 1170);
	hbk_disk_inject(spare, &(struct hbk_disk_fault){ .fail_all = true, .error = -EIO });
	assert_int_equal(hbk_raid_add_spare(r, spare), -EIO);
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	assert_int_equal(st.spares, 0);
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	check_all(r, 1170);
	hbk_raid_close(r);
	hbk_disk_close(spare);
	close_disks(d, l.n);
}

/* A RAID 1 whose halves each ran alone (a split brain): disk 0 was
 * assembled without disk 1 and written, then disk 1 without disk 0 and
 * written differently.  Each superblock says the other disk failed, so
 * either half may hold acknowledged writes the other lacks: assembling both
 * is refused and reported, in either order, also with force (given for a
 * missing disk or a dirty array, it must not drop writes), until
 * accept_split_brain picks the newest half (the first disk given on a
 * tie). */
static void test_split_brain_is_refused(void **state)
{
	(void)state;
	const struct level *l = &all_levels[1];   /* RAID 1 of 2 */
	struct hbk_disk *d[2], *rev[2];
	struct hbk_raid_report rep;
	struct hbk_raid *r;
	make_disks(d, 2);
	rev[0] = d[1];
	rev[1] = d[0];
	r = create(l, d, NULL);
	write_range(r, 0, 256 * KiB, 10);
	hbk_raid_close(r);

	r = assemble(&d[0], 1, &rep);
	assert_int_equal(rep.nmissing, 1);
	write_range(r, 0, 128 * KiB, 11);
	hbk_raid_close(r);
	r = assemble(&d[1], 1, &rep);
	write_range(r, 0, 128 * KiB, 12);
	hbk_raid_close(r);

	for (int order = 0; order < 2; order++) {
		struct hbk_disk **set = order ? rev : d;
		assert_int_equal(hbk_raid_assemble(set, 2, NULL, &rep, &r), -EUCLEAN);
		assert_true(rep.split_brain);
		assert_int_equal(rep.nstale, 1);
	}
	struct hbk_raid_opts o = { .force = true };
	assert_int_equal(hbk_raid_assemble(rev, 2, &o, &rep, &r), -EUCLEAN);
	assert_true(rep.split_brain);
	o.accept_split_brain = true;
	assert_int_equal(hbk_raid_assemble(rev, 2, &o, &rep, &r), 0);
	assert_true(rep.split_brain);
	assert_int_equal(rep.nstale, 1);
	/* Kept: the newest generation, on a tie the first disk given (d[1]). */
	bool kept1 = rep.disk[0].verdict == HBK_RAID_DISK_MEMBER;
	assert_int_equal(rep.disk[kept1 ? 1 : 0].verdict, HBK_RAID_DISK_STALE);
	assert_true(kept1 ? rep.disk[0].generation >= rep.disk[1].generation
			  : rep.disk[1].generation > rep.disk[0].generation);
	check_range(r, 0, 128 * KiB, kept1 ? 12 : 11);
	check_range(r, 128 * KiB, 256 * KiB, 10);
	hbk_raid_close(r);
	/* The choice is recorded: the other half is merely stale now. */
	for (int order = 0; order < 2; order++) {
		r = assemble(order ? rev : d, 2, &rep);
		assert_false(rep.split_brain);
		assert_int_equal(rep.nstale, 1);
		check_range(r, 0, 128 * KiB, kept1 ? 12 : 11);
		hbk_raid_close(r);
	}

	/* A disk that merely fell behind is no split brain: it names the
	 * others as they were. */
	make_disks(d, 2);
	r = create(l, d, NULL);
	write_range(r, 0, 256 * KiB, 20);
	hbk_raid_close(r);
	lone_run_leaves_other_stale(d, 21);
	close_disks(d, 2);
	close_disks(rev, 2);
}

/* Split brains that torn metadata rounds, a second lone run after an
 * accepted choice, or a later replacement could hide, and a torn round that must
 * not look like one.  RAID 1 of memory disks; writes dropped to tear a
 * round as a power cut would. */
static void test_split_brain_edges(void **state)
{
	(void)state;
	const struct level *l = &all_levels[1];   /* RAID 1 of 2 */
	struct hbk_disk *d[3];
	struct hbk_raid_report rep;
	struct hbk_raid *r;

	/* The close round reaches disk 1 only; disk 0 then runs alone (disk
	 * 1 late) and is written.  Disk 1 merely stopped: no split brain. */
	make_disks(d, 2);
	r = create(l, d, NULL);
	write_range(r, 0, 256 * KiB, 50);
	hbk_raid_close(r);
	r = assemble(d, 2, &rep);
	power_cut(&d[0], 1, true);
	hbk_raid_close(r);
	power_cut(&d[0], 1, false);
	lone_run_leaves_other_stale(d, 51);
	close_disks(d, 2);

	/* Disk 1 misses the round that marks the array clean, while dirty;
	 * each disk then runs alone.  Disk 1's acknowledged writes need no
	 * round (it is dirty already) and the power goes: a split brain. */
	make_disks(d, 2);
	r = create(l, d, NULL);
	write_range(r, 0, 256 * KiB, 60);
	hbk_raid_close(r);
	struct hbk_raid_opts quick = { .clean_delay_ms = 50 };
	assert_int_equal(hbk_raid_assemble(d, 2, &quick, &rep, &r), 0);
	write_range(r, 0, 16 * KiB, 60);          /* the dirty round, on both */
	power_cut(&d[1], 1, true);
	usleep(400000);                            /* the clean round, on disk 0 only */
	power_cut(d, 2, true);
	hbk_raid_close(r);
	power_cut(d, 2, false);
	r = assemble(&d[0], 1, &rep);
	write_range(r, 0, 128 * KiB, 61);
	hbk_raid_close(r);
	r = assemble(&d[1], 1, &rep);
	write_range(r, 128 * KiB, 256 * KiB, 62);
	power_cut(&d[1], 1, true);
	hbk_raid_close(r);
	power_cut(&d[1], 1, false);
	assert_int_equal(hbk_raid_assemble(d, 2, NULL, &rep, &r), -EUCLEAN);
	assert_true(rep.split_brain);

	/* Accepted, the choice is recorded; the dismissed disk then runs
	 * alone once more, and is a split brain again. */
	struct hbk_raid_opts o = { .accept_split_brain = true };
	assert_int_equal(hbk_raid_assemble(d, 2, &o, &rep, &r), 0);
	int gone = rep.disk[0].verdict == HBK_RAID_DISK_STALE ? 0 : 1;
	assert_int_equal(rep.disk[gone].verdict, HBK_RAID_DISK_STALE);
	hbk_raid_close(r);
	r = assemble(d, 2, &rep);
	assert_false(rep.split_brain);
	hbk_raid_close(r);
	r = assemble(&d[gone], 1, &rep);
	write_range(r, 0, 64 * KiB, 63);
	hbk_raid_close(r);
	assert_int_equal(hbk_raid_assemble(d, 2, NULL, &rep, &r), -EUCLEAN);
	assert_true(rep.split_brain);
	close_disks(d, 2);

	/* Disk 1 fails and is replaced by disk 2; disk 1 runs alone elsewhere;
	 * later disk 2 fails too.  Disk 1 still shows it ran without disk 0. */
	make_disks(d, 3);
	r = create(l, d, NULL);
	write_range(r, 0, 256 * KiB, 70);
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	assert_int_equal(hbk_raid_replace(r, 1, d[2]), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	hbk_raid_close(r);
	r = assemble(&d[1], 1, &rep);
	write_range(r, 128 * KiB, 256 * KiB, 71);
	hbk_raid_close(r);
	struct hbk_disk *kept[2] = { d[0], d[2] };
	r = assemble(kept, 2, &rep);
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	hbk_raid_close(r);
	for (int order = 0; order < 2; order++) {
		struct hbk_disk *set[3] = { order ? d[1] : d[0], order ? d[0] : d[1], d[2] };
		assert_int_equal(hbk_raid_assemble(set, 3, NULL, &rep, &r), -EUCLEAN);
		assert_true(rep.split_brain);
	}
	close_disks(d, 3);
}

/* A disk that stopped and was replaced is stale, not a split brain, in
 * whatever order the disks are given: it records no disk failed that the
 * others still use. */
static void test_replaced_disk_is_no_split_brain(void **state)
{
	(void)state;
	const struct level *l = &all_levels[1];   /* RAID 1 of 2 */
	struct hbk_disk *d[3], *set[3];
	struct hbk_raid_report rep;
	struct hbk_raid *r;
	make_disks(d, 3);
	r = create(l, d, NULL);
	write_range(r, 0, 256 * KiB, 30);
	assert_int_equal(hbk_raid_fail(r, 1), 0);
	write_range(r, 0, 128 * KiB, 31);
	assert_int_equal(hbk_raid_replace(r, 1, d[2]), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	hbk_raid_close(r);
	static const int orders[][3] = { { 2, 0, 1 }, { 0, 2, 1 }, { 1, 2, 0 }, { 1, 0, 2 } };
	for (unsigned o = 0; o < HBK_ARRAY_SIZE(orders); o++) {
		for (int i = 0; i < 3; i++)
			set[i] = d[orders[o][i]];
		r = assemble(set, 3, &rep);
		assert_false(rep.split_brain);
		assert_int_equal(rep.nstale, 1);
		assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
		check_range(r, 0, 128 * KiB, 31);
		check_range(r, 128 * KiB, 256 * KiB, 30);
		hbk_raid_close(r);
	}

	/* RAID 5: slot 3's disk fails and is replaced, then slot 2's.  The
	 * second disk out records the first failed, which the others no
	 * longer use: no split brain either. */
	const struct level *l5 = &all_levels[2];   /* RAID 5 of 4 */
	struct hbk_disk *m[6], *all[6];
	make_disks(m, 6);
	r = create(l5, m, NULL);
	write_range(r, 0, 512 * KiB, 40);
	for (unsigned k = 0; k < 2; k++) {
		assert_int_equal(hbk_raid_fail(r, 3 - k), 0);
		write_range(r, 0, 256 * KiB, 41 + k);
		assert_int_equal(hbk_raid_replace(r, 3 - k, m[4 + k]), 0);
		assert_int_equal(hbk_raid_wait(r, 20000), 0);
	}
	hbk_raid_close(r);
	unsigned pick[] = { 5, 0, 1, 4, 3, 2 };   /* a replacement first, the old disks last */
	for (unsigned i = 0; i < 6; i++)
		all[i] = m[pick[i]];
	r = assemble(all, 6, &rep);
	assert_false(rep.split_brain);
	assert_int_equal(rep.nstale, 2);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	check_range(r, 0, 256 * KiB, 42);
	check_range(r, 256 * KiB, 512 * KiB, 40);
	hbk_raid_close(r);
	close_disks(m, 6);
	close_disks(d, 3);
}

static void test_dirty_degraded_needs_force(void **state)
{
	(void)state;
	const struct level *l = &all_levels[2];   /* RAID 5 of 4 */
	struct hbk_disk *d[4];
	struct hbk_raid_report rep;
	struct hbk_raid *r;
	make_disks(d, 4);
	r = create(l, d, NULL);
	write_range(r, 0, 256 * KiB, 900);
	power_cut(d, 4, true);
	hbk_raid_close(r);
	power_cut(d, 4, false);

	assert_int_equal(hbk_raid_assemble(d, 3, NULL, &rep, &r), -EUCLEAN);
	assert_true(rep.dirty);
	/* Whole, it resyncs; closed cleanly before the resync is through, its
	 * superblock says CLEAN with the resync's offset, and degraded it
	 * still needs force: past that offset a stripe may be torn. */
	struct hbk_raid_opts slow = { .rebuild_rate = 64 * KiB };
	assert_int_equal(hbk_raid_assemble(d, 4, &slow, &rep, &r), 0);
	assert_true(rep.dirty);
	hbk_raid_close(r);
	assert_int_equal(hbk_raid_assemble(d, 3, NULL, &rep, &r), -EUCLEAN);
	assert_true(rep.dirty);
	struct hbk_raid_opts o = { .force = true };
	assert_int_equal(hbk_raid_assemble(d, 3, &o, &rep, &r), 0);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	check_range(r, 0, 256 * KiB, 900);   /* no write was torn here */
	hbk_raid_close(r);
	close_disks(d, 4);
}

/* ---- Cache ------------------------------------------------------------------------------------------ */

static void test_write_back_cache(void **state)
{
	(void)state;
	const struct level *l = &all_levels[2];   /* RAID 5 of 4 */
	struct hbk_disk *d[4];
	struct hbk_raid_opts o = { .cache_bytes = 256 * KiB };
	struct hbk_raid_status st;
	struct hbk_raid_report rep;
	uint8_t *buf = aligned(128 * KiB);
	make_disks(d, 4);
	struct hbk_raid *r = create(l, d, &o);
	uint64_t size = array_size(r);
	write_all(r, 1000);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	hbk_raid_status(r, &st);
	assert_int_equal(st.cache_dirty, 0);
	assert_int_equal(st.cache_bytes, 256 * KiB);

	/* Small writes are absorbed; reads see them whole or overlaid. */
	for (unsigned i = 0; i < 8; i++) {
		fill(buf, i * 40 * KiB + 1024, 3 * KiB, 1001);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, i * 40 * KiB + 1024, 3 * KiB, 0), 0);
	}
	hbk_raid_status(r, &st);
	assert_int_equal(st.cache_dirty, 24 * KiB);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 40 * KiB + 1024, 3 * KiB, 0), 0);
	assert_true(sector_is(buf, 40 * KiB + 1024, 1001));
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 32 * KiB, 64 * KiB, 0), 0);
	for (unsigned x = 0; x < 64 * KiB; x += 512) {
		uint64_t off = 32 * KiB + x, in = (off - 1024) % (40 * KiB);
		bool hot = off >= 1024 && in < 3 * KiB;
		assert_true(sector_is(buf + x, off, hot ? 1001 : 1000));
	}
	/* Writes to one block keep their order through the cache. */
	fill(buf, 8192, 4096, 1002);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8192, 4096, 0), 0);
	fill(buf, 8192, 4096, 1003);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8192, 4096, 0), 0);

	/* More small writes than the cache holds: they wait for destaging. */
	struct load ld;
	load_init(&ld, r, 16, false);
	for (uint64_t off = 256 * KiB; off < 896 * KiB; off += 4 * KiB)
		load_submit(&ld, HBK_DISK_WRITE, off, 4 * KiB, 1004, 0);
	load_wait(&ld);
	assert_int_equal(ld.errors, 0);
	load_free(&ld);
	check_range(r, 256 * KiB, 896 * KiB, 1004);
	check_range(r, 8192, 12288, 1003);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);

	/* Big writes go around the cache; a FUA write goes through it. */
	write_range(r, size - 256 * KiB, size, 1005);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	fill(buf, 1024 * KiB, 4096, 1006);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 1024 * KiB, 4096, HBK_DISK_FUA), 0);
	fill(buf, 1100 * KiB, 4096, 1007);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 1100 * KiB, 4096, 0), 0);
	hbk_raid_status(r, &st);
	assert_true(st.cache_dirty > 0);

	/* The power goes: the FUA write and everything flushed survive. */
	power_cut(d, 4, true);
	hbk_raid_close(r);
	power_cut(d, 4, false);
	r = assemble(d, 4, &rep);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	check_range(r, 1024 * KiB, 1028 * KiB, 1006);
	check_range(r, size - 256 * KiB, size, 1005);
	check_range(r, 256 * KiB, 896 * KiB, 1004);
	check_range(r, 8192, 12288, 1003);
	scrub_clean(r);
	hbk_raid_close(r);

	/* A flushed write survives. */
	o.cache_bytes = 64 * KiB;
	assert_int_equal(hbk_raid_assemble(d, 4, &o, &rep, &r), 0);
	fill(buf, 8192, 4096, 1008);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8192, 4096, 0), 0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	power_cut(d, 4, true);
	hbk_raid_close(r);
	power_cut(d, 4, false);
	r = assemble(d, 4, &rep);
	check_range(r, 8192, 12288, 1008);
	hbk_raid_close(r);
	close_disks(d, 4);
	free(buf);
}

/* The engine under the cache, wrapped (Makefile: --wrap): while
 * engine_write_failures is non-zero, that many writes reaching the engine
 * fail with -EIO and change nothing, as a destage the engine cannot carry
 * out (out of memory, say) while the array itself stays usable. */
void __real_raid_engine_submit(struct hbk_raid *r, struct hbk_raid_io *io);
void __wrap_raid_engine_submit(struct hbk_raid *r, struct hbk_raid_io *io);
static atomic_uint engine_write_failures;

void __wrap_raid_engine_submit(struct hbk_raid *r, struct hbk_raid_io *io)
{
	unsigned n = atomic_load(&engine_write_failures);
	while (io->op == HBK_DISK_WRITE && n &&
	       !atomic_compare_exchange_weak(&engine_write_failures, &n, n - 1))
		;
	if (io->op == HBK_DISK_WRITE && n) {
		io->done(io, -EIO);
		return;
	}
	__real_raid_engine_submit(r, io);
}

/* A destage that lost data is reported to the flush and the FUA write
 * that cover it, once: later writes and flushes succeed. */
static void test_cache_destage_error_reported_once(void **state)
{
	(void)state;
	struct hbk_disk *d[2];
	uint8_t *buf = aligned(4 * KiB);
	make_disks(d, 2);
	struct hbk_raid *r = create(&all_levels[1], d, &(struct hbk_raid_opts){ .cache_bytes = 256 * KiB });
	fill(buf, 0, 4 * KiB, 1100);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, 4 * KiB, 0), 0);
	atomic_store(&engine_write_failures, 1);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), -EIO);
	assert_int_equal(atomic_load(&engine_write_failures), 0);

	/* Told once: what came after is on the members, and a flush says so. */
	fill(buf, 8 * KiB, 4 * KiB, 1101);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8 * KiB, 4 * KiB, 0), 0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	/* A FUA write over a dirty line waits for its destage, and succeeds. */
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8 * KiB, 4 * KiB, 0), 0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8 * KiB, 4 * KiB, HBK_DISK_FUA), 0);

	/* A FUA write whose data a failed destage lost is told, and so is the
	 * next flush (the FUA write speaks only for its own data). */
	fill(buf, 16 * KiB, 4 * KiB, 1102);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 16 * KiB, 4 * KiB, 0), 0);
	atomic_store(&engine_write_failures, 1);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 16 * KiB, 4 * KiB, HBK_DISK_FUA), -EIO);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), -EIO);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	fill(buf, 16 * KiB, 4 * KiB, 1103);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 16 * KiB, 4 * KiB, 0), 0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	hbk_raid_close(r);

	/* The members hold what was written after the losses. */
	struct hbk_raid_report rep;
	r = assemble(d, 2, &rep);
	check_range(r, 8 * KiB, 12 * KiB, 1101);
	check_range(r, 16 * KiB, 20 * KiB, 1103);
	hbk_raid_close(r);
	close_disks(d, 2);
	free(buf);
}

/* A member that fails under a destage costs no data on a redundant level:
 * the engine writes without it, and neither that flush nor later ones, nor
 * those after it is replaced and rebuilt, report an error. */
static void test_cache_member_failure_not_reported(void **state)
{
	(void)state;
	struct hbk_disk *d[3];
	uint8_t *buf = aligned(4 * KiB);
	make_disks(d, 3);
	struct hbk_raid *r = create(&all_levels[1], d, &(struct hbk_raid_opts){ .cache_bytes = 256 * KiB });
	fill(buf, 0, 4 * KiB, 1110);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, 4 * KiB, 0), 0);
	hbk_disk_inject(d[1], &(struct hbk_disk_fault){ .fail_all = true });
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	fill(buf, 8 * KiB, 4 * KiB, 1111);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8 * KiB, 4 * KiB, 0), 0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	assert_int_equal(hbk_raid_replace(r, 1, d[2]), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8 * KiB, 4 * KiB, 0), 0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	check_range(r, 0, 4 * KiB, 1110);
	hbk_raid_close(r);
	hbk_disk_inject(d[1], NULL);
	close_disks(d, 3);
	free(buf);
}

/* Once the array has failed, the cache takes no write: absorbed, it would
 * be acknowledged with nowhere to go.  Every request ends with -EIO, as
 * without a cache, and a read shows no line the members never got. */
static void test_cache_failed_array_takes_nothing(void **state)
{
	(void)state;
	static const struct level lv[] = { { HBK_RAID0, 3 }, { HBK_RAID5, 4 } };
	for (unsigned li = 0; li < HBK_ARRAY_SIZE(lv); li++) {
		struct hbk_disk *d[4];
		uint8_t *buf = aligned(8 * KiB);
		make_disks(d, lv[li].n);
		struct hbk_raid *r = create(&lv[li], d,
					    &(struct hbk_raid_opts){ .cache_bytes = 256 * KiB });
		fill(buf, 0, 8 * KiB, 1120);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, 8 * KiB, 0), 0);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
		assert_int_equal(hbk_raid_fail(r, 1), 0);
		if (lv[li].level == HBK_RAID5)
			assert_int_equal(hbk_raid_fail(r, 2), 0);
		assert_int_equal(state_of(r), HBK_RAID_FAILED);
		fill(buf, 0, 8 * KiB, 1121);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, 4 * KiB, 0), -EIO);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 64 * KiB, 4 * KiB, 0), -EIO);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 128 * KiB, 4 * KiB,
					     HBK_DISK_FUA), -EIO);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_DISCARD, NULL, 0, 8 * KiB, 0), -EIO);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 64 * KiB, 4 * KiB, 0), -EIO);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, 0, 4 * KiB, 0), -EIO);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), -EIO);
		hbk_raid_close(r);
		close_disks(d, lv[li].n);
		free(buf);
	}
}

/* Reads [off, off + len) in 4 KiB reads and checks them against seed. */
static void read_4k(struct hbk_raid *r, uint64_t off, uint64_t len, uint32_t seed)
{
	uint8_t *buf = aligned(4 * KiB);
	for (uint64_t x = off; x < off + len; x += 4 * KiB) {
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, x, 4 * KiB, 0), 0);
		for (unsigned s = 0; s < 4 * KiB; s += 512)
			if (!sector_is(buf + s, x + s, seed))
				fail_msg("sector at %llu does not hold seed %u",
					 (unsigned long long)(x + s), seed);
	}
	free(buf);
}

/* Drops (or stops dropping) every write to d, as a power cut would. */
static void drop_writes(struct hbk_disk *d, bool on)
{
	struct hbk_disk_fault f = { .drop_writes = true };
	hbk_disk_inject(d, on ? &f : NULL);
}

/* A metadata round cut short (the new superblock on disk 0 only, the power
 * gone before the others took theirs) leaves a usable array: the members
 * one round behind, still listed as they are, are taken, and it resyncs. */
static void test_torn_metadata_round_assembles(void **state)
{
	(void)state;
	struct hbk_disk *d[5];
	for (int i = 0; i < 5; i++)
		assert_int_equal(hbk_disk_open_mem(DISK, &d[i]), 0);
	struct hbk_raid_config cfg = { .level = HBK_RAID5, .chunk = CHUNK, .assume_clean = true };
	struct hbk_raid *r;
	struct hbk_raid_report rep;
	assert_int_equal(hbk_raid_create(&cfg, d, 4, NULL, &r), 0);
	uint8_t *buf;
	assert_int_equal(posix_memalign((void **)&buf, 4096, 64 * KiB), 0);
	fill(buf, 0, 64 * KiB, 4);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, 64 * KiB, 0), 0);
	for (int i = 1; i < 4; i++)
		drop_writes(d[i], true);
	assert_int_equal(hbk_raid_add_spare(r, d[4]), 0);   /* a round: disk 0 (and the spare) only */
	for (int i = 0; i < 5; i++)
		drop_writes(d[i], true);
	hbk_raid_close(r);
	for (int i = 0; i < 5; i++)
		drop_writes(d[i], false);
	assert_int_equal(hbk_raid_assemble(d, 4, NULL, &rep, &r), 0);
	assert_int_equal(rep.nstale, 0);
	assert_int_equal(rep.nmissing, 0);
	assert_int_equal(rep.nbehind, 3);
	assert_true(rep.dirty);
	hbk_raid_close(r);
	assert_int_equal(hbk_raid_assemble(d, 4, NULL, &rep, &r), 0);
	check_range(r, 0, 64 * KiB, 4);
	hbk_raid_close(r);
	for (int i = 0; i < 5; i++)
		hbk_disk_close(d[i]);
	free(buf);
}

/* A rebuild's writes carry no FUA: before a superblock records the new
 * member as rebuilt (ACTIVE), the member is flushed, or a power cut could
 * take data the array believes it has. */
static void test_rebuilt_member_is_flushed_first(void **state)
{
	(void)state;
	struct hbk_disk *d[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(hbk_disk_open_mem(DISK, &d[i]), 0);
	struct hbk_raid_config cfg = { .level = HBK_RAID1, .chunk = CHUNK, .assume_clean = true };
	struct hbk_raid *r;
	assert_int_equal(hbk_raid_create(&cfg, d, 2, NULL, &r), 0);
	assert_int_equal(hbk_raid_add_spare(r, d[2]), 0);
	struct hbk_disk_stats before, after;
	hbk_disk_stats(d[2], &before);
	assert_int_equal(hbk_raid_fail(r, 0), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	assert_int_equal(st.state, HBK_RAID_OPTIMAL);
	hbk_disk_stats(d[2], &after);
	assert_true(after.writes > before.writes);
	assert_true(after.flushes > before.flushes);
	hbk_raid_close(r);
	for (int i = 0; i < 3; i++)
		hbk_disk_close(d[i]);
}

/* d's superblock: the first `keep` bytes as in `now`, the rest as in `before`
 * (a superblock write torn by a crash). */
static void sb_tear(struct hbk_disk *d, const uint8_t *now, const uint8_t *before, unsigned keep)
{
	uint8_t *sb = aligned(4096);
	memcpy(sb, now, keep);
	memcpy(sb + keep, before + keep, 4096 - keep);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, sb, 0, 4096, 0), 0);
	free(sb);
}

/* A superblock torn by a crash (its first sector from the newest round,
 * the rest from an older one, so the CRC fails while the magic and the
 * array UUID are intact) is reported as damaged metadata on its member,
 * never as foreign and never used: the array runs without that member
 * (degraded), the disk can be put back by a rebuild, and with too many
 * members damaged assembly refuses. */
static void test_torn_superblock_is_damaged(void **state)
{
	(void)state;
	struct hbk_disk *d[5];
	struct hbk_raid_report rep;
	uint8_t *before = aligned(4096), *now = aligned(4096);
	make_disks(d, 5);
	struct hbk_raid *r = create(&all_levels[2], d, NULL);   /* RAID 5 of 4 */
	write_all(r, 950);
	assert_int_equal(hbk_raid_fail(r, 3), 0);
	assert_int_equal(hbk_disk_rw(d[1], HBK_DISK_READ, before, 0, 4096, 0), 0);
	/* A round that changes the slot table past the first sector. */
	assert_int_equal(hbk_raid_replace(r, 3, d[4]), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	hbk_raid_close(r);
	assert_int_equal(hbk_disk_rw(d[1], HBK_DISK_READ, now, 0, 4096, 0), 0);
	assert_memory_not_equal(now + 512, before + 512, 4096 - 512);
	sb_tear(d[1], now, before, 512);

	struct hbk_disk *all[5] = { d[0], d[1], d[2], d[3], d[4] };
	r = assemble(all, 5, &rep);
	assert_int_equal(rep.disk[1].verdict, HBK_RAID_DISK_DAMAGED);
	assert_int_equal(rep.disk[1].slot, 1);
	assert_int_equal(rep.disk[1].generation, 0);
	assert_int_equal(rep.ndamaged, 1);
	assert_int_equal(rep.nforeign, 0);
	assert_int_equal(rep.disk[3].verdict, HBK_RAID_DISK_STALE);
	assert_int_equal(rep.disk[4].slot, 3);
	assert_int_equal(rep.missing, 1u << 1);
	assert_int_equal(state_of(r), HBK_RAID_DEGRADED);
	check_all(r, 950);
	/* Put back as a stale disk is: rebuilt. */
	assert_int_equal(hbk_raid_replace(r, 1, d[1]), 0);
	assert_int_equal(hbk_raid_wait(r, 20000), 0);
	assert_int_equal(state_of(r), HBK_RAID_OPTIMAL);
	hbk_raid_close(r);
	r = assemble(all, 5, &rep);
	assert_int_equal(rep.ndamaged, 0);
	assert_int_equal(rep.disk[1].verdict, HBK_RAID_DISK_MEMBER);
	check_all(r, 950);
	hbk_raid_close(r);

	/* Two members damaged (the second half of each superblock stale): a
	 * RAID 5 cannot run without both, and assembly refuses. */
	for (int i = 0; i < 2; i++) {
		struct hbk_disk *v = d[i == 0 ? 0 : 2];
		assert_int_equal(hbk_disk_rw(v, HBK_DISK_READ, now, 0, 4096, 0), 0);
		memcpy(before, now, 4096);
		before[3000] ^= 0x5a;
		sb_tear(v, now, before, 2048);
	}
	assert_int_equal(hbk_raid_assemble(all, 5, NULL, &rep, &r), -ENODEV);
	assert_int_equal(rep.disk[0].verdict, HBK_RAID_DISK_DAMAGED);
	assert_int_equal(rep.disk[0].slot, 0);
	assert_int_equal(rep.disk[2].verdict, HBK_RAID_DISK_DAMAGED);
	assert_int_equal(rep.disk[2].slot, 2);
	assert_int_equal(rep.ndamaged, 2);
	assert_int_equal(rep.nforeign, 0);
	free(before);
	free(now);
	close_disks(d, 5);
}

/* Rewrites bytes [off, off + len) of d's superblock with v, checksum and all. */
static void sb_patch(struct hbk_disk *d, unsigned off, const void *v, unsigned len)
{
	uint8_t *sb;
	assert_int_equal(posix_memalign((void **)&sb, 4096, 4096), 0);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_READ, sb, 0, 4096, 0), 0);
	memcpy(sb + off, v, len);
	memset(sb + 16, 0, 4);
	uint32_t c = ~crc32_iscsi(sb, 4096, 0xffffffffu);
	memcpy(sb + 16, &c, 4);
	assert_int_equal(hbk_disk_rw(d, HBK_DISK_WRITE, sb, 0, 4096, 0), 0);
	free(sb);
}

/* A superblock whose checksum is right but whose geometry cannot be (a
 * block size of 0), or that does not fit its disk (a member's superblock
 * copied onto a smaller disk), marks that disk foreign: assembly neither
 * crashes nor uses it. */
static void test_superblock_must_fit_its_disk(void **state)
{
	(void)state;
	struct hbk_disk *d[3];
	for (int i = 0; i < 2; i++)
		assert_int_equal(hbk_disk_open_mem(DISK, &d[i]), 0);
	assert_int_equal(hbk_disk_open_mem(DATA_OFFSET + 64 * KiB, &d[2]), 0);
	struct hbk_raid_config cfg = { .level = HBK_RAID1, .chunk = CHUNK, .assume_clean = true };
	struct hbk_raid *r;
	struct hbk_raid_report rep;
	assert_int_equal(hbk_raid_create(&cfg, d, 2, NULL, &r), 0);
	hbk_raid_close(r);

	uint8_t *sb;
	assert_int_equal(posix_memalign((void **)&sb, 4096, 4096), 0);
	assert_int_equal(hbk_disk_rw(d[1], HBK_DISK_READ, sb, 0, 4096, 0), 0);
	assert_int_equal(hbk_disk_rw(d[2], HBK_DISK_WRITE, sb, 0, 4096, 0), 0);
	free(sb);
	struct hbk_disk *small[2] = { d[0], d[2] };
	assert_int_equal(hbk_raid_assemble(small, 2, &(struct hbk_raid_opts){ .force = true },
					   &rep, &r), 0);
	assert_int_equal(rep.disk[1].verdict, HBK_RAID_DISK_FOREIGN);
	hbk_raid_close(r);

	uint32_t zero = 0;
	for (int i = 0; i < 2; i++)
		sb_patch(d[i], 84, &zero, 4);                   /* block_size */
	assert_true(hbk_raid_assemble(d, 2, NULL, &rep, &r) < 0);
	assert_int_equal(rep.disk[0].verdict, HBK_RAID_DISK_FOREIGN);
	assert_int_equal(rep.disk[1].verdict, HBK_RAID_DISK_FOREIGN);
	for (int i = 0; i < 3; i++)
		hbk_disk_close(d[i]);
}

/* A RAID 5 created over disks full of old data resyncs in the background;
 * a small write to a stripe the resync has not reached must not use
 * read-modify-write (it would carry the garbage parity forward), so the
 * data survives the failure of its member right after. */
static void test_no_rmw_before_resync(void **state)
{
	(void)state;
	enum { N = 5 };
	struct hbk_disk *d[N];
	uint8_t *g;
	assert_int_equal(posix_memalign((void **)&g, 4096, DISK), 0);
	srand(1);
	for (int i = 0; i < N; i++) {
		for (size_t j = 0; j < DISK; j++)
			g[j] = (uint8_t)rand();
		assert_int_equal(hbk_disk_open_mem(DISK, &d[i]), 0);
		assert_int_equal(hbk_disk_rw(d[i], HBK_DISK_WRITE, g, 0, DISK, 0), 0);
	}
	struct hbk_raid_config cfg = { .level = HBK_RAID5, .chunk = CHUNK };
	struct hbk_raid_opts o = { .rebuild_rate = 1 };     /* the resync crawls */
	struct hbk_raid *r;
	assert_int_equal(hbk_raid_create(&cfg, d, N, &o, &r), 0);
	uint64_t stripe = (N - 1ull) * CHUNK, off = 10 * stripe;  /* stripe 10, column 0 */
	uint8_t *buf = g;
	memset(buf, 0x77, 4096);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, off, 4096, 0), 0);
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	assert_true(st.resync_done < 11 * CHUNK);          /* not there yet */
	assert_int_equal(st.rmw_writes, 0);
	unsigned p = N - 1 - (10 % N), m = (p + 1) % N;     /* the member of column 0 */
	assert_int_equal(hbk_raid_fail(r, m), 0);
	memset(buf, 0, 4096);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, buf, off, 4096, 0), 0);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(buf[i], 0x77);
	hbk_raid_close(r);
	for (int i = 0; i < N; i++)
		hbk_disk_close(d[i]);
	free(g);
}

struct ow {
	struct hbk_raid_io io;
	atomic_int done;
};

static void ow_done(struct hbk_raid_io *io, int result)
{
	struct ow *w = io->priv;
	assert_int_equal(result, 0);
	atomic_store(&w->done, 1);
}

static void ow_submit(struct hbk_raid *r, struct ow *w, uint8_t op, void *buf, uint64_t off,
		      uint64_t len, uint32_t flags)
{
	memset(w, 0, sizeof(*w));
	w->io = (struct hbk_raid_io){ .op = op, .flags = flags, .offset = off, .len = len,
				      .buf = buf, .done = ow_done, .priv = w };
	hbk_raid_submit(r, &w->io);
}

/* A FUA write goes around the cache and may wait on the engine; a plain
 * write to the same sectors that comes meanwhile must not be absorbed and
 * destaged ahead of it (the engine keeps no order between writes in
 * flight), or the disks end with the older data under a cache that shows
 * the newer, and a read flips back once the line is evicted. */
static void test_cache_write_order_around_pass(void **state)
{
	(void)state;
	uint8_t *zero, *a, *b, *rd, *junk;
	assert_int_equal(posix_memalign((void **)&zero, 4096, 4096), 0);
	assert_int_equal(posix_memalign((void **)&a, 4096, 4096), 0);
	assert_int_equal(posix_memalign((void **)&b, 4096, 4096), 0);
	assert_int_equal(posix_memalign((void **)&rd, 4096, 4096), 0);
	assert_int_equal(posix_memalign((void **)&junk, 4096, 16 * KiB), 0);
	memset(zero, 0, 4096);
	memset(a, 0xaa, 4096);
	memset(b, 0xbb, 4096);
	for (int trial = 0; trial < 6; trial++) {
		struct hbk_disk *d[2];
		for (int i = 0; i < 2; i++)
			assert_int_equal(hbk_disk_open_mem(8 * MiB, &d[i]), 0);
		struct hbk_raid_config rc = { .level = HBK_RAID1, .chunk = CHUNK, .assume_clean = true };
		struct hbk_raid_opts ro = { .cache_bytes = 64 * KiB };
		struct hbk_raid *r;
		assert_int_equal(hbk_raid_create(&rc, d, 2, &ro, &r), 0);
		struct hbk_disk_latency lat = { .model = HBK_DISK_MODEL_SSD, .latency_us = 20000,
						.channels = 4, .rate = 1000000000 };
		for (int i = 0; i < 2; i++)
			assert_int_equal(hbk_disk_set_latency(d[i], &lat), 0);
		struct ow w0, w1, w2, f;
		ow_submit(r, &w0, HBK_DISK_WRITE, zero, 0, 4096, HBK_DISK_FUA);  /* holds stripe 0 */
		usleep(2000);
		ow_submit(r, &w1, HBK_DISK_WRITE, a, 8192, 4096, HBK_DISK_FUA);  /* around, waits */
		usleep(2000);
		ow_submit(r, &w2, HBK_DISK_WRITE, b, 8192, 4096, 0);             /* the newer */
		ow_submit(r, &f, HBK_DISK_FLUSH, NULL, 0, 0, 0);
		while (!atomic_load(&w0.done) || !atomic_load(&w1.done) || !atomic_load(&w2.done) ||
		       !atomic_load(&f.done))
			usleep(500);
		for (int i = 0; i < 2; i++)
			assert_int_equal(hbk_disk_set_latency(d[i], NULL), 0);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, rd, 8192, 4096, 0), 0);
		assert_int_equal(rd[0], 0xbb);
		for (int k = 0; k < 64; k++)       /* evict the line */
			assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, junk, MiB + k * 16 * KiB,
						     16 * KiB, 0), 0);
		assert_int_equal(hbk_raid_rw(r, HBK_DISK_READ, rd, 8192, 4096, 0), 0);
		assert_int_equal(rd[0], 0xbb);
		hbk_raid_close(r);
		for (int i = 0; i < 2; i++)
			hbk_disk_close(d[i]);
	}
	free(zero);
	free(a);
	free(b);
	free(rd);
	free(junk);
}

static void cache_counts(struct hbk_raid *r, uint64_t *hits, uint64_t *misses)
{
	struct hbk_raid_status st;
	hbk_raid_status(r, &st);
	*hits = st.cache_read_hits;
	*misses = st.cache_read_misses;
}

/*
 * The read cache on a RAID 5 of four files (reads and writes that overlap in
 * time reach the media here, which a file takes as a disk does).
 */
static void test_read_cache(void **state)
{
	(void)state;
	const struct level *l = &all_levels[2];   /* RAID 5 of 4 */
	struct hbk_disk *d[4];
	char path[4][64];
	open_file_disks(d, path, 4, "rcache", true);
	struct hbk_raid_opts o = { .cache_bytes = 256 * KiB };
	uint64_t h0, m0, h1, m1;
	struct hbk_raid *r = create(l, d, &o);
	write_range(r, 0, 1024 * KiB, 2000);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);

	/* What a read brought in, the same read finds again. */
	read_4k(r, 0, 128 * KiB, 2000);
	cache_counts(r, &h0, &m0);
	read_4k(r, 0, 128 * KiB, 2000);
	cache_counts(r, &h1, &m1);
	assert_int_equal(h1 - h0, 32);
	assert_int_equal(m1, m0);

	/* A write over cached data, absorbed, is what the next read sees. */
	uint8_t *buf = aligned(128 * KiB);
	fill(buf, 8 * KiB, 4 * KiB, 2001);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 8 * KiB, 4 * KiB, 0), 0);
	read_4k(r, 8 * KiB, 4 * KiB, 2001);
	/* A write too big for the cache goes around it: the clean lines it
	 * covers go (the dirty one is destaged first), none goes stale. */
	fill(buf, 0, 128 * KiB, 2002);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_WRITE, buf, 0, 128 * KiB, 0), 0);
	read_4k(r, 0, 128 * KiB, 2002);
	read_4k(r, 0, 128 * KiB, 2002);

	/* Reads racing writes around the cache never leave old data behind. */
	enum { NSLOTS = 1024 * KiB / SLOT };
	uint32_t expect[NSLOTS];
	for (unsigned s = 0; s < NSLOTS; s++)
		expect[s] = 2000;
	struct load ld;
	load_init(&ld, r, 8, false);
	for (unsigned i = 0; i < 64; i++) {
		uint64_t off = (i % 6) * 128 * KiB;
		load_submit(&ld, HBK_DISK_READ, off + (i % 3) * 16 * KiB, 64 * KiB, 0, 0);
		load_submit(&ld, HBK_DISK_READ, off + 64 * KiB, 4 * KiB, 0, 0);
		load_submit(&ld, HBK_DISK_WRITE, off, 128 * KiB, 3000 + i, 0);
		load_submit(&ld, HBK_DISK_READ, off + 96 * KiB, 32 * KiB, 0, 0);
		load_wait(&ld);
		read_4k(r, off, 128 * KiB, 3000 + i);
		for (unsigned s = 0; s < 128 * KiB / SLOT; s++)
			expect[off / SLOT + s] = 3000 + i;
	}
	assert_int_equal(ld.errors, 0);
	load_free(&ld);

	/* Four times the cache in verified random I/O: lines are evicted and
	 * refilled, and every read sees the last write. */
	load_init(&ld, r, 16, true);
	uint64_t rng = 42;
	for (unsigned i = 0; i < 3000; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t slot = (rng >> 33) % (1024 * KiB / SLOT);
		bool write = (rng >> 20) % 4 == 0;
		load_submit(&ld, write ? HBK_DISK_WRITE : HBK_DISK_READ, slot * SLOT, SLOT,
			    write ? 4000 + i : 0, 0);
	}
	load_wait(&ld);
	assert_int_equal(ld.errors, 0);
	cache_counts(r, &h1, &m1);
	assert_true(h1 > h0 + 32 && m1 > m0);
	assert_int_equal(hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0), 0);
	for (unsigned s = 0; s < NSLOTS; s++) {
		if (ld.slot_seed[s])
			expect[s] = ld.slot_seed[s];
		read_4k(r, s * SLOT, SLOT, expect[s]);
	}
	load_free(&ld);
	scrub_clean(r);
	hbk_raid_close(r);

	/* The media hold the same: a fresh assembly, without the cache's copy. */
	struct hbk_raid_report rep;
	r = assemble(d, 4, &rep);
	for (unsigned s = 0; s < NSLOTS; s++)
		read_4k(r, s * SLOT, SLOT, expect[s]);
	hbk_raid_close(r);
	close_disks(d, 4);
	for (unsigned i = 0; i < 4; i++)
		unlink(path[i]);
	free(buf);
}

/* ---- Files ------------------------------------------------------------------------------------------- */

static void test_file_backed_raid5(void **state)
{
	(void)state;
	static const struct level l = { HBK_RAID5, 3 };
	struct hbk_disk *d[3];
	char path[3][64];
	open_file_disks(d, path, 3, "test", true);
	struct hbk_raid *r = create(&l, d, NULL);
	write_all(r, 1100);
	check_all(r, 1100);
	assert_int_equal(hbk_raid_fail(r, 0), 0);
	check_all(r, 1100);
	hbk_raid_close(r);
	close_disks(d, 3);

	open_file_disks(d, path, 3, "test", false);
	struct hbk_raid_report rep;
	r = assemble(d, 3, &rep);
	assert_int_equal(rep.disk[0].verdict, HBK_RAID_DISK_STALE);
	check_all(r, 1100);
	hbk_raid_close(r);
	close_disks(d, 3);
	for (unsigned i = 0; i < 3; i++)
		unlink(path[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_parity_math),
		cmocka_unit_test(test_healthy_every_level),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_fail_stops),
		cmocka_unit_test(test_failed_array_forced_back),
		cmocka_unit_test(test_forced_back_only_what_is_certain),
		cmocka_unit_test(test_degraded_each_member),
		cmocka_unit_test(test_raid6_two_failures),
		cmocka_unit_test(test_rebuild_under_io),
		cmocka_unit_test(test_rebuild_resumes_after_restart),
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_crash_every_level),
		cmocka_unit_test(test_crash_with_cache),
		cmocka_unit_test(test_member_dies_mid_write),
		cmocka_unit_test(test_scrub_after_random_load),
		cmocka_unit_test(test_scrub_finds_corruption),
		cmocka_unit_test(test_metadata_verdicts),
		cmocka_unit_test(test_torn_superblock_is_damaged),
		cmocka_unit_test(test_dirty_degraded_needs_force),
		cmocka_unit_test(test_assemble_refuses_a_disk_twice),
		cmocka_unit_test(test_spare_opened_twice_is_one_spare),
		cmocka_unit_test(test_replace_refuses_a_disk_in_use),
		cmocka_unit_test(test_spare_that_cannot_be_written_is_refused),
		cmocka_unit_test(test_split_brain_is_refused),
		cmocka_unit_test(test_replaced_disk_is_no_split_brain),
		cmocka_unit_test(test_split_brain_edges),
		cmocka_unit_test(test_write_back_cache),
		cmocka_unit_test(test_cache_destage_error_reported_once),
		cmocka_unit_test(test_cache_member_failure_not_reported),
		cmocka_unit_test(test_cache_failed_array_takes_nothing),
		cmocka_unit_test(test_read_cache),
		cmocka_unit_test(test_cache_write_order_around_pass),
		cmocka_unit_test(test_no_rmw_before_resync),
		cmocka_unit_test(test_superblock_must_fit_its_disk),
		cmocka_unit_test(test_rebuilt_member_is_flushed_first),
		cmocka_unit_test(test_torn_metadata_round_assembles),
		cmocka_unit_test(test_file_backed_raid5),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
