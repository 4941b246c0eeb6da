/* SPDX-License-Identifier: MIT */
/*
 * tdrv: the base of hbakit's misbehaving test drivers.  A memory-backed
 * controller built like drivers/ram on the shared SCSI emulation (1 target,
 * 1 LUN of 16 MiB, 512-byte blocks, 64 tasks, both paths), with hooks and a
 * copyable ops table so that each driver in tests/drivers/ overrides just
 * the one thing it gets wrong.
 */
#ifndef HBK_TDRV_H
#define HBK_TDRV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hbk/driver.h"
#include "hbk/scsi.h"

#define TDRV_TASKS       64u
#define TDRV_BS          512u
#define TDRV_SIZE        (16u << 20)
#define TDRV_TRIGGER_LBA 4242u  /* READ/WRITE at this LBA and above: the fault */

enum tdrv_path { TDRV_PER_TASK, TDRV_BUNDLED };

/* One task on its way through the InterruptQueue. */
struct tdrv_io {
	enum tdrv_path path;
	uint16_t index;                /* pool index (per-task) or slot (bundled) */
	struct hbk_task task;          /* copy of the command */
	struct hbk_response resp;      /* the emulation's answer */
	struct hbk_drv_action *action; /* per-task: retained once by the base */
	struct hbk_drv_bundled_action *bundled; /* bundled: the handle */
};

struct tdrv;

struct tdrv_hooks {
	/* End of init_controller, before the constraints (which it may edit)
	 * are reported.  Non-zero fails init_controller. */
	int (*init)(struct tdrv *t, struct hbk_drv_constraints *cons);
	/* Replaces the base start (which creates the target from the
	 * AuxiliaryQueue: tdrv_create_targets_later). */
	int (*start)(struct tdrv *t);
	/* On the InterruptQueue once io was executed.  Return false to let the
	 * base complete io (possibly after editing io->resp), true when the
	 * hook completed it or keeps a copy to complete later (or never). */
	bool (*complete)(struct tdrv *t, struct tdrv_io *io);
	/* In the stop entry point. */
	void (*stop)(struct tdrv *t);
	/* Raises the interrupt for a task just queued for the InterruptQueue
	 * (default: dispatches intr_work to it).  Any thread. */
	void (*raise)(struct tdrv *t);
	/* On the InterruptQueue: a task tdrv_defer kept has come due, with
	 * the kind it was kept (or expedited) with. */
	void (*due)(struct tdrv *t, struct tdrv_io *io, int kind);
};

/* A task kept for later (tdrv_defer). */
struct tdrv_deferred {
	struct tdrv_io io;
	uint64_t due_ns;
	int kind;
	bool used;
};


struct tdrv {
	struct hbk_drv *d;
	const struct tdrv_hooks *hooks;
	int event_fd;                  /* the raw event channel (fd 4 when spawned) */

	uint8_t *mem;
	struct hbk_scsi_lun lun;
	struct hbk_scsi_lun *lunp;
	struct hbk_scsi_target target;

	struct hbk_drv_queue *aux, *intr;
	struct hbk_drv_work create_work, intr_work;

	struct hbk_task *cmds;         /* bundled slots, once mapped */
	struct hbk_response *resps;
	struct hbk_drv_bundled_action *bundled; /* set by bundled calls, under lock */

	/* Everything a task needs travels by value in the ring, so the
	 * InterruptQueue shares nothing with the entry points but the lock. */
	pthread_mutex_t lock;          /* guards the pending ring, busy and bundled */
	struct tdrv_io pend[TDRV_TASKS];
	uint32_t head, tail;
	bool busy;                     /* the InterruptQueue holds a task it took */
	pthread_cond_t idle;           /* signalled when it found the ring empty */
	/* tdrv_defer: kept tasks, and the thread that raises their work on
	 * the InterruptQueue when they come due (stopped by STOP). */
	pthread_mutex_t defer_lock;
	struct tdrv_deferred deferred[TDRV_TASKS];
	struct hbk_drv_work defer_work;
	pthread_t defer_thread;
	bool defer_running, defer_stop;
};

/* The base ops table: copy it and replace single entries. */
extern const struct hbk_drv_ops tdrv_ops;

/* Runs the driver with ops (NULL: tdrv_ops) and hooks (may be NULL). */
int tdrv_main(int argc, char **argv, const struct hbk_drv_ops *ops,
	      const struct tdrv_hooks *hooks);

struct tdrv *tdrv_of(struct hbk_drv *d);

/* Driver argument NAME=VALUE, or dflt. */
const char *tdrv_arg(struct tdrv *t, const char *name, const char *dflt);

/* For a READ/WRITE(10/16): true and its LBA in *lba; false otherwise. */
bool tdrv_task_lba(const struct hbk_task *task, uint64_t *lba);

/* True for a READ/WRITE(10/16) whose LBA is TDRV_TRIGGER_LBA or above. */
bool tdrv_is_trigger(const struct hbk_task *task);

/* Runs task k on the emulated LUN and fills resp (a correct response). */
void tdrv_execute(struct tdrv *t, const struct hbk_task *k, struct hbk_response *resp);

/* Completes io the correct way (per-task: complete then release). */
void tdrv_complete(struct tdrv *t, struct tdrv_io *io);

/*
 * Keeps a copy of io and hands it to hooks->due on the InterruptQueue with
 * kind once ms have passed, so that a driver completes late, or twice,
 * from the queue its completions come from.  Any thread.
 */
void tdrv_defer(struct tdrv *t, const struct tdrv_io *io, unsigned ms, int kind);

/* Makes the kept task whose task_tag is tag due at once, with kind.
 * Returns whether one was kept.  Any thread. */
bool tdrv_defer_expedite(struct tdrv *t, uint64_t tag, int kind);

/* Dispatches target creation to the AuxiliaryQueue. */
void tdrv_create_targets_later(struct tdrv *t);

/* Writes len raw bytes as one message on the event channel; 0 or -errno. */
int tdrv_send_raw(struct tdrv *t, const void *msg, size_t len);

/* Sends a well-framed BUNDLED_COMPLETION naming index[0..n-1], with the
 * count field set to count (which may lie).  0 or -errno. */
int tdrv_send_slots(struct tdrv *t, uint16_t count, const uint16_t *index, unsigned n);

/* Sends a well-framed PARALLEL_COMPLETION for pool index idx with resp. */
int tdrv_send_parallel(struct tdrv *t, uint32_t idx, const struct hbk_response *resp);

#endif /* HBK_TDRV_H */
