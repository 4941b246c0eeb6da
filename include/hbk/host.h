/* SPDX-License-Identifier: MIT */
/*
 * hbakit host API: open a controller (spawn or attach to its driver
 * process), find its LUNs, and do I/O on them, either as raw SCSI commands
 * (the SAM layer) or as block reads, writes, flushes and unmaps by LBA.  All
 * I/O is asynchronous with a completion callback; blocking wrappers exist for
 * tools and tests.  Statistics expose the batching the controller achieved.
 */
#ifndef HBK_HOST_H
#define HBK_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hbk/abi.h"
#include "hbk/scsi.h"

struct hbk_ctl;
struct hbk_lun;

enum hbk_ctl_mode {
	HBK_MODE_AUTO = 0,     /* bundled if the driver accepts the mapping */
	HBK_MODE_PER_TASK = 1, /* never offer the bundled buffers */
	HBK_MODE_BUNDLED = 2,  /* fail to open if the driver declines them */
};

struct hbk_ctl_opts {
	const char *driver;          /* executable to spawn, or NULL */
	const char *const *driver_args; /* extra arguments, NULL-terminated, or NULL */
	const char *attach;          /* socket path of a driver started with --listen */
	enum hbk_ctl_mode mode;
	uint32_t call_timeout_ms;    /* a call not answered, or bundled tasks left in the
				      * submission ring, by then: driver hung (default 5000) */
	uint32_t task_timeout_ms;    /* default task timeout (default 30000) */
	uint64_t user_arena_bytes;   /* arena for hbk_ctl_buf_alloc (default 64 MiB) */
	uint32_t settle_ms;          /* open waits this long for the first LUN (default 5000) */
	uint32_t exit_timeout_ms;    /* close waits this long for a spawned driver to exit
				      * after STOP, e.g. writing its cache out (default 30000);
				      * one that does not answer STOP is killed at once */
	/* Bundled path: while at most 32 tasks are at the driver, and its
	 * recent polls mostly caught (otherwise at every 16th wait, to see
	 * whether they would again), the event thread polls the completion
	 * ring this long before it sleeps (a wake costs more than a short
	 * poll).  0: the default, 100; < 0: never. */
	int32_t poll_us;
};

/*
 * Opens a controller: starts (or attaches to) the driver process and runs
 * the start-up sequence of the controller model.  Returns 0 and *out, or
 * -errno (the reason is logged: a contract rule, a missing constraint, a
 * driver that died).  Returns once the driver has created its first targets
 * (or settle_ms passed).  A spawned driver runs in a process group of its
 * own, so a terminal's Ctrl-C reaches the application, which closes the
 * controller, and not the driver.  Any thread; the controller is then
 * shared by all.
 */
int hbk_ctl_open(const struct hbk_ctl_opts *opts, struct hbk_ctl **out);

/*
 * Stops the controller: refuses new I/O, completes every outstanding task
 * with DeviceNotPresent, destroys the targets, stops the driver and waits
 * for its process (exit_timeout_ms after it answered STOP; a driver that
 * does not answer it within the call time limit is killed then).  Frees c.
 * Not from a completion callback.
 */
void hbk_ctl_close(struct hbk_ctl *c);

/* Queries; any thread.  true if the controller runs on the bundled path. */
bool hbk_ctl_bundled(const struct hbk_ctl *c);
/* false once the driver died, hung or was cut off; I/O then fails. */
bool hbk_ctl_alive(const struct hbk_ctl *c);
/* The name the driver gave in HELLO; owned by c. */
const char *hbk_ctl_driver_name(const struct hbk_ctl *c);
/* Process id of a spawned driver (0 when attached), e.g. for CPU accounting. */
int hbk_ctl_driver_pid(const struct hbk_ctl *c);

/* LUNs registered so far, in registration order (NULL past the count).  The
 * LUN is owned by c and stays valid until hbk_ctl_close.  Any thread. */
unsigned hbk_ctl_lun_count(struct hbk_ctl *c);
struct hbk_lun *hbk_ctl_lun(struct hbk_ctl *c, unsigned i);

struct hbk_lun_info {
	uint64_t target, lun;
	char vendor[9], product[17], revision[5];
	char serial[65];
	char devid[260];          /* "naa.…", "eui.…" or "t10.…" */
	uint32_t block_size;
	uint64_t nblocks;
	uint32_t max_xfer_bytes;  /* min(HBA max transfer, LUN's VPD B0 limit) */
	uint32_t max_unmap_blocks;
	bool thin;                /* LBPME: UNMAP is served */
};
/*
 * Copies a consistent snapshot of what the host knows about the LUN into
 * *out (the capacity changes when the driver reports a media change).
 * Returns 0, or -ENODEV once the driver destroyed the LUN's target (*out
 * still holds its last state).  Any thread.
 */
