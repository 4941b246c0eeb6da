/* SPDX-License-Identifier: MIT */
/*
 * hbakit RAID engine: arrays of hbk_disk members at levels 0, 1, 5, 6 and 10,
 * with ISA-L parity, degraded operation, hot spares, background rebuild and
 * resync, scrub, an optional write-back cache, and persistent metadata on
 * every member so an array reassembles after a restart or a crash.  The
 * layouts, the metadata format and the crash-consistency rules are in
 * docs/raid.md.
 *
 * Array state machine (hbk_raid_status.state):
 *
 *     OPTIMAL --member fails--> DEGRADED --more fail than the level bears--> FAILED
 *        ^                         |  (a spare or a replacement is added)
 *        +----rebuild ends---- REBUILDING (a member slot is being rebuilt)
 */
#ifndef HBK_RAID_H
#define HBK_RAID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hbk/disk.h"

#define HBK_RAID_MAX_MEMBERS 32
#define HBK_RAID_MAX_SPARES 8
#define HBK_RAID_MAX_DISKS (HBK_RAID_MAX_MEMBERS + HBK_RAID_MAX_SPARES)
#define HBK_RAID_UUID_LEN 16

struct hbk_raid;

enum hbk_raid_level { HBK_RAID0 = 0, HBK_RAID1 = 1, HBK_RAID5 = 5, HBK_RAID6 = 6, HBK_RAID10 = 10 };

enum hbk_raid_state {
	HBK_RAID_OPTIMAL = 0,
	HBK_RAID_DEGRADED = 1,     /* running without a member's redundancy */
	HBK_RAID_REBUILDING = 2,   /* degraded, with a member being rebuilt */
	HBK_RAID_FAILED = 3,       /* more members lost than the level bears: I/O fails */
};

enum hbk_raid_member_state {
	HBK_RAID_MEMBER_ACTIVE = 1,
	HBK_RAID_MEMBER_REBUILDING = 2,  /* valid below its rebuild cursor */
	HBK_RAID_MEMBER_FAILED = 3,      /* failed, removed or missing */
};

/* What the array is; persistent. */
struct hbk_raid_config {
	enum hbk_raid_level level;
	uint32_t chunk;            /* bytes per member per stripe: power of two, 4 KiB..1 MiB (0: 64 KiB) */
	uint64_t member_size;      /* data bytes used on each member (0: all the smallest holds) */
	bool assume_clean;         /* members known consistent (e.g. all zero): no initial resync */
};

/* How it runs; not persistent. */
struct hbk_raid_opts {
	uint64_t cache_bytes;      /* write-back cache; 0: write-through; at most half
				    * the machine's memory (create, assemble: -E2BIG) */
	uint32_t workers;          /* threads for parity and degraded I/O (0: 4) */
	uint64_t rebuild_rate;     /* bytes/s per rebuild or resync, 0: unlimited */
	uint32_t clean_delay_ms;   /* idle time before the array is marked clean (0: 200) */
	bool force;                /* assemble a dirty RAID 5/6 that is also degraded,
				    * or a failed array with its last failed members */
	bool accept_split_brain;   /* assemble past a split brain: keep the newest
				    * generation's side, drop the other's for good */
	const uint8_t *uuid;       /* assemble: only this array; NULL: the one most disks hold */
};

/*
 * Creates an array over members[0..n) (in slot order) and writes its
 * metadata to every member.  The disks are borrowed: they must outlive the
 * array and are not closed by it.  Unless cfg->assume_clean, RAID 1/5/6/10
 * start a background resync that makes copies and parity consistent.  opts
 * may be NULL.  Returns 0 and *out, or -EINVAL (member count for the level,
 * chunk, disks too small), -EIO (metadata could not be written).
 */
int hbk_raid_create(const struct hbk_raid_config *cfg, struct hbk_disk *const *members,
		    unsigned n, const struct hbk_raid_opts *opts, struct hbk_raid **out);

enum hbk_raid_verdict {
	HBK_RAID_DISK_MEMBER = 0,  /* used in its slot */
	HBK_RAID_DISK_SPARE = 1,   /* used as a hot spare */
	HBK_RAID_DISK_STALE = 2,   /* this array's, but an older generation: not used */
	HBK_RAID_DISK_FOREIGN = 3, /* another array's, bad version or inconsistent */
	HBK_RAID_DISK_BLANK = 4,   /* no hbakit metadata */
	HBK_RAID_DISK_UNREADABLE = 5,
	HBK_RAID_DISK_DAMAGED = 6, /* hbakit metadata failing its CRC (a superblock torn by a
				    * crash, or corrupt): not used, as a stale disk */
};

