/* SPDX-License-Identifier: MIT */
/*
 * hbakit disk layer: one asynchronous interface to the disks behind the
 * emulated RAID controller, with backends for files and block devices
 * (io_uring, O_DIRECT when the filesystem allows it), memory, a null disk and
 * NBD servers (libnbd).  Any disk can carry a latency model (HDD or SSD) and
 * injected faults, so the RAID layer above can be tested against slow and
 * failing hardware.
 */
#ifndef HBK_DISK_H
#define HBK_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hbk_disk;

enum hbk_disk_op {
	HBK_DISK_READ = 0,
	HBK_DISK_WRITE = 1,
	HBK_DISK_FLUSH = 2,    /* offset and len ignored */
	HBK_DISK_DISCARD = 3,  /* advisory: the range may read back as zeros */
};

/* hbk_disk_io.flags */
#define HBK_DISK_FUA  0x1u /* WRITE: durable when done is called */
#define HBK_DISK_ZERO 0x2u /* DISCARD: the range must read back as zeros (a disk
			    * whose discards do not zero writes zeros instead) */

/*
 * One I/O, owned by the caller and untouched by the disk layer once done
 * has been called.  offset and len must be multiples of the disk's
 * block_size; buf needs no alignment (a buffer not aligned to mem_align is
 * bounced).  done is called exactly once with 0 (the whole range was
 * transferred) or -errno.
 */
struct hbk_disk_io {
	uint8_t op;                /* enum hbk_disk_op */
	uint32_t flags;            /* HBK_DISK_FUA, HBK_DISK_ZERO */
	uint64_t offset;
	uint64_t len;
	void *buf;                 /* READ/WRITE: len bytes */
	void (*done)(struct hbk_disk_io *io, int result);
	void *priv;                /* for the caller */
	/* Private to the disk layer while the I/O is in flight. */
	struct hbk_disk *disk_;
	struct hbk_disk_io *next_;
	uint64_t due_ns_;          /* latency model: completion time */
	uint64_t len_;             /* the caller's len when a fault shortened it */
	uint64_t moved_;           /* bytes transferred so far (short I/O) */
	void *bounce_;
	int fault_;                /* error forced by an injected fault */
	int result_;
};

struct hbk_disk_info {
	char kind[12];             /* "file", "blockdev", "memory", "null", "nbd" */
	char name[116];            /* path, URI or a description */
	uint64_t size;             /* bytes */
	uint32_t block_size;       /* offsets and lengths are multiples of it */
	uint32_t mem_align;        /* buffers aligned to it go without a bounce */
	uint64_t max_io;           /* largest READ/WRITE/DISCARD the device takes in
				    * one (0: no limit); longer ones are split */
	bool direct;               /* file/blockdev: O_DIRECT in use */
	bool read_only;            /* WRITE fails with -EROFS */
	bool discard;              /* DISCARD does something */
	bool discard_zeroes;       /* a discarded range reads back as zeros */
};

/* ---- Opening and closing ----------------------------------------------------- */

enum hbk_disk_direct {
	HBK_DISK_DIRECT_AUTO = 0,  /* O_DIRECT if an aligned probe read works, else buffered */
	HBK_DISK_DIRECT_ON = 1,    /* O_DIRECT or fail with -EINVAL */
	HBK_DISK_DIRECT_OFF = 2,   /* buffered (page cache) */
};

struct hbk_disk_file_opts {
	enum hbk_disk_direct direct;
	uint64_t create_size;      /* > 0: create or resize a regular file to this size */
	uint32_t queue_depth;      /* io_uring submission entries (default 128); more I/O
				    * than that goes in several calls, never refused */
	uint32_t poll_ms;          /* > 0: the submitting threads put their I/O on the
				    * ring themselves and a kernel thread, shared by every
				    * polling disk of the process, polls it, sleeping after
				    * poll_ms without I/O (IORING_SETUP_SQPOLL; where the
				    * kernel refuses it, a warning and no polling) */
	bool read_only;
};

/*
 * Opens a regular file or a block device, served by one io_uring per disk
 * and its ring thread, the only thread that enters it: submitters queue to
 * it, it submits in batches and runs the completions (polled, opts->poll_ms,
 * the submitters fill the ring and the ring thread only completes).  opts may be NULL
 * (defaults).  Returns 0 and *out, or -errno (-ENOENT, -EINVAL for a file of
 * size 0 without create_size, -EINVAL when DIRECT_ON and O_DIRECT is
 * refused, the -errno of a ring or thread that could not be set up).  Any
 * thread.
 */
