/* SPDX-License-Identifier: MIT */
/*
 * The array's life: member failures, the management thread (metadata
 * rounds, the clean/dirty gate, hot-spare activation, rebuild and resync one
 * stripe at a time, rate limited), the administrative calls (fail, replace,
 * add a spare, wait, scrub, status) and shutdown.  Every state change is
 * made in memory under r->lock and then written to the members by the next
 * metadata round, which bumps the generation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "raid/raid_priv.h"

static const char *const level_names[] = { [HBK_RAID0] = "raid0", [HBK_RAID1] = "raid1",
	[HBK_RAID5] = "raid5", [HBK_RAID6] = "raid6", [HBK_RAID10] = "raid10" };

const char *hbk_raid_level_name(enum hbk_raid_level l)
{
	return (unsigned)l < HBK_ARRAY_SIZE(level_names) && level_names[l] ? level_names[l] : "?";
}

const char *hbk_raid_state_name(enum hbk_raid_state s)
{
	static const char *const n[] = { "optimal", "degraded", "rebuilding", "failed" };
	return (unsigned)s < HBK_ARRAY_SIZE(n) ? n[s] : "?";
}

const char *hbk_raid_verdict_name(enum hbk_raid_verdict v)
{
	static const char *const n[] = { "member", "spare", "stale", "foreign", "blank", "unreadable",
					      "damaged" };
	return (unsigned)v < HBK_ARRAY_SIZE(n) ? n[v] : "?";
}

void raid_uuid(uint8_t *out)
{
	if (getrandom(out, HBK_RAID_UUID_LEN, 0) != HBK_RAID_UUID_LEN) {
		uint64_t t = hbk_now_ns() ^ (uint64_t)(uintptr_t)out;
		for (unsigned i = 0; i < HBK_RAID_UUID_LEN; i++, t = t * 6364136223846793005ull + 1)
			out[i] = (uint8_t)(t >> 56);
	}
	out[6] = (uint8_t)((out[6] & 0x0f) | 0x40);   /* RFC 4122 version 4 */
	out[8] = (uint8_t)((out[8] & 0x3f) | 0x80);
}

/* ---- Member failures --------------------------------------------------------------- */

void raid_fail_locked(struct hbk_raid *r, unsigned i, const struct hbk_disk *d, const char *why)
{
	struct hbk_disk *cur = atomic_load(&r->m[i].disk);
	if ((d && cur != d) || member_state(r, i) == HBK_RAID_MEMBER_FAILED)
		return;   /* already failed, or the slot holds another disk by now */
	atomic_store_explicit(&r->m[i].state, HBK_RAID_MEMBER_FAILED, memory_order_release);
	r->meta_want++;
	atomic_store(&r->failed, !raid_tolerable(r));
	struct hbk_disk_info di = { .name = "missing" };
	if (cur)
		hbk_disk_info(cur, &di);
	hbk_log(HBK_LOG_WARN, "raid: member %u (%s) failed: %s%s", i, di.name, why,
		atomic_load(&r->failed) ? "; the array has FAILED" : "");
	uint64_t synced = atomic_load(&r->resync_pos);
	if (r->np && synced < r->member_size && !atomic_load(&r->failed))
		hbk_log(HBK_LOG_WARN, "raid: the resync had reached member byte %llu of %llu: past "
			"it, a stripe torn by a crash is rebuilt wrong from its parity",
			(unsigned long long)synced, (unsigned long long)r->member_size);
	pthread_cond_signal(&r->mgmt_cond);
}

unsigned raid_fail_mios(struct hbk_raid *r, const struct mio *mio, unsigned n)
{
	static const char *const what[] = { "read error", "write error", "flush error", "discard error" };
	unsigned bad = 0;
	for (unsigned i = 0; i < n; i++)
		bad += mio[i].result != 0;
	if (!bad)
		return 0;
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < n; i++)
		if (mio[i].result) {
			raid_count(r, C_MEMBER_ERRORS);
			raid_fail_locked(r, mio[i].member, mio[i].disk, what[mio[i].d.op & 3]);
		}
	pthread_mutex_unlock(&r->lock);
	return bad;
}