/* What assembly found; filled even when it fails. */
struct hbk_raid_report {
	uint8_t uuid[HBK_RAID_UUID_LEN];
	uint64_t generation;       /* the newest generation found */
	bool dirty;                /* not shut down cleanly: a resync was started */
	unsigned ndisks;
	struct {
		uint8_t verdict;       /* enum hbk_raid_verdict */
		int slot;              /* MEMBER: its slot; DAMAGED: the slot the newest
					* metadata lists its disk in, if any; else -1 */
		uint64_t generation;   /* 0 when there is no valid metadata */
	} disk[HBK_RAID_MAX_DISKS];
	uint32_t missing;          /* bit i: slot i has no usable disk */
	unsigned nmissing, nstale, nforeign, nblank, ndamaged;
	/* Members whose superblock is one round behind the newest that
	 * still lists them as they are: a metadata round was cut short (a
	 * crash while writing it).  They are used, and the array resyncs. */
	unsigned nbehind;
	/* A stale disk records as failed a disk the newest generation still
	 * has in use: it ran the array on its own after the two parted (a
	 * split brain), and may hold acknowledged writes the array does not. */
	bool split_brain;
	/* bit i: slot i's disk had failed, and opts->force took it back
	 * because the array could not run without it (see hbk_raid_assemble). */
	uint32_t forced;
};

/*
 * Assembles the array found on disks[0..n), in any order.  Every disk gets
 * a verdict in *report (which may be NULL); stale, foreign, blank and
 * damaged disks are logged and never used (a damaged member's slot is
 * missing, as a stale one's).  Missing slots run degraded (and are rebuilt
 * onto a spare if one is found).  An array that was not shut down cleanly
 * gets a background resync.  Returns 0 and *out; -ENODEV when no metadata
 * was found or too many members are missing for the level; -EUCLEAN without
 * opts->force for a dirty and degraded RAID 5/6 (its parity cannot be
 * trusted to rebuild the missing member), and without
 * opts->accept_split_brain for a split brain (report->split_brain; the
 * switch keeps the newest generation, on a tie the first disk given, and
 * records the choice, so the other side's disks are merely stale from then
 * on unless they run on their own again).  force does not cover a split
 * brain: it is given for a missing disk or a dirty array, and accepting a
 * split brain drops acknowledged writes.  With opts->force, an array that
 * failed (too many members failed to run) takes back the members that
 * failed last, as mdadm's --force does, when that lets it run: only
 * disks of the newest generation among the failed, whose own superblock
 * records every other slot still missing as failed (or that failed in the
 * same round), so each saw every write the array acknowledged.  Each comes
 * back under a new disk UUID (report->forced), and the array resyncs:
 * writes that were in flight when it failed may have torn their stripes.
 * The same disk given twice is -EINVAL.
 */
int hbk_raid_assemble(struct hbk_disk *const *disks, unsigned n,
		      const struct hbk_raid_opts *opts, struct hbk_raid_report *report,
		      struct hbk_raid **out);

/*
 * Stops the array: destages the cache, ends the background work (a rebuild
 * or resync resumes where it stopped at the next assembly), flushes the
 * members and marks the metadata clean.  The caller must have no I/O in
 * flight.  Frees r; the disks stay open.  Not from a completion callback.
 */
void hbk_raid_close(struct hbk_raid *r);

/* ---- I/O ------------------------------------------------------------------------ */

/*
 * One array I/O, owned by the caller; offset and len are multiples of the
 * array's block_size.  done is called once with 0 or -errno: -EINVAL for a
 * bad request, -EIO when the data is unavailable (array FAILED).  A write is
 * acknowledged only once it is on every member it should be on and any
 * member failure it met is recorded in the metadata.
 */
struct hbk_raid_io {
	uint8_t op;                /* enum hbk_disk_op */
	uint32_t flags;            /* HBK_DISK_FUA: durable on the members when done */
	uint64_t offset;
	uint64_t len;
	void *buf;
	void (*done)(struct hbk_raid_io *io, int result);
	void *priv;                /* for the caller */
	/* Private to the RAID layer while the I/O is in flight. */
	struct hbk_raid_io *next_;
	uint64_t seq_;             /* metadata round or cache write it waits for */
	uint32_t state_;
	int result_;
};