int hbk_disk_open_file(const char *path, const struct hbk_disk_file_opts *opts,
		       struct hbk_disk **out);

/* A disk in anonymous memory (committed when written), size a multiple of
 * 512; reads of unwritten ranges give zeros.  Returns 0, or -ENOMEM (also
 * when the memory disks open in this process would pass three quarters of
 * the machine's memory).  Any thread. */
int hbk_disk_open_mem(uint64_t size, struct hbk_disk **out);

/* A disk that reads zeros and discards writes.  Returns 0 or -ENOMEM. */
int hbk_disk_open_null(uint64_t size, struct hbk_disk **out);

/*
 * Connects to an NBD server: target is an NBD URI ("nbd://host/export",
 * "nbd+unix:///?socket=/path") or the path of a Unix socket.  Commands go
 * out through libnbd's asynchronous API and are completed by one poll
 * thread per disk.  Returns 0 and *out, or -errno (-ECONNREFUSED, -ENOENT,
 * -EPROTO when the handshake fails; the reason is logged).  Once the
 * connection is lost, the I/O in flight and every later I/O end with
 * -ENOTCONN.
 */
int hbk_disk_open_nbd(const char *target, struct hbk_disk **out);

/*
 * Closes a disk and frees it.  The caller must have no I/O in flight (every
 * done called), and no other thread may hold a plug that submitted to it
 * (the calling thread's own plug forgets it).  Not from a completion
 * callback of this disk.
 */
void hbk_disk_close(struct hbk_disk *d);

/* Copies the disk's description into *out.  Any thread. */
void hbk_disk_info(const struct hbk_disk *d, struct hbk_disk_info *out);

/* ---- I/O ------------------------------------------------------------------------ */

/*
 * Submits one I/O.  Never blocks on the device; done is called exactly once,
 * from the disk's completion thread or inline from this call (memory and
 * null disks, injected failures, invalid requests with -EINVAL).  done may
 * submit more I/O.  One longer than info.max_io goes to the device as
 * pieces of at most that (each with the I/O's flags), and ends when they
 * all have, with the first piece's error (-ENOMEM if they cannot be
 * allocated).  A discard the device refuses becomes a write of zeros on a
 * disk with info.discard_zeroes (it then fails only as that write does),
 * and succeeds elsewhere (a discard is advisory): a refused discard alone
 * never fails.  Under the calling thread's plug a file or block-device
 * I/O waits for the plug's end (or a flush) to be submitted.  Any thread.
 */
void hbk_disk_submit(struct hbk_disk *d, struct hbk_disk_io *io);

/* Submits one I/O and waits for it (flushing the calling thread's plug
 * first).  Returns 0 or -errno.  Not from a completion callback. */
int hbk_disk_rw(struct hbk_disk *d, enum hbk_disk_op op, void *buf, uint64_t offset,
		uint64_t len, uint32_t flags);

/* ---- Plugging: batched submission ------------------------------------------------- */

/*
 * A plug holds back the calling thread's kernel submissions, as a block
 * layer plug does: while one is active, a file or block-device disk queues
 * the I/O this thread submits (io_uring SQEs) without entering the kernel,
 * and the end of the plug sends each disk's queued I/O with one
 * io_uring_enter.  Plugs nest: only the outermost acts, inner ones are
 * no-ops.  A plug lists at most HBK_DISK_PLUG_DISKS disks; I/O to one more
 * is submitted at once.  Memory, null and NBD disks ignore plugs.
 *
 * A thread must not wait for an I/O it submitted under its plug before the
 * plug is flushed: the blocking helpers (hbk_disk_rw, hbk_raid_rw) flush
 * the caller's plug before they wait; code that waits otherwise calls
 * hbk_disk_plug_flush first.  The plug lives on the caller's stack and is
 * the calling thread's alone.
 */
#define HBK_DISK_PLUG_DISKS 8

struct hbk_disk_plug {
	bool active;               /* the outermost plug of its thread */
	unsigned n;
	struct hbk_disk *disk[HBK_DISK_PLUG_DISKS];  /* disks holding queued I/O */
};

