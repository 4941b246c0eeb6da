/* SPDX-License-Identifier: MIT */
/*
 * Private state of the emulated controller, shared by its hardware half
 * (device.c: registers, frame fetch and credits, reply posting, interrupt
 * coalescing) and its firmware half (firmware.c: the firmware threads, SCSI
 * execution on the virtual drives, task management).
 */
#ifndef HBK_DEVICE_PRIV_H
#define HBK_DEVICE_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "hbk/device.h"
#include "hbk/scsi.h"

#define HBK_DEV_DMA_ALIGN 4096u   /* data addresses: page aligned */
#define HBK_DEV_FW_BATCH  32u     /* frames a firmware thread takes in a row, under one plug */

/*
 * A firmware context: one admitted frame.  Contexts [0, credits) serve I/O
 * frames, [credits, credits + HBK_DEV_TM_SLOTS) task management.
 *
 *   FREE --fetch--> QUEUED --firmware thread--> EXEC --reply posted--> FREE
 *   (TM contexts: FREE --fetch--> WAIT --last terminated task ends--> FREE)
 *
 * An EXEC context runs its command synchronously on its firmware thread,
 * or asynchronously (READ/WRITE: hbk_scsi_exec_async), when the thread
 * only submits its volume I/O (avio) and the reply is posted by whoever
 * drops the last of `refs`: the volume I/O's completion, the submitting
 * thread, or task management cancelling it (which queues the end on
 * dev->ended, as it holds dev->lock, for the thread that fetched the task
 * management frame to end in fw_end_cancelled before it drops the lock:
 * the one that rang the doorbell, consumed replies, enabled or reset the
 * device, or freed the context the frame waited for).  Either way
 * the reply is posted once, before the context goes FREE.
 */
enum ctx_state { CTX_FREE = 0, CTX_QUEUED, CTX_EXEC, CTX_WAIT };

struct fw_ctx {
	struct hbk_dev_frame f;       /* the frame, copied out of the ring */
	struct hbk_dev *dev;
	struct fw_ctx *next;          /* free list, run queue or dev->ended (dev->lock) */
	uint8_t state;                /* enum ctx_state (dev->lock) */
	bool end_terminated;          /* replied TERMINATED, end deferred (firmware.c) */
	uint32_t tm_waiters;          /* bit i: TM context i waits for this one (dev->lock) */
	uint32_t tm_pending;          /* TM: matched tasks still running (dev->lock) */
	uint32_t terminated;          /* TM: tasks it terminated (dev->lock) */
	atomic_bool aborted;          /* set under lock, read anywhere */
	pthread_mutex_t lock;         /* orders aborted against vio */
	struct hbk_vol *vol;          /* volume of vio (lock) */
	struct hbk_vol_io *vio;       /* the volume I/O in flight, or NULL (lock) */
	/* The asynchronous command (EXEC): owned by the emulation between
	 * hbk_scsi_exec_async and its done, its volume I/O by the volume
	 * between submit and done. */
	struct hbk_scsi_aio aio;
	struct hbk_scsi_reply out;    /* the command's reply (either way) */
	struct hbk_vol_io avio;
	int avio_result;              /* written before avio's reference is dropped */
	atomic_uint refs;             /* parties the asynchronous end waits for */
};

/* A reply queue and its interrupt vector. */
struct fw_rq {
	pthread_mutex_t lock;         /* posting and coalescing state */
	struct hbk_dev_reply *ring;
	uint32_t pi, ci;              /* posted; consumed as the driver last wrote it */
	uint32_t count, usec, flags;  /* coalescing */
	uint32_t pending;             /* replies since the last interrupt */
	uint64_t first_ns;            /* when the first of them was posted */
	int fd;                       /* eventfd */
};

/* A virtual drive: a volume behind a one-LUN SCSI target. */
struct fw_vd {
	struct hbk_vol *vol;
	struct hbk_scsi_backend_ops ops;
	struct hbk_scsi_lun lun;
	struct hbk_scsi_lun *luns[1];
	struct hbk_scsi_target target;
	bool lun_ready;
	char serial[48];
};