/*
 * Submits one I/O.  Never blocks: reads and RAID 0/1/10 writes go straight
 * to the member disks from this thread; parity and degraded work runs on the
 * array's worker threads.  done is called from a disk completion thread, a
 * worker, the array's management or cache thread, or inline (errors, cache
 * hits).  done may submit more I/O.  Any thread.
 */
void hbk_raid_submit(struct hbk_raid *r, struct hbk_raid_io *io);

/* Submits and waits; returns 0 or -errno.  Not from a completion callback. */
int hbk_raid_rw(struct hbk_raid *r, enum hbk_disk_op op, void *buf, uint64_t offset,
		uint64_t len, uint32_t flags);

/* ---- Administration ---------------------------------------------------------------- */

struct hbk_raid_status {
	enum hbk_raid_level level;
	uint32_t chunk;
	unsigned members;
	uint64_t size;             /* array bytes */
	uint32_t block_size;
	uint8_t state;             /* enum hbk_raid_state */
	uint8_t uuid[HBK_RAID_UUID_LEN];
	uint64_t generation;
	bool clean;                /* the metadata says clean (no write since the last idle) */
	struct {
		uint8_t state;         /* enum hbk_raid_member_state */
		struct hbk_disk *disk; /* NULL when missing */
		uint64_t rebuilt;      /* REBUILDING: bytes done of member_size */
	} member[HBK_RAID_MAX_MEMBERS];
	uint64_t member_size;
	unsigned spares;
	uint64_t rebuild_done, rebuild_total;  /* over all rebuilding members */
	uint64_t resync_done, resync_total;    /* resync_done == total: consistent */
	uint64_t cache_bytes, cache_dirty;
	/* Counters since assembly. */
	uint64_t cache_read_hits, cache_read_misses;  /* reads the cache held whole, or not */
	uint64_t full_stripe_writes, rmw_writes, rcw_writes, degraded_ops, member_errors;
};

/* Copies the array's state into *out.  Any thread. */
void hbk_raid_status(struct hbk_raid *r, struct hbk_raid_status *out);

/*
 * Fails member slot (as if its disk had died) and records it in the metadata
 * before returning.  A hot spare, if any, takes its place and is rebuilt.
 * Returns 0, -EINVAL for a bad slot, -EALREADY if it has failed already.
 * Any thread but a completion callback.
 */
int hbk_raid_fail(struct hbk_raid *r, unsigned slot);

/*
 * Whether failing member slot (hbk_raid_fail) would stop the array: leave
 * it without the members its level needs, FAILED, which only a forced
 * assembly takes back (hbk_raid_assemble).  false for a bad slot.  Any thread.
 */
bool hbk_raid_fail_stops(struct hbk_raid *r, unsigned slot);

/*
 * Puts disk d (borrowed) into failed slot `slot` and starts rebuilding it;
 * I/O goes on meanwhile.  Returns 0, -EBUSY if the slot has not failed,
 * -EINVAL if d is too small or already in the array (also as another
 * handle on, or a copy of, a member that has not failed or a spare: d's
 * superblock, read here, says so).  Same threads as hbk_raid_fail.
 */
int hbk_raid_replace(struct hbk_raid *r, unsigned slot, struct hbk_disk *d);

/* Adds d (borrowed) as a hot spare.  Returns 0, -EINVAL (too small, already
 * used, as for hbk_raid_replace), -ENOSPC (HBK_RAID_MAX_SPARES), -EIO (its
 * superblock could not be written: it is not a spare).  Same threads as
 * hbk_raid_fail. */
int hbk_raid_add_spare(struct hbk_raid *r, struct hbk_disk *d);

/* Sets the rebuild and resync rate in bytes/s (0: unlimited).  Any thread. */
void hbk_raid_set_rebuild_rate(struct hbk_raid *r, uint64_t bytes_per_s);

/*
 * Waits until no rebuild or resync is left (or timeout_ms passed; 0 waits
 * forever).  Returns 0, -ETIMEDOUT, or -EIO if the array failed.  Not from
 * a completion callback.
 */
int hbk_raid_wait(struct hbk_raid *r, uint32_t timeout_ms);