int hbk_lun_info(const struct hbk_lun *l, struct hbk_lun_info *out);

/* The controller the LUN belongs to.  Any thread. */
struct hbk_ctl *hbk_lun_ctl(const struct hbk_lun *l);

/* ---- Buffers in the shared arena (zero copy) --------------------------------- */

/*
 * Allocates len bytes in the shared data arena, aligned to 4096.  I/O on
 * such a buffer goes to the driver without a copy; any other buffer is
 * copied once through the arena.  Returns NULL when the arena is full.
 * Any thread.
 */
void *hbk_ctl_buf_alloc(struct hbk_ctl *c, size_t len);
/* Returns a buffer from hbk_ctl_buf_alloc; anything else (NULL aside) is
 * refused and logged.  Not while I/O on it is outstanding.  Any thread. */
void hbk_ctl_buf_free(struct hbk_ctl *c, void *p);

/* ---- Raw SCSI commands (the SAM layer) ----------------------------------------- */

struct hbk_scsi_cmd {
	struct hbk_lun *lun;       /* or target/lun below when lun is NULL */
	uint64_t target, lun_id;
	uint8_t cdb[16];
	uint8_t cdb_len;
	uint8_t dir;               /* enum hbk_dir */
	uint8_t attr;              /* enum hbk_task_attr */
	uint64_t initiator;        /* I_T nexus (a front end's initiator port); 0 = this host */
	void *buf;
	uint64_t len;
	uint32_t timeout_ms;       /* 0: the controller default */
	void (*done)(struct hbk_scsi_cmd *cmd);  /* on a host thread; may submit */
	void *priv;
	/* out */
	struct hbk_scsi_result result;
	uint8_t sense_len;
	uint8_t sense[HBK_SENSE_BUF];
	/* private to the host library */
	struct hbk_scsi_cmd *next_wait;
};

/*
 * Submits one command.  When every pooled task is busy the command waits in
 * order for the next free one, so submission never blocks.  done runs once,
 * on a library thread, without locks held.  Returns 0, or -ENODEV when the
 * controller is dead or closing (done is not called), -EINVAL for a bad
 * command.  Any thread.
 */
int hbk_sam_submit(struct hbk_ctl *c, struct hbk_scsi_cmd *cmd);

/* Submits and waits.  Returns 0 (check cmd->result) or -errno.  Not from a
 * completion callback. */
int hbk_sam_exec(struct hbk_ctl *c, struct hbk_scsi_cmd *cmd);

/* ---- Task management ------------------------------------------------------------ */

enum hbk_tmf {
	HBK_TMF_ABORT_TASK = 1,
	HBK_TMF_ABORT_TASK_SET,
	HBK_TMF_CLEAR_ACA,
	HBK_TMF_CLEAR_TASK_SET,
	HBK_TMF_LUN_RESET,
	HBK_TMF_TARGET_RESET,
};

/*
 * Runs a task-management function at the driver and waits for its answer.
 * target/lun name the nexus (lun is ignored by TARGET RESET); cmd is the
 * submitted command to abort for HBK_TMF_ABORT_TASK and NULL otherwise.
 * Commands still queued for a pool task never reach the driver: those the
 * function covers (the one command, or every one of the nexus) complete at
 * once with TASK ABORTED, whatever the driver answers, since they were
 * queued before the function.
 * Commands at the driver end when the driver completes them (typically with
 * TASK ABORTED); their done runs as usual, possibly after this returns.  A
 * command being handed over, or already done, is not at the driver: ABORT
 * TASK then answers FUNCTION_COMPLETE without a call and the command runs
 * to its end.  Returns the service response (HBK_SR_FUNCTION_COMPLETE or
 * HBK_SR_FUNCTION_REJECTED), or -EINVAL, -ENODEV (controller dead), or the
 * call's error.  Any thread but a completion callback.
 */
int hbk_sam_tmf(struct hbk_ctl *c, uint64_t target, uint64_t lun, enum hbk_tmf op,
		struct hbk_scsi_cmd *cmd);

