/* SPDX-License-Identifier: MIT */
/*
 * Persistent array metadata: the 4 KiB superblock at offset 0 of every
 * member and spare (layout table in docs/raid.md), written in rounds that
 * bump the generation, and the two ways an array comes to life: create
 * (new UUIDs, first metadata) and assemble (read every disk's superblock,
 * sort the disks into members, spares, stale, foreign and blank ones, and
 * decide whether the array was shut down cleanly).
 */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "raid/raid_priv.h"

#define SB_MAGIC   "HBKRAID\0"
#define SB_VERSION 1u
#define SB_CLEAN   0x1u            /* flags: shut down (or idle) with everything on disk */
#define SB_SPARE_SLOT 0xffffffffu

enum sb_role { ROLE_ACTIVE = 1, ROLE_REBUILDING = 2, ROLE_SPARE = 3 };

/* The on-disk superblock; every integer little-endian, every reserved byte zero. */
struct raid_sb {
	uint8_t  magic[8];             /* "HBKRAID\0" */
	uint32_t version;              /* SB_VERSION */
	uint32_t sb_size;              /* 4096 */
	uint32_t crc;                  /* CRC-32C of the 4096 bytes with this field zero */
	uint32_t flags;                /* SB_CLEAN */
	uint8_t  array_uuid[16];
	uint8_t  disk_uuid[16];        /* this disk */
	uint64_t generation;           /* +1 at every metadata round */
	uint32_t level;                /* enum hbk_raid_level */
	uint32_t chunk;                /* bytes */
	uint32_t members;              /* slots */
	uint32_t role;                 /* enum sb_role */
	uint32_t slot;                 /* this disk's slot; SB_SPARE_SLOT for a spare */
	uint32_t block_size;           /* array block size */
	uint64_t data_offset;          /* member byte where data starts */
	uint64_t member_size;          /* data bytes per member */
	uint64_t array_size;           /* bytes */
	uint64_t rebuilt;              /* ROLE_REBUILDING: member data bytes already rebuilt */
	uint64_t resync_offset;        /* member bytes below which copies/parity agree; ~0: all */
	uint64_t ctime;                /* creation, seconds since the epoch */
	uint64_t utime;                /* this write */
	uint8_t  reserved0[112];
	uint8_t  slot_state[32];       /* enum hbk_raid_member_state per slot, 0 past `members` */
	uint8_t  reserved1[224];
	uint8_t  slot_uuid[32][16];    /* disk_uuid of the disk in each slot */
	struct raid_dismissed dismissed[32];   /* disks an assembly dismissed
						* (split brain); gen 0: an unused entry */
	uint8_t  reserved2[2304];
};
static_assert(sizeof(struct raid_sb) == SB_SIZE, "superblock is 4 KiB");
static_assert(offsetof(struct raid_sb, crc) == 16, "");
static_assert(offsetof(struct raid_sb, array_uuid) == 24, "");
static_assert(offsetof(struct raid_sb, generation) == 56, "");
static_assert(offsetof(struct raid_sb, level) == 64, "");
static_assert(offsetof(struct raid_sb, data_offset) == 88, "");
static_assert(offsetof(struct raid_sb, resync_offset) == 120, "");
static_assert(offsetof(struct raid_sb, reserved0) == 144, "");
static_assert(offsetof(struct raid_sb, slot_state) == 256, "");
static_assert(offsetof(struct raid_sb, slot_uuid) == 512, "");
static_assert(offsetof(struct raid_sb, dismissed) == 1024, "");
static_assert(sizeof(struct raid_dismissed) == 24, "");
static_assert(offsetof(struct raid_sb, reserved2) == 1792, "");
static_assert(MAX_DISMISSED == 32, "the superblock keeps 32 dismissals");
static_assert(HBK_RAID_MAX_MEMBERS <= 32, "slot tables hold 32 slots");

static uint32_t sb_crc(const struct raid_sb *sb)
{
	struct raid_sb copy = *sb;
	copy.crc = 0;
	return ~crc32_iscsi((unsigned char *)&copy, (int)sizeof(copy), 0xffffffffu);
}