/* ---- The management thread --------------------------------------------------------------- */

static bool all_active(const struct hbk_raid *r)
{
	for (unsigned i = 0; i < r->n; i++)
		if (member_state(r, i) != HBK_RAID_MEMBER_ACTIVE)
			return false;
	return true;
}

static bool resync_pending(const struct hbk_raid *r)
{
	return r->level != HBK_RAID0 && atomic_load(&r->resync_pos) < r->member_size;
}

/* Whether a rebuild or a resync can make progress. */
static bool work_pending(const struct hbk_raid *r)
{
	if (atomic_load(&r->failed))
		return false;
	for (unsigned i = 0; i < r->n; i++)
		if (member_state(r, i) == HBK_RAID_MEMBER_REBUILDING)
			return true;
	return resync_pending(r) && all_active(r);
}

/* Resubmits the writes that waited for the dirty gate (drops r->lock). */
static void resubmit_dirty(struct hbk_raid *r)
{
	struct hbk_raid_io *io = r->dirty_head;
	r->dirty_head = r->dirty_tail = NULL;
	pthread_mutex_unlock(&r->lock);
	while (io) {
		struct hbk_raid_io *next = io->next_;
		raid_engine_submit(r, io);
		io = next;
	}
	pthread_mutex_lock(&r->lock);
}

/* Puts a hot spare into the first failed slot. */
static bool activate_spare(struct hbk_raid *r)
{
	if (!r->nspares || r->level == HBK_RAID0 || atomic_load(&r->failed))
		return false;
	for (unsigned i = 0; i < r->n; i++) {
		if (member_state(r, i) != HBK_RAID_MEMBER_FAILED)
			continue;
		struct hbk_disk *d = r->spare[0];
		memcpy(r->m[i].uuid, r->spare_uuid[0], HBK_RAID_UUID_LEN);
		r->nspares--;
		memmove(&r->spare[0], &r->spare[1], r->nspares * sizeof(r->spare[0]));
		memmove(&r->spare_uuid[0], &r->spare_uuid[1], r->nspares * sizeof(r->spare_uuid[0]));
		atomic_store(&r->m[i].rebuilt, 0);
		atomic_store_explicit(&r->m[i].disk, d, memory_order_release);
		atomic_store_explicit(&r->m[i].state, HBK_RAID_MEMBER_REBUILDING, memory_order_release);
		hbk_log(HBK_LOG_WARN, "raid: hot spare takes slot %u; rebuilding", i);
		r->meta_want++;
		return true;
	}
	return false;
}

static void throttle(struct hbk_raid *r, uint64_t bytes)
{
	r->throttle_until = r->rate ? hbk_now_ns() + bytes * 1000000000ull / r->rate : 0;
}

/*
 * One step of background work: a stripe of rebuild (onto every member whose
 * cursor is the lowest) or, on an optimal array, of resync.  Drops r->lock
 * while the stripe is worked on.  Returns false when there is nothing to do.
 */
