/* SPDX-License-Identifier: MIT */
/*
 * The I/O engine of the host: the task pool and its slot state machine,
 * preparing tasks on the submitting thread, which posts bundled tasks
 * straight into the submission ring (abi.h), the sender thread that makes
 * the per-task path's calls (one task per call), completion processing with
 * the checker's slot, path and response rules, task timeouts with their
 * escalation (and the submission ring's hang check), and failing outstanding
 * I/O when the driver is gone.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/host_priv.h"

/* ---- Pool ------------------------------------------------------------------ */

int hbk_io_init(struct hbk_ctl *c)
{
	uint32_t n = c->ntasks;
	c->tasks = calloc(n, sizeof(*c->tasks));
	c->free_stack = calloc(n, sizeof(*c->free_stack));
	/* A power of two, so the free-running indices wrap with it. */
	for (c->prep_mask = 1; c->prep_mask < n; c->prep_mask <<= 1)
		;
	c->prep = calloc(c->prep_mask--, sizeof(*c->prep));
	/* The free-running indices start just short of wrapping (as Linux
	 * starts jiffies), so every controller goes through the wrap within
	 * its first few thousand tasks and a wrap bug shows in every test. */
	c->prep_head = c->prep_tail = UINT32_MAX - 4095u;
	if (!c->tasks || !c->free_stack || !c->prep)
		return -ENOMEM;
	uint64_t bounce = (uint64_t)n * c->max_transfer;
	c->user_pages = (c->opts.user_arena_bytes + 4095) / 4096;
	c->user_len = calloc(c->user_pages, sizeof(*c->user_len));
	if (!c->user_len)
		return -ENOMEM;
	int err = hbk_region_create(&c->region, n, bounce + c->user_pages * 4096);
	if (err)
		return err;
	c->user_off = bounce;
	c->sring_tail = c->region.sring->tail;
	for (uint32_t i = 0; i < n; i++) {
		c->tasks[i].index = i;
		c->tasks[i].bounce_off = (uint64_t)i * c->max_transfer;
		c->free_stack[i] = n - 1 - i;
	}
	c->nfree = n;
	return 0;
}

void hbk_io_fini(struct hbk_ctl *c)
{
	free(c->tasks);
	free(c->free_stack);
	free(c->prep);
	free(c->user_len);
	if (c->region.base)
		hbk_region_unmap(&c->region);
}

/* ---- Waking the task timer --------------------------------------------------- */

void hbk_io_timer_kick(struct hbk_ctl *c)
{
	uint64_t one = 1;
	if (c->timer_efd < 0)
		return;
	/* A write that fails finds the counter full (never, at one a kick),
	 * which leaves it readable all the same. */
	ssize_t n = write(c->timer_efd, &one, sizeof(one));
	(void)n;
}

/* Something comes due at when (coarse ns): wakes the timer if it sleeps
 * past that.  c->lock held, which orders this against the timer's choice
 * of timer_wake_ns; a kick between that choice and its poll leaves the
 * eventfd readable, so poll returns at once. */
static void timer_due(struct hbk_ctl *c, uint64_t when)
{
	if (when >= c->timer_wake_ns)
		return;
	c->timer_wake_ns = when;
	hbk_io_timer_kick(c);
}

/* How often the timer looks at the submission ring's head while entries
 * wait in it: a hung submitter is caught within call_timeout_ms and a
 * quarter of it. */
static uint64_t sring_check_ns(const struct hbk_ctl *c)
{
	return HBK_MAX((uint64_t)c->opts.call_timeout_ms * 1000000ull / 4, 1000000ull);
}

/* c->lock held. */
static void set_state(struct hbk_ctl *c, struct htask *t, enum slot_state s)
{
	/* The driver has it: its timeout runs.  Due the tick after its
	 * deadline, as the timer itself counts (a task is late once now is
	 * past the deadline), so the tasks handed over within one coarse
	 * tick of the timer's last pass do not kick it each. */
	if (s == SLOT_DRIVER)
		timer_due(c, t->deadline_ns + 1);
	if ((t->state == SLOT_FREE) != (s == SLOT_FREE))
		atomic_store_explicit(&c->busy, c->busy_n += s == SLOT_FREE ? -1 : 1,
				      memory_order_relaxed);
	memmove(t->hist, t->hist + 1, HIST_LEN - 1);
	t->hist[HIST_LEN - 1] = (uint8_t)(s + 1);
	t->state = (uint8_t)s;
}

/* ---- Buffers ---------------------------------------------------------------- */

#define USER_INTERIOR UINT32_MAX

void *hbk_ctl_buf_alloc(struct hbk_ctl *c, size_t len)
{
	uint64_t pages = (len + 4095) / 4096;
	if (!pages || pages > c->user_pages)
		return NULL;
	void *p = NULL;
	pthread_mutex_lock(&c->buf_lock);
	for (uint64_t i = 0; i + pages <= c->user_pages && !p;) {
		uint32_t at = c->user_len[i];
		if (at) {   /* skip an allocation, or step through one's interior */
			i += at == USER_INTERIOR ? 1 : at;
			continue;
		}
		uint64_t run = 0;
		while (run < pages && !c->user_len[i + run])
			run++;
		if (run < pages) {
			i += run;
			continue;
		}
		c->user_len[i] = (uint32_t)pages;
		for (uint64_t j = 1; j < pages; j++)
			c->user_len[i + j] = USER_INTERIOR;
		p = c->region.arena + c->user_off + i * 4096;
	}
	pthread_mutex_unlock(&c->buf_lock);
	return p;
}

void hbk_ctl_buf_free(struct hbk_ctl *c, void *p)
{
	if (!p)
		return;
	uintptr_t base = (uintptr_t)(c->region.arena + c->user_off), at = (uintptr_t)p;
	uint64_t i = (at - base) / 4096;
	pthread_mutex_lock(&c->buf_lock);
	uint32_t pages = at >= base && (at - base) % 4096 == 0 && i < c->user_pages ?
			 c->user_len[i] : 0;
	if (pages && pages != USER_INTERIOR)
		for (uint64_t j = 0; j < pages; j++)
			c->user_len[i + j] = 0;
	pthread_mutex_unlock(&c->buf_lock);
	if (!pages || pages == USER_INTERIOR)
		hbk_log(HBK_LOG_ERR, "hbk_ctl_buf_free of %p, which hbk_ctl_buf_alloc did not "
			"return (or was freed already)", p);
}