/* Builds the superblock of the disk in `slot` (-1 - i: spare i).  Under r->lock. */
static void sb_build(const struct hbk_raid *r, int slot, struct raid_sb *sb)
{
	uint64_t resync = atomic_load(&r->resync_pos);
	memset(sb, 0, sizeof(*sb));
	memcpy(sb->magic, SB_MAGIC, sizeof(sb->magic));
	sb->version = htole32(SB_VERSION);
	sb->sb_size = htole32(SB_SIZE);
	sb->flags = htole32(r->clean ? SB_CLEAN : 0);
	memcpy(sb->array_uuid, r->uuid, 16);
	sb->generation = htole64(r->generation);
	sb->level = htole32(r->level);
	sb->chunk = htole32(r->chunk);
	sb->members = htole32(r->n);
	sb->block_size = htole32(r->block_size);
	sb->data_offset = htole64(DATA_OFFSET);
	sb->member_size = htole64(r->member_size);
	sb->array_size = htole64(r->size);
	sb->resync_offset = htole64(resync >= r->member_size ? UINT64_MAX : resync);
	sb->ctime = htole64(r->ctime);
	sb->utime = htole64((uint64_t)time(NULL));
	for (unsigned i = 0; i < r->n; i++) {
		sb->slot_state[i] = member_state(r, i);
		memcpy(sb->slot_uuid[i], r->m[i].uuid, 16);
	}
	for (unsigned i = 0; i < r->ndismissed; i++) {
		sb->dismissed[i] = r->dismissed[i];
		sb->dismissed[i].gen = htole64(r->dismissed[i].gen);
	}
	if (slot < 0) {
		memcpy(sb->disk_uuid, r->spare_uuid[-1 - slot], 16);
		sb->role = htole32(ROLE_SPARE);
		sb->slot = htole32(SB_SPARE_SLOT);
	} else {
		bool rebuilding = member_state(r, (unsigned)slot) == HBK_RAID_MEMBER_REBUILDING;
		memcpy(sb->disk_uuid, r->m[slot].uuid, 16);
		sb->role = htole32(rebuilding ? ROLE_REBUILDING : ROLE_ACTIVE);
		sb->slot = htole32((uint32_t)slot);
		sb->rebuilt = htole64(rebuilding ? atomic_load(&r->m[slot].rebuilt) : 0);
	}
	sb->crc = htole32(sb_crc(sb));
}

/* Runs member I/Os mio[0..n) and waits for them, r->lock released
 * meanwhile.  Under r->lock. */
static void mios_run_unlocked(struct hbk_raid *r, struct mio *mio, unsigned n)
{
	pthread_mutex_unlock(&r->lock);
	struct batch b = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	raid_mio_run(&b, mio, n);
	pthread_cond_destroy(&b.cond);
	pthread_mutex_destroy(&b.lock);
	pthread_mutex_lock(&r->lock);
}

void raid_meta_write_locked(struct hbk_raid *r)
{
	uint64_t want = r->meta_want;
	struct mio mio[HBK_RAID_MAX_DISKS];
	int who[HBK_RAID_MAX_DISKS];
	struct raid_sb *sbs = NULL;
	unsigned n = 0;

	/* A round records how far rebuild and resync got (a cursor, or a
	 * member rebuilt and ACTIVE), and their writes carry no FUA: the
	 * members are flushed first, so no superblock claims data a power cut
	 * could still take.  Not needed when there is no such progress. */
	bool progress = r->progress_unsaved;
	for (unsigned i = 0; i < r->n && !progress; i++)
		progress = member_state(r, i) == HBK_RAID_MEMBER_REBUILDING;
	r->progress_unsaved = false;
	if (progress) {
		struct mio fl[HBK_RAID_MAX_MEMBERS];
		unsigned nf = 0;
		for (unsigned i = 0; i < r->n; i++) {
			struct hbk_disk *d = atomic_load(&r->m[i].disk);
			if (d && member_state(r, i) != HBK_RAID_MEMBER_FAILED)
				fl[nf++] = (struct mio){ .disk = d, .member = i,
							 .d = { .op = HBK_DISK_FLUSH } };
		}
		mios_run_unlocked(r, fl, nf);
		for (unsigned i = 0; i < nf; i++)
			if (fl[i].result)
				raid_fail_locked(r, fl[i].member, fl[i].disk, "flush error");
	}

	if (posix_memalign((void **)&sbs, 4096, sizeof(*sbs) * HBK_RAID_MAX_DISKS)) {
		/* Nothing written: the writes waiting for this round stay
		 * waiting (a member failure they wait to see recorded is not
		 * yet), and the caller tries again. */
		hbk_log(HBK_LOG_ERR, "raid: out of memory for a metadata round; retrying");
		pthread_mutex_unlock(&r->lock);
		usleep(10000);
		pthread_mutex_lock(&r->lock);
		return;
	}
	r->generation++;
	for (int i = 0; i < (int)r->n + (int)r->nspares; i++) {
		int slot = i < (int)r->n ? i : -1 - (i - (int)r->n);
		struct hbk_disk *d = slot >= 0 ? atomic_load(&r->m[slot].disk)
					       : r->spare[-1 - slot];
		if (!d || (slot >= 0 && member_state(r, (unsigned)slot) == HBK_RAID_MEMBER_FAILED))
			continue;
		sb_build(r, slot, &sbs[n]);
		who[n] = slot;
		mio[n] = (struct mio){ .disk = d, .member = slot >= 0 ? (unsigned)slot : 0,
			.d = { .op = HBK_DISK_WRITE, .flags = HBK_DISK_FUA, .offset = 0,
			       .len = SB_SIZE, .buf = &sbs[n] } };
		n++;
	}
	mios_run_unlocked(r, mio, n);
	free(sbs);

	for (unsigned i = 0; i < n; i++) {
		if (!mio[i].result)
			continue;
		if (who[i] >= 0) {
			raid_fail_locked(r, (unsigned)who[i], mio[i].disk, "metadata write error");
			continue;
		}
		for (unsigned j = 0; j < r->nspares; j++)
			if (r->spare[j] == mio[i].disk) {
				hbk_log(HBK_LOG_WARN, "raid: spare dropped: metadata write error");
				r->nspares--;
				memmove(&r->spare[j], &r->spare[j + 1], (r->nspares - j) * sizeof(r->spare[0]));
				memmove(&r->spare_uuid[j], &r->spare_uuid[j + 1],
					(r->nspares - j) * sizeof(r->spare_uuid[0]));
				break;
			}
	}
	r->meta_done = HBK_MAX(r->meta_done, want);

	/* Acknowledge the writes that waited for this round. */
	struct hbk_raid_io *ready = NULL, **pp = &r->meta_waiters;
	while (*pp) {
		struct hbk_raid_io *io = *pp;
		if (io->seq_ <= r->meta_done) {
			*pp = io->next_;
			io->next_ = ready;
			ready = io;
		} else {
			pp = &io->next_;
		}
	}
	pthread_cond_broadcast(&r->cond);
	if (ready) {
		/* A round that left the array FAILED acknowledges nothing: the
		 * members that hold those writes are no longer all in use, and a
		 * forced assembly may not take back the ones that do. */
		bool failed = atomic_load(&r->failed);
		pthread_mutex_unlock(&r->lock);
		while (ready) {
			struct hbk_raid_io *next = ready->next_;
			ready->done(ready, failed ? -EIO : ready->result_);
			ready = next;
		}
		pthread_mutex_lock(&r->lock);
	}
}

