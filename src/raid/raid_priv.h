/* SPDX-License-Identifier: MIT */
/*
 * Private interface of the RAID engine: the array structure, the layout
 * (which member holds which column of which stripe), the ISA-L parity
 * helpers, per-thread stripe scratch, the I/O paths, the metadata writer and
 * the write-back cache.  See docs/raid.md for the layouts and the on-disk
 * format.
 */
#ifndef HBK_RAID_PRIV_H
#define HBK_RAID_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "common/common.h"
#include "hbk/raid.h"

#define DATA_OFFSET    (1u << 20)  /* member bytes before the data: metadata lives at 0 */
#define SB_SIZE        4096u
#define MAX_DISMISSED  32u         /* split-brain dismissals a superblock keeps */
#define NBUCKETS       1024u       /* stripe locks: stripe s uses bucket s % NBUCKETS */
#define MAX_MERGE      (1u << 20)  /* largest member I/O built by merging chunks */
#define FAST_STRIPES   256u        /* fast-path writes lock at most this many stripes */

/* hbk_raid_io.state_ bits */
#define IO_ADMITTED 0x1u           /* counted in r->writes (passed the dirty gate) */

enum raid_counter { C_FULL, C_RMW, C_RCW, C_DEGRADED, C_MEMBER_ERRORS, C_COUNT };

/* A disk an assembly dismissed past an accepted split brain (docs/raid.md): in
 * memory in host byte order, in the superblock little-endian. */
struct raid_dismissed {
	uint8_t uuid[HBK_RAID_UUID_LEN];
	uint64_t gen;                  /* the first of its own generations that would show
					* it ran the array again */
};

struct member {
	/* NULL: missing.  Changed only while the slot is FAILED, stored with
	 * release before the state leaves FAILED; see raid_member_disk(). */
	struct hbk_disk *_Atomic disk;
	_Atomic uint8_t state;         /* enum hbk_raid_member_state */
	_Atomic uint64_t rebuilt;      /* REBUILDING: member data bytes [0, rebuilt) are valid */
	uint8_t uuid[HBK_RAID_UUID_LEN];
};

/* One member I/O: the disk request, the member slot and disk it goes to,
 * and its result. */
struct mio {
	struct hbk_disk_io d;
	struct hbk_disk *disk;
	unsigned member;
	int result;
};

#define HBK_CONTAINER_OF(p, type, field) ((type *)(void *)((char *)(p) - offsetof(type, field)))

/* Waits for a set of member I/Os. */
struct batch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending;
};

/* Scratch of one thread doing stripe work (a worker, the management thread, scrub). */
struct ctx {
	struct hbk_raid *r;
	uint8_t *mem;
	uint8_t *col[2 * HBK_RAID_MAX_MEMBERS + 1];  /* columns, new data (RMW), one temporary */
	struct mio *mio;               /* 2 * n + 2 */
	struct batch b;
};

struct cache;

struct hbk_raid {
	/* Geometry: fixed once assembled. */
	enum hbk_raid_level level;
	uint32_t chunk, block_size;
	unsigned n;                    /* member slots */
	unsigned k;                    /* data columns per stripe */
	unsigned np;                   /* parity columns per stripe (RAID 5: 1, RAID 6: 2) */
	uint64_t member_size;          /* data bytes per member */
	uint64_t stripes;              /* member_size / chunk */
	uint64_t stripe_bytes;         /* k * chunk: array bytes per stripe */
	uint64_t size;                 /* array bytes */
	uint8_t uuid[HBK_RAID_UUID_LEN];
	uint64_t ctime;
	uint8_t enc[(HBK_RAID_MAX_MEMBERS + 2) * HBK_RAID_MAX_MEMBERS]; /* RAID 6: P+Q matrix */
	uint8_t pq_tables[32 * 2 * HBK_RAID_MAX_MEMBERS];               /* RAID 6: its P, Q rows */

	struct member m[HBK_RAID_MAX_MEMBERS];
	_Atomic bool failed;           /* more members lost than the level bears */
	_Atomic uint64_t resync_pos;   /* member bytes below which copies/parity agree */
	bool progress_unsaved;         /* rebuild or resync moved since the last round (r->lock) */

	/* Under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;           /* broadcast after each metadata round and step */
	pthread_cond_t mgmt_cond;      /* wakes the management thread (CLOCK_MONOTONIC) */
	struct hbk_disk *spare[HBK_RAID_MAX_SPARES];
	uint8_t spare_uuid[HBK_RAID_MAX_SPARES][HBK_RAID_UUID_LEN];
	unsigned nspares;
	/* Disks dismissed past an accepted split brain, oldest first,
	 * each with the first generation of its own that would show it ran
	 * the array again (docs/raid.md, split brain).  In every superblock;
	 * set by assembly before the array runs, read-only after. */
	struct raid_dismissed dismissed[MAX_DISMISSED];
	unsigned ndismissed;
	uint64_t generation;           /* of the last metadata written */
	uint64_t meta_want, meta_done; /* metadata changes asked for / written */
	struct hbk_raid_io *meta_waiters;    /* writes waiting for meta_done >= seq_ */
	bool clean;                    /* what the next metadata says */
	bool dirty_ok;                 /* "not clean" is on disk: writes may go */
	uint64_t dirty_seq;            /* the metadata change that records "not clean" */
	struct hbk_raid_io *dirty_head, *dirty_tail; /* writes waiting for dirty_ok */
	unsigned writes;               /* admitted writes in flight */
	uint64_t last_write_ns;
	uint64_t rate;                 /* rebuild/resync bytes/s, 0: unlimited */
	uint64_t throttle_until;       /* no background step before this time */
	uint32_t clean_delay_ms;
	bool stop;
	bool mgmt_running;
	pthread_t mgmt;

