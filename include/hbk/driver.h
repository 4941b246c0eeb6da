/* SPDX-License-Identifier: MIT */
/*
 * hbakit driver API.  A controller driver is its own process: it fills an
 * ops table (the framework -> driver calls of the controller model) and hands
 * it to hbk_drv_main, which runs the call server, the serial dispatch queues
 * and the completion handles.  The driver answers the framework through the
 * hbk_drv_* calls below (completions, targets, constraints).
 */
#ifndef HBK_DRIVER_H
#define HBK_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hbk/abi.h"

struct hbk_drv;                 /* the runtime's per-controller context */
struct hbk_drv_queue;           /* a serial dispatch queue */
struct hbk_drv_action;          /* per-task completion handle */
struct hbk_drv_bundled_action;  /* the one bundled completion handle */
struct hbk_drv_mem;             /* shared memory handed to the driver */

/* Names of the queues every runtime has, and the conventional extra ones. */
#define HBK_QUEUE_NAME_DEFAULT   "Default"
#define HBK_QUEUE_NAME_AUX       "AuxiliaryQueue"
#define HBK_QUEUE_NAME_INTERRUPT "InterruptQueue"

/*
 * A unit of work for a dispatch queue.  The driver embeds it in its own
 * structures, so dispatching allocates nothing.  A work item is queued at
 * most once at a time: dispatching one that is already queued does nothing
 * and returns -EALREADY, which makes "raise the interrupt" idempotent.
 */
struct hbk_drv_work {
	void (*fn)(struct hbk_drv_work *w);
	struct hbk_drv_work *next;  /* runtime-owned while queued */
	int queued;                 /* runtime-owned */
};

static inline void hbk_drv_work_init(struct hbk_drv_work *w, void (*fn)(struct hbk_drv_work *))
{
	w->fn = fn;
	w->next = 0;
	w->queued = 0;
}

/* Binds a framework -> driver entry point (enum hbk_msg_type) to a queue. */
struct hbk_drv_binding {
	uint16_t entry;
	const char *queue;
};

struct hbk_drv_dma_spec {
	uint64_t max_transfer;   /* bytes per task, > 0 */
	uint32_t alignment;      /* buffer alignment in bytes, power of two */
	uint32_t address_bits;   /* addressable bits, 32..64 */
	uint16_t segment_type;   /* enum hbk_dma_segment */
};

/* HBA constraints (UserReportHBAConstraints); set every key you support. */
struct hbk_drv_constraints {
	uint32_t present;                 /* bit k: key k is set */
	uint64_t value[HBK_CONS_COUNT];
};

static inline void hbk_drv_constraint_set(struct hbk_drv_constraints *c,
					  enum hbk_constraint key, uint64_t value)
{
	c->present |= 1u << key;
	c->value[key] = value;
}

/*
 * The framework -> driver calls.  Each runs on the queue it is bound to
 * (Default unless ops->bindings says otherwise; the two I/O entry points
 * must stay on Default, HBK-C01).  Calls are synchronous: the framework
 * waits for the return.  Entries left NULL get the documented default.
 */
struct hbk_drv_ops {
	const char *name;