/* ---- Create ------------------------------------------------------------------------------- */

uint32_t raid_chunk_of(const struct hbk_raid_config *cfg)
{
	return cfg->chunk ? cfg->chunk : 64u << 10;
}

int raid_fit(const struct hbk_raid_config *cfg, struct hbk_disk *const *disks, unsigned n,
	     uint64_t *member_size, uint32_t *block_size)
{
	uint64_t smallest = UINT64_MAX, chunk = raid_chunk_of(cfg);
	uint32_t bs = 0;
	for (unsigned i = 0; i < n; i++) {
		struct hbk_disk_info di;
		hbk_disk_info(disks[i], &di);
		if (di.read_only || di.block_size > 4096)
			return -EINVAL;
		for (unsigned j = 0; j < i; j++)
			if (disks[j] == disks[i])
				return -EINVAL;
		bs = HBK_MAX(bs, di.block_size);
		smallest = HBK_MIN(smallest, di.size);
	}
	if (chunk < 4096 || smallest < DATA_OFFSET + chunk)
		return -EINVAL;
	uint64_t fits = (smallest - DATA_OFFSET) / chunk * chunk;
	if (cfg->member_size > fits)
		return -EINVAL;
	*member_size = cfg->member_size ? cfg->member_size : fits;
	*block_size = bs;
	return 0;
}

int hbk_raid_create(const struct hbk_raid_config *cfg, struct hbk_disk *const *members,
		    unsigned n, const struct hbk_raid_opts *opts, struct hbk_raid **out)
{
	if (!n || n > HBK_RAID_MAX_MEMBERS)
		return -EINVAL;
	if (opts && opts->cache_bytes > raid_cache_limit())
		return -E2BIG;
	struct hbk_raid *r = raid_new(opts);
	if (!r)
		return -ENOMEM;
	r->level = cfg->level;
	r->chunk = raid_chunk_of(cfg);
	r->n = n;
	int err = raid_fit(cfg, members, n, &r->member_size, &r->block_size);
	if (!err)
		err = raid_geometry(r);
	if (err) {
		raid_destroy(r);
		return err;
	}
	raid_uuid(r->uuid);
	r->ctime = (uint64_t)time(NULL);
	for (unsigned i = 0; i < n; i++) {
		atomic_store(&r->m[i].disk, members[i]);
		atomic_store(&r->m[i].state, HBK_RAID_MEMBER_ACTIVE);
		raid_uuid(r->m[i].uuid);
	}
	atomic_store(&r->resync_pos, cfg->assume_clean || r->level == HBK_RAID0 ? r->member_size : 0);
	err = raid_run(r, opts);
	for (unsigned i = 0; !err && i < n; i++)
		if (member_state(r, i) != HBK_RAID_MEMBER_ACTIVE)
			err = -EIO;   /* a member did not take its metadata */
	if (err) {
		raid_destroy(r);
		return err;
	}
	hbk_log(HBK_LOG_INFO, "raid: created %s of %u members, chunk %u, %llu bytes",
		hbk_raid_level_name(r->level), n, r->chunk, (unsigned long long)r->size);
	*out = r;
	return 0;
}

/* ---- Assemble ------------------------------------------------------------------------------- */

/* Reads and checks disk d's superblock into sb (host byte order).  Returns
 * the verdict: MEMBER when valid, BLANK, FOREIGN, DAMAGED (our format, a
 * checksum that does not match: only the UUIDs in sb may be looked at, as
 * they were on disk) or UNREADABLE. */