	/* Worker queue, under wlock. */
	pthread_mutex_t wlock;
	pthread_cond_t wcond;
	struct hbk_raid_io *whead, *wtail;
	bool wstop;
	pthread_t *workers;
	unsigned nworkers;

	/* Stripe locks, under slock. */
	pthread_mutex_t slock;
	pthread_cond_t scond;
	uint8_t held[NBUCKETS];

	struct cache *cache;
	uint64_t cache_bytes;
	_Atomic uint64_t cnt[C_COUNT];
};

/* ---- layout.c: geometry, mapping and parity ------------------------------------ */

/* Fills the derived geometry (k, np, stripes, sizes, RAID 6 tables) from
 * level, chunk, n and member_size.  Returns 0 or -EINVAL. */
int raid_geometry(struct hbk_raid *r);

/* Member holding column c of stripe s; c < k is data, k is P, k + 1 is Q.
 * Parity levels only. */
unsigned raid_col_member(const struct hbk_raid *r, uint64_t s, unsigned c);

/* Members holding data column c of stripe s (one at levels 0/5/6, every
 * member at level 1, a pair at level 10) into out; returns the count. */
unsigned raid_copies(const struct hbk_raid *r, uint64_t s, unsigned c, unsigned *out);

/* Whether member i holds valid data for stripe s. */
bool raid_member_ok(const struct hbk_raid *r, unsigned i, uint64_t s);

/* Member i's disk if it holds valid data for stripe s, else NULL.  Loads the
 * disk before the state, so a slot replaced meanwhile is never mistaken for
 * the healthy disk it had. */
struct hbk_disk *raid_member_disk(const struct hbk_raid *r, unsigned i, uint64_t s);

/* Whether the array still has every stripe's data (the level bears its
 * failures); _without: if member gone failed as well. */
bool raid_tolerable(const struct hbk_raid *r);
bool raid_tolerable_without(const struct hbk_raid *r, unsigned gone);

/* Computes P (and Q) of cols[0..k) into cols[k] (and cols[k+1]), len bytes. */
void raid_gen_parity(const struct hbk_raid *r, uint8_t **cols, uint32_t len);

/* Whether cols[0..k+np) are consistent (parity matches data). */
bool raid_parity_ok(const struct hbk_raid *r, uint8_t **cols, uint32_t len);

/* Rebuilds the columns in `missing` (bit per column, at most np) from the
 * others.  Returns 0 or -EIO (too many missing). */
int raid_recover(const struct hbk_raid *r, uint8_t **cols, uint32_t missing, uint32_t len);

/* RAID 6 read-modify-write: folds the change of data column c (delta = old
 * xor new) into pq[0] = P and pq[1] = Q, in place. */
void raid_update_pq(const struct hbk_raid *r, unsigned c, uint8_t *delta, uint8_t **pq,
		    uint32_t len);

/*
 * Plans the member I/Os of array range [a0, a1) of io without parity work:
 * levels 0/1/10, and reads of healthy columns at 5/6.  Adjacent pieces on
 * one member are merged.  Returns the count written to out (at most max),
 * -EAGAIN when a column must be reconstructed, -EIO when no copy is left.
 */
int raid_plan(const struct hbk_raid *r, const struct hbk_raid_io *io, uint64_t a0, uint64_t a1,
	      struct mio *out, unsigned max);

/* Upper bound of raid_plan's count for a range of len bytes. */
unsigned raid_plan_max(const struct hbk_raid *r, uint64_t a0, uint64_t len);

/* ---- io.c: the I/O paths -------------------------------------------------------------- */

int raid_ctx_init(struct hbk_raid *r, struct ctx *x);
void raid_ctx_free(struct ctx *x);

/* Submits mio[0..n) and waits for them all; results in mio[i].result. */
void raid_mio_run(struct batch *b, struct mio *mio, unsigned n);

/* Submits the member I/Os x->mio[0..n) and waits; returns how many failed
 * (their members are failed). */
unsigned raid_batch_run(struct ctx *x, unsigned n);

/* Flushes every member that has not failed; a member whose flush fails is
 * failed.  Returns 0, or -EIO when the array has failed. */
int raid_flush_members(struct ctx *x);

/* The engine behind the cache: validates, applies the dirty gate, and runs
 * io on the fast path or a worker. */
