/* SPDX-License-Identifier: MIT */
/*
 * Private state of the host library: the controller, its task pool and slot
 * state machine, the threads that move tasks (sender, event reader, control,
 * timer), targets and LUNs.  Shared by the files of src/host only.
 */
#ifndef HBK_HOST_PRIV_H
#define HBK_HOST_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "common/common.h"
#include "hbk/host.h"

/* Slot / task states (abi.h draws the machine). */
enum slot_state { SLOT_FREE = 0, SLOT_HOST, SLOT_DRIVER, SLOT_DONE };
enum task_path { PATH_NONE = 0, PATH_PER_TASK, PATH_BUNDLED };

#define HIST_LEN 8  /* transitions remembered per slot, for HBK-C03 reports */

struct htask {
	uint32_t index;
	uint8_t state;        /* enum slot_state, under ctl->lock */
	uint8_t path;         /* enum task_path of the current cycle */
	uint8_t tmo_stage;    /* 0, or escalation steps taken after a timeout */
	uint32_t sends;       /* times it went to the driver: tells one use of the slot from the next */
	bool failed_at_close; /* at the driver when the host closed, failed then */
	bool timed_out;
	uint64_t task_id;     /* from MAP_HBA_DATA */
	uint32_t issues;      /* tasks prepared in this slot */
	uint64_t tag;         /* task_tag of the current cycle: issues << 32 | index + 1,
			       * so no other task had it */
	uint64_t deadline_ns;
	uint64_t stage_ns;    /* when the last escalation step was taken */
	uint64_t iova;        /* buffer offset in the arena */
	uint64_t bounce_off;  /* this task's bounce chunk in the arena */
	bool bounced;         /* data goes through the bounce chunk */
	struct hbk_scsi_cmd *cmd;
	struct hbk_task t;    /* per-task path: the task by value */
	uint64_t target, lun; /* host-private copies for task management */
	uint8_t hist[HIST_LEN]; /* recent states, newest last */
};

/* info changes only under ctl->lun_lock; the I/O path reads the atomics. */
struct hbk_lun {
	struct hbk_ctl *ctl;
	struct hbk_lun_info info;
	atomic_ullong nblocks;    /* current capacity, for range checks */
	atomic_bool gone;         /* target destroyed: I/O fails with ENODEV */
};

struct ctl_msg {              /* a driver -> host call queued for the control thread */
	struct ctl_msg *next;
	union {
		struct hbk_msg_hdr hdr;
		struct hbk_msg_call call;
		struct hbk_msg_constraints cons;
	} m;
};

#define HBK_POLL_SCORE_MAX 256u   /* hbk_ctl.poll_score: every recent poll caught */

struct hbk_ctl {
	struct hbk_ctl_opts opts;
	char driver_name[HBK_NAME_LEN];
	pid_t pid;                /* spawned driver, or 0 */
	int call_fd, event_fd;
	struct hbk_region region;
	uint32_t cring_head;      /* completion ring entries consumed; event thread */
	atomic_bool ring_on;      /* bundled path mapped: the event thread drains the ring */
	uint64_t poll_ns;         /* how long the event thread polls the ring before sleeping */
	unsigned poll_score;      /* event thread: how often its recent polls caught,
				   * 0..HBK_POLL_SCORE_MAX, which decides whether polling
				   * pays (see hbk_io_ring_poll) */
	unsigned poll_skips;      /* event thread: waits without a poll since the last */
	unsigned busy_n;          /* slots not SLOT_FREE (tasks in flight), under lock */
	atomic_uint busy;         /* its copy for the polling event thread */

	/* what the driver reported */
	uint64_t initiator_id, highest_id;
	uint32_t ntasks;
	uint64_t max_transfer;
	uint32_t dma_alignment;   /* zero-copy buffers must be this aligned */
	uint32_t cons_present;
	uint64_t cons[HBK_CONS_COUNT];
	bool bundled;

	/* the pool: everything below is guarded by lock */
	pthread_mutex_t lock;
	struct htask *tasks;
	uint32_t *free_stack, nfree;
	uint32_t *prep, prep_head, prep_tail;  /* ring of prepared indices */
	uint32_t prep_mask;             /* its size (a power of two >= ntasks) - 1 */
	struct hbk_scsi_cmd *wait_head, *wait_tail;
	uint32_t sring_tail;            /* submission ring entries published */
	pthread_cond_t send_cond;
	bool send_waiting;
	atomic_bool dead;         /* written under lock, read anywhere */
	bool closing, stopping;
	bool started, stopped;    /* START returned / STOP was sent (HBK-C10) */

	/* host -> driver calls: one at a time */
	pthread_mutex_t call_lock;
	uint32_t call_seq;

	/* control thread: driver -> host calls */
	pthread_mutex_t ctl_lock;
	pthread_cond_t ctl_cond;
	struct ctl_msg *ctl_head, *ctl_tail;
	unsigned ctl_queued;      /* queued or being served */
	bool ctl_stop;
	unsigned creating;        /* create-target calls in progress */
	uint64_t created_ns;      /* when the last one ended (lun_lock) */