static enum hbk_raid_verdict sb_read(struct hbk_disk *d, struct raid_sb *sb)
{
	if (hbk_disk_rw(d, HBK_DISK_READ, sb, 0, SB_SIZE, 0))
		return HBK_RAID_DISK_UNREADABLE;
	if (memcmp(sb->magic, SB_MAGIC, sizeof(sb->magic)))
		return HBK_RAID_DISK_BLANK;
	if (le32toh(sb->version) != SB_VERSION || le32toh(sb->sb_size) != SB_SIZE)
		return HBK_RAID_DISK_FOREIGN;
	/* Our magic and format with a bad checksum: most likely a superblock
	 * torn by a crash during a metadata round (part of the new one on
	 * disk, part of the old).  Nothing in it can be trusted, but it is
	 * no other array's: assembly says so, and treats the disk as stale. */
	if (le32toh(sb->crc) != sb_crc(sb))
		return HBK_RAID_DISK_DAMAGED;
	sb->generation = le64toh(sb->generation);
	sb->flags = le32toh(sb->flags);
	sb->level = le32toh(sb->level);
	sb->chunk = le32toh(sb->chunk);
	sb->members = le32toh(sb->members);
	sb->role = le32toh(sb->role);
	sb->slot = le32toh(sb->slot);
	sb->block_size = le32toh(sb->block_size);
	sb->data_offset = le64toh(sb->data_offset);
	sb->member_size = le64toh(sb->member_size);
	sb->array_size = le64toh(sb->array_size);
	sb->rebuilt = le64toh(sb->rebuilt);
	sb->resync_offset = le64toh(sb->resync_offset);
	sb->ctime = le64toh(sb->ctime);
	for (unsigned i = 0; i < HBK_ARRAY_SIZE(sb->dismissed); i++)
		sb->dismissed[i].gen = le64toh(sb->dismissed[i].gen);
	/* A checksum proves the bytes are as written, not that they fit
	 * this disk: a block size the geometry could divide by zero with, or
	 * finer than the disk's, and a member larger than the disk (a
	 * superblock copied onto a smaller one) make it foreign. */
	struct hbk_disk_info di;
	hbk_disk_info(d, &di);
	uint32_t bs = sb->block_size;
	if (bs < 512 || bs > 65536 || (bs & (bs - 1)) || bs < di.block_size ||
	    sb->member_size > di.size || sb->data_offset > di.size - sb->member_size)
		return HBK_RAID_DISK_FOREIGN;
	return HBK_RAID_DISK_MEMBER;
}

int raid_disk_fits(const struct hbk_disk_info *di, uint64_t member_size, uint32_t block_size)
{
	if (di->size < DATA_OFFSET + member_size)
		return -ENOSPC;
	return block_size % di->block_size || di->read_only ? -EINVAL : 0;
}

bool raid_disk_uuid_of(const struct hbk_raid *r, struct hbk_disk *d, uint8_t *uuid)
{
	struct raid_sb *sb;
	if (posix_memalign((void **)&sb, 4096, sizeof(*sb)))
		return false;
	bool ours = sb_read(d, sb) == HBK_RAID_DISK_MEMBER &&
		    !memcmp(sb->array_uuid, r->uuid, sizeof(sb->array_uuid));
	if (ours)
		memcpy(uuid, sb->disk_uuid, HBK_RAID_UUID_LEN);
	free(sb);
	return ours;
}

/* Whether two superblocks describe the same geometry. */
static bool same_geometry(const struct raid_sb *a, const struct raid_sb *b)
{
	return a->level == b->level && a->chunk == b->chunk && a->members == b->members &&
	       a->block_size == b->block_size && a->data_offset == b->data_offset &&
	       a->member_size == b->member_size && a->array_size == b->array_size;
}

/* The array UUID to assemble: the one asked for, else the one most disks
 * carry (ties: the newest generation).  Returns the index of a disk with it,
 * or -1. */
static int pick_array(const struct raid_sb *sb, const uint8_t *verdict, unsigned n,
		      const uint8_t *want)
{
	int best = -1;
	unsigned best_count = 0;
	for (unsigned i = 0; i < n; i++) {
		if (verdict[i] != HBK_RAID_DISK_MEMBER)
			continue;
		if (want && memcmp(sb[i].array_uuid, want, 16))
			continue;
		unsigned count = 0;
		for (unsigned j = 0; j < n; j++)
			count += verdict[j] == HBK_RAID_DISK_MEMBER &&
				 !memcmp(sb[i].array_uuid, sb[j].array_uuid, 16);
		if (count > best_count ||
		    (count == best_count && sb[i].generation > sb[best].generation)) {
			best = (int)i;
			best_count = count;
		}
	}
	return best;
}

/* Whether member superblock s missed only the newest round, which still
 * lists it in its slot and not failed: that round was cut short (its
 * superblocks are written to every disk at once), and the disk is as
 * current as the others. */
static bool round_behind(const struct raid_sb *s, const struct raid_sb *a, uint64_t newest)
{
	return s->generation + 1 == newest && s->role != ROLE_SPARE && s->slot < a->members &&
	       !memcmp(a->slot_uuid[s->slot], s->disk_uuid, 16) &&
	       a->slot_state[s->slot] != HBK_RAID_MEMBER_FAILED;
}

/* The dismissal of disk uuid in superblock a, or NULL. */
static const struct raid_dismissed *dismissal(const struct raid_sb *a, const uint8_t *uuid)
{
	for (unsigned i = 0; i < HBK_ARRAY_SIZE(a->dismissed); i++)
		if (a->dismissed[i].gen && !memcmp(a->dismissed[i].uuid, uuid, 16))
			return &a->dismissed[i];
	return NULL;
}