static bool background_step(struct hbk_raid *r, struct ctx *x)
{
	uint32_t targets = 0;
	uint64_t pos = UINT64_MAX;
	struct hbk_disk *disk[HBK_RAID_MAX_MEMBERS];
	if (atomic_load(&r->failed))
		return false;
	for (unsigned i = 0; i < r->n; i++) {
		if (member_state(r, i) != HBK_RAID_MEMBER_REBUILDING)
			continue;
		uint64_t rb = atomic_load(&r->m[i].rebuilt);
		if (rb < pos) {
			pos = rb;
			targets = 0;
		}
		if (rb == pos)
			targets |= 1u << i;
		disk[i] = atomic_load(&r->m[i].disk);
	}
	if (targets && pos >= r->member_size) {
		for (unsigned i = 0; i < r->n; i++)
			if (targets & (1u << i)) {
				atomic_store_explicit(&r->m[i].state, HBK_RAID_MEMBER_ACTIVE,
						      memory_order_release);
				hbk_log(HBK_LOG_INFO, "raid: member %u rebuilt", i);
			}
		atomic_store(&r->failed, !raid_tolerable(r));
		r->progress_unsaved = true;
		r->meta_want++;
		return true;
	}
	bool resync = !targets && resync_pending(r) && all_active(r);
	if (!targets && !resync)
		return false;

	uint64_t s = (targets ? pos : atomic_load(&r->resync_pos)) / r->chunk;
	pthread_mutex_unlock(&r->lock);
	raid_stripe_lock(r, s);
	int rc = targets ? raid_rebuild_stripe(x, s, targets) : raid_scrub_stripe(x, s, true);
	/* The cursor moves before the stripe is unlocked: a write to the stripe
	 * either came before the step or sees the stripe as rebuilt. */
	pthread_mutex_lock(&r->lock);
	if (targets && !rc) {
		/* Not for a member that failed meanwhile, nor for its replacement. */
		for (unsigned i = 0; i < r->n; i++)
			if ((targets & (1u << i)) && member_state(r, i) == HBK_RAID_MEMBER_REBUILDING &&
			    atomic_load(&r->m[i].disk) == disk[i])
				atomic_store_explicit(&r->m[i].rebuilt, pos + r->chunk, memory_order_release);
	} else if (resync && rc >= 0) {
		atomic_store(&r->resync_pos, (s + 1) * r->chunk);
		r->progress_unsaved = true;
		if ((s + 1) * r->chunk >= r->member_size) {
			hbk_log(HBK_LOG_INFO, "raid: resync done");
			r->meta_want++;
		}
	}
	pthread_mutex_unlock(&r->lock);
	raid_stripe_unlock(r, s);
	pthread_mutex_lock(&r->lock);
	throttle(r, (uint64_t)r->chunk * (targets ? (unsigned)__builtin_popcount(targets) : 1));
	pthread_cond_broadcast(&r->cond);
	return true;
}

/*
 * After clean_delay_ms without writes: flush the members and write "clean",
 * unless a write turned up meanwhile.  Closes the dirty gate first so no
 * write slips past the flush.
 */
static void mark_clean(struct hbk_raid *r, struct ctx *x)
{
	r->dirty_ok = false;
	pthread_mutex_unlock(&r->lock);
	int rc = raid_flush_members(x);
	pthread_mutex_lock(&r->lock);
	if (r->dirty_head || rc) {
		r->dirty_ok = true;
		resubmit_dirty(r);
		return;
	}
	r->clean = true;
	r->meta_want++;
}