	/* First call, once.  Create extra queues here and report the HBA
	 * constraints (hbk_drv_report_constraints) before returning. */
	int (*init_controller)(struct hbk_drv *d);
	/* The HBA's own target id, which no target may use (default: none). */
	int (*report_initiator_id)(struct hbk_drv *d, uint64_t *id);
	/* Highest target id the framework may use (default 0). */
	int (*report_highest_id)(struct hbk_drv *d, uint64_t *id);
	/* Task pool size, > 0 and <= HBK_MAX_TASKS (required). */
	int (*report_max_tasks)(struct hbk_drv *d, uint32_t *count);
	int (*get_dma_spec)(struct hbk_drv *d, struct hbk_drv_dma_spec *spec);
	/* Once per pooled task: a unique task id, echoed in every task's
	 * controller_task_id (default: index + 1). */
	int (*map_hba_data)(struct hbk_drv *d, uint32_t index, uint64_t *task_id);
	/*
	 * Offer of the bundled path: cmds holds count task slots, resps count
	 * response slots; map each with hbk_drv_mem_map and keep the addresses.
	 * Return 0 to commit to the bundled path, -errno to stay on the
	 * per-task path.  NULL, or process_bundled NULL: the driver serves
	 * the per-task path only.
	 */
	int (*map_bundled)(struct hbk_drv *d, struct hbk_drv_mem *cmds,
			   struct hbk_drv_mem *resps, uint32_t count);
	/* After initialisation, before any I/O.  Keep it fast: defer target
	 * creation to another queue (see drivers/ram). */
	int (*start)(struct hbk_drv *d);
	/* true: the driver creates its targets; false (default): the framework
	 * creates targets 0..highest. */
	bool (*device_management)(struct hbk_drv *d);
	/* Probe a target before it is registered (inside create target). */
	int (*init_target)(struct hbk_drv *d, uint64_t target);
	bool (*multipathing)(struct hbk_drv *d);
	bool (*autosense)(struct hbk_drv *d);
	bool (*parallel_feature)(struct hbk_drv *d, uint32_t feature);
	uint64_t (*highest_lun)(struct hbk_drv *d);

	/*
	 * Per-task path.  Return HBK_SR_REQUEST_IN_PROCESS and complete later
	 * with hbk_drv_task_complete (retain the action first), or fill *resp
	 * and return any other service response to complete at once.
	 */
	uint32_t (*process_task)(struct hbk_drv *d, const struct hbk_task *task,
				 struct hbk_response *resp, struct hbk_drv_action *action);
	/*
	 * Bundled path: slot indices index[0..count-1] now belong to the driver
	 * until it completes them with hbk_drv_bundled_complete.  The action is
	 * the same on every call.  Runs on the runtime's submitter thread, as
	 * part of the queue it is bound to (Default).
	 */
	void (*process_bundled)(struct hbk_drv *d, const uint16_t *index, uint16_t count,
				struct hbk_drv_bundled_action *action);

	/* Task management: return HBK_SR_FUNCTION_COMPLETE or _REJECTED
	 * (default: REJECTED).  abort_task's tag is the task's task_tag,
	 * unique per issue: a task that has ended, even one whose slot carries
	 * another task now, is not found, and the function is complete.  A
	 * LUN or target reset answers FUNCTION COMPLETE only once every task
	 * it covers has been completed: the runtime reports (HBK-C11) one the
	 * driver still holds then. */
	uint32_t (*abort_task)(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag);
	uint32_t (*abort_task_set)(struct hbk_drv *d, uint64_t target, uint64_t lun);
	uint32_t (*clear_aca)(struct hbk_drv *d, uint64_t target, uint64_t lun);
	uint32_t (*clear_task_set)(struct hbk_drv *d, uint64_t target, uint64_t lun);
	uint32_t (*lun_reset)(struct hbk_drv *d, uint64_t target, uint64_t lun);
	uint32_t (*target_reset)(struct hbk_drv *d, uint64_t target);
	/*
	 * Optional: the I_T nexus of `initiator` (hbk_task.initiator_id) to
	 * `target` is gone (a front end's session ended); none of its tasks is
	 * at the driver any more.  What the driver keeps per nexus for that
	 * target (RESERVE(6), medium removal prevention: hbk_scsi_nexus_loss)
	 * ends.  Runs on the queue it is bound to, like the calls above.
	 */
	void (*nexus_loss)(struct hbk_drv *d, uint64_t target, uint64_t initiator);

	/* Last call: stop the hardware; nothing is outstanding any more. */
	void (*stop)(struct hbk_drv *d);

	/* Entry points bound to queues other than Default, ended by entry 0; at
	 * most HBK_MAX_BINDINGS (16), or the runtime does not start. */
	const struct hbk_drv_binding *bindings;
};