/*
 * Whether stale member superblock s ran the array on its own, apart from
 * the authoritative superblock a's side (a split brain).  a has moved on
 * without s's disk; s in turn records a disk failed that a still has in
 * use, with the same UUID.  A disk leaves an array for good (it comes back
 * only as a new disk, under a new UUID), so s wrote that round after the
 * two histories parted: each side ran without the other and may hold
 * acknowledged writes the other lacks.  A disk that merely stopped, or was
 * replaced, records nothing about disks that left after it.  Once an
 * assembly that accepted a split brain dismissed s's disk, s counts again
 * only if it took a round of its own since.
 */
static bool ran_without(const struct raid_sb *s, const struct raid_sb *a)
{
	if (s->role == ROLE_SPARE || s->slot >= a->members ||
	    (a->slot_state[s->slot] != HBK_RAID_MEMBER_FAILED &&
	     !memcmp(a->slot_uuid[s->slot], s->disk_uuid, 16)))
		return false;
	const struct raid_dismissed *d = dismissal(a, s->disk_uuid);
	if (d)
		return s->generation >= d->gen;
	for (unsigned k = 0; k < a->members; k++)
		if (a->slot_state[k] != HBK_RAID_MEMBER_FAILED && k != s->slot &&
		    s->slot_state[k] == HBK_RAID_MEMBER_FAILED &&
		    !memcmp(s->slot_uuid[k], a->slot_uuid[k], 16))
			return true;
	return false;
}

/* Records that an assembly accepting a split brain dismissed stale disk s:
 * a round of its own from now on shows it ran the array again.  The oldest
 * dismissal goes when all are taken.  Before the array runs. */
static void dismiss(struct hbk_raid *r, const struct raid_sb *s)
{
	struct raid_dismissed *d = NULL;
	for (unsigned i = 0; i < r->ndismissed && !d; i++)
		if (!memcmp(r->dismissed[i].uuid, s->disk_uuid, 16))
			d = &r->dismissed[i];
	if (!d) {
		if (r->ndismissed == MAX_DISMISSED)
			memmove(&r->dismissed[0], &r->dismissed[1],
				--r->ndismissed * sizeof(r->dismissed[0]));
		d = &r->dismissed[r->ndismissed++];
		memcpy(d->uuid, s->disk_uuid, 16);
	}
	d->gen = s->generation + 1;
}

/*
 * Forced assembly of an array that failed: takes back, as active members,
 * the disks that failed last, when the array cannot run without them.  A
 * disk qualifies when it was an active member (not a replacement still
 * rebuilding), its slot in the authoritative superblock a is failed and
 * still names it, it is no split brain and was not dismissed by one, its
 * generation is the newest among such disks (the last round before its
 * failure: an older one missed writes the array went on to acknowledge),
 * and its own superblock records every other slot still missing as failed
 * or rebuilding (holding no data of its own yet), unless that slot's disk
 * is of the same newest generation and is taken back too.  Such a disk holds every write acknowledged up to its failure,
 * and the array failed with it, acknowledging nothing after.  When more
 * disks share the newest generation than the array needs, nothing tells
 * which of them failed first (and missed writes), so none is taken.  Each
 * comes back under a new disk UUID, as a disk that left must (so a stale
 * superblock that recorded its failure is no split brain).  None is taken
 * back unless the array then runs.  Returns how many were taken back.
 * Before the array runs.
 */