static void *mgmt_main(void *arg)
{
	hbk_thread_name("hbk-raid-mgmt");
	struct hbk_raid *r = arg;
	struct ctx x;
	bool have_ctx = raid_ctx_init(r, &x) == 0;
	if (!have_ctx)
		hbk_log(HBK_LOG_ERR, "raid: out of memory: no rebuild, resync or clean marking");
	pthread_mutex_lock(&r->lock);
	for (;;) {
		uint64_t now = hbk_now_ns(), delay = (uint64_t)r->clean_delay_ms * 1000000u;
		if (r->meta_done < r->meta_want) {
			raid_meta_write_locked(r);
			continue;
		}
		if (r->dirty_head && r->clean) {
			r->clean = false;
			r->dirty_seq = ++r->meta_want;
			continue;
		}
		if (r->dirty_head && r->meta_done >= r->dirty_seq) {
			r->dirty_ok = true;
			resubmit_dirty(r);
			continue;
		}
		if (r->stop)
			break;
		if (activate_spare(r))
			continue;
		if (have_ctx && now >= r->throttle_until && background_step(r, &x))
			continue;
		bool idle_dirty = !r->clean && r->dirty_ok && !r->writes;
		if (have_ctx && idle_dirty && now >= r->last_write_ns + delay) {
			mark_clean(r, &x);
			continue;
		}
		uint64_t until = UINT64_MAX;
		if (!r->clean)
			until = (idle_dirty ? r->last_write_ns : now) + delay;
		if (work_pending(r))
			until = HBK_MIN(until, HBK_MAX(r->throttle_until, now + 1000000));
		if (until == UINT64_MAX) {
			pthread_cond_wait(&r->mgmt_cond, &r->lock);
		} else {
			struct timespec ts = { .tv_sec = (time_t)(until / 1000000000u),
					       .tv_nsec = (long)(until % 1000000000u) };
			pthread_cond_timedwait(&r->mgmt_cond, &r->lock, &ts);
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (have_ctx)
		raid_ctx_free(&x);
	return NULL;
}

void raid_meta_sync_locked(struct hbk_raid *r)
{
	if (r->meta_done == r->meta_want)
		r->meta_want++;
	uint64_t want = r->meta_want;
	pthread_cond_signal(&r->mgmt_cond);
	while (r->meta_done < want)
		pthread_cond_wait(&r->cond, &r->lock);
}

/* ---- Lifecycle ------------------------------------------------------------------------------ */

struct hbk_raid *raid_new(const struct hbk_raid_opts *opts)
{
	struct hbk_raid *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->mgmt_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->wlock, NULL);
	pthread_cond_init(&r->wcond, NULL);
	pthread_mutex_init(&r->slock, NULL);
	pthread_cond_init(&r->scond, NULL);
	r->clean = true;
	r->rate = opts ? opts->rebuild_rate : 0;
	r->clean_delay_ms = opts && opts->clean_delay_ms ? opts->clean_delay_ms : 200;
	r->block_size = 512;
	return r;
}

uint64_t raid_cache_limit(void)
{
	return hbk_mem_physical() / 2;
}

int raid_run(struct hbk_raid *r, const struct hbk_raid_opts *opts)
{
	int err = raid_workers_start(r, opts && opts->workers ? opts->workers : 4);
	if (err)
		return err;
	err = -pthread_create(&r->mgmt, NULL, mgmt_main, r);
	if (err)
		return err;
	r->mgmt_running = true;
	if (opts && opts->cache_bytes && (err = raid_cache_create(r, opts->cache_bytes)))
		return err;
	r->cache_bytes = r->cache ? opts->cache_bytes : 0;
	pthread_mutex_lock(&r->lock);
	raid_meta_sync_locked(r);
	pthread_mutex_unlock(&r->lock);
	for (unsigned i = 0; i < r->n; i++)
		if (member_state(r, i) != HBK_RAID_MEMBER_FAILED)
			return 0;
	return -EIO;
}

/* Stops the cache (destaging it), the workers and the management thread. */
static void raid_stop(struct hbk_raid *r)
{
	if (r->cache)
		raid_cache_destroy(r->cache);
	r->cache = NULL;
	if (r->workers)
		raid_workers_stop(r);
	if (r->mgmt_running) {
		pthread_mutex_lock(&r->lock);
		r->stop = true;
		pthread_cond_signal(&r->mgmt_cond);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->mgmt, NULL);
		r->mgmt_running = false;
	}
}

void raid_destroy(struct hbk_raid *r)
{
	raid_stop(r);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	pthread_cond_destroy(&r->mgmt_cond);
	pthread_mutex_destroy(&r->wlock);
	pthread_cond_destroy(&r->wcond);
	pthread_mutex_destroy(&r->slock);
	pthread_cond_destroy(&r->scond);
	free(r);
}

void hbk_raid_close(struct hbk_raid *r)
{
	if (!r)
		return;
	raid_stop(r);

	/* Everything is on the members: say so (rebuild cursors included). */
	struct ctx x;
	if (!raid_ctx_init(r, &x)) {
		raid_flush_members(&x);
		raid_ctx_free(&x);
	}
	pthread_mutex_lock(&r->lock);
	if (r->writes || r->dirty_head || r->meta_waiters)
		hbk_log(HBK_LOG_ERR, "raid: closed with I/O in flight");
	r->clean = true;
	r->meta_want++;
	raid_meta_write_locked(r);
	pthread_mutex_unlock(&r->lock);
	raid_destroy(r);
}

/* ---- Administration ---------------------------------------------------------------------------- */