/* ---- Submission ------------------------------------------------------------- */

/* True when buf can go to the driver as is: inside the arena and aligned as
 * the driver asked; *iova is then its arena offset. */
static bool zero_copy(struct hbk_ctl *c, const void *buf, uint64_t len, uint64_t *iova)
{
	const uint8_t *p = buf, *a = c->region.arena;
	if (p < a || p >= a + c->region.arena_size || len > (uint64_t)(a + c->region.arena_size - p))
		return false;
	*iova = (uint64_t)(p - a);
	return *iova % c->dma_alignment == 0;
}

/* Fills the task (its slot on the bundled path) from the command: runs on the
 * submitting thread, with the task in state HOST. */
static void prepare(struct hbk_ctl *c, struct htask *t, struct hbk_scsi_cmd *cmd)
{
	t->cmd = cmd;
	t->timed_out = false;
	t->tmo_stage = 0;
	t->bounced = cmd->len && !zero_copy(c, cmd->buf, cmd->len, &t->iova);
	if (t->bounced) {
		t->iova = t->bounce_off;
		if (cmd->dir == HBK_DIR_WRITE)
			memcpy(c->region.arena + t->bounce_off, cmd->buf, cmd->len);
	} else if (!cmd->len) {
		t->iova = 0;
	}
	t->target = cmd->lun ? cmd->lun->info.target : cmd->target;
	t->lun = cmd->lun ? cmd->lun->info.lun : cmd->lun_id;
	struct hbk_task *k = c->bundled ? &c->region.cmds[t->index] : &t->t;
	memset(k, 0, sizeof(*k));
	k->version = HBK_TASK_VERSION;
	k->target_id = t->target;
	k->controller_task_id = t->task_id;
	k->requested_transfer_count = cmd->len;
	k->buffer_iova = t->iova;
	k->task_attribute = cmd->attr;
	/* Unique for every issue, unlike the slot's task_id: ABORT TASK names
	 * this command, never one that reuses the slot after it. */
	t->tag = (uint64_t)++t->issues << 32 | (t->index + 1u);
	k->task_tag = t->tag;
	hbk_scsi_lun_encode(t->lun, k->lun);
	memcpy(k->cdb, cmd->cdb, cmd->cdb_len);
	k->cdb_len = cmd->cdb_len;
	k->direction = cmd->dir;
	k->initiator_id = cmd->initiator;
	k->timeout_ms = cmd->timeout_ms ? cmd->timeout_ms : c->opts.task_timeout_ms;
	t->deadline_ns = hbk_coarse_ns() + (uint64_t)k->timeout_ms * 1000000ull;
}

static void complete_cmd(struct hbk_scsi_cmd *cmd, uint8_t service, uint8_t status)
{
	memset(&cmd->result, 0, sizeof(cmd->result));
	cmd->result.service = service;
	cmd->result.status = status;
	cmd->sense_len = 0;
	cmd->done(cmd);
}

static void finish(struct hbk_ctl *c, struct htask *t);

/*
 * The plug.  While the event thread works through one batch of
 * completions, the callbacks it runs submit new tasks; rather than waking
 * the driver's submitter (or the sender) for the first of them and taking
 * the pool lock for each, they collect here and go into the submission ring
 * (or to the sender) together when the batch is done (as the Linux block
 * layer's plug does).  Nothing waits longer than that one batch.
 */
#define PLUG_MAX 64
static __thread struct {
	struct hbk_ctl *c;
	unsigned n;
	uint32_t index[PLUG_MAX];
} plug;

/*
 * Bundled path: hands prepared tasks to the driver through the submission
 * ring (abi.h), and wakes its runtime's submitter if it sleeps.  Called
 * with c->lock held; returns with it released.  The ring cannot overflow:
 * an entry is posted only for a slot the host holds, and the driver
 * runtime completes (so frees) no slot before it has taken its entry.
 */