static unsigned take_back_failed(struct hbk_raid *r, const struct raid_sb *sb, unsigned n,
				 const struct raid_sb *a, struct hbk_disk *const *disks,
				 struct hbk_raid_report *rep)
{
	bool cand[HBK_RAID_MAX_DISKS] = { false };
	uint64_t last = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct raid_sb *s = &sb[i];
		cand[i] = rep->disk[i].verdict == HBK_RAID_DISK_STALE && s->role == ROLE_ACTIVE &&
			  s->slot < r->n && !atomic_load(&r->m[s->slot].disk) &&
			  a->slot_state[s->slot] == HBK_RAID_MEMBER_FAILED &&
			  !memcmp(a->slot_uuid[s->slot], s->disk_uuid, 16) && !ran_without(s, a) &&
			  !dismissal(a, s->disk_uuid);
		if (cand[i])
			last = HBK_MAX(last, s->generation);
	}
	uint32_t peers = 0;   /* slots of the candidates of the newest generation */
	unsigned npeers = 0;
	for (unsigned i = 0; i < n; i++) {
		cand[i] = cand[i] && sb[i].generation == last;
		if (cand[i] && !(peers & (1u << sb[i].slot))) {
			peers |= 1u << sb[i].slot;
			npeers++;
		}
	}
	unsigned take[HBK_RAID_MAX_DISKS], taken = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct raid_sb *s = &sb[i];
		bool saw_all = cand[i] && !atomic_load(&r->m[s->slot].disk);
		for (unsigned k = 0; k < r->n && saw_all; k++)
			saw_all = k == s->slot || atomic_load(&r->m[k].disk) || (peers & (1u << k)) ||
				  s->slot_state[k] != HBK_RAID_MEMBER_ACTIVE;
		if (saw_all) {
			atomic_store(&r->m[s->slot].disk, disks[i]);
			atomic_store(&r->m[s->slot].state, HBK_RAID_MEMBER_ACTIVE);
			take[taken++] = i;
		}
	}
	/* Every peer is needed, or their order of failure matters. */
	bool runs = taken == npeers && raid_tolerable(r);
	for (unsigned t = 0; t < taken && runs; t++) {
		atomic_store(&r->m[sb[take[t]].slot].state, HBK_RAID_MEMBER_FAILED);
		runs = !raid_tolerable(r);
		atomic_store(&r->m[sb[take[t]].slot].state, HBK_RAID_MEMBER_ACTIVE);
	}
	if (!runs && taken)
		hbk_log(HBK_LOG_ERR, "raid: forced: %u disk(s) failed last, at generation %llu, and "
			"the array %s; none is taken back", taken, (unsigned long long)last,
			raid_tolerable(r) ? "needs fewer of them than that, so which failed first "
			"(missing writes) cannot be told" : "cannot run even with them");
	for (unsigned t = 0; t < taken; t++) {
		unsigned i = take[t], slot = sb[i].slot;
		struct member *m = &r->m[slot];
		if (!runs) {
			atomic_store(&m->disk, NULL);
			atomic_store(&m->state, HBK_RAID_MEMBER_FAILED);
			continue;
		}
		raid_uuid(m->uuid);
		atomic_store(&m->rebuilt, 0);
		rep->disk[i].verdict = HBK_RAID_DISK_MEMBER;
		rep->disk[i].slot = (int)slot;
		rep->forced |= 1u << slot;
		struct hbk_disk_info di;
		hbk_disk_info(disks[i], &di);
		hbk_log(HBK_LOG_WARN, "raid: forced: member %u (%s), failed after generation %llu, "
			"is taken back as it was then; resyncing, as writes in flight when it failed "
			"may have torn their stripes", slot, di.name, (unsigned long long)last);
	}
	return runs ? taken : 0;
}

/* Sorts the disks carrying the chosen array's superblocks (verdicts in
 * rep).  Returns the index of the authoritative superblock, -1 if none. */
static int sort_disks(const struct raid_sb *sb, unsigned n, int pick, struct hbk_raid_report *rep)
{
	uint64_t newest = 0;
	int auth = -1;
	for (unsigned i = 0; i < n; i++)
		if (rep->disk[i].verdict == HBK_RAID_DISK_MEMBER ||
		    rep->disk[i].verdict == HBK_RAID_DISK_DAMAGED) {
			/* A damaged superblock naming another array is that
			 * array's business: foreign here. */
			if (memcmp(sb[i].array_uuid, sb[pick].array_uuid, 16))
				rep->disk[i].verdict = HBK_RAID_DISK_FOREIGN;
			else if (rep->disk[i].verdict == HBK_RAID_DISK_MEMBER && sb[i].generation > newest)
				newest = sb[i].generation;
		}
	/* The newest superblock of a member (not a spare) tells who is who. */
	for (unsigned i = 0; i < n; i++)
		if (rep->disk[i].verdict == HBK_RAID_DISK_MEMBER && sb[i].generation == newest &&
		    (auth < 0 || sb[auth].role == ROLE_SPARE))
			auth = (int)i;
	if (auth < 0)
		return -1;
	const struct raid_sb *a = &sb[auth];
	for (unsigned i = 0; i < n; i++) {
		if (rep->disk[i].verdict == HBK_RAID_DISK_DAMAGED) {
			/* Never used; its slot, if the newest metadata lists
			 * its disk UUID, is reported so the member is named. */
			for (unsigned k = 0; k < a->members && k < HBK_RAID_MAX_MEMBERS; k++)
				if (!memcmp(a->slot_uuid[k], sb[i].disk_uuid, 16))
					rep->disk[i].slot = (int)k;
			continue;
		}
		if (rep->disk[i].verdict != HBK_RAID_DISK_MEMBER)
			continue;
		const struct raid_sb *s = &sb[i];
		uint8_t v = HBK_RAID_DISK_MEMBER;
		if (!same_geometry(s, a) || s->members > HBK_RAID_MAX_MEMBERS ||
		    (s->role != ROLE_SPARE && s->slot >= s->members))
			v = HBK_RAID_DISK_FOREIGN;
		else if (s->generation < newest && !round_behind(s, a, newest))
			v = HBK_RAID_DISK_STALE;
		else if (s->role == ROLE_SPARE)
			v = HBK_RAID_DISK_SPARE;
		else if (memcmp(a->slot_uuid[s->slot], s->disk_uuid, 16) ||
			 a->slot_state[s->slot] == HBK_RAID_MEMBER_FAILED)
			v = HBK_RAID_DISK_STALE;   /* the array moved on without this disk */
		for (unsigned j = 0; j < i && v == HBK_RAID_DISK_MEMBER; j++)
			if (rep->disk[j].verdict == HBK_RAID_DISK_MEMBER && rep->disk[j].slot == (int)s->slot)
				v = HBK_RAID_DISK_FOREIGN;   /* a copy of a member's disk */
		/* A copy of a spare's disk, or that disk opened twice: as a second
		 * spare it could fill a second slot with the first one's disk. */
		for (unsigned j = 0; j < i && v == HBK_RAID_DISK_SPARE; j++)
			if (rep->disk[j].verdict == HBK_RAID_DISK_SPARE &&
			    !memcmp(sb[j].disk_uuid, s->disk_uuid, sizeof(s->disk_uuid)))
				v = HBK_RAID_DISK_FOREIGN;
		rep->disk[i].verdict = v;
		rep->disk[i].slot = v == HBK_RAID_DISK_MEMBER ? (int)s->slot : -1;
		rep->nbehind += v == HBK_RAID_DISK_MEMBER && s->generation < newest;
		rep->split_brain |= v == HBK_RAID_DISK_STALE && ran_without(s, a);
	}
	rep->generation = newest;
	memcpy(rep->uuid, a->array_uuid, 16);
	return auth;
}