/*
 * Tells the driver that the I_T nexus `initiator` (the identifier its
 * commands carried in hbk_scsi_cmd.initiator) to `target` is gone (SAM-5
 * I_T nexus loss: a front end's session ended), so that what the driver
 * keeps for that nexus ends (RESERVE(6), medium removal prevention).  Call
 * it once none of that nexus' commands is outstanding.  Returns 0 (also
 * when the driver keeps nothing per nexus), -ENODEV when the controller is
 * dead, or the call's -errno.  Any thread but a completion callback.
 */
int hbk_sam_nexus_loss(struct hbk_ctl *c, uint64_t target, uint64_t initiator);

/* ---- Block I/O -------------------------------------------------------------- */

enum hbk_blk_op { HBK_BLK_READ, HBK_BLK_WRITE, HBK_BLK_FLUSH, HBK_BLK_UNMAP };

struct hbk_blk_io {
	struct hbk_lun *lun;
	uint8_t op;                /* enum hbk_blk_op */
	bool fua;
	uint64_t lba;
	uint32_t nblocks;
	void *buf;                 /* READ/WRITE: nblocks * block size bytes */
	void (*done)(struct hbk_blk_io *io);
	void *priv;
	/* out */
	int error;                 /* 0, -EIO (medium error), -EINVAL, -ENOSPC, -ENODEV, ... */
	struct hbk_scsi_result result; /* the first failing part's result */
	/* private to the host library */
	uint32_t parts_left;
	uint32_t ua_retries;       /* parts sent again after a unit attention */
	struct hbk_scsi_cmd one;   /* used when the I/O needs a single command */
	struct hbk_scsi_cmd *parts;
};

/*
 * Submits a block I/O: READ/WRITE(10/16) split at the LUN's max transfer,
 * SYNCHRONIZE CACHE(16), or UNMAP.  A part answered with a unit attention
 * (a reset, say) is sent again, up to 4 times per I/O.  done runs once when every part ended;
 * io->error maps the SCSI result to an errno (hbk_blk_errno).  Returns 0 or
 * -errno (then done is not called; -EINVAL without a done).  Any thread.
 */
int hbk_blk_submit(struct hbk_blk_io *io);

/* Submits and waits; returns io->error.  Not from a completion callback. */
int hbk_blk_exec(struct hbk_blk_io *io);

/* The errno a block caller sees for a SCSI result: 0 for success, which
 * includes CHECK CONDITION with RECOVERED ERROR (the command completed)
 * unless the sense is deferred (-EAGAIN: an earlier command's error; this
 * one was not processed).  Any thread. */
int hbk_blk_errno(const struct hbk_scsi_result *r);

/* ---- Statistics ---------------------------------------------------------------- */

#define HBK_HIST_BUCKETS HBK_SRING_HIST   /* slots per call: 1, 2, 3-4, 5-8, 9-16, 17-32 */
#define HBK_RULES 13         /* index n counts HBK-Cnn */

struct hbk_ctl_stats {
	uint64_t io_calls;            /* PROCESS_TASK calls + process_bundled batches (the
				       * submission ring's, as the driver runtime counts them) */
	uint64_t tasks;               /* tasks sent to the driver */
	uint64_t driver_wakes;        /* wake-ups of the driver's submitter by the host */
	uint64_t completions;         /* tasks completed by the driver */
	uint64_t completion_msgs;     /* completion batches: messages and ring drains */
	uint64_t doorbells;           /* wake-ups of the host's event thread by the ring */
	uint64_t ring_polls;          /* polls of the completion ring before sleeping */
	uint64_t ring_polls_caught;   /* of those, the ones that found completions */
	uint64_t hist[HBK_HIST_BUCKETS];
	uint64_t violations[HBK_RULES];
	uint64_t timeouts;
	uint64_t failed_by_host;      /* completed by the host: driver dead, teardown */
	uint64_t timer_wakes;         /* wake-ups of the host's task timer thread (kept
				       * by hbk_ctl_stats_reset) */
};

/* Copies the counters into *out (each read atomically, the set not as one
 * snapshot).  Any thread. */
void hbk_ctl_stats(struct hbk_ctl *c, struct hbk_ctl_stats *out);
/* Zeroes the I/O counters and the histogram, for measuring one run; the
 * violation, timeout and failure counts describe the controller's whole
 * life and are kept.  Any thread. */
void hbk_ctl_stats_reset(struct hbk_ctl *c);
/* hbk_hist_bucket (hbk/abi.h) maps a call's slot count to its bucket. */

#endif /* HBK_HOST_H */