struct hbk_raid_scrub {
	uint64_t stripes;          /* stripes checked */
	uint64_t mismatches;       /* stripes whose copies or parity disagreed */
	uint64_t first_mismatch;   /* the first such stripe (UINT64_MAX: none) */
	uint64_t repaired;         /* with repair: stripes rewritten */
};

/*
 * Checks every stripe (copies agree; parity matches the data) while I/O
 * goes on; with repair, rewrites the copies from the first and the parity
 * from the data.  Returns 0 and *out, -EBUSY when the array is not OPTIMAL
 * (nothing to compare against), -EIO on member errors.  Runs on the calling
 * thread; not from a completion callback.
 */
int hbk_raid_scrub(struct hbk_raid *r, bool repair, struct hbk_raid_scrub *out);

/* Names for logs: "raid5", "optimal", "member", ... */
const char *hbk_raid_level_name(enum hbk_raid_level l);
const char *hbk_raid_state_name(enum hbk_raid_state s);
const char *hbk_raid_verdict_name(enum hbk_raid_verdict v);

/* ---- Array specs ------------------------------------------------------------------------------ */

/*
 * A spec is one string that says what an array is and which disks it is
 * made of, shared by `hbakit raid` and the raid driver (grammar and profiles
 * in docs/raid.md):
 *
 *     level=5,chunk=64k,cache=1g,disk=file:/var/tmp/d0.img,...,spare=file:/var/tmp/s.img
 *     profile=lsi3108-raid5,size=256m
 *
 * A profile gives defaults that explicit keys override; without disk= the
 * array is built of memory disks of size= data bytes each.
 */

enum hbk_raid_spec_kind {
	HBK_RAID_SPEC_FILE = 0,    /* file or block device (io_uring) */
	HBK_RAID_SPEC_MEM = 1,
	HBK_RAID_SPEC_NULL = 2,
	HBK_RAID_SPEC_NBD = 3,
};

struct hbk_raid_spec_disk {
	enum hbk_raid_spec_kind kind;
	const char *text;          /* as written ("file:/var/tmp/d0.img"); "mem" when generated */
	const char *target;        /* FILE: path; NBD: URI or socket; else NULL */
	uint64_t size;             /* MEM, NULL: disk bytes, metadata area included */
};

/* A parsed spec.  The caller may adjust cfg and opts before opening it
 * (cfg.assume_clean, opts.force, opts.rebuild_rate). */
struct hbk_raid_spec {
	char profile[24];          /* "" when none */
	struct hbk_raid_config cfg;  /* level, chunk, member_size (size=) */
	struct hbk_raid_opts opts;   /* cache_bytes, workers, rebuild_rate */
	struct hbk_disk_latency latency;  /* model NONE: none */
	enum hbk_disk_direct direct;
	unsigned poll_ms;          /* poll=: file and block-device disks' poll_ms */
	unsigned nmembers;         /* disk[0..nmembers): members in slot order */
	unsigned ndisks;           /* disk[nmembers..ndisks): hot spares */
	struct hbk_raid_spec_disk disk[HBK_RAID_MAX_DISKS];
	char *text_;               /* private: the copy disk[].text points into */
};

/*
 * Parses spec text into *out (free with hbk_raid_spec_free).  Returns 0, or
 * -EINVAL with a message naming the bad key written to err (errlen bytes,
 * may be 0), or -ENOMEM.  Touches no disk.  Any thread.
 */
int hbk_raid_spec_parse(const char *text, struct hbk_raid_spec **out, char *err, size_t errlen);

/* Frees a parsed spec (NULL is fine). */
void hbk_raid_spec_free(struct hbk_raid_spec *s);

/*
 * A size in the spec's syntax ("64k", "1G", "4096": digits and an optional
 * binary unit k, m, g or t, any case) into *out, for callers that take sizes
 * next to specs (the raid driver's options).  Returns 0, or -EINVAL for
 * anything else and on overflow.  Any thread.
 */
int hbk_raid_spec_size(const char *text, uint64_t *out);

enum hbk_raid_spec_mode {
	HBK_RAID_SPEC_AUTO = 0,      /* assemble if a disk carries metadata, else create */
	HBK_RAID_SPEC_ASSEMBLE = 1,  /* assemble what the disks hold */
	HBK_RAID_SPEC_CREATE = 2,    /* create; disks carrying metadata need opts.force */
};

#define HBK_RAID_SPEC_MAX_OPEN (HBK_RAID_MAX_DISKS + HBK_RAID_MAX_SPARES)