int hbk_raid_assemble(struct hbk_disk *const *disks, unsigned n,
		      const struct hbk_raid_opts *opts, struct hbk_raid_report *report,
		      struct hbk_raid **out)
{
	struct hbk_raid_report local;
	struct hbk_raid_report *rep = report ? report : &local;
	struct raid_sb *sb;
	uint8_t verdict[HBK_RAID_MAX_DISKS];
	int err = -ENODEV;

	*rep = (struct hbk_raid_report){ .ndisks = n };
	if (!n || n > HBK_RAID_MAX_DISKS)
		return -EINVAL;
	/* A disk given twice would be taken twice: a spare for two slots, or
	 * the same disk as two members' data. */
	for (unsigned i = 0; i < n; i++)
		for (unsigned j = 0; j < i; j++)
			if (disks[i] == disks[j])
				return -EINVAL;
	if (opts && opts->cache_bytes > raid_cache_limit())
		return -E2BIG;
	if (posix_memalign((void **)&sb, 4096, sizeof(*sb) * n))
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		rep->disk[i].verdict = verdict[i] = (uint8_t)sb_read(disks[i], &sb[i]);
		rep->disk[i].slot = -1;
		rep->disk[i].generation = verdict[i] == HBK_RAID_DISK_MEMBER ? sb[i].generation : 0;
	}
	int pick = pick_array(sb, verdict, n, opts ? opts->uuid : NULL);
	int auth = pick < 0 ? -1 : sort_disks(sb, n, pick, rep);
	struct hbk_raid *r = NULL;
	if (auth < 0)
		goto report;
	const struct raid_sb *a = &sb[auth];
	/* A round cut short may have been any: resync, to be sure. */
	rep->dirty = !(a->flags & SB_CLEAN) || rep->nbehind;

	r = raid_new(opts);
	if (!r) {
		err = -ENOMEM;
		goto report;
	}
	r->level = (enum hbk_raid_level)a->level;
	r->chunk = a->chunk;
	r->n = a->members;
	r->block_size = a->block_size;
	r->member_size = a->member_size;
	r->generation = a->generation;
	r->ctime = a->ctime;
	memcpy(r->uuid, a->array_uuid, 16);
	if (a->data_offset != DATA_OFFSET || raid_geometry(r) || r->size != a->array_size) {
		err = -EINVAL;
		goto report;
	}
	for (unsigned i = 0; i < r->n; i++) {
		memcpy(r->m[i].uuid, a->slot_uuid[i], 16);
		atomic_store(&r->m[i].state, HBK_RAID_MEMBER_FAILED);
	}
	for (unsigned i = 0; i < HBK_ARRAY_SIZE(a->dismissed); i++)
		if (a->dismissed[i].gen)
			r->dismissed[r->ndismissed++] = a->dismissed[i];
	for (unsigned i = 0; i < n; i++) {
		if (rep->disk[i].verdict == HBK_RAID_DISK_SPARE && r->nspares < HBK_RAID_MAX_SPARES) {
			memcpy(r->spare_uuid[r->nspares], sb[i].disk_uuid, 16);
			r->spare[r->nspares++] = disks[i];
		}
		if (rep->disk[i].verdict != HBK_RAID_DISK_MEMBER)
			continue;
		struct member *m = &r->m[sb[i].slot];
		bool rebuilding = a->slot_state[sb[i].slot] == HBK_RAID_MEMBER_REBUILDING;
		atomic_store(&m->disk, disks[i]);
		atomic_store(&m->rebuilt, rebuilding ? sb[i].rebuilt / r->chunk * r->chunk : 0);
		atomic_store(&m->state, rebuilding ? HBK_RAID_MEMBER_REBUILDING : HBK_RAID_MEMBER_ACTIVE);
	}
	if (!raid_tolerable(r) && opts && opts->force && take_back_failed(r, sb, n, a, disks, rep))
		rep->dirty = true;
	for (unsigned i = 0; i < r->n; i++)
		if (!atomic_load(&r->m[i].disk)) {
			rep->missing |= 1u << i;
			rep->nmissing++;
		}
	/* A crash may have torn a stripe anywhere: resync it all. */
	atomic_store(&r->resync_pos, r->level == HBK_RAID0 ? r->member_size
				     : rep->dirty ? 0 : HBK_MIN(a->resync_offset, r->member_size));
	bool degraded = false;
	for (unsigned i = 0; i < r->n; i++)
		degraded |= member_state(r, i) != HBK_RAID_MEMBER_ACTIVE;
	unsigned ndamaged = 0;
	for (unsigned i = 0; i < n; i++)
		ndamaged += rep->disk[i].verdict == HBK_RAID_DISK_DAMAGED && rep->disk[i].slot >= 0;
	if (!raid_tolerable(r)) {
		hbk_log(HBK_LOG_ERR, "raid: too many members missing to assemble the %s%s",
			hbk_raid_level_name(r->level),
			ndamaged ? " (members with damaged metadata, below, count as missing)" : "");
	} else if (rep->split_brain && !(opts && opts->accept_split_brain)) {
		hbk_log(HBK_LOG_ERR, "raid: split brain: a stale disk (below) ran the array on its "
			"own after parting from generation %llu's disks, which ran it without that "
			"disk; each side may hold writes the other lacks (assemble with "
			"accept_split_brain to keep generation %llu's side and record the choice)",
			(unsigned long long)rep->generation, (unsigned long long)rep->generation);
		err = -EUCLEAN;
	} else if (r->np && degraded && atomic_load(&r->resync_pos) < r->member_size &&
		   !(opts && opts->force)) {
		/* Dirty now, or dirty before and its resync not finished since
		 * (a clean close in between records CLEAN with the resync's
		 * offset): past that offset a stripe may be torn, and its
		 * parity would rebuild the missing member wrong. */
		hbk_log(HBK_LOG_ERR, "raid: degraded, and its resync (after a crash, or since it "
			"was created) has not finished: the parity cannot be trusted to rebuild "
			"(assemble with force to accept)");
		rep->dirty = true;
		err = -EUCLEAN;
	} else {
		/* Past an accepted split brain: the disks that went on alone
		 * are dismissed, so that they are merely stale from now on (the
		 * choice is recorded, not asked again) unless they run on their
		 * own once more.  Said loudly: writes are dropped. */
		if (rep->split_brain)
			hbk_log(HBK_LOG_WARN, "raid: split brain accepted: generation %llu's side is "
				"kept, and what the stale disks (below) took on their own is "
				"dropped for good", (unsigned long long)rep->generation);
		for (unsigned i = 0; i < n && rep->split_brain; i++)
			if (rep->disk[i].verdict == HBK_RAID_DISK_STALE && ran_without(&sb[i], a))
				dismiss(r, &sb[i]);
		/* Forced past an unfinished resync while degraded: the parity
		 * is taken as it is (no resync can run without the missing
		 * member), and recorded so, as mdadm's --force does. */
		if (r->np && degraded && atomic_load(&r->resync_pos) < r->member_size) {
			hbk_log(HBK_LOG_WARN, "raid: forced: degraded and not resynced; the parity is "
				"taken as it is, so a member rebuilt from it may be wrong where a crash "
				"tore a stripe past member byte %llu",
				(unsigned long long)atomic_load(&r->resync_pos));
			atomic_store(&r->resync_pos, r->member_size);
		}
		r->clean = !rep->dirty;
		err = raid_run(r, opts);
	}