/*
 * Runs a driver: parses the command line (--call-fd N --event-fd M when
 * spawned by the host, or --listen PATH to wait for a host to attach), then
 * serves calls until the host stops the controller or goes away.  priv is
 * returned by hbk_drv_priv.  Extra arguments the runtime does not know are
 * left for the driver in hbk_drv_arg.  Returns the process exit status.
 * Main thread only, once per process.
 */
int hbk_drv_main(const struct hbk_drv_ops *ops, void *priv, int argc, char **argv);

void *hbk_drv_priv(struct hbk_drv *d);

/*
 * Value of driver option "--NAME=VALUE" or "NAME=VALUE" given on the command
 * line, or NULL.  Any thread.
 */
const char *hbk_drv_arg(struct hbk_drv *d, const char *name);

/* The value of the k-th (from 0) option NAME, for an option that may be
 * given more than once, or NULL.  Any thread. */
const char *hbk_drv_arg_nth(struct hbk_drv *d, const char *name, unsigned k);

/*
 * Checks that every driver option on the command line was asked for by an
 * hbk_drv_arg* call so far: a driver that reads its options in
 * init_controller calls it last there, so a mistyped option is refused
 * instead of silently left out.  Returns 0, or -EINVAL with the first
 * option nobody asked for (or one that is not NAME=VALUE) said on stderr.
 * Any thread.
 */
int hbk_drv_args_check(struct hbk_drv *d);

/* Whether option NAME is given more than once, said on stderr if so (for
 * an option that may be given once).  Any thread. */
bool hbk_drv_arg_repeated(struct hbk_drv *d, const char *name);

/*
 * Numeric driver option NAME: its value (a size as "4096", "64k", "1G",
 * binary units) in *out, or dflt when not given.  Returns 0, or -EINVAL
 * for a value that is no number or lies outside [min, max], or an option
 * given twice, said on stderr with the option named.  Any thread.
 */
int hbk_drv_arg_num(struct hbk_drv *d, const char *name, uint64_t dflt, uint64_t min,
		    uint64_t max, uint64_t *out);

/* ---- Dispatch queues ----------------------------------------------------- */

/*
 * Creates a serial queue named `name` with its own thread.  Call it from
 * init_controller.  Returns the queue, or NULL (errno set: EEXIST for a name
 * in use, ENOMEM).  The queue lives until the driver exits.
 */
struct hbk_drv_queue *hbk_drv_queue_create(struct hbk_drv *d, const char *name);

/* The queue of that name, or NULL.  "Default" always exists. */
struct hbk_drv_queue *hbk_drv_queue_find(struct hbk_drv *d, const char *name);

/*
 * Queues w to run on q after everything queued before it; items on one
 * queue never run at the same time as each other nor as calls bound to that
 * queue.  Returns 0, or -EALREADY when w is queued already.  Any thread.
 */
int hbk_drv_queue_dispatch(struct hbk_drv_queue *q, struct hbk_drv_work *w);

/*
 * Event sources, as interrupt dispatch sources are in the controller model:
 * while the eventfd `fd` (opened EFD_NONBLOCK) is attached to q, each time it
 * becomes readable the runtime reads its counter and dispatches w to q, as
 * hbk_drv_queue_dispatch would (not twice while queued).  q's own thread
 * waits on the fd when it has nothing to run, so an interrupt wakes one
 * thread, the one that runs its handler.  Attach is the driver's to undo
 * before it closes fd.  Returns 0, -EINVAL (fd not a non-blocking file, or
 * w without fn), -EEXIST (fd attached already), -ENOSPC (more than
 * HBK_DRV_MAX_SOURCES), -errno.  Any thread.
 */
#define HBK_DRV_MAX_SOURCES 8
int hbk_drv_queue_attach(struct hbk_drv_queue *q, int fd, struct hbk_drv_work *w);

/*
 * Detaches fd from q.  Once this returns the runtime neither waits on fd nor
 * dispatches for it, so fd may be closed; a w dispatched before still runs.
 * Returns 0 or -ENOENT.  Any thread, including q's own.
 */