static void post_bundled(struct hbk_ctl *c, const uint32_t *index, unsigned n)
{
	struct hbk_sring *ring = c->region.sring;
	uint32_t cap = c->region.sring_entries;
	for (unsigned i = 0; i < n; i++) {
		struct htask *t = &c->tasks[index[i]];
		set_state(c, t, SLOT_DRIVER);
		t->sends++;
		t->path = PATH_BUNDLED;
		ring->entry[(c->sring_tail + i) & (cap - 1)] = (uint16_t)index[i];
	}
	c->sring_tail += n;
	if (!c->sring_watch) {
		/* The timer watches the driver's head while entries wait
		 * (submitter_hung), from now. */
		c->sring_watch = true;
		/* Acquire: pairs with the submitter's release store of
		 * the head (only a sample; nothing is read through it). */
		c->sring_seen_head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
		c->sring_moved_ns = hbk_coarse_ns();
		timer_due(c, c->sring_moved_ns + sring_check_ns(c));
	}
	/* Release: the command slots (filled by prepare) and the entries are
	 * visible to the driver once it sees the tail (pairs with the
	 * submitter's acquire load).  Sequentially consistent as well, with
	 * the load of driver_waiting below: pairs with the submitter's seq_cst
	 * store of driver_waiting and load of the tail. */
	__atomic_store_n(&ring->tail, c->sring_tail, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add_explicit(&c->st_tasks, n, memory_order_relaxed);
	if (__atomic_load_n(&ring->driver_waiting, __ATOMIC_SEQ_CST) &&
	    __atomic_exchange_n(&ring->driver_waiting, 0, __ATOMIC_RELAXED)) {
		atomic_fetch_add_explicit(&c->st_wakes, 1, memory_order_relaxed);
		hbk_futex_wake_shared(&ring->driver_waiting);
	}
}

/* Hands prepared tasks to the driver (bundled path) or the sender (per-task
 * path).  If the controller is gone: with refuse, returns their slots and
 * -ENODEV, their done not called (the submitting thread may hold locks its
 * done takes); else fails them, done running on this (library) thread. */
static int enqueue_many(struct hbk_ctl *c, const uint32_t *index, unsigned n, bool refuse)
{
	pthread_mutex_lock(&c->lock);
	if (c->dead || c->closing) {
		for (unsigned i = 0; i < n; i++)
			set_state(c, &c->tasks[index[i]], SLOT_DONE);
		pthread_mutex_unlock(&c->lock);
		for (unsigned i = 0; i < n; i++) {
			struct htask *t = &c->tasks[index[i]];
			struct hbk_scsi_cmd *cmd = t->cmd;
			finish(c, t);
			if (refuse)
				continue;
			atomic_fetch_add(&c->st_failed, 1);
			complete_cmd(cmd, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE,
				     HBK_DS_DEVICE_NOT_PRESENT);
		}
		return -ENODEV;
	}
	if (c->bundled) {
		post_bundled(c, index, n);
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		c->prep[c->prep_tail++ & c->prep_mask] = index[i];
	if (c->send_waiting)
		pthread_cond_signal(&c->send_cond);
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void plug_flush(void)
{
	unsigned n = plug.n;
	plug.n = 0;
	if (n)
		enqueue_many(plug.c, plug.index, n, false);
}

static void plug_start(struct hbk_ctl *c)
{
	plug.c = c;
	plug.n = 0;
}

static void plug_end(void)
{
	plug_flush();
	plug.c = NULL;
}

/* Hands one prepared task on, under this thread's plug if it has one (a
 * library thread's: a plugged task always goes on, failed there if the
 * controller is gone).  Returns 0, or with refuse -ENODEV (enqueue_many). */
static int enqueue(struct hbk_ctl *c, struct htask *t, bool refuse)
{
	if (plug.c != c)
		return enqueue_many(c, &t->index, 1, refuse);
	if (plug.n == PLUG_MAX)
		plug_flush();
	plug.index[plug.n++] = t->index;
	return 0;
}

int hbk_sam_submit(struct hbk_ctl *c, struct hbk_scsi_cmd *cmd)
{
	unsigned l = cmd->cdb_len;
	if ((l != 6 && l != 10 && l != 12 && l != 16) || cmd->dir > HBK_DIR_READ || !cmd->done ||
	    (cmd->dir != HBK_DIR_NONE && (!cmd->buf || !cmd->len)) ||
	    (cmd->dir == HBK_DIR_NONE && cmd->len) || cmd->len > c->max_transfer || cmd->attr > HBK_ATTR_ACA)
		return -EINVAL;
	cmd->next_wait = NULL;
	pthread_mutex_lock(&c->lock);
	if (c->dead || c->closing || c->stopping) {
		pthread_mutex_unlock(&c->lock);
		return -ENODEV;
	}
	if (!c->nfree) {
		if (c->wait_tail)
			c->wait_tail->next_wait = cmd;
		else
			c->wait_head = cmd;
		c->wait_tail = cmd;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	struct htask *t = &c->tasks[c->free_stack[--c->nfree]];
	set_state(c, t, SLOT_HOST);
	pthread_mutex_unlock(&c->lock);
	prepare(c, t, cmd);
	/* On the application's thread a controller that died meanwhile is a
	 * refusal, not done run here, where the caller may hold its locks. */
	return enqueue(c, t, true);
}

/* Returns a DONE task to the pool, or straight to the next waiting command. */
static void finish(struct hbk_ctl *c, struct htask *t)
{
	t->cmd = NULL;
	pthread_mutex_lock(&c->lock);
	struct hbk_scsi_cmd *next = c->closing || c->dead ? NULL : c->wait_head;
	if (next) {
		c->wait_head = next->next_wait;
		if (!c->wait_head)
			c->wait_tail = NULL;
		set_state(c, t, SLOT_HOST);
	} else {
		set_state(c, t, SLOT_FREE);
		c->free_stack[c->nfree++] = t->index;
	}
	pthread_mutex_unlock(&c->lock);
	if (next) {
		prepare(c, t, next);
		enqueue(c, t, false);
	}
}

/* ---- Completion -------------------------------------------------------------- */

/* HBK-C05: the fields of a response the host relies on.  NULL if sound. */
static const char *response_fault(const struct htask *t, const struct hbk_response *r,
				  uint64_t requested)
{
	if (r->version != HBK_TASK_VERSION)
		return "version is not 1";
	if (r->controller_task_id != t->task_id)
		return "controller_task_id is not the task's id";

	if (r->bytes_transferred > requested)
		return "bytes_transferred exceeds the requested transfer count";
	if (r->sense_len > HBK_SENSE_MAX)
		return "sense_len exceeds 252";
	if (r->service_response != HBK_SR_TASK_COMPLETE &&
	    r->service_response != HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE)
		return "service_response is neither TASK_COMPLETE nor SERVICE_DELIVERY_OR_TARGET_FAILURE";
	if (!hbk_scsi_status_name(r->service_response, r->completion_status))
		return r->service_response == HBK_SR_TASK_COMPLETE
		       ? "completion_status is not a SCSI status"
		       : "completion_status is not a delivery status";
	return NULL;
}

/* Completes a DONE task upstream from the driver's response. */
static void complete_task(struct hbk_ctl *c, struct htask *t, const struct hbk_response *r)
{
	struct hbk_scsi_cmd *cmd = t->cmd;
	const char *fault = response_fault(t, r, cmd->len);
	memset(&cmd->result, 0, sizeof(cmd->result));
	cmd->sense_len = 0;
	if (fault) {
		hbk_chk_violation(c, 5, "%s completion of slot %u (task id %llu): %s; response "
				  "refused and the task failed with DeliveryFailure. Fix: fill every "
				  "response field (hbk_drv_response_fill does)",
				  t->path == PATH_BUNDLED ? "bundled" : "per-task", t->index,
				  (unsigned long long)t->task_id, fault);
		cmd->result.service = HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE;
		cmd->result.status = HBK_DS_DELIVERY_FAILURE;
	} else {
		cmd->result.service = (uint8_t)r->service_response;
		cmd->result.status = (uint8_t)r->completion_status;
		cmd->result.bytes = r->bytes_transferred;
		if (r->sense_len) {
			cmd->sense_len = r->sense_len;
			memcpy(cmd->sense, r->sense, r->sense_len);
			hbk_scsi_sense_decode(cmd->sense, cmd->sense_len, &cmd->result);
		}
		if (t->bounced && cmd->dir == HBK_DIR_READ && r->bytes_transferred)
			memcpy(cmd->buf, c->region.arena + t->bounce_off, r->bytes_transferred);
	}
	if (t->timed_out) {
		cmd->result.service = HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE;
		cmd->result.status = HBK_DS_TASK_TIMEOUT;
	}
	finish(c, t);
	cmd->done(cmd);
}

/*
 * HBK-C10: completions only between START and STOP.  Whether a completion
 * of the given slots (n of them) comes outside the controller's life, and
 * then refuses it: reported, except after STOP for slots that were at the
 * driver when the host closed and failed them (the driver may still give
 * those back as STOP crosses its completions, which is no fault).
 * c->lock held.
 */
static bool out_of_life(struct hbk_ctl *c, const char *via, const uint16_t *index, unsigned n)
{
	if (c->started && !c->stopped)
		return false;
	bool all_failed_at_close = c->started && n > 0;
	for (unsigned i = 0; i < n && all_failed_at_close; i++)
		all_failed_at_close = index[i] < c->ntasks && c->tasks[index[i]].failed_at_close;
	if (all_failed_at_close)
		return true;
	hbk_chk_violation(c, 10, "%s %s; refused. Fix: raise no completion before the "
			  "controller is started and none after stop", via,
			  c->started ? "after STOP" : "before START");
	return true;
}

static const char *path_name(unsigned p)
{
	return p == PATH_BUNDLED ? "the bundled path" : "the per-task path";
}

/* The grace period between two steps of a timed-out task's escalation. */
static uint64_t escalation_grace_ns(const struct hbk_ctl *c)
{
	return HBK_MIN(HBK_MAX((uint64_t)c->opts.task_timeout_ms, 200ull), 2000ull) * 1000000ull;
}

/*
 * A completion of t, at the driver, was refused: its response was an
 * earlier task's.  Either the driver repeated an earlier task's completion
 * (it still holds t and will complete it) or it completed t without filling
 * its response, and then never gives it back by itself.  t cannot end
 * upstream before the driver gives it back (the driver may still move its
 * data), but it need not wait out its whole timeout either: it is given one
 * escalation grace period from now, after which the escalation starts.
 * c->lock held.
 */
static void refused_task_due(struct hbk_ctl *c, struct htask *t)
{
	uint64_t due = hbk_coarse_ns() + escalation_grace_ns(c);
	if (t->state == SLOT_DRIVER && !t->timed_out && t->deadline_ns > due) {
		t->deadline_ns = due;
		timer_due(c, due + 1);
	}
}

void hbk_io_completion_refused(struct hbk_ctl *c, uint64_t tag)
{
	uint32_t idx = (uint32_t)tag - 1u;    /* the tag's low half is the index + 1 */
	pthread_mutex_lock(&c->lock);
	/* The state first: prepare() writes a slot's tag without the lock,
	 * before the slot is handed over (under it). */
	if (idx < c->ntasks && c->tasks[idx].state == SLOT_DRIVER && c->tasks[idx].tag == tag)
		refused_task_due(c, &c->tasks[idx]);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Bundled completions of n slots, from a BUNDLED_COMPLETION message or the
 * completion ring (via names which).  Every slot is checked against the
 * host's own state; the callbacks of all of them run under one plug.
 */
/*
 * Whether the response r names an earlier issue of t's slot (its tag is
 * another's; hbk_drv_response_fill copies the tag, and 0 is a driver that
 * leaves it): left in the slot by the task before, so a completion with it
 * is none of this task's (a stray ring entry, a second completion).  It is
 * refused and the task stays at the driver.  c->lock held.
 */
static bool stale_completion(struct hbk_ctl *c, struct htask *t, uint64_t tag,
			     unsigned rule, const char *via)
{
	if (!tag || tag == t->tag)
		return false;
	refused_task_due(c, t);
	hbk_chk_violation(c, rule, "%s of slot %u with an earlier task's response (task_tag %llu; "
			  "the task at the driver has %llu): a stale ring entry or a second "
			  "completion; refused, the task stays with the driver. Fix: fill the "
			  "response for each task (hbk_drv_response_fill) and complete it once",
			  via, t->index, (unsigned long long)tag, (unsigned long long)t->tag);
	return true;
}

static void bundled_done(struct hbk_ctl *c, const uint16_t *index, unsigned n, const char *via)
{
	struct htask *done[HBK_MAX_TASKS];
	unsigned k = 0;
	char hist[64];
	pthread_mutex_lock(&c->lock);
	if (out_of_life(c, via, index, n)) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	bool quiet = c->closing;
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = index[i];
		if (idx >= c->ntasks) {
			hbk_chk_violation(c, 3, "bundled completion (%s) of slot %u, out of range (the "
					  "controller has %u slots); slot refused. Fix: complete "
					  "only indices received in process_bundled", via, idx,
					  c->ntasks);
			continue;
		}
		struct htask *t = &c->tasks[idx];
		if (t->state != SLOT_DRIVER) {
			if (!quiet)
				hbk_chk_violation(c, 3, "bundled completion (%s) of slot %u, which the "
						  "driver does not own (never issued or already "
						  "completed; slot history %s); slot refused. Fix: "
						  "complete only slots received in process_bundled, "
						  "once each", via, idx,
						  hbk_chk_history(t, hist, sizeof(hist)));
			continue;
		}
		if (t->path != PATH_BUNDLED) {
			hbk_chk_violation(c, 4, "bundled completion (%s) of slot %u, whose task arrived "
					  "by %s; refused. Fix: complete it with "
					  "hbk_drv_task_complete", via, idx, path_name(t->path));
			continue;
		}
		if (stale_completion(c, t, __atomic_load_n(&c->region.resps[idx].task_tag,
							   __ATOMIC_RELAXED), 3, via))
			continue;
		set_state(c, t, SLOT_DONE);
		done[k++] = t;
	}
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add_explicit(&c->st_completions, k, memory_order_relaxed);
	plug_start(c);
	for (unsigned i = 0; i < k; i++) {
		/* The driver gave the slot back: copy the response out before use
		 * so a later stray store cannot change it under the checker. */
		struct hbk_response r = c->region.resps[done[i]->index];
		complete_task(c, done[i], &r);
	}
	plug_end();
}

void hbk_io_bundled_completion(struct hbk_ctl *c, const struct hbk_msg_slots *m)
{
	if (!m->count || m->count > HBK_MAX_BUNDLE) {
		hbk_chk_violation(c, 3, "BUNDLED_COMPLETION with %u slots (1..%u allowed); the "
				  "message is refused. Fix: complete at most %u slots per call",
				  m->count, HBK_MAX_BUNDLE, HBK_MAX_BUNDLE);
		return;
	}
	bundled_done(c, m->index, m->count, "BUNDLED_COMPLETION");
}

int hbk_io_ring_drain(struct hbk_ctl *c)
{
	struct hbk_cring *ring = c->region.cring;
	uint32_t cap = c->region.cring_entries;
	uint16_t index[HBK_MAX_TASKS];
	/* Acquire: pairs with the driver runtime's release store of the tail,
	 * so the response slots it wrote before publishing are visible. */
	uint32_t tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
	uint32_t n = tail - c->cring_head;
	if (!n)
		return 0;
	if (n > cap) /* the tail ran past entries the host has not consumed */
		return -EPROTO;
	for (uint32_t i = 0; i < n; i++)
		index[i] = ring->entry[(c->cring_head + i) & (cap - 1)];
	c->cring_head = tail;
	/* Release: the entries are copied out before the driver may reuse them
	 * (pairs with the driver's acquire load of head before it appends). */
	__atomic_store_n(&ring->head, tail, __ATOMIC_RELEASE);
	atomic_fetch_add_explicit(&c->st_msgs, 1, memory_order_relaxed);
	bundled_done(c, index, n, "completion ring");
	return (int)n;
}

/*
 * Polling pays only while polls catch.  The event thread scores its recent
 * polls (0..HBK_POLL_SCORE_MAX: a caught one moves the score a quarter of the
 * way up, one that spun to its end a quarter of the way down, so three
 * misses in a row from the top stop it).  Below half it sleeps at once, as
 * a poll would mostly spin for nothing on a CPU the driver could use, but
 * it still polls at every POLL_SAMPLE-th wait, so that once completions
 * come quickly again the score climbs back and polling resumes.
 */
#define POLL_SAMPLE 16u

bool hbk_io_ring_poll(struct hbk_ctl *c)
{
	if (!c->poll_ns)
		return false;
	if (c->poll_score < HBK_POLL_SCORE_MAX / 2 && ++c->poll_skips < POLL_SAMPLE)
		return false;
	uint64_t end = 0;
	for (;;) {
		/* Poll only while few tasks are in flight: their completions are
		 * due soon and each wake would be shared by few of them.  With
		 * many in flight, a wake brings a full batch and the CPU is
		 * better left to the driver. */
		unsigned n = atomic_load_explicit(&c->busy, memory_order_relaxed);
		if (!n || n > HBK_MAX_BUNDLE)
			return false;
		if (!end) {
			c->poll_skips = 0;
			atomic_fetch_add_explicit(&c->st_polls, 1, memory_order_relaxed);
		}
		for (int i = 0; i < 16; i++) {
			if (__atomic_load_n(&c->region.cring->tail, __ATOMIC_RELAXED) != c->cring_head) {
				atomic_fetch_add_explicit(&c->st_polls_caught, 1, memory_order_relaxed);
				c->poll_score += (HBK_POLL_SCORE_MAX - c->poll_score) / 4;
				return true;
			}
			hbk_cpu_relax();
		}
		uint64_t now = hbk_now_ns();
		if (!end) {
			end = now + c->poll_ns;
		} else if (now >= end) {
			c->poll_score -= c->poll_score / 4;
			return false;
		}
	}
}

bool hbk_io_ring_sleep(struct hbk_ctl *c)
{
	struct hbk_cring *ring = c->region.cring;
	/* Both sequentially consistent: pairs with the driver runtime's seq_cst
	 * store of the tail and load of host_waiting (hbk_drv_bundled_complete).
	 * Either the driver sees the flag and rings the doorbell, or this load
	 * sees its entries. */
	__atomic_store_n(&ring->host_waiting, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&ring->tail, __ATOMIC_SEQ_CST) == c->cring_head)
		return true;
	__atomic_store_n(&ring->host_waiting, 0, __ATOMIC_RELAXED);
	return false;
}

void hbk_io_ring_awake(struct hbk_ctl *c)
{
	__atomic_store_n(&c->region.cring->host_waiting, 0, __ATOMIC_RELAXED);
}

/* A per-task completion, from a message or from the PROCESS_TASK reply. */
static void parallel_done(struct hbk_ctl *c, uint32_t idx, const struct hbk_response *r,
			  const char *via)
{
	pthread_mutex_lock(&c->lock);
	uint16_t one = idx < c->ntasks ? (uint16_t)idx : UINT16_MAX;
	if (out_of_life(c, via, &one, 1)) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (idx >= c->ntasks) {
		pthread_mutex_unlock(&c->lock);
		hbk_chk_violation(c, 7, "%s for task %u, which does not exist; refused. Fix: "
				  "complete with the handle process_task gave you", via, idx);
		return;
	}
	struct htask *t = &c->tasks[idx];
	bool quiet = c->closing;
	if (t->state != SLOT_DRIVER) {
		char hist[64];
		hbk_chk_history(t, hist, sizeof(hist));
		pthread_mutex_unlock(&c->lock);
		if (!quiet)
			hbk_chk_violation(c, 7, "%s for task %u, which is not outstanding (completed "
					  "twice, completed after answering the call with a final "
					  "status, or never issued; history %s); refused. Fix: "
					  "complete each task once, and only after returning "
					  "REQUEST_IN_PROCESS", via, idx, hist);
		return;
	}
	if (t->path != PATH_PER_TASK) {
		pthread_mutex_unlock(&c->lock);
		hbk_chk_violation(c, 4, "%s for slot %u, whose task arrived by %s; refused. Fix: "
				  "complete bundled slots with hbk_drv_bundled_complete", via, idx,
				  path_name(t->path));
		return;
	}
	if (stale_completion(c, t, r->task_tag, 7, via)) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	set_state(c, t, SLOT_DONE);
	pthread_mutex_unlock(&c->lock);
	atomic_fetch_add_explicit(&c->st_completions, 1, memory_order_relaxed);
	complete_task(c, t, r);
}

void hbk_io_parallel_completion(struct hbk_ctl *c, const struct hbk_msg_completion *m)
{
	parallel_done(c, m->index, &m->resp, "PARALLEL_COMPLETION");
}

/* ---- The sender --------------------------------------------------------------- */

/* The driver refused the call outright: the task never became its own. */
static void refuse_task(struct hbk_ctl *c, struct htask *t, int err)
{
	hbk_log(HBK_LOG_ERR, "driver refused PROCESS_TASK: %s", hbk_strerror(err));
	pthread_mutex_lock(&c->lock);
	bool mine = t->state == SLOT_DRIVER;
	if (mine)
		set_state(c, t, SLOT_DONE);
	pthread_mutex_unlock(&c->lock);
	if (!mine)
		return;
	struct hbk_scsi_cmd *cmd = t->cmd;
	finish(c, t);
	complete_cmd(cmd, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE, HBK_DS_DELIVERY_FAILURE);
}

/* m holds the task, copied while the pool lock handed it over: once the call
 * is out the task may complete and be reused before this returns. */
static void send_task(struct hbk_ctl *c, struct htask *t, struct hbk_msg_task *m)
{
	struct hbk_msg_task_reply r;
	hbk_msg_init(&m->hdr, HBK_MSG_PROCESS_TASK, 0, sizeof(*m));
	int err = hbk_ctl_call(c, m, sizeof(*m), -1, &r, sizeof(r));
	if (err)
		return;
	if (r.status)
		refuse_task(c, t, r.status);
	else if (r.service_response != HBK_SR_REQUEST_IN_PROCESS)
		parallel_done(c, t->index, &r.resp, "PROCESS_TASK reply");
}

void *hbk_io_sender(void *arg)
{
	hbk_thread_name("hbk-sender");
	struct hbk_ctl *c = arg;
	struct hbk_msg_task one;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (c->prep_head == c->prep_tail && !c->stopping && !c->dead) {
			c->send_waiting = true;
			pthread_cond_wait(&c->send_cond, &c->lock);
			c->send_waiting = false;
		}
		if (c->stopping || c->dead)
			break;
		struct htask *t = &c->tasks[c->prep[c->prep_head++ & c->prep_mask]];
		set_state(c, t, SLOT_DRIVER);
		t->sends++;
		t->path = PATH_PER_TASK;
		one.index = t->index;
		one.rsvd = 0;
		one.task = t->t;
		pthread_mutex_unlock(&c->lock);

		atomic_fetch_add_explicit(&c->st_calls, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&c->st_tasks, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&c->st_hist[0], 1, memory_order_relaxed);
		send_task(c, t, &one);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ---- Failing outstanding I/O ------------------------------------------------ */

void hbk_io_fail_all(struct hbk_ctl *c, uint8_t status)
{
	if (!c->tasks)
		return;
	pthread_mutex_lock(&c->lock);
	struct hbk_scsi_cmd *wait = c->wait_head;
	c->wait_head = c->wait_tail = NULL;
	struct htask **victims = malloc(c->ntasks * sizeof(*victims));
	unsigned n = 0;
	/* Prepared but not sent, then everything the driver holds.  A task still
	 * being prepared on a submitting thread fails itself in enqueue(). */
	for (; victims && c->prep_head != c->prep_tail; c->prep_head++) {
		struct htask *t = &c->tasks[c->prep[c->prep_head & c->prep_mask]];
		set_state(c, t, SLOT_DONE);
		victims[n++] = t;
	}
	for (uint32_t i = 0; i < c->ntasks && victims; i++) {
		struct htask *t = &c->tasks[i];
		if (t->state == SLOT_DRIVER) {
			set_state(c, t, SLOT_DONE);
			t->failed_at_close = c->closing;
			victims[n++] = t;
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (unsigned i = 0; i < n; i++) {
		struct hbk_scsi_cmd *cmd = victims[i]->cmd;
		/* A task that had already timed out keeps saying so. */
		uint8_t st = victims[i]->timed_out ? HBK_DS_TASK_TIMEOUT : status;
		finish(c, victims[i]);
		complete_cmd(cmd, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE, st);
	}
	atomic_fetch_add(&c->st_failed, n);
	free(victims);
	for (struct hbk_scsi_cmd *cmd = wait, *next; cmd; cmd = next) {
		next = cmd->next_wait;
		atomic_fetch_add(&c->st_failed, 1);
		complete_cmd(cmd, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE, status);
	}
}

/* ---- Timeouts (HBK-C11) -------------------------------------------------------- */

/*
 * True when entries have waited in the submission ring, with the driver's
 * head not moving, for longer than the call timeout: the ring's form of a
 * call not answered.  The ring is watched only while entries wait in it
 * (post_bundled starts the watch); *next is lowered to the next look.
 * Timer thread, c->lock held (for sring_tail).
 */
static bool submitter_hung(struct hbk_ctl *c, uint64_t now, uint64_t *next)
{
	if (!c->sring_watch)
		return false;
	/* Acquire: pairs with the submitter's release store of the head. */
	uint32_t head = __atomic_load_n(&c->region.sring->head, __ATOMIC_ACQUIRE);
	if (head == c->sring_tail) {
		c->sring_watch = false;         /* nothing waits */
		return false;
	}
	if (head != c->sring_seen_head) {
		c->sring_seen_head = head;
		c->sring_moved_ns = now;
	} else if (now - c->sring_moved_ns > (uint64_t)c->opts.call_timeout_ms * 1000000ull) {
		return true;
	}
	*next = HBK_MIN(*next, now + sring_check_ns(c));
	return false;
}

static const unsigned tmf_of_stage[] = { 0, HBK_MSG_ABORT_TASK, HBK_MSG_LUN_RESET, HBK_MSG_TARGET_RESET };

/* Without a pidfd for the driver (an old kernel), how often the timer asks
 * whether it exited. */
#define EXIT_POLL_NS 50000000ull

/*
 * Sleeps until next (coarse ns; UINT64_MAX: until kicked), a kick, or the
 * driver's exit (pidfd readable).  Returns whether the pidfd was readable.
 * Timer thread.
 */
static bool timer_sleep(struct hbk_ctl *c, int pidfd, uint64_t next)
{
	int ms = -1;
	if (next != UINT64_MAX) {
		uint64_t now = hbk_coarse_ns();
		/* Rounded up, and one more: the coarse clock may lag by a tick. */
		ms = next <= now ? 0 : (int)HBK_MIN((next - now) / 1000000u + 2, (uint64_t)INT_MAX);
	}
	struct pollfd p[2] = { { .fd = c->timer_efd, .events = POLLIN },
			       { .fd = pidfd, .events = POLLIN } };
	if (ms && poll(p, pidfd >= 0 ? 2 : 1, ms) < 0)
		p[1].revents = 0;
	uint64_t v;
	if (read(c->timer_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		hbk_log(HBK_LOG_WARN, "task timer: eventfd: %s", strerror(errno));
	atomic_fetch_add_explicit(&c->st_timer_wakes, 1, memory_order_relaxed);
	return ms && pidfd >= 0 && p[1].revents;
}

/*
 * The task timer: sleeps until the earliest of the next task timeout, the
 * next escalation step of a timed-out task and, while entries wait in the
 * submission ring, the next look at its head; a task handed to the driver
 * with an earlier deadline (set_state, timer_due) or the ring's first entry
 * kicks it.  An idle controller's timer does not wake at all.  A spawned
 * driver's exit wakes it through a pidfd (without one: every 50 ms).
 */
void *hbk_io_timer(void *arg)
{
	hbk_thread_name("hbk-task-timer");
	struct hbk_ctl *c = arg;
	uint64_t grace = escalation_grace_ns(c);
	pthread_mutex_lock(&c->lock);
	pid_t pid = c->pid;
	pthread_mutex_unlock(&c->lock);
	int pidfd = pid > 0 ? hbk_ctl_driver_pidfd(pid) : -1;
	uint64_t next = 0;
	for (;;) {
		bool exited = timer_sleep(c, pidfd, next);

		next = UINT64_MAX;
		struct { uint32_t idx, sends; uint8_t stage; uint64_t target, lun, tag; } step[16];
		unsigned n = 0;
		pthread_mutex_lock(&c->lock);
		/* Read under the lock: post_bundled stamps the start of a ring
		 * watch under it, and a now from before the lock could precede
		 * that stamp (the watch would look hung for ever). */
		uint64_t now = hbk_coarse_ns();
		if (c->stopping || c->dead)
			break;
		if (c->bundled && submitter_hung(c, now, &next)) {
			pthread_mutex_unlock(&c->lock);
			hbk_ctl_driver_failed(c, HBK_DS_DEVICE_NOT_RESPONDING, 12,
					      "the driver took no bundled task off the submission "
					      "ring for %u ms: it is hung (inside process_bundled, "
					      "or blocking its queue); outstanding I/O is failed. "
					      "Fix: return from every entry point promptly and "
					      "defer slow work to a queue", c->opts.call_timeout_ms);
			pthread_mutex_lock(&c->lock);
			break;
		}
		/* The channels' end is how the host sees a driver die, unless a
		 * helper it forked (without exec) keeps them open. */
		pid = c->pid;
		if (pid > 0 && hbk_ctl_driver_exited(pid)) {
			pthread_mutex_unlock(&c->lock);
			hbk_ctl_driver_failed(c, HBK_DS_DEVICE_NOT_PRESENT, 12,
					      "the driver process went away (it exited); outstanding "
					      "I/O is failed with DeviceNotPresent");
			pthread_mutex_lock(&c->lock);
			break;
		}
		if (exited && pidfd >= 0) {
			/* Readable, yet waitid does not see the exit: ask it
			 * every 50 ms instead of spinning on the pidfd. */
			close(pidfd);
			pidfd = -1;
		}
		if (pid > 0 && pidfd < 0)
			next = HBK_MIN(next, now + EXIT_POLL_NS);
		for (uint32_t i = 0; i < c->ntasks; i++) {
			struct htask *t = &c->tasks[i];
			if (t->state != SLOT_DRIVER)
				continue;
			bool due = t->timed_out ? now - t->stage_ns > grace : now > t->deadline_ns;
			if (!due || n == HBK_ARRAY_SIZE(step)) {
				/* The first moment it is due (at once, when this
				 * pass has no room left for it). */
				next = HBK_MIN(next, !due ? (t->timed_out ? t->stage_ns + grace
									  : t->deadline_ns) + 1 : now);
				continue;
			}
			if (!t->timed_out) {
				t->timed_out = true;
				atomic_fetch_add(&c->st_timeouts, 1);
			}
			t->tmo_stage++;
			t->stage_ns = now;
			next = HBK_MIN(next, now + grace + 1);
			/* From the host's own copies: the slot is driver-writable. */
			step[n].idx = i;
			step[n].sends = t->sends;
			step[n].stage = t->tmo_stage;
			step[n].target = t->target;
			step[n].lun = t->lun;
			step[n].tag = t->tag;
			n++;
		}
		c->timer_wake_ns = next;
		pthread_mutex_unlock(&c->lock);

		for (unsigned i = 0; i < n; i++) {
			/* The calls before this one may have taken a while: if the
			 * task came back meanwhile its slot may carry another
			 * task, which this step must not touch. */
			pthread_mutex_lock(&c->lock);
			const struct htask *t = &c->tasks[step[i].idx];
			bool same = t->state == SLOT_DRIVER && t->sends == step[i].sends &&
				    t->tmo_stage == step[i].stage;
			pthread_mutex_unlock(&c->lock);
			if (!same)
				continue;
			if (step[i].stage >= HBK_ARRAY_SIZE(tmf_of_stage)) {
				hbk_ctl_driver_failed(c, HBK_DS_DEVICE_NOT_RESPONDING, 12,
						      "task %u was not returned after abort, LUN reset and "
						      "target reset (HBK-C11 escalation exhausted); the "
						      "driver is declared hung and all outstanding I/O "
						      "fails. Fix: complete or give back every task when "
						      "task management asks", step[i].idx);
				pthread_mutex_lock(&c->lock);
				goto out;
			}
			unsigned type = tmf_of_stage[step[i].stage];
			hbk_chk_violation(c, 11, "task %u (target %llu lun %llu) overran its timeout; "
					  "escalating with %s; upstream gets TaskTimeoutOccurred. "
					  "Fix: complete tasks within timeout_ms, or return them "
					  "on ABORT TASK",
					  step[i].idx, (unsigned long long)step[i].target,
					  (unsigned long long)step[i].lun, hbk_msg_name(type));
			uint64_t a[3] = { step[i].target, step[i].lun, step[i].tag };
			hbk_ctl_call_simple(c, type, a, 3, NULL);
		}
	}
out:
	/* Gone for good: no kick need reach it any more. */
	c->timer_wake_ns = 0;
	pthread_mutex_unlock(&c->lock);
	if (pidfd >= 0)
		close(pidfd);
	return NULL;
}

/* ---- Task management --------------------------------------------------------------- */

static uint64_t cmd_target(const struct hbk_scsi_cmd *cmd)
{
	return cmd->lun ? cmd->lun->info.target : cmd->target;
}

static uint64_t cmd_lun(const struct hbk_scsi_cmd *cmd)
{
	return cmd->lun ? cmd->lun->info.lun : cmd->lun_id;
}

/* Whether queued command x falls under task-management function op. */
static bool tmf_covers(enum hbk_tmf op, const struct hbk_scsi_cmd *x, uint64_t target,
		       uint64_t lun, const struct hbk_scsi_cmd *cmd)
{
	switch (op) {
	case HBK_TMF_ABORT_TASK:
		return x == cmd;
	case HBK_TMF_ABORT_TASK_SET: case HBK_TMF_CLEAR_TASK_SET: case HBK_TMF_LUN_RESET:
		return cmd_target(x) == target && cmd_lun(x) == lun;
	case HBK_TMF_TARGET_RESET:
		return cmd_target(x) == target;
	default:
		return false;
	}
}

/* Takes the queued commands op covers off the wait list and completes them
 * with TASK ABORTED.  Returns how many it took. */
static unsigned tmf_purge_queued(struct hbk_ctl *c, enum hbk_tmf op, uint64_t target,
				 uint64_t lun, const struct hbk_scsi_cmd *cmd)
{
	struct hbk_scsi_cmd *gone = NULL, **gone_tail = &gone;
	unsigned n = 0;
	pthread_mutex_lock(&c->lock);
	for (struct hbk_scsi_cmd **pp = &c->wait_head, *prev = NULL; *pp;) {
		struct hbk_scsi_cmd *x = *pp;
		if (!tmf_covers(op, x, target, lun, cmd)) {
			prev = x;
			pp = &x->next_wait;
			continue;
		}
		*pp = x->next_wait;
		if (c->wait_tail == x)
			c->wait_tail = prev;
		x->next_wait = NULL;
		*gone_tail = x;
		gone_tail = &x->next_wait;
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	for (struct hbk_scsi_cmd *x = gone, *next; x; x = next) {
		next = x->next_wait;
		complete_cmd(x, HBK_SR_TASK_COMPLETE, HBK_STATUS_TASK_ABORTED);
	}
	return n;
}

int hbk_sam_tmf(struct hbk_ctl *c, uint64_t target, uint64_t lun, enum hbk_tmf op,
		struct hbk_scsi_cmd *cmd)
{
	static const unsigned msg_of[] = {
		[HBK_TMF_ABORT_TASK] = HBK_MSG_ABORT_TASK,
		[HBK_TMF_ABORT_TASK_SET] = HBK_MSG_ABORT_TASK_SET,
		[HBK_TMF_CLEAR_ACA] = HBK_MSG_CLEAR_ACA,
		[HBK_TMF_CLEAR_TASK_SET] = HBK_MSG_CLEAR_TASK_SET,
		[HBK_TMF_LUN_RESET] = HBK_MSG_LUN_RESET,
		[HBK_TMF_TARGET_RESET] = HBK_MSG_TARGET_RESET,
	};
	if (op < HBK_TMF_ABORT_TASK || op > HBK_TMF_TARGET_RESET ||
	    (op == HBK_TMF_ABORT_TASK) != (cmd != NULL))
		return -EINVAL;
	if (!hbk_ctl_alive(c))
		return -ENODEV;
	uint64_t tag = 0;
	/* Commands still queued at the host never reach the driver. */
	unsigned purged = tmf_purge_queued(c, op, target, lun, cmd);
	if (op == HBK_TMF_ABORT_TASK) {
		if (purged)
			return HBK_SR_FUNCTION_COMPLETE;
		bool at_driver = false;
		pthread_mutex_lock(&c->lock);
		/* t->cmd is stable while the task is at the driver (set before, cleared after). */
		for (uint32_t i = 0; !at_driver && i < c->ntasks; i++) {
			struct htask *t = &c->tasks[i];
			if (t->state == SLOT_DRIVER && t->cmd == cmd) {
				at_driver = true;
				tag = t->tag;
			}
		}
		pthread_mutex_unlock(&c->lock);
		if (!at_driver)
			return HBK_SR_FUNCTION_COMPLETE;
	}
	uint64_t a[3] = { target, lun, tag }, val[4] = { 0 };
	int err = hbk_ctl_call_simple(c, msg_of[op], a, 3, val);
	if (err)
		return err < 0 ? err : -EIO;
	return val[0] == HBK_SR_FUNCTION_COMPLETE ? HBK_SR_FUNCTION_COMPLETE : HBK_SR_FUNCTION_REJECTED;
}

int hbk_sam_nexus_loss(struct hbk_ctl *c, uint64_t target, uint64_t initiator)
{
	if (!hbk_ctl_alive(c))
		return -ENODEV;
	uint64_t a[2] = { target, initiator };
	return hbk_ctl_call_simple(c, HBK_MSG_NEXUS_LOSS, a, 2, NULL);
}

/* ---- Blocking wrapper ------------------------------------------------------------ */

static void exec_done(struct hbk_scsi_cmd *cmd)
{
	hbk_latch_open(cmd->priv, 0);
}

int hbk_sam_exec(struct hbk_ctl *c, struct hbk_scsi_cmd *cmd)
{
	struct hbk_latch done = HBK_LATCH_INIT;
	void (*user_done)(struct hbk_scsi_cmd *) = cmd->done;
	void *user_priv = cmd->priv;
	cmd->done = exec_done;
	cmd->priv = &done;
	int err = hbk_sam_submit(c, cmd);
	if (!err)
		hbk_latch_wait(&done);
	cmd->done = user_done;
	cmd->priv = user_priv;
	return err;
}