/* Starts plugging the calling thread's submissions (nested: no-op). */
void hbk_disk_plug(struct hbk_disk_plug *p);

/* Ends plug p, started by hbk_disk_plug on this thread: submits what it
 * holds, one kernel call per disk. */
void hbk_disk_unplug(struct hbk_disk_plug *p);

/* Submits what the calling thread's plug holds, if it has one; the plug
 * stays active.  Any thread (about its own plug). */
void hbk_disk_plug_flush(void);

/* ---- Latency models --------------------------------------------------------------- */

enum hbk_disk_model { HBK_DISK_MODEL_NONE = 0, HBK_DISK_MODEL_HDD = 1, HBK_DISK_MODEL_SSD = 2 };

/*
 * A latency model delays each completion to the time the modelled device
 * would have finished it; the data still comes from the backend.  HDD: one
 * request at a time in arrival order; a request that does not start where
 * the previous one ended pays a seek (track-to-track plus a square-root
 * share of full stroke by distance) and half a rotation; every request pays
 * len / rate.  SSD: `channels` requests in parallel, each taking latency +
 * len / rate.  The model is a pure function of the arrival order, so the
 * modelled busy time (hbk_disk_stats.busy_ns) is exact and repeatable.
 */
struct hbk_disk_latency {
	enum hbk_disk_model model;
	uint32_t rpm;              /* HDD: 7200 */
	uint32_t seek_min_us;      /* HDD: track to track, e.g. 500 */
	uint32_t seek_max_us;      /* HDD: full stroke, e.g. 15000 */
	uint32_t latency_us;       /* SSD: per request, e.g. 80 */
	uint32_t channels;         /* SSD: parallel requests, e.g. 8 */
	uint64_t rate;             /* bytes/s transfer, e.g. 200 MB/s */
};

/* A 7200 rpm SATA disk and a SATA-class SSD. */
extern const struct hbk_disk_latency hbk_disk_hdd_7200;
extern const struct hbk_disk_latency hbk_disk_ssd_sata;

/*
 * Puts a latency model on a disk (NULL or MODEL_NONE removes it).  Returns
 * 0, -EINVAL for a model without rate (or HDD without rpm), -EBUSY when I/O
 * is in flight.  Removing a model works at any time, also under I/O from
 * other threads: I/O waiting for its modelled time completes at once and
 * later I/O is not delayed.  Starts one timer thread per modelled disk.
 */
int hbk_disk_set_latency(struct hbk_disk *d, const struct hbk_disk_latency *m);

/* ---- Failure injection -------------------------------------------------------------- */

/*
 * Injected faults, checked when an I/O is submitted.  fail_all: every I/O
 * fails with `error`.  write_budget (0: none): writes succeed until this
 * many bytes have been written since the fault was set; the write that
 * crosses the budget writes only the blocks within it and then fails (a
 * disk dying mid-write), and every later write fails.  drop_writes: writes
 * and flushes report success but change nothing (power lost with the data
 * in a volatile cache).  refuse_discards: the device fails every discard
 * with `error` (one that does not support them), which hbk_disk_submit
 * then handles as it does any refused discard.
 */
struct hbk_disk_fault {
	bool fail_all;
	bool drop_writes;
	bool refuse_discards;
	uint64_t write_budget;
	int error;                 /* -errno to fail with; 0 means -EIO */
};

/* Sets (f != NULL) or clears (f == NULL) the disk's faults.  Any thread;
 * I/O already submitted is not affected. */
void hbk_disk_inject(struct hbk_disk *d, const struct hbk_disk_fault *f);

/* ---- Statistics ----------------------------------------------------------------------- */

struct hbk_disk_stats {
	uint64_t reads, writes, flushes, discards;
	uint64_t read_bytes, write_bytes;
	uint64_t errors;           /* I/Os completed with an error */
	uint64_t busy_ns;          /* latency model: modelled service time */
	uint64_t seeks;            /* HDD model: requests that paid a seek */
	/* File and block-device disks: kernel submissions (io_uring_enter
	 * calls that sent I/O) and the I/Os they sent, resubmitted rests of
	 * short transfers included.  submitted / submit_calls is the batch. */
	uint64_t submit_calls, submitted;
};

/* Copies the counters into *out.  Any thread. */
void hbk_disk_stats(const struct hbk_disk *d, struct hbk_disk_stats *out);

#endif /* HBK_DISK_H */
