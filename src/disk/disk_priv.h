/* SPDX-License-Identifier: MIT */
/*
 * Private interface between the disk core (validation, faults, bounce
 * buffers, latency models, statistics) and the backends (io_uring file,
 * memory, null, NBD).  A backend embeds struct hbk_disk first, fills info,
 * and ends every I/O it was given with disk_complete().
 */
#ifndef HBK_DISK_PRIV_H
#define HBK_DISK_PRIV_H

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common/common.h"
#include "hbk/disk.h"

struct hbk_disk;

struct disk_ops {
	/* Starts io (validated, within the disk, len > 0 for READ/WRITE, buffer
	 * aligned to mem_align); must end it with disk_complete(). */
	void (*submit)(struct hbk_disk *d, struct hbk_disk_io *io);
	/* Stops the backend's threads and frees everything but the core. */
	void (*close)(struct hbk_disk *d);
	/* Optional: enters into the kernel what submit queued while a plug
	 * held it back (see disk_plug_hold).  Called by the plug's thread. */
	void (*kick)(struct hbk_disk *d);
};

struct latency;

enum disk_stat {
	ST_READS, ST_WRITES, ST_FLUSHES, ST_DISCARDS, ST_READ_BYTES, ST_WRITE_BYTES,
	ST_ERRORS, ST_BUSY_NS, ST_SEEKS, ST_SUBMIT_CALLS, ST_SUBMITTED, ST_COUNT
};

struct hbk_disk {
	const struct disk_ops *ops;
	struct hbk_disk_info info;
	pthread_mutex_t lock;         /* faults and the latency model's state */
	/* Whether submission must look at faults or the latency model under
	 * lock (faulty, or a model that delays); changed under lock.  False:
	 * submission takes no lock at all. */
	atomic_bool slow;
	struct hbk_disk_fault fault;
	bool faulty;
	uint64_t written;             /* bytes written since the fault was set */
	struct latency *lat;          /* NULL: completions are not delayed */
	atomic_uint inflight;
	atomic_uint submitting;       /* threads inside hbk_disk_submit (hbk_disk_close) */
	_Atomic uint64_t n[ST_COUNT]; /* statistics, indexed by enum disk_stat */
};

/* Initialises the core part of a backend's disk. */
void disk_init(struct hbk_disk *d, const struct disk_ops *ops, const char *kind,
	       const char *name, uint64_t size);

/* Ends io with result (0 or -errno) after any modelled delay.  Called once
 * per submitted I/O by the backend, from any thread. */
void disk_complete(struct hbk_disk *d, struct hbk_disk_io *io, int result);

/* Counts v into statistic s.  Any thread. */
void disk_count(struct hbk_disk *d, enum disk_stat s, uint64_t v);

/*
 * Whether the calling thread's plug takes the submission the backend is
 * about to make to d: true when a plug is active and lists d (now or
 * already); the backend then queues its I/O without entering the kernel,
 * and the plug's end calls ops->kick.  False: submit at once.
 */
bool disk_plug_hold(struct hbk_disk *d);

/* Test seam: the open(2) the file backend uses, so a test can play a
 * filesystem that refuses O_DIRECT.  Not for production use. */
extern int (*hbk_disk_open_fn)(const char *path, int flags, ...);

#endif /* HBK_DISK_PRIV_H */