	/* targets and LUNs, guarded by lun_lock */
	pthread_mutex_t lun_lock;
	pthread_cond_t lun_cond;
	struct hbk_lun **luns;
	unsigned nluns, luns_cap;

	/* user buffers in the arena, guarded by buf_lock */
	pthread_mutex_t buf_lock;
	uint64_t user_off, user_pages;
	uint32_t *user_len;       /* per page: 0 free, n: an n-page allocation starts
				   * here, USER_INTERIOR: inside one */

	pthread_t sender, reader, control, timer;
	bool sender_up, reader_up, control_up, timer_up;
	/* The task timer sleeps in poll until timer_wake_ns (UINT64_MAX:
	 * until kicked); writing timer_efd kicks it.  Under lock. */
	int timer_efd;
	uint64_t timer_wake_ns;
	bool sring_watch;               /* the timer watches the submission ring's head */
	uint32_t sring_seen_head;       /* the driver's head when last seen to move */
	uint64_t sring_moved_ns;        /* and when that was seen */

	/* statistics, relaxed atomics */
	atomic_ullong st_calls, st_tasks, st_completions, st_msgs, st_doorbells, st_timeouts,
		      st_failed, st_wakes, st_polls, st_polls_caught, st_timer_wakes;
	atomic_ullong st_hist[HBK_HIST_BUCKETS];
	atomic_ullong st_sring_base[HBK_HIST_BUCKETS];  /* the ring's hist at the last reset */
	atomic_ullong st_viol[HBK_RULES];
};

/* checker.c */
void hbk_chk_violation(struct hbk_ctl *c, unsigned rule, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
const char *hbk_chk_history(const struct htask *t, char *buf, size_t size);

/* ctl.c */
int hbk_ctl_call(struct hbk_ctl *c, void *msg, size_t len, int pass_fd,
		 void *reply, size_t reply_len);
int hbk_ctl_call_simple(struct hbk_ctl *c, unsigned type, const uint64_t *arg,
			unsigned nargs, uint64_t *val);
/* Whether the spawned driver process pid exited, without reaping it
 * (its pid, and its process group's id, stay taken until reaped).  Any
 * thread. */
bool hbk_ctl_driver_exited(pid_t pid);
/* A pidfd of the spawned driver process pid (close-on-exec; readable once
 * it exits, then hbk_ctl_driver_exited tells, unless a tracer holds it), or
 * -1 where the kernel has no pidfd_open (before 5.3).  The caller closes
 * it.  Any thread. */
int hbk_ctl_driver_pidfd(pid_t pid);
/* Cuts off a driver that died, hung or broke the protocol: counts and logs
 * the rule (HBK-C11 or HBK-C12), kills a spawned driver, fails all I/O. */
void hbk_ctl_driver_failed(struct hbk_ctl *c, uint8_t status, unsigned rule, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* io.c */
int hbk_io_init(struct hbk_ctl *c);
void hbk_io_fini(struct hbk_ctl *c);
void *hbk_io_sender(void *arg);
void *hbk_io_timer(void *arg);

/* Wakes the task timer thread at once (to see that the controller stops).
 * Any thread. */
void hbk_io_timer_kick(struct hbk_ctl *c);
void hbk_io_bundled_completion(struct hbk_ctl *c, const struct hbk_msg_slots *m);
/* The completion ring, event thread only.  drain: completes what the driver
 * published; returns the count, or -EPROTO when the driver's tail is past
 * anything it could hold.  poll: waits up to poll_ns for entries while few
 * tasks are at the driver and recent polls caught; true if some arrived.
 * sleep: announces that the event thread is about to block for a
 * RING_DOORBELL; false (and no announcement) if entries arrived meanwhile.
 * awake: withdraws the announcement after waking. */
int hbk_io_ring_drain(struct hbk_ctl *c);
bool hbk_io_ring_sleep(struct hbk_ctl *c);
bool hbk_io_ring_poll(struct hbk_ctl *c);
void hbk_io_ring_awake(struct hbk_ctl *c);
void hbk_io_parallel_completion(struct hbk_ctl *c, const struct hbk_msg_completion *m);
void hbk_io_fail_all(struct hbk_ctl *c, uint8_t status);
/* The driver runtime refused a completion of the task with this task_tag
 * (its response was an earlier task's): if that task is still at the
 * driver, its escalation starts one grace period from now at the latest.
 * Event thread. */
void hbk_io_completion_refused(struct hbk_ctl *c, uint64_t tag);

/* discover.c */
int hbk_disc_create_target(struct hbk_ctl *c, uint64_t target);
int hbk_disc_destroy_target(struct hbk_ctl *c, uint64_t target);
bool hbk_disc_target_present(struct hbk_ctl *c, uint64_t target);
int hbk_disc_media_changed(struct hbk_ctl *c, uint64_t target, uint64_t lun);
void hbk_disc_free(struct hbk_ctl *c);

#endif /* HBK_HOST_PRIV_H */
