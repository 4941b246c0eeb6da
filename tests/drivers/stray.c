/* SPDX-License-Identifier: MIT */
/*
 * A driver that breaks the contract past the runtime's calls, one way per
 * fault=KIND, on a READ or WRITE at LBA 4242 (then completes it properly,
 * so the test can see the controller go on):
 *
 *   ring_tail            a stray store into the shared region: the
 *                        completion ring gains an entry naming the task's
 *                        slot, whose response is still the earlier task's
 *                        (bundled path);
 *   per_task_for_bundled the seed's ParallelTaskCompletion with the bundled
 *                        handle (bundled path);
 *   null_action          ParallelTaskCompletion with no handle (per-task);
 *   forge_violation      a VIOLATION message of a rule the runtime never
 *                        reports, sent raw;
 *   fork_helper          forks a helper that sleeps, and writes its pid to
 *                        the file pidfile=PATH names;
 *   fork_and_die         forks a helper that sleeps (holding the channels
 *                        open), then exits;
 *   close_events         closes its own event channel (while the runtime's
 *                        reader waits on it) and keeps the task, which it
 *                        could no longer complete;
 *   bindings17           starts with 17 queue bindings (refused at start);
 *   start_waits          its start entry point has the AuxiliaryQueue
 *                        create the target, and waits for that;
 *   hold_until_created   holds every I/O until create target returned, so
 *                        the target's discovery never ends (the seed's
 *                        logical deadlock).
 */
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/drivers/lib/tdrv.h"

static bool is(struct tdrv *t, const char *kind)
{
	return !strcmp(tdrv_arg(t, "fault", ""), kind);
}

static struct hbk_cring *ring_of(struct tdrv *t)
{
	/* The region starts with its header; the command slots follow at cmd_off. */
	const struct hbk_region_hdr *h = (const void *)((uint8_t *)t->cmds - 256);
	if (h->magic != HBK_REGION_MAGIC || h->cmd_off != 256)
		return NULL;
	return (struct hbk_cring *)((uint8_t *)h + h->cring_off);
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	if (!tdrv_is_trigger(&io->task))
		return false;
	if (is(t, "ring_tail") && io->path == TDRV_BUNDLED) {
		struct hbk_cring *r = ring_of(t);
		const struct hbk_region_hdr *h = (const void *)((uint8_t *)t->cmds - 256);
		if (!r)
			return false;
		/* The slot holds the response of the task before this one. */
		t->resps[io->index] = io->resp;
		t->resps[io->index].task_tag = io->task.task_tag - (1ull << 32);
		uint32_t tail = __atomic_load_n(&r->tail, __ATOMIC_RELAXED);
		r->entry[tail & (h->cring_entries - 1)] = io->index;
		__atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
		struct hbk_msg_hdr bell;
		hbk_msg_init(&bell, HBK_MSG_RING_DOORBELL, 0, sizeof(bell));
		tdrv_send_raw(t, &bell, sizeof(bell));
		usleep(100000);
		return false;   /* then completed properly */
	}
	if (is(t, "per_task_for_bundled") && io->path == TDRV_BUNDLED) {
		int rc = hbk_drv_task_complete(t->d, (struct hbk_drv_action *)io->bundled, &io->resp);
		fprintf(stderr, "stray: per-task completion with the bundled handle: %d\n", rc);
		return false;
	}
	if (is(t, "null_action") && io->path == TDRV_PER_TASK) {
		int rc = hbk_drv_task_complete(t->d, NULL, &io->resp);
		fprintf(stderr, "stray: per-task completion without a handle: %d\n", rc);
		return false;
	}
	if (is(t, "forge_violation")) {
		struct hbk_msg_violation v;
		memset(&v, 0, sizeof(v));
		hbk_msg_init(&v.hdr, HBK_MSG_VIOLATION, 0, sizeof(v));
		v.rule = 2;
		snprintf(v.text, sizeof(v.text), "forged");
		tdrv_send_raw(t, &v, sizeof(v));
		return false;
	}
	if (is(t, "close_events")) {
		/* The raw system call: the sanitizers would (rightly) report
		 * closing a descriptor another thread is using, which is the
		 * mistake this fault makes on purpose. */
		syscall(SYS_close, t->event_fd);
		return true;
	}
	if (is(t, "fork_and_die")) {
		if (fork() == 0) {
			sleep(60);
			_exit(0);
		}
		_exit(1);
	}
	if (is(t, "fork_helper")) {
		pid_t pid = fork();
		if (pid == 0) {
			sleep(60);
			_exit(0);
		}
		FILE *f = fopen(tdrv_arg(t, "pidfile", "/dev/null"), "w");
		if (f) {
			fprintf(f, "%d\n", (int)pid);
			fclose(f);
		}
		return false;
	}
	return false;
}

/* ---- Waiting on its own target's creation -------------------------------- */

static sem_t created;
static struct hbk_drv_work create_work;
static struct tdrv *the;
static _Atomic bool target_ready;

static void create_target(struct hbk_drv_work *w)
{
	(void)w;
	hbk_drv_create_target(the->d, 0);
	atomic_store(&target_ready, true);
	sem_post(&created);
}

static int start(struct tdrv *t)
{
	the = t;
	sem_init(&created, 0, 0);
	hbk_drv_work_init(&create_work, create_target);
	hbk_drv_queue_dispatch(t->aux, &create_work);
	if (is(t, "start_waits"))
		sem_wait(&created);
	return 0;
}

static void process_bundled(struct hbk_drv *d, const uint16_t *index, uint16_t count,
			    struct hbk_drv_bundled_action *action)
{
	struct tdrv *t = tdrv_of(d);
	if (is(t, "hold_until_created") && !atomic_load(&target_ready))
		return;   /* "not ready": never completed */
	tdrv_ops.process_bundled(d, index, count, action);
}

static const struct tdrv_hooks hooks = { .complete = complete, .start = start };

int main(int argc, char **argv)
{
	static struct hbk_drv_binding many[18];
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "stray";
	ops.process_bundled = process_bundled;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "fault=bindings17")) {
			for (int k = 0; k < 17; k++)
				many[k] = (struct hbk_drv_binding){ HBK_MSG_HIGHEST_LUN,
								    HBK_QUEUE_NAME_DEFAULT };
			ops.bindings = many;
		}
	return tdrv_main(argc, argv, &ops, &hooks);
}