report:
	for (unsigned i = 0; i < n; i++) {
		uint8_t v = rep->disk[i].verdict;
		rep->nstale += v == HBK_RAID_DISK_STALE;
		rep->nforeign += v == HBK_RAID_DISK_FOREIGN;
		rep->nblank += v == HBK_RAID_DISK_BLANK;
		rep->ndamaged += v == HBK_RAID_DISK_DAMAGED;
		if (v == HBK_RAID_DISK_DAMAGED) {
			struct hbk_disk_info di;
			hbk_disk_info(disks[i], &di);
			if (rep->disk[i].slot >= 0)
				hbk_log(HBK_LOG_WARN, "raid: disk %s has damaged metadata on member %d "
					"(its superblock fails its checksum: torn by a crash, or corrupt): "
					"not used; the slot is missing until it is replaced (a rebuild)",
					di.name, rep->disk[i].slot);
			else
				hbk_log(HBK_LOG_WARN, "raid: disk %s has damaged metadata (its superblock "
					"fails its checksum: torn by a crash, or corrupt): not used", di.name);
		} else if (v != HBK_RAID_DISK_MEMBER && v != HBK_RAID_DISK_SPARE) {
			struct hbk_disk_info di;
			hbk_disk_info(disks[i], &di);
			hbk_log(HBK_LOG_WARN, "raid: disk %s is %s (generation %llu of %llu): not used",
				di.name, hbk_raid_verdict_name(v),
				(unsigned long long)rep->disk[i].generation,
				(unsigned long long)rep->generation);
		}
	}
	for (unsigned i = 0; i < HBK_RAID_MAX_MEMBERS; i++)
		if (rep->missing & (1u << i))
			hbk_log(HBK_LOG_WARN, "raid: member %u is missing", i);
	free(sb);
	if (err) {
		if (r)
			raid_destroy(r);
		return err;
	}
	if (rep->dirty)
		hbk_log(HBK_LOG_WARN, "raid: not shut down cleanly: resyncing");
	*out = r;
	return 0;
}