int hbk_drv_queue_detach(struct hbk_drv_queue *q, int fd);

/* The queue the calling thread is running on, or NULL. */
struct hbk_drv_queue *hbk_drv_queue_current(void);
const char *hbk_drv_queue_name(const struct hbk_drv_queue *q);

/* ---- Memory --------------------------------------------------------------- */

/*
 * Address of the data buffer of a task: [iova, iova + len) of the shared data
 * arena, or NULL when that range is not inside the arena or iova breaks the
 * alignment the DMA spec declared.  Any thread.
 */
void *hbk_drv_dma(struct hbk_drv *d, uint64_t iova, uint64_t len);

/* Maps memory handed to map_bundled; returns its address (NULL on failure).
 * Only inside map_bundled. */
void *hbk_drv_mem_map(struct hbk_drv_mem *m);

/* ---- Completions ---------------------------------------------------------- */

/* Per-task handle reference counting.  The runtime holds one reference while
 * process_task runs; retain to keep the task past that, release after
 * completing.  Use after the last release is refused (HBK-C07). */
void hbk_drv_action_retain(struct hbk_drv_action *a);
void hbk_drv_action_release(struct hbk_drv_action *a);
/* Pool index of the task the handle belongs to (0 .. max task count - 1). */
uint32_t hbk_drv_action_index(const struct hbk_drv_action *a);

/*
 * Completes a per-task-path task (ParallelTaskCompletion).  resp must be a
 * full response: version HBK_TASK_VERSION, the task's controller_task_id,
 * service response and status, bytes transferred, sense.  Returns 0, or
 * -EINVAL/-ESTALE when the runtime refused it (rule logged).  Any thread.
 */
int hbk_drv_task_complete(struct hbk_drv *d, struct hbk_drv_action *a,
			  const struct hbk_response *resp);

/* The bundled handle is a singleton that the runtime keeps alive for the
 * life of the controller; retains and releases are counted, and a release
 * below the runtime's own reference is refused and reported (HBK-C06). */
void hbk_drv_bundled_retain(struct hbk_drv_bundled_action *a);
void hbk_drv_bundled_release(struct hbk_drv_bundled_action *a);

/*
 * Completes bundled slots (BundledParallelTaskCompletion): fill each
 * response slot first.  count <= HBK_MAX_BUNDLE; one call may mix slots from
 * different submissions.  Returns 0 or -errno.  Any thread.
 */
int hbk_drv_bundled_complete(struct hbk_drv *d, struct hbk_drv_bundled_action *a,
			     const uint16_t *index, uint16_t count);

/* ---- Driver -> framework calls ------------------------------------------- */

/*
 * UserReportHBAConstraints.  From init_controller.  Returns 0 or -errno.
 */
int hbk_drv_report_constraints(struct hbk_drv *d, const struct hbk_drv_constraints *c);

/*
 * UserCreateTargetForID: the framework initialises the target, discovers its
 * LUNs (I/O flows to the driver meanwhile) and registers them before this
 * returns.  Never from the Default queue: that is refused with -EDEADLK
 * (HBK-C02).  Returns 0 or -errno.
 */
int hbk_drv_create_target(struct hbk_drv *d, uint64_t target);
int hbk_drv_destroy_target(struct hbk_drv *d, uint64_t target);
/* Returns 1 if the framework has the target, 0 if not, or -errno. */
int hbk_drv_target_present(struct hbk_drv *d, uint64_t target);
int hbk_drv_media_changed(struct hbk_drv *d, uint64_t target, uint64_t lun);

/* ---- Helpers for drivers -------------------------------------------------- */

/* Fills the whole response for task t (reserved fields zeroed) from a
 * service response, status, byte count and sense data.  Any thread. */
void hbk_drv_response_fill(struct hbk_response *r, const struct hbk_task *t,
			   uint32_t service, uint32_t status, uint64_t bytes,
			   const uint8_t *sense, uint8_t sense_len);

#endif /* HBK_DRIVER_H */