struct hbk_dev {
	uint8_t *bar;
	size_t bar_size;
	uint32_t *regs;
	struct hbk_dev_frame *req;
	uint32_t entries, credits, nctx, nqueues, depth, max_xfer;

	struct fw_vd *vds;
	unsigned nvds;

	pthread_mutex_t lock;         /* the fields below, context states */
	pthread_cond_t work_cond;     /* firmware threads: the run queue has work */
	pthread_cond_t idle_cond;     /* reset: the last context went free */
	uint8_t state;                /* enum hbk_dev_state */
	bool stop;
	uint32_t pi, ci;              /* request ring: doorbell seen, frames taken */
	uint32_t outstanding;         /* admitted frames whose reply is not consumed */
	/* Admitted frames whose reply is not posted yet (HBK_DEV_IRQ_IDLE):
	 * raised in fetch, under lock, dropped in dev_post_reply, which may
	 * run without it. */
	atomic_int unreplied;
	uint32_t in_use;              /* contexts not FREE */
	uint32_t idle_threads;        /* firmware threads waiting for work */
	uint32_t waking;              /* of those, signalled and not yet awake */
	uint32_t running;             /* firmware threads executing, not waiting on a volume */
	uint32_t ncpu;                /* running threads worth having: more only contend */
	struct fw_ctx *ctx, *run_head, *run_tail;
	struct fw_ctx *ended;         /* asynchronous commands task management ended */
	struct fw_ctx *free[2];       /* free I/O and TM contexts */

	struct fw_rq rq[HBK_DEV_MAX_QUEUES];

	pthread_mutex_t timer_lock;   /* the coalescing timer thread */
	pthread_cond_t timer_cond;
	bool timer_kick, timer_stop, timer_up;
	pthread_t timer;

	pthread_t *threads;
	unsigned nthreads;
};

/* ---- device.c ---- */

/* Stores a register value (release: what the device wrote before is
 * visible to whoever reads the register with acquire). */
void dev_reg_set(struct hbk_dev *dev, uint32_t reg, uint32_t val);

/* Posts reply r on queue q and raises its interrupt when due, unless the
 * device is resetting (a reset discards replies).  Firmware threads; the
 * caller may hold dev->lock. */
void dev_post_reply(struct hbk_dev *dev, unsigned q, const struct hbk_dev_reply *r);

/* An I/O context's reply is posted: free it, tell the task management
 * waiting for it and take frames that waited for a context, ending (in
 * fw_end_cancelled) what a task management frame among them cancelled.
 * Returns how many firmware threads to wake for those (dev_wake, once
 * dev->lock is released).  dev->lock held; released and taken again inside
 * while such an end runs. */
unsigned dev_ctx_end(struct hbk_dev *dev, struct fw_ctx *c, bool terminated);

/* Wakes n idle firmware threads.  Without dev->lock (a thread woken under
 * it would only block on it). */
void dev_wake(struct hbk_dev *dev, unsigned n);

/* ---- firmware.c ---- */

/* Sets up (or tears down, also after a partial setup) a SCSI logical unit
 * per volume.  Returns 0 or -errno. */
int fw_vds_init(struct hbk_dev *dev, struct hbk_vol *const *vols, unsigned n, const char *serial);
void fw_vds_fini(struct hbk_dev *dev);

/* A firmware thread: executes queued contexts until dev->stop. */
void *fw_thread(void *arg);

/* Marks an I/O context terminated and cancels its volume I/O, if any.  The
 * context never ends inside this call (its end may be queued on
 * dev->ended).  dev->lock held. */
void fw_terminate(struct fw_ctx *c);

/* Ends the asynchronous commands on dev->ended, releasing dev->lock around
 * each: called by every thread that may have cancelled one, so none waits
 * for a free firmware thread (all of them may be blocked, e.g. in COMPARE
 * AND WRITE behind the very write that was cancelled).  dev->lock held. */
void fw_end_cancelled(struct hbk_dev *dev);

#endif /* HBK_DEVICE_PRIV_H */