void raid_engine_submit(struct hbk_raid *r, struct hbk_raid_io *io);

/* Ends an engine I/O: write accounting, metadata barrier, done. */
void raid_complete(struct hbk_raid *r, struct hbk_raid_io *io, int result);

int raid_workers_start(struct hbk_raid *r, unsigned n);
void raid_workers_stop(struct hbk_raid *r);

void raid_stripe_lock(struct hbk_raid *r, uint64_t s);
void raid_stripe_unlock(struct hbk_raid *r, uint64_t s);

/* Rebuilds stripe s onto the members in `targets` (stripe lock held).
 * Returns 0, or -EIO (failed members are marked). */
int raid_rebuild_stripe(struct ctx *x, uint64_t s, uint32_t targets);

/* Checks stripe s (stripe lock held); with repair rewrites what disagrees.
 * Returns 1 on a mismatch, 0 if consistent, -EBUSY if a member is not
 * usable, -EIO on errors. */
int raid_scrub_stripe(struct ctx *x, uint64_t s, bool repair);

/* ---- mgmt.c: state changes, metadata rounds, background work ---------------------------- */

/* Marks member i failed (under r->lock) if it still holds disk d (any disk
 * when d is NULL); asks for a metadata round. */
void raid_fail_locked(struct hbk_raid *r, unsigned i, const struct hbk_disk *d, const char *why);
/* Fails the members of the I/Os in mio[0..n) that ended with an error;
 * returns how many ended so.  Takes r->lock. */
unsigned raid_fail_mios(struct hbk_raid *r, const struct mio *mio, unsigned n);

/* Asks for a metadata round unless one is pending, and waits until the
 * metadata is written (under r->lock; the management thread must run). */
void raid_meta_sync_locked(struct hbk_raid *r);

/* Array lifecycle: raid_new allocates an array with its locks and the
 * run-time options; the caller fills the geometry and members; raid_run
 * starts the threads and writes the metadata once (-EIO if no member took
 * it); raid_destroy stops what runs and frees r (no metadata written). */
struct hbk_raid *raid_new(const struct hbk_raid_opts *opts);
int raid_run(struct hbk_raid *r, const struct hbk_raid_opts *opts);
void raid_destroy(struct hbk_raid *r);

/* Random bytes for UUIDs. */
void raid_uuid(uint8_t *out);
/* The largest write-back cache allowed: half the machine's memory.  A cache
 * the kernel cannot back gets the process killed with acknowledged writes
 * in it. */
uint64_t raid_cache_limit(void);

/* ---- meta.c: the on-disk superblock ----------------------------------------------------- */

/* Writes the superblock to every present member and spare, generation + 1.
 * Called with r->lock held, drops it while writing.  Failed writes fail the
 * member (or drop the spare). */
void raid_meta_write_locked(struct hbk_raid *r);

/* The chunk cfg asks for (0: the default). */
uint32_t raid_chunk_of(const struct hbk_raid_config *cfg);

/* The data bytes per member and the block size an array of cfg over
 * disks[0..n) gets, as hbk_raid_create sets them; -EINVAL if the disks
 * cannot hold it (read-only, a disk given twice, too small, blocks over
 * 4 KiB, a chunk under 4 KiB).  Reads only the disks' info. */
int raid_fit(const struct hbk_raid_config *cfg, struct hbk_disk *const *disks, unsigned n,
	     uint64_t *member_size, uint32_t *block_size);

/* Whether a disk of info di can take a slot (or be a spare) of an array of
 * member_size data bytes per member and block_size blocks: 0, -ENOSPC (too
 * small), -EINVAL (blocks larger than the array's, or read-only). */
int raid_disk_fits(const struct hbk_disk_info *di, uint64_t member_size, uint32_t block_size);

/* Whether disk d carries a valid superblock of array r; if so its disk
 * UUID goes to uuid.  Reads d (blocking: not from a completion). */
bool raid_disk_uuid_of(const struct hbk_raid *r, struct hbk_disk *d, uint8_t *uuid);

/* ---- cache.c ---------------------------------------------------------------------------- */

int raid_cache_create(struct hbk_raid *r, uint64_t bytes);
/* Destages everything, then frees the cache. */
void raid_cache_destroy(struct cache *c);
void raid_cache_submit(struct cache *c, struct hbk_raid_io *io);
/* Fills the cache's part of a status: dirty bytes and read hits/misses. */
void raid_cache_status(struct cache *c, struct hbk_raid_status *out);

static inline void raid_count(struct hbk_raid *r, enum raid_counter c)
{
	atomic_fetch_add_explicit(&r->cnt[c], 1, memory_order_relaxed);
}

/* The low n bits set (n <= 32). */
static inline uint32_t raid_mask(unsigned n)
{
	return n >= 32 ? UINT32_MAX : (1u << n) - 1;
}

static inline uint8_t member_state(const struct hbk_raid *r, unsigned i)
{
	return atomic_load_explicit(&r->m[i].state, memory_order_acquire);
}

#endif /* HBK_RAID_PRIV_H */