/*
 * An opened spec: the array, its disks and what assembly found.  Owned by
 * the caller, filled by hbk_raid_spec_open (even when it fails), released
 * by hbk_raid_spec_close.
 */
struct hbk_raid_spec_array {
	struct hbk_raid *raid;     /* NULL when opening failed */
	bool created;              /* created now, else assembled */
	/* Disk i of the spec is disk[i]; attached disks follow (ndisks grows). */
	unsigned ndisks;
	struct hbk_disk *disk[HBK_RAID_SPEC_MAX_OPEN];  /* NULL: not open, see error[i] */
	/* Why disk i is not open or not used: the open's -errno; creating:
	 * -EEXIST it carries metadata, -ENOSPC it is too small; -EROFS it is
	 * read-only (creating, or a spare=). */
	int error[HBK_RAID_SPEC_MAX_OPEN];
	/* Verdict of each spec disk (entry i = disk i; an unopened disk is
	 * UNREADABLE); after a create every member is MEMBER, every spare SPARE. */
	struct hbk_raid_report report;
	char message[512];         /* on failure: what went wrong, for a person */
	/* Private. */
	const struct hbk_raid_spec *spec_;
	int lock_fd_[HBK_RAID_SPEC_MAX_OPEN];
	const char *text_[HBK_RAID_SPEC_MAX_OPEN];      /* attached disks: their text (owned) */
	bool made_[HBK_RAID_SPEC_MAX_OPEN];             /* file created by this open */
};

/*
 * Opens the disks of s (borrowed: it must outlive *a), applies its latency
 * model, and creates or assembles the array as mode says.  Every file is
 * locked (flock LOCK_EX|LOCK_NB) for as long as it is open, so a second
 * process gets -EBUSY ("in use by another process").  A file that does not
 * exist is created with size= data bytes (plus the metadata area) in CREATE
 * and AUTO modes when the spec has size=; a create that fails (a spare
 * that cannot be added included) removes the files it created and zeroes
 * the superblocks it wrote on the others.  A disk that cannot be opened
 * (error[i]) fails the open, except when assembling with opts.force: then
 * it counts as missing (verdict UNREADABLE) and goes stale, as assembly
 * writes metadata without it.  When assembling, blank disks listed as
 * spare= become hot spares.  Returns 0 with a->raid, or -errno with
 * a->message: -EBUSY (a file in use), the error of a disk that could not
 * be opened, -EEXIST (create, without opts.force, over metadata or over a
 * disk that holds data: a byte not zero in its first or last 64 KiB,
 * error[i] -ENOTEMPTY), -EROFS (create, a member or spare= disk is
 * read-only), -EINVAL (the disks cannot hold the array, or a spare is
 * smaller than the members), and whatever hbk_raid_create or
 * hbk_raid_assemble returned.  *a must be released with
 * hbk_raid_spec_close either way.  Not from a completion callback.
 */
int hbk_raid_spec_open(const struct hbk_raid_spec *s, enum hbk_raid_spec_mode mode,
		       struct hbk_raid_spec_array *a);

/*
 * Opens one more disk for the open array a (a replacement or a spare):
 * text is a disk as in the spec (file:PATH, mem:SIZE, null:SIZE, nbd:URI,
 * or a path).  A file that does not exist is created to fit the array; a
 * file that is one of the spec's disks returns that disk if the array does
 * not use it; a file it created is removed by hbk_raid_spec_close unless
 * the array holds the disk in a slot then (a refused replace, or a new
 * disk that failed and gave its slot to a spare, leaves it out).  A disk carrying hbakit metadata
 * that is not a stale disk of this array is refused without opts.force.  Returns 0 and *out (borrowed:
 * closed by hbk_raid_spec_close), or -errno with a->message: -EINVAL (bad
 * text, or the disk is in use by the array), -EBUSY (in use by another
 * process), -EEXIST (foreign metadata), -ENOSPC (too many disks).
 * Same threads as hbk_raid_spec_open.
 */
int hbk_raid_spec_attach(struct hbk_raid_spec_array *a, const char *text, struct hbk_disk **out);

/*
 * Closes the array (cleanly: see hbk_raid_close), then every disk, and
 * releases the locks.  Safe after a failed open and on a zeroed struct.
 */
void hbk_raid_spec_close(struct hbk_raid_spec_array *a);

#endif /* HBK_RAID_H */