int hbk_raid_fail(struct hbk_raid *r, unsigned slot)
{
	if (slot >= r->n)
		return -EINVAL;
	pthread_mutex_lock(&r->lock);
	int rc = member_state(r, slot) == HBK_RAID_MEMBER_FAILED ? -EALREADY : 0;
	if (!rc) {
		raid_fail_locked(r, slot, NULL, "failed by request");
		raid_meta_sync_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

bool hbk_raid_fail_stops(struct hbk_raid *r, unsigned slot)
{
	if (slot >= r->n)
		return false;
	pthread_mutex_lock(&r->lock);
	bool stops = raid_tolerable(r) && !raid_tolerable_without(r, slot);
	pthread_mutex_unlock(&r->lock);
	return stops;
}

/* Whether d may join the array: big enough, not in it already, neither as
 * the same handle nor (uuid: the disk UUID d's superblock of this array
 * carries, or NULL) as another handle on, or a copy of, a disk in use: a
 * slot that has not failed, or a spare.  Under r->lock. */
static int check_new_disk(const struct hbk_raid *r, struct hbk_disk *d, const uint8_t *uuid)
{
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	if (raid_disk_fits(&di, r->member_size, r->block_size))
		return -EINVAL;
	for (unsigned i = 0; i < r->n; i++)
		if (atomic_load(&r->m[i].disk) == d ||
		    (uuid && member_state(r, i) != HBK_RAID_MEMBER_FAILED &&
		     !memcmp(r->m[i].uuid, uuid, HBK_RAID_UUID_LEN)))
			return -EINVAL;
	for (unsigned i = 0; i < r->nspares; i++)
		if (r->spare[i] == d || (uuid && !memcmp(r->spare_uuid[i], uuid, HBK_RAID_UUID_LEN)))
			return -EINVAL;
	return 0;
}

int hbk_raid_replace(struct hbk_raid *r, unsigned slot, struct hbk_disk *d)
{
	if (slot >= r->n || r->level == HBK_RAID0)
		return -EINVAL;
	uint8_t uuid[HBK_RAID_UUID_LEN];
	bool ours = raid_disk_uuid_of(r, d, uuid);   /* before the lock: it reads d */
	pthread_mutex_lock(&r->lock);
	int rc = check_new_disk(r, d, ours ? uuid : NULL);
	if (!rc && member_state(r, slot) != HBK_RAID_MEMBER_FAILED)
		rc = -EBUSY;
	if (!rc && atomic_load(&r->failed))
		rc = -EIO;
	if (!rc) {
		raid_uuid(r->m[slot].uuid);
		atomic_store(&r->m[slot].rebuilt, 0);
		atomic_store_explicit(&r->m[slot].disk, d, memory_order_release);
		atomic_store_explicit(&r->m[slot].state, HBK_RAID_MEMBER_REBUILDING,
				      memory_order_release);
		r->meta_want++;
		raid_meta_sync_locked(r);
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int hbk_raid_add_spare(struct hbk_raid *r, struct hbk_disk *d)
{
	uint8_t uuid[HBK_RAID_UUID_LEN];
	bool ours = raid_disk_uuid_of(r, d, uuid);   /* before the lock: it reads d */
	pthread_mutex_lock(&r->lock);
	int rc = check_new_disk(r, d, ours ? uuid : NULL);
	if (!rc && r->nspares == HBK_RAID_MAX_SPARES)
		rc = -ENOSPC;
	if (!rc) {
		raid_uuid(r->spare_uuid[r->nspares]);
		r->spare[r->nspares++] = d;
		r->meta_want++;
		raid_meta_sync_locked(r);
		/* A spare whose superblock cannot be written is dropped by the
		 * metadata round; one that took a failed slot meanwhile is in. */
		bool held = false;
		for (unsigned i = 0; i < r->nspares; i++)
			held = held || r->spare[i] == d;
		for (unsigned i = 0; i < r->n; i++)
			held = held || atomic_load(&r->m[i].disk) == d;
		rc = held ? 0 : -EIO;
	}
	pthread_mutex_unlock(&r->lock);
	return rc;
}

void hbk_raid_set_rebuild_rate(struct hbk_raid *r, uint64_t bytes_per_s)
{
	pthread_mutex_lock(&r->lock);
	r->rate = bytes_per_s;
	r->throttle_until = 0;
	pthread_cond_signal(&r->mgmt_cond);
	pthread_mutex_unlock(&r->lock);
}

int hbk_raid_wait(struct hbk_raid *r, uint32_t timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);   /* r->cond uses the default clock */
	uint64_t until = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec +
			 (uint64_t)timeout_ms * 1000000u;
	ts = (struct timespec){ .tv_sec = (time_t)(until / 1000000000u),
				.tv_nsec = (long)(until % 1000000000u) };
	int rc = 0;
	pthread_mutex_lock(&r->lock);
	while (work_pending(r) && !rc)
		rc = timeout_ms ? pthread_cond_timedwait(&r->cond, &r->lock, &ts)
				: pthread_cond_wait(&r->cond, &r->lock);
	if (work_pending(r))
		rc = -ETIMEDOUT;
	else
		rc = atomic_load(&r->failed) ? -EIO : 0;
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int hbk_raid_scrub(struct hbk_raid *r, bool repair, struct hbk_raid_scrub *out)
{
	struct ctx x;
	int rc = raid_ctx_init(r, &x);
	*out = (struct hbk_raid_scrub){ .first_mismatch = UINT64_MAX };
	if (rc)
		return rc;
	for (uint64_t s = 0; s < r->stripes && !rc; s++) {
		if (!all_active(r)) {
			rc = -EBUSY;
			break;
		}
		raid_stripe_lock(r, s);
		rc = raid_scrub_stripe(&x, s, repair);
		raid_stripe_unlock(r, s);
		out->stripes++;
		if (rc == 1) {
			if (!out->mismatches++)
				out->first_mismatch = s;
			out->repaired += repair;
			rc = 0;
		}
	}
	raid_ctx_free(&x);
	/* Repairs are written without FUA: "repaired" means on the media,
	 * so the members flush before it is said. */
	if (!rc && out->repaired)
		rc = hbk_raid_rw(r, HBK_DISK_FLUSH, NULL, 0, 0, 0);
	return rc;
}

void hbk_raid_status(struct hbk_raid *r, struct hbk_raid_status *out)
{
	*out = (struct hbk_raid_status){ .level = r->level, .chunk = r->chunk, .members = r->n,
		.size = r->size, .block_size = r->block_size, .member_size = r->member_size };
	memcpy(out->uuid, r->uuid, sizeof(out->uuid));
	pthread_mutex_lock(&r->lock);
	out->generation = r->generation;
	out->clean = r->clean && r->meta_done == r->meta_want;
	out->spares = r->nspares;
	bool degraded = false, rebuilding = false;
	for (unsigned i = 0; i < r->n; i++) {
		uint8_t st = member_state(r, i);
		uint64_t rb = st == HBK_RAID_MEMBER_REBUILDING ? atomic_load(&r->m[i].rebuilt) : 0;
		out->member[i].state = st;
		out->member[i].disk = atomic_load(&r->m[i].disk);
		out->member[i].rebuilt = rb;
		degraded |= st != HBK_RAID_MEMBER_ACTIVE;
		if (st == HBK_RAID_MEMBER_REBUILDING) {
			rebuilding = true;
			out->rebuild_done += HBK_MIN(rb, r->member_size);
			out->rebuild_total += r->member_size;
		}
	}
	pthread_mutex_unlock(&r->lock);
	out->state = atomic_load(&r->failed) ? HBK_RAID_FAILED : rebuilding ? HBK_RAID_REBUILDING
		   : degraded ? HBK_RAID_DEGRADED : HBK_RAID_OPTIMAL;
	out->resync_total = r->level == HBK_RAID0 ? 0 : r->member_size;
	out->resync_done = HBK_MIN(atomic_load(&r->resync_pos), out->resync_total);
	out->cache_bytes = r->cache_bytes;
	if (r->cache)
		raid_cache_status(r->cache, out);
	out->full_stripe_writes = atomic_load(&r->cnt[C_FULL]);
	out->rmw_writes = atomic_load(&r->cnt[C_RMW]);
	out->rcw_writes = atomic_load(&r->cnt[C_RCW]);
	out->degraded_ops = atomic_load(&r->cnt[C_DEGRADED]);
	out->member_errors = atomic_load(&r->cnt[C_MEMBER_ERRORS]);
}
