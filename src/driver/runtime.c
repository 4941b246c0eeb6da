/* SPDX-License-Identifier: MIT */
/*
 * The driver runtime: everything a controller driver process has around its
 * ops table.  The call server reads host calls and runs each on the queue it
 * is bound to; serial dispatch queues run the driver's own work; completion
 * handles and driver -> host calls go out on the event channel.  What only
 * this side can see (handle reference counts) is checked here and reported to
 * the host, which logs it with the rest of the contract checker.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/common.h"
#include "hbk/driver.h"
#include "hbk/scsi.h"

#define MAX_QUEUES   16
#define MAX_WAITERS  8

/* An eventfd whose readiness dispatches work to the queue it is attached to. */
struct source {
	int fd;
	struct hbk_drv_work *w;
};

struct hbk_drv_queue {
	struct hbk_drv *d;
	char name[HBK_NAME_LEN];
	uint8_t id;                 /* HBK_QUEUE_DEFAULT for Default */
	pthread_mutex_t exec;       /* held while an item or a bound call runs */
	pthread_mutex_t lock;       /* guards everything below */
	pthread_cond_t cond;        /* work or stop, for a thread without sources */
	struct hbk_drv_work *head, *tail;
	bool stop;
	bool has_thread;
	pthread_t thread;
	/* Event sources.  With any attached, the thread idles in poll() on
	 * them and on wake_fd instead of on cond. */
	struct source src[HBK_DRV_MAX_SOURCES];
	unsigned nsrc;
	int wake_fd;                /* eventfd, made by the first attach; -1 before */
	bool polling;               /* the thread is in poll() on a copy of src */
	bool wake_sent;             /* wake_fd was written since that poll began */
	uint64_t poll_gen;          /* counts polls begun */
	pthread_cond_t poll_done;   /* polling went false */
};

struct hbk_drv_action {
	struct hbk_drv *d;
	uint32_t index;
	atomic_uint refs;       /* 0: released, the handle is dead */
	atomic_bool at_driver;  /* its task arrived and has not been completed */
	_Atomic uint64_t tag;   /* that task's task_tag */
	_Atomic uint64_t refused; /* the task_tag of an issue whose completion was refused */
	uint64_t target, lun;   /* and its nexus, for the resets' check; call server */
};

struct hbk_drv_bundled_action {
	struct hbk_drv *d;
	atomic_llong refs;      /* the runtime's own reference is the floor */
};

struct hbk_drv_mem {
	void *addr;
	bool mapped;
};

struct waiter {
	uint32_t seq;           /* 0: free */
	bool done;
	struct hbk_msg_reply reply;
};

struct hbk_drv {
	const struct hbk_drv_ops *ops;
	void *priv;
	int argc;
	char **argv;
	_Atomic bool *asked;          /* argv[i] is the runtime's or was asked for */
	int call_fd, event_fd;
	struct hbk_region region;
	bool have_region;

	struct hbk_drv_queue *queues[MAX_QUEUES];
	unsigned nqueues;
	pthread_mutex_t queues_lock;

	struct hbk_drv_action *actions;
	uint32_t nactions;
	uint32_t dma_alignment;     /* as the driver's DMA spec declared */
	struct hbk_drv_bundled_action bundled;
	atomic_bool *slot_at_driver;  /* per bundled slot: issued, not yet completed */
	atomic_bool *slot_arriving;   /* per bundled slot: in a process_bundled call
				       * that has not returned yet */
	_Atomic uint64_t *slot_tag;   /* per bundled slot: the issued task's task_tag */
	_Atomic uint64_t *slot_refused; /* per bundled slot: the task_tag of an issue
					 * whose completion was refused */
	struct hbk_drv_mem cmd_mem, resp_mem;
	atomic_bool bundled_mapped;
	bool started, stopped;      /* START succeeded, STOP served; call server only */
	pthread_mutex_t cring_lock; /* serialises appends to the completion ring */
	uint32_t cring_tail;        /* entries published, under cring_lock */
	pthread_t submitter;        /* takes the submission ring */
	bool submitter_started;     /* call server only */
	atomic_bool submit_stop;

	/* driver -> host calls: replies come back on the event channel */
	pthread_mutex_t call_lock;
	pthread_cond_t call_cond;
	struct waiter waiters[MAX_WAITERS];
	atomic_uint seq;
	bool host_gone;
	pthread_t reader;
	bool reader_started;
};

static __thread struct hbk_drv_queue *cur_queue;

/* ---- Violation reports ---------------------------------------------------- */

static void vreport(struct hbk_drv *d, unsigned rule, uint64_t task_tag, const char *fmt,
		    va_list ap)
{
	assert(HBK_RUNTIME_RULES >> rule & 1);
	struct hbk_msg_violation v;
	memset(&v, 0, sizeof(v));
	hbk_msg_init(&v.hdr, HBK_MSG_VIOLATION, 0, sizeof(v));
	v.rule = (uint16_t)rule;
	v.task_tag = task_tag;
	vsnprintf(v.text, sizeof(v.text), fmt, ap);
	hbk_log(HBK_LOG_WARN, "HBK-C%02u %s in the driver runtime: %s", rule,
		rule == 11 ? "caught" : "refused", v.text);
	hbk_msg_send(d->event_fd, &v, sizeof(v), -1);
}

static void report(struct hbk_drv *d, unsigned rule, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report(struct hbk_drv *d, unsigned rule, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(d, rule, 0, fmt, ap);
	va_end(ap);
}

/* A refused completion of the task with task_tag, which is still at the
 * driver: the host learns which task, so that it need not wait out the
 * task's whole timeout for it (a driver that completed it without filling
 * its response never gives it back by itself). */
static void report_task(struct hbk_drv *d, unsigned rule, uint64_t task_tag, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void report_task(struct hbk_drv *d, unsigned rule, uint64_t task_tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(d, rule, task_tag, fmt, ap);
	va_end(ap);
}

/* ---- Dispatch queues ------------------------------------------------------ */

/* Queues w on q unless it is queued already.  q->lock held. */
static bool enqueue(struct hbk_drv_queue *q, struct hbk_drv_work *w)
{
	if (w->queued)
		return false;
	w->queued = 1;
	w->next = NULL;
	if (q->tail)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	return true;
}

/* Gets q's thread out of whatever it waits in.  q->lock held. */
static void wake(struct hbk_drv_queue *q)
{
	pthread_cond_signal(&q->cond);
	if (q->polling && !q->wake_sent) {
		uint64_t one = 1;
		q->wake_sent = write(q->wake_fd, &one, sizeof(one)) == sizeof(one);
	}
}

/*
 * The idle wait of a queue with event sources: polls them and wake_fd with
 * q->lock dropped, then dispatches the work of every source that fired and
 * is still attached.  q->lock held on entry and on return.
 */
static void poll_sources(struct hbk_drv_queue *q)
{
	struct pollfd p[HBK_DRV_MAX_SOURCES + 1];
	unsigned n = q->nsrc;
	for (unsigned i = 0; i < n; i++)
		p[i] = (struct pollfd){ .fd = q->src[i].fd, .events = POLLIN };
	p[n] = (struct pollfd){ .fd = q->wake_fd, .events = POLLIN };
	q->polling = true;
	q->wake_sent = false;
	q->poll_gen++;
	pthread_mutex_unlock(&q->lock);
	int r = poll(p, n + 1, -1);
	int err = errno;
	pthread_mutex_lock(&q->lock);
	q->polling = false;
	pthread_cond_broadcast(&q->poll_done);
	if (r < 0) {
		if (err != EINTR)
			hbk_log(HBK_LOG_ERR, "queue %s: poll: %s", q->name, strerror(err));
		return;
	}
	uint64_t count;
	if (p[n].revents & POLLIN && read(q->wake_fd, &count, sizeof(count)) < 0)
		hbk_log(HBK_LOG_ERR, "queue %s: wake: %s", q->name, strerror(errno));
	for (unsigned i = 0; i < n; i++) {
		if (!p[i].revents)
			continue;
		/* Detached while this poll ran: its fd may be closed, or
		 * another file's by now. */
		unsigned k = 0;
		while (k < q->nsrc && q->src[k].fd != p[i].fd)
			k++;
		if (k == q->nsrc)
			continue;
		if (p[i].revents & POLLNVAL) {
			hbk_log(HBK_LOG_ERR, "queue %s: event source fd %d was closed while "
				"attached; detaching it", q->name, p[i].fd);
			q->src[k] = q->src[--q->nsrc];
			continue;
		}
		/* Non-blocking (attach checked): EAGAIN is a count already taken. */
		if (read(p[i].fd, &count, sizeof(count)) == sizeof(count) || errno == EAGAIN)
			enqueue(q, q->src[k].w);
	}
}

static void *queue_thread(void *arg)
{
	hbk_thread_name("hbk-queue");
	struct hbk_drv_queue *q = arg;
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (!q->head && !q->stop) {
			if (q->nsrc)
				poll_sources(q);
			else
				pthread_cond_wait(&q->cond, &q->lock);
		}
		struct hbk_drv_work *w = q->head;
		if (!w)
			break;
		q->head = w->next;
		if (!q->head)
			q->tail = NULL;
		w->next = NULL;
		w->queued = 0;  /* from here on the item may be dispatched again */
		pthread_mutex_unlock(&q->lock);

		pthread_mutex_lock(&q->exec);
		cur_queue = q;
		w->fn(w);
		cur_queue = NULL;
		pthread_mutex_unlock(&q->exec);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static struct hbk_drv_queue *queue_new(struct hbk_drv *d, const char *name)
{
	struct hbk_drv_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->d = d;
	snprintf(q->name, sizeof(q->name), "%s", name);
	pthread_mutex_init(&q->exec, NULL);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	pthread_cond_init(&q->poll_done, NULL);
	q->wake_fd = -1;
	if (pthread_create(&q->thread, NULL, queue_thread, q)) {
		free(q);
		errno = EAGAIN;
		return NULL;
	}
	q->has_thread = true;
	return q;
}

struct hbk_drv_queue *hbk_drv_queue_create(struct hbk_drv *d, const char *name)
{
	if (!name || !name[0] || strlen(name) >= HBK_NAME_LEN) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&d->queues_lock);
	struct hbk_drv_queue *q = NULL;
	for (unsigned i = 0; i < d->nqueues; i++)
		if (!strcmp(d->queues[i]->name, name)) {
			errno = EEXIST;
			goto unlock;
		}
	if (d->nqueues == MAX_QUEUES) {
		errno = ENOSPC;
		goto unlock;
	}
	q = queue_new(d, name);
	if (q) {
		q->id = (uint8_t)(d->nqueues + 1);
		d->queues[d->nqueues++] = q;
	}
unlock:
	pthread_mutex_unlock(&d->queues_lock);
	return q;
}

struct hbk_drv_queue *hbk_drv_queue_find(struct hbk_drv *d, const char *name)
{
	struct hbk_drv_queue *q = NULL;
	pthread_mutex_lock(&d->queues_lock);
	for (unsigned i = 0; i < d->nqueues && !q; i++)
		if (!strcmp(d->queues[i]->name, name))
			q = d->queues[i];
	pthread_mutex_unlock(&d->queues_lock);
	return q;
}

int hbk_drv_queue_dispatch(struct hbk_drv_queue *q, struct hbk_drv_work *w)
{
	pthread_mutex_lock(&q->lock);
	bool queued = enqueue(q, w);
	if (queued)
		wake(q);
	pthread_mutex_unlock(&q->lock);
	return queued ? 0 : -EALREADY;
}

int hbk_drv_queue_attach(struct hbk_drv_queue *q, int fd, struct hbk_drv_work *w)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || !(fl & O_NONBLOCK) || !w || !w->fn)
		return -EINVAL;
	int err = 0;
	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < q->nsrc; i++)
		if (q->src[i].fd == fd)
			err = -EEXIST;
	if (!err && q->nsrc == HBK_DRV_MAX_SOURCES)
		err = -ENOSPC;
	if (!err && q->wake_fd < 0 && (q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		err = -errno;
	if (!err) {
		q->src[q->nsrc++] = (struct source){ .fd = fd, .w = w };
		/* A thread idle on cond moves to poll; one in poll takes
		 * the new fd into its next one. */
		wake(q);
	}
	pthread_mutex_unlock(&q->lock);
	return err;
}

int hbk_drv_queue_detach(struct hbk_drv_queue *q, int fd)
{
	pthread_mutex_lock(&q->lock);
	unsigned k = 0;
	while (k < q->nsrc && q->src[k].fd != fd)
		k++;
	if (k == q->nsrc) {
		pthread_mutex_unlock(&q->lock);
		return -ENOENT;
	}
	q->src[k] = q->src[--q->nsrc];
	/* A poll that began before may still wait on fd: once it is over,
	 * the thread never looks at fd again, and the caller may close it.
	 * Not on q's own thread, which is not in poll while it runs this. */
	if (!pthread_equal(pthread_self(), q->thread) && q->polling) {
		uint64_t gen = q->poll_gen;
		wake(q);
		while (q->polling && q->poll_gen == gen)
			pthread_cond_wait(&q->poll_done, &q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return 0;
}

struct hbk_drv_queue *hbk_drv_queue_current(void)
{
	return cur_queue;
}

const char *hbk_drv_queue_name(const struct hbk_drv_queue *q)
{
	return q->name;
}

static void queues_stop(struct hbk_drv *d)
{
	for (unsigned i = 0; i < d->nqueues; i++) {
		struct hbk_drv_queue *q = d->queues[i];
		pthread_mutex_lock(&q->lock);
		q->stop = true;
		wake(q);
		pthread_mutex_unlock(&q->lock);
	}
	for (unsigned i = 0; i < d->nqueues; i++) {
		struct hbk_drv_queue *q = d->queues[i];
		if (q->has_thread)
			pthread_join(q->thread, NULL);
		pthread_mutex_destroy(&q->exec);
		pthread_mutex_destroy(&q->lock);
		pthread_cond_destroy(&q->cond);
		pthread_cond_destroy(&q->poll_done);
		if (q->wake_fd >= 0)
			close(q->wake_fd);
		free(q);
	}
	d->nqueues = 0;
}

/* ---- Memory --------------------------------------------------------------- */

void *hbk_drv_dma(struct hbk_drv *d, uint64_t iova, uint64_t len)
{
	if (!d->have_region || iova > d->region.arena_size || len > d->region.arena_size - iova ||
	    (d->dma_alignment && iova % d->dma_alignment))
		return NULL;
	return d->region.arena + iova;
}

void *hbk_drv_mem_map(struct hbk_drv_mem *m)
{
	m->mapped = true;
	return m->addr;
}

void *hbk_drv_priv(struct hbk_drv *d)
{
	return d->priv;
}

/* The value of the k-th (from 0) "NAME=VALUE" or "--NAME=VALUE", or NULL.
 * Every NAME= argument counts as asked for (hbk_drv_args_check). */
static const char *arg_nth(struct hbk_drv *d, const char *name, unsigned k)
{
	size_t n = strlen(name);
	const char *v = NULL;
	for (int i = 1; i < d->argc; i++) {
		const char *a = d->argv[i];
		if (a[0] == '-' && a[1] == '-')
			a += 2;
		if (strncmp(a, name, n) || a[n] != '=')
			continue;
		if (d->asked)
			atomic_store_explicit(&d->asked[i], true, memory_order_relaxed);
		if (!v && !k--)
			v = a + n + 1;
	}
	return v;
}

const char *hbk_drv_arg(struct hbk_drv *d, const char *name)
{
	return arg_nth(d, name, 0);
}

const char *hbk_drv_arg_nth(struct hbk_drv *d, const char *name, unsigned k)
{
	return arg_nth(d, name, k);
}

int hbk_drv_args_check(struct hbk_drv *d)
{
	for (int i = 1; i < d->argc; i++) {
		if (d->asked && atomic_load_explicit(&d->asked[i], memory_order_relaxed))
			continue;
		const char *eq = strchr(d->argv[i], '=');
		fprintf(stderr, "%s: %s: %s\n", d->ops->name ? d->ops->name : "driver", d->argv[i],
			eq && eq != d->argv[i] ? "not an option of this driver" : "not NAME=VALUE");
		return -EINVAL;
	}
	return 0;
}

bool hbk_drv_arg_repeated(struct hbk_drv *d, const char *name)
{
	if (!arg_nth(d, name, 1))
		return false;
	fprintf(stderr, "%s: %s= given more than once\n", d->ops->name ? d->ops->name : "driver", name);
	return true;
}

int hbk_drv_arg_num(struct hbk_drv *d, const char *name, uint64_t dflt, uint64_t min,
		    uint64_t max, uint64_t *out)
{
	const char *s = hbk_drv_arg(d, name);
	uint64_t v = dflt;
	if (hbk_drv_arg_repeated(d, name))
		return -EINVAL;
	if (s && (!hbk_parse_size(s, &v) || v < min || v > max)) {
		fprintf(stderr, "%s: %s=%s: expected %llu..%llu (a whole number, binary units "
			"allowed: 64k, 1G)\n", d->ops->name ? d->ops->name : "driver", name, s,
			(unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* ---- Completions ---------------------------------------------------------- */

void hbk_drv_action_retain(struct hbk_drv_action *a)
{
	unsigned r = atomic_load(&a->refs);
	do {
		if (!r) {
			report(a->d, 7, "retain of the completion handle of task %u after its last release",
			       a->index);
			return;
		}
	} while (!atomic_compare_exchange_weak(&a->refs, &r, r + 1));
}

void hbk_drv_action_release(struct hbk_drv_action *a)
{
	unsigned r = atomic_load(&a->refs);
	do {
		if (!r) {
			report(a->d, 7, "release of the completion handle of task %u after its last release "
			       "(release once per retain)", a->index);
			return;
		}
	} while (!atomic_compare_exchange_weak(&a->refs, &r, r - 1));
}

uint32_t hbk_drv_action_index(const struct hbk_drv_action *a)
{
	return a->index;
}

/*
 * Whether a response carries the task_tag of another issue than the task
 * at the driver: a completion repeated once the host reissued the slot,
 * which would otherwise pass for the new task's (its data not moved yet).
 * A response without a tag (0) is not checked.
 */
static bool stale_response(const struct hbk_response *resp, uint64_t issued)
{
	return resp->task_tag && resp->task_tag != issued;
}

int hbk_drv_task_complete(struct hbk_drv *d, struct hbk_drv_action *a,
			  const struct hbk_response *resp)
{
	/* The seed's mistake: the bundled handle given to the per-task
	 * completion.  Told apart before anything is read through it. */
	if ((void *)a == (void *)&d->bundled) {
		report(d, 4, "ParallelTaskCompletion with the bundled completion handle: a bundled "
		       "task completes with BundledParallelTaskCompletion");
		return -EINVAL;
	}
	if (!a || !d->actions || a < d->actions || a >= d->actions + d->nactions ||
	    (uintptr_t)((char *)a - (char *)d->actions) % sizeof(*a)) {
		report(d, 7, "ParallelTaskCompletion with %s: complete with the handle "
		       "process_task gave you", a ? "a pointer that is no task's handle" : "no handle");
		return -EINVAL;
	}
	if (!atomic_load(&a->refs)) {
		report(d, 7, "ParallelTaskCompletion with the handle of task %u after its last release "
		       "(retain the handle before returning REQUEST_IN_PROCESS)", a->index);
		return -ESTALE;
	}
	/* Refused here, not only at the host: the host may have reissued the
	 * slot by the time a second completion arrives, and would take it for
	 * the new task's. */
	if (stale_response(resp, atomic_load(&a->tag))) {
		atomic_store(&a->refused, atomic_load(&a->tag));
		report_task(d, 7, atomic_load(&a->tag), "ParallelTaskCompletion of task %u with the response of an earlier "
		       "task on its slot (task_tag %llu; the task at the driver has %llu): "
		       "completed twice, or its response not filled (complete each task "
		       "once, with hbk_drv_response_fill)", a->index,
		       (unsigned long long)resp->task_tag, (unsigned long long)atomic_load(&a->tag));
		return -EALREADY;
	}
	if (!atomic_exchange(&a->at_driver, false)) {
		report(d, 7, "ParallelTaskCompletion of task %u, which is not at the driver: "
		       "completed twice (complete each task once)", a->index);
		return -EALREADY;
	}
	struct hbk_msg_completion m;
	hbk_msg_init(&m.hdr, HBK_MSG_PARALLEL_COMPLETION, 0, sizeof(m));
	m.index = a->index;
	m.rsvd = 0;
	m.resp = *resp;
	return hbk_msg_send(d->event_fd, &m, sizeof(m), -1);
}

void hbk_drv_bundled_retain(struct hbk_drv_bundled_action *a)
{
	atomic_fetch_add(&a->refs, 1);
}

void hbk_drv_bundled_release(struct hbk_drv_bundled_action *a)
{
	long long r = atomic_load(&a->refs);
	do {
		if (r <= 1) {
			report(a->d, 6, "over-release of the bundled completion handle: it is shared by "
			       "every bundled call; retain it at most once and never release it");
			return;
		}
	} while (!atomic_compare_exchange_weak(&a->refs, &r, r - 1));
}

int hbk_drv_bundled_complete(struct hbk_drv *d, struct hbk_drv_bundled_action *a,
			     const uint16_t *index, uint16_t count)
{
	if (a != &d->bundled) {
		report(d, 4, "BundledParallelTaskCompletion without the bundled handle");
		return -EINVAL;
	}
	if (!count)
		return 0;
	if (count > HBK_MAX_BUNDLE) {
		report(d, 3, "BundledParallelTaskCompletion with %u slots (at most %u per call)",
		       count, HBK_MAX_BUNDLE);
		return -EINVAL;
	}
	if (!atomic_load_explicit(&d->bundled_mapped, memory_order_acquire)) {
		report(d, 3, "BundledParallelTaskCompletion before the bundled buffers were "
		       "mapped: no slot was ever issued");
		return -EINVAL;
	}
	/* Only slots the driver holds go up: a slot completed twice may have
	 * been reissued by the time the second completion reaches the host,
	 * which would take it for the new task's. */
	uint16_t ok[HBK_MAX_BUNDLE];
	unsigned nok = 0;
	for (unsigned i = 0; i < count; i++) {
		uint64_t issued = index[i] < d->region.slots ?
			atomic_load_explicit(&d->slot_tag[index[i]], memory_order_relaxed) : 0;
		if (index[i] < d->region.slots &&
		    stale_response(&d->region.resps[index[i]], issued)) {
			atomic_store(&d->slot_refused[index[i]], issued);
			report_task(d, 3, issued, "BundledParallelTaskCompletion of slot %u whose "
				    "response is an earlier task's (task_tag %llu; the task at the "
				    "driver has %llu): completed twice, or its response not filled "
				    "(complete each slot once, with hbk_drv_response_fill)", index[i],
				    (unsigned long long)d->region.resps[index[i]].task_tag,
				    (unsigned long long)issued);
			continue;
		}
		if (index[i] < d->region.slots &&
		    !atomic_exchange(&d->slot_at_driver[index[i]], false)) {
			report(d, 3, "BundledParallelTaskCompletion of slot %u, which is not at the "
			       "driver: never issued or completed twice (complete each slot once)",
			       index[i]);
			continue;
		}
		ok[nok++] = index[i];   /* one out of range is the host's to refuse */
	}
	if (!nok)
		return -EALREADY;
	index = ok;
	count = (uint16_t)nok;
	struct hbk_cring *ring = d->region.cring;
	uint32_t cap = d->region.cring_entries;
	pthread_mutex_lock(&d->cring_lock);
	uint32_t tail = d->cring_tail;
	uint32_t shared = __atomic_load_n(&ring->tail, __ATOMIC_RELAXED);
	if (shared != tail) {
		/* Only this function writes the tail: another value is a stray
		 * store into the shared region.  Moved ahead, the host may have
		 * read up to it, so entries go on from there; moved back, the
		 * entries past it are published and not yet read, and the next
		 * tail covers them again. */
		pthread_mutex_unlock(&d->cring_lock);
		report(d, 3, "the completion ring's tail is %u where BundledParallelTaskCompletion "
		       "left it at %u: something else wrote into the shared region", shared, tail);
		pthread_mutex_lock(&d->cring_lock);
		shared = __atomic_load_n(&ring->tail, __ATOMIC_RELAXED);
		if ((int32_t)(shared - d->cring_tail) > 0)
			d->cring_tail = shared;
		tail = d->cring_tail;
	}
	/* Acquire: pairs with the host's release store of head, made once it
	 * copied the entries out, so they may be overwritten. */
	uint32_t head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
	if ((uint64_t)(tail - head) + count > cap) {
		pthread_mutex_unlock(&d->cring_lock);
		report(d, 3, "BundledParallelTaskCompletion of more slots than the host has "
		       "outstanding (the completion ring is full): slots completed twice?");
		return -EOVERFLOW;
	}
	for (unsigned i = 0; i < count; i++)
		ring->entry[(tail + i) & (cap - 1)] = index[i];
	d->cring_tail = tail + count;
	/* Release: the response slots and entries written before are visible
	 * to the host once it sees the tail (pairs with its acquire load).
	 * Sequentially consistent as well, with the load of host_waiting
	 * below: pairs with the host's seq_cst store of host_waiting and load
	 * of the tail in hbk_io_ring_sleep, so one side sees the other's store
	 * and no wake-up is lost. */
	__atomic_store_n(&ring->tail, tail + count, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&d->cring_lock);
	if (__atomic_load_n(&ring->host_waiting, __ATOMIC_SEQ_CST) &&
	    __atomic_exchange_n(&ring->host_waiting, 0, __ATOMIC_RELAXED)) {
		struct hbk_msg_hdr bell;
		hbk_msg_init(&bell, HBK_MSG_RING_DOORBELL, 0, sizeof(bell));
		return hbk_msg_send(d->event_fd, &bell, sizeof(bell), -1);
	}
	return 0;
}

void hbk_drv_response_fill(struct hbk_response *r, const struct hbk_task *t,
			   uint32_t service, uint32_t status, uint64_t bytes,
			   const uint8_t *sense, uint8_t sense_len)
{
	memset(r, 0, sizeof(*r));  /* reserved fields and the unused sense tail */
	r->version = HBK_TASK_VERSION;
	r->target_id = t->target_id;
	r->controller_task_id = t->controller_task_id;
	r->task_tag = t->task_tag;
	r->completion_status = status;
	r->service_response = service;
	r->bytes_transferred = bytes;
	if (sense_len > HBK_SENSE_MAX)
		sense_len = HBK_SENSE_MAX;
	if (sense && sense_len) {
		r->sense_len = sense_len;
		memcpy(r->sense, sense, sense_len);
	}
}

/* ---- Driver -> host calls ------------------------------------------------- */

/* How often the event reader checks that the event channel is still open. */
#define EVENT_CHECK_MS 50

static void *event_reader(void *arg)
{
	hbk_thread_name("hbk-drv-events");
	struct hbk_drv *d = arg;
	union {
		struct hbk_msg_hdr hdr;
		struct hbk_msg_reply reply;
		uint8_t raw[HBK_MSG_MAX];
	} m;
	/* The channel's identity, to tell it from a file that took its number
	 * after the driver closed it. */
	struct stat own;
	if (fstat(d->event_fd, &own))
		memset(&own, 0, sizeof(own));
	for (;;) {
		/*
		 * A bounded wait, never a blocking recv: a driver that closes
		 * the event channel under this thread closes only its number,
		 * and a blocked recv would keep the socket open, so the host
		 * would never see it hang up and its I/O would wait for the
		 * task timeouts.  Every EVENT_CHECK_MS the channel is checked
		 * and, once gone, this thread lets go of it.
		 */
		struct pollfd p = { .fd = d->event_fd, .events = POLLIN };
		int r = poll(&p, 1, EVENT_CHECK_MS);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0 || p.revents & POLLNVAL) {
			struct stat now;
			if (fstat(d->event_fd, &now) || now.st_dev != own.st_dev ||
			    now.st_ino != own.st_ino) {
				hbk_log(HBK_LOG_ERR, "the event channel (fd %d) was closed under the "
					"runtime: no completion can reach the host any more. Never "
					"close a descriptor the runtime owns", d->event_fd);
				break;
			}
			continue;
		}
		const char *why = NULL;
		int n = hbk_msg_recv(d->event_fd, &m, sizeof(m), -1, NULL, &why);
		if (n == -EBADMSG) {
			hbk_log(HBK_LOG_ERR, "malformed message from the host on the event channel: %s", why);
			continue;
		}
		if (n < 0)
			break;
		if (!(m.hdr.flags & HBK_MSGF_REPLY))
			continue;
		pthread_mutex_lock(&d->call_lock);
		for (unsigned i = 0; i < MAX_WAITERS; i++)
			if (d->waiters[i].seq == m.hdr.seq) {
				d->waiters[i].reply = m.reply;
				d->waiters[i].done = true;
			}
		pthread_cond_broadcast(&d->call_cond);
		pthread_mutex_unlock(&d->call_lock);
	}
	pthread_mutex_lock(&d->call_lock);
	d->host_gone = true;
	pthread_cond_broadcast(&d->call_cond);
	pthread_mutex_unlock(&d->call_lock);
	return NULL;
}

/* Sends a driver -> host call (hdr filled but for seq and queue) and waits for
 * its reply.  Returns the reply's status, or -errno. */
static int host_call(struct hbk_drv *d, struct hbk_msg_hdr *hdr, uint64_t *val0)
{
	uint32_t seq;
	do
		seq = atomic_fetch_add(&d->seq, 1) + 1;
	while (!seq);
	hdr->seq = seq;
	hdr->queue = cur_queue ? cur_queue->id : HBK_QUEUE_NONE;

	pthread_mutex_lock(&d->call_lock);
	struct waiter *w = NULL;
	while (!w && !d->host_gone) {
		for (unsigned i = 0; i < MAX_WAITERS && !w; i++)
			if (!d->waiters[i].seq)
				w = &d->waiters[i];
		if (!w)
			pthread_cond_wait(&d->call_cond, &d->call_lock);
	}
	if (!w) {
		pthread_mutex_unlock(&d->call_lock);
		return -ECONNRESET;
	}
	w->seq = seq;
	w->done = false;
	pthread_mutex_unlock(&d->call_lock);

	int err = hbk_msg_send(d->event_fd, hdr, hdr->len, -1);
	pthread_mutex_lock(&d->call_lock);
	while (!err && !w->done && !d->host_gone)
		pthread_cond_wait(&d->call_cond, &d->call_lock);
	if (!err)
		err = w->done ? w->reply.status : -ECONNRESET;
	if (!err && val0)
		*val0 = w->reply.val[0];
	w->seq = 0;
	pthread_cond_broadcast(&d->call_cond);
	pthread_mutex_unlock(&d->call_lock);
	return err;
}

static int target_call(struct hbk_drv *d, unsigned type, uint64_t target, uint64_t lun,
		       uint64_t *val0)
{
	struct hbk_msg_call c;
	memset(&c, 0, sizeof(c));
	hbk_msg_init(&c.hdr, type, 0, sizeof(c));
	c.arg[0] = target;
	c.arg[1] = lun;
	return host_call(d, &c.hdr, val0);
}

int hbk_drv_create_target(struct hbk_drv *d, uint64_t target)
{
	return target_call(d, HBK_MSG_CREATE_TARGET, target, 0, NULL);
}

int hbk_drv_destroy_target(struct hbk_drv *d, uint64_t target)
{
	return target_call(d, HBK_MSG_DESTROY_TARGET, target, 0, NULL);
}

int hbk_drv_target_present(struct hbk_drv *d, uint64_t target)
{
	uint64_t present = 0;
	int err = target_call(d, HBK_MSG_TARGET_PRESENT, target, 0, &present);
	return err ? err : present != 0;
}

int hbk_drv_media_changed(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	return target_call(d, HBK_MSG_MEDIA_CHANGED, target, lun, NULL);
}

int hbk_drv_report_constraints(struct hbk_drv *d, const struct hbk_drv_constraints *c)
{
	struct hbk_msg_constraints m;
	memset(&m, 0, sizeof(m));
	hbk_msg_init(&m.hdr, HBK_MSG_REPORT_CONSTRAINTS, 0, sizeof(m));
	m.present = c->present & ((1u << HBK_CONS_COUNT) - 1);
	memcpy(m.value, c->value, sizeof(m.value));
	return host_call(d, &m.hdr, NULL);
}

/* ---- The call server ------------------------------------------------------ */

union call_buf {
	struct hbk_msg_hdr hdr;
	struct hbk_msg_call call;
	struct hbk_msg_task task;
	uint8_t raw[HBK_MSG_MAX];
};

union reply_buf {
	struct hbk_msg_hdr hdr;
	struct hbk_msg_reply reply;
	struct hbk_msg_task_reply task;
	struct hbk_msg_hello_reply hello;
};

static struct hbk_drv_queue *bound_queue(struct hbk_drv *d, unsigned type)
{
	for (const struct hbk_drv_binding *b = d->ops->bindings; b && b->entry; b++)
		if (b->entry == type) {
			struct hbk_drv_queue *q = hbk_drv_queue_find(d, b->queue);
			if (q)
				return q;
		}
	return d->queues[0];
}

static void do_hello(struct hbk_drv *d, struct hbk_msg_hello_reply *r)
{
	r->abi_version = HBK_ABI_VERSION;
	snprintf(r->driver_name, sizeof(r->driver_name), "%s", d->ops->name ? d->ops->name : "?");
	for (const struct hbk_drv_binding *b = d->ops->bindings;
	     b && b->entry && r->binding_count < HBK_MAX_BINDINGS; b++) {
		struct hbk_msg_binding *mb = &r->binding[r->binding_count++];
		mb->entry = b->entry;
		snprintf(mb->queue, sizeof(mb->queue), "%s", b->queue ? b->queue : "");
	}
}

static int do_share_region(struct hbk_drv *d, int fd)
{
	if (fd < 0)
		return -EPROTO;
	if (d->have_region) {
		close(fd);
		return -EALREADY;
	}
	int err = hbk_region_map(&d->region, fd);
	if (err)
		return err;
	d->slot_at_driver = calloc(d->region.slots, sizeof(*d->slot_at_driver));
	d->slot_tag = calloc(d->region.slots, sizeof(*d->slot_tag));
	d->slot_refused = calloc(d->region.slots, sizeof(*d->slot_refused));
	d->slot_arriving = calloc(d->region.slots, sizeof(*d->slot_arriving));
	if (!d->slot_at_driver || !d->slot_tag || !d->slot_refused || !d->slot_arriving) {
		free(d->slot_at_driver);
		free(d->slot_tag);
		free(d->slot_refused);
		free(d->slot_arriving);
		d->slot_at_driver = NULL;
		d->slot_tag = NULL;
		d->slot_refused = NULL;
		d->slot_arriving = NULL;
		hbk_region_unmap(&d->region);
		return -ENOMEM;
	}
	d->have_region = true;
	return 0;
}

static int do_max_tasks(struct hbk_drv *d, uint64_t *val)
{
	uint32_t n = 0;
	if (!d->ops->report_max_tasks)
		return -ENOSYS;
	int err = d->ops->report_max_tasks(d, &n);
	if (err)
		return err;
	*val = n;
	if (!n || n > HBK_MAX_TASKS || d->actions)
		return 0; /* the host refuses it, naming the value */
	d->actions = calloc(n, sizeof(*d->actions));
	if (!d->actions)
		return -ENOMEM;
	d->nactions = n;
	for (uint32_t i = 0; i < n; i++) {
		d->actions[i].d = d;
		d->actions[i].index = i;
	}
	return 0;
}

static int do_map_bundled(struct hbk_drv *d, uint64_t count)
{
	/* Both entry points, or the host stays on the per-task path. */
	if (!d->ops->map_bundled || !d->ops->process_bundled)
		return -ENOTSUP;
	if (!d->have_region || !count || count > d->region.slots)
		return -EINVAL;
	d->cmd_mem = (struct hbk_drv_mem){ .addr = d->region.cmds };
	d->resp_mem = (struct hbk_drv_mem){ .addr = d->region.resps };
	int err = d->ops->map_bundled(d, &d->cmd_mem, &d->resp_mem, (uint32_t)count);
	if (err)
		return err;
	if (!d->cmd_mem.mapped || !d->resp_mem.mapped)
		return -EFAULT; /* accepted the buffers without mapping them */
	/* Proof for the host that the region is usable through this mapping;
	 * ordered before the host's load by the MAP_BUNDLED reply. */
	d->region.hdr->map_cookie = HBK_MAP_COOKIE;
	atomic_store_explicit(&d->bundled_mapped, true, memory_order_release);
	return 0;
}

static void do_process_task(struct hbk_drv *d, const struct hbk_msg_task *m,
			    struct hbk_msg_task_reply *r)
{
	if (m->index >= d->nactions) {
		r->status = -EINVAL;
		return;
	}
	struct hbk_drv_action *a = &d->actions[m->index];
	/* The runtime's reference for this call.  Added, never reset: the host
	 * may reissue a pool index as soon as its completion arrives, before the
	 * driver's release of the previous cycle has run. */
	atomic_fetch_add(&a->refs, 1);
	atomic_store(&a->tag, m->task.task_tag);
	a->target = m->task.target_id;
	a->lun = hbk_scsi_lun_decode(m->task.lun);
	atomic_store(&a->at_driver, true);
	memset(&r->resp, 0, sizeof(r->resp));
	r->service_response = d->ops->process_task ?
		d->ops->process_task(d, &m->task, &r->resp, a) :
		HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE;
	if (!d->ops->process_task)
		hbk_drv_response_fill(&r->resp, &m->task, r->service_response,
				      HBK_DS_DELIVERY_FAILURE, 0, NULL, 0);
	/* A final status completes the task now; one already completed by
	 * ParallelTaskCompletion must not complete again through the reply. */
	if (r->service_response != HBK_SR_REQUEST_IN_PROCESS &&
	    !atomic_exchange(&a->at_driver, false)) {
		report(d, 7, "task %u answered with a final status after ParallelTaskCompletion "
		       "(return REQUEST_IN_PROCESS when completing it later)", a->index);
		r->service_response = HBK_SR_REQUEST_IN_PROCESS;
	}
	hbk_drv_action_release(a);
}

/* Hands count (1..HBK_MAX_BUNDLE) slots to the driver's process_bundled,
 * which do_map_bundled made sure exists.  Returns 0, or -EINVAL (nothing
 * handed over) for an index past the slots.  Submitter thread, under the
 * bound queue's exec lock. */
static int do_process_bundled(struct hbk_drv *d, const uint16_t *index, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		if (index[i] >= d->region.slots)
			return -EINVAL;
	for (unsigned i = 0; i < count; i++) {
		/* Relaxed: the driver's own hand-off orders it before the
		 * slot's completion, which reads it. */
		atomic_store_explicit(&d->slot_tag[index[i]], d->region.cmds[index[i]].task_tag,
				      memory_order_relaxed);
		/* Both sequentially consistent, arriving first, against
		 * held_under's loads in the opposite order: a reset that sees
		 * the slot at the driver sees it arriving until
		 * process_bundled has returned. */
		atomic_store(&d->slot_arriving[index[i]], true);
		atomic_store(&d->slot_at_driver[index[i]], true);
	}
	d->ops->process_bundled(d, index, (uint16_t)count, &d->bundled);
	for (unsigned i = 0; i < count; i++)
		atomic_store(&d->slot_arriving[index[i]], false);
	return 0;
}

/* ---- The submission ring (bundled path) ----------------------------------- */

/* The runtime's thread that takes slot indices off the submission ring and
 * runs process_bundled on them, on the queue the entry is bound to, as the
 * call server runs a call under its queue's exec lock (abi.h has the
 * design). */
static void *submitter(void *arg)
{
	hbk_thread_name("hbk-drv-submit");
	struct hbk_drv *d = arg;
	struct hbk_sring *ring = d->region.sring;
	uint32_t cap = d->region.sring_entries;
	uint32_t head = __atomic_load_n(&ring->head, __ATOMIC_RELAXED);
	uint16_t index[HBK_MAX_BUNDLE];
	while (!atomic_load_explicit(&d->submit_stop, memory_order_acquire)) {
		/* Acquire: pairs with the host's release (seq_cst) store of the
		 * tail, so the command slots it filled before are visible. */
		uint32_t tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
		if (tail == head) {
			/* Sequentially consistent, as the host's store of the tail
			 * and load of driver_waiting are: either it sees the flag
			 * and wakes this thread, or the load below sees its tail. */
			__atomic_store_n(&ring->driver_waiting, 1, __ATOMIC_SEQ_CST);
			if (__atomic_load_n(&ring->tail, __ATOMIC_SEQ_CST) == head &&
			    !atomic_load(&d->submit_stop))
				hbk_futex_wait_shared(&ring->driver_waiting, 1);
			__atomic_store_n(&ring->driver_waiting, 0, __ATOMIC_RELAXED);
			continue;
		}
		uint32_t n = tail - head;
		if (n > cap) {
			hbk_log(HBK_LOG_ERR, "submission ring: the host published %u entries past "
				"the %u taken (at most %u fit); skipped", n, head, cap);
			head = tail;
			__atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
			continue;
		}
		unsigned count = HBK_MIN(n, HBK_MAX_BUNDLE);
		for (unsigned i = 0; i < count; i++)
			index[i] = ring->entry[(head + i) & (cap - 1)];
		/* Counted before the slots can complete, so a host that saw
		 * them complete sees the batch counted. */
		__atomic_fetch_add(&ring->hist[hbk_hist_bucket(count)], 1, __ATOMIC_RELAXED);
		struct hbk_drv_queue *q = bound_queue(d, HBK_MSG_PROCESS_BUNDLED);
		pthread_mutex_lock(&q->exec);
		cur_queue = q;
		int err = do_process_bundled(d, index, count);
		cur_queue = NULL;
		pthread_mutex_unlock(&q->exec);
		if (err)
			hbk_log(HBK_LOG_ERR, "submission ring: %u slots not processed: %s", count,
				hbk_strerror(err));
		head += count;
		/* Release: the host reads the head only to see that the driver
		 * answers; nothing it owns depends on it. */
		__atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
	}
	return NULL;
}

/* Starts the submitter once the driver took the bundled mapping. */
static int submitter_start(struct hbk_drv *d)
{
	if (d->submitter_started)
		return 0;
	int err = -pthread_create(&d->submitter, NULL, submitter, d);
	d->submitter_started = !err;
	return err;
}

/* Stops and joins it: before STOP reaches the driver, and when the host is
 * gone.  The caller holds no queue's exec lock (the submitter may wait for
 * one). */
static void submitter_stop(struct hbk_drv *d)
{
	if (!d->submitter_started)
		return;
	/* Both sequentially consistent, against the submitter's store of
	 * driver_waiting and load of submit_stop: either it sees the stop, or
	 * its futex wait finds the word 0 (or is woken below). */
	atomic_store(&d->submit_stop, true);
	__atomic_store_n(&d->region.sring->driver_waiting, 0, __ATOMIC_SEQ_CST);
	hbk_futex_wake_shared(&d->region.sring->driver_waiting);
	pthread_join(d->submitter, NULL);
	d->submitter_started = false;
}

/* A task at the driver when a reset began: a per-task pool index or a
 * bundled slot, and the issue it carried. */
struct held {
	uint32_t index;
	bool bundled;
	uint64_t tag;
};

/* Whether the driver still holds that issue of the task, and by its own
 * choice: an issue whose completion the runtime refused (HBK-C03, C07) is
 * held too, but the driver believes it done, and that report said so. */
static bool still_held(struct hbk_drv *d, const struct held *h)
{
	if (h->bundled)
		return atomic_load(&d->slot_at_driver[h->index]) &&
		       atomic_load(&d->slot_tag[h->index]) == h->tag &&
		       atomic_load(&d->slot_refused[h->index]) != h->tag;
	const struct hbk_drv_action *a = &d->actions[h->index];
	return atomic_load(&a->at_driver) && atomic_load(&a->tag) == h->tag &&
	       atomic_load(&a->refused) != h->tag;
}

/*
 * The tasks at the driver that a reset of target covers: of its LUN lun,
 * or all of the target's with lun UINT64_MAX.  h has room for every
 * action and slot.  Returns their count.  Call server.
 *
 * A task counts once the entry point that handed it over has returned.  A
 * bundled slot still inside process_bundled (on the Default queue, while
 * task management bound to another queue runs here) is left out: the
 * driver may not have seen it yet, so a reset cannot be expected to have
 * ended it, and it may complete after the reset answers, as a task that
 * arrived after it would.  If it is never completed, its timeout still
 * catches it.  A per-task task needs no such care: PROCESS_TASK and task
 * management are both calls, served one at a time by this thread.
 */
static unsigned held_under(struct hbk_drv *d, uint64_t target, uint64_t lun, struct held *h)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < d->nactions; i++) {
		const struct hbk_drv_action *a = &d->actions[i];
		if (atomic_load(&a->at_driver) && a->target == target &&
		    (lun == UINT64_MAX || a->lun == lun))
			h[n++] = (struct held){ i, false, atomic_load(&a->tag) };
	}
	if (!atomic_load_explicit(&d->bundled_mapped, memory_order_acquire))
		return n;
	for (uint32_t i = 0; i < d->region.slots; i++) {
		/* The slot's command is the host's, unchanged while the slot is
		 * at the driver (the seq_cst load orders it after the
		 * submitter's taking of the slot). */
		const struct hbk_task *k = &d->region.cmds[i];
		if (atomic_load(&d->slot_at_driver[i]) && !atomic_load(&d->slot_arriving[i]) &&
		    k->target_id == target &&
		    (lun == UINT64_MAX || hbk_scsi_lun_decode(k->lun) == lun))
			h[n++] = (struct held){ i, true, atomic_load(&d->slot_tag[i]) };
	}
	return n;
}

/* held_under into a new array (NULL, with *n 0, when out of memory: the
 * function then runs unchecked).  The caller frees it.  Call server. */
static struct held *held_now(struct hbk_drv *d, uint64_t target, uint64_t lun, unsigned *n)
{
	size_t room = (size_t)d->nactions + (d->have_region ? d->region.slots : 0);
	struct held *h = malloc((room ? room : 1) * sizeof(*h));
	*n = h ? held_under(d, target, lun, h) : 0;
	return h;
}

/*
 * LUN RESET (lun) or TARGET RESET (lun UINT64_MAX) through reset, checked:
 * a reset that answers FUNCTION COMPLETE has ended every task it covers,
 * so one that the driver held when the reset began and holds still is
 * reported (HBK-C11) at once, before the host's escalation goes on.  Tasks
 * that came after the reset began are none of its business.  Call server.
 */
static uint32_t reset_checked(struct hbk_drv *d, const char *name, uint64_t target, uint64_t lun,
			      uint32_t (*reset)(struct hbk_drv *, uint64_t, uint64_t))
{
	unsigned n;
	struct held *h = held_now(d, target, lun, &n);
	uint32_t sr = reset(d, target, lun == UINT64_MAX ? 0 : lun);
	unsigned kept = 0;
	const struct held *first = NULL;
	for (unsigned i = 0; sr == HBK_SR_FUNCTION_COMPLETE && i < n; i++)
		if (still_held(d, &h[i])) {
			first = first ? first : &h[i];
			kept++;
		}
	char what[64];
	if (lun == UINT64_MAX)
		snprintf(what, sizeof(what), "%s of target %llu", name, (unsigned long long)target);
	else
		snprintf(what, sizeof(what), "%s of target %llu lun %llu", name,
			 (unsigned long long)target, (unsigned long long)lun);
	if (kept)
		report(d, 11, "%s answered FUNCTION COMPLETE but kept %u task(s) it covers (%s %u): "
		       "end them all before answering, or answer REJECTED", what, kept,
		       first->bundled ? "slot" : "task", first->index);
	free(h);
	return sr;
}

/*
 * ABORT TASK through the driver, checked as resets are: FUNCTION COMPLETE
 * says the task has ended, so a driver that answers it while still holding
 * the task it held when the abort began is reported (HBK-C11) at once.
 * Call server.
 */
static uint32_t abort_checked(struct hbk_drv *d, uint64_t target, uint64_t lun, uint64_t tag)
{
	unsigned n, named = 0;
	struct held *h = held_now(d, target, lun, &n);
	for (unsigned i = 0; i < n; i++)
		if (h[i].tag == tag)
			h[named++] = h[i];
	uint32_t sr = d->ops->abort_task(d, target, lun, tag);
	for (unsigned i = 0; sr == HBK_SR_FUNCTION_COMPLETE && i < named; i++)
		if (still_held(d, &h[i])) {
			report(d, 11, "ABORT TASK of task %#llx on target %llu lun %llu answered "
			       "FUNCTION COMPLETE but kept the task (%s %u): end it before "
			       "answering, or answer REJECTED", (unsigned long long)tag,
			       (unsigned long long)target, (unsigned long long)lun,
			       h[i].bundled ? "slot" : "task", h[i].index);
			break;
		}
	free(h);
	return sr;
}

static uint32_t target_reset(struct hbk_drv *d, uint64_t target, uint64_t lun)
{
	(void)lun;
	return d->ops->target_reset(d, target);
}

static uint64_t tmf(const struct hbk_drv_ops *o, struct hbk_drv *d, unsigned type, const uint64_t *a)
{
	uint32_t (*f2)(struct hbk_drv *, uint64_t, uint64_t) = NULL;
	switch (type) {
	case HBK_MSG_ABORT_TASK:
		return o->abort_task ? abort_checked(d, a[0], a[1], a[2]) : HBK_SR_FUNCTION_REJECTED;
	case HBK_MSG_TARGET_RESET:
		return o->target_reset ? reset_checked(d, "TARGET RESET", a[0], UINT64_MAX, target_reset)
				       : HBK_SR_FUNCTION_REJECTED;
	case HBK_MSG_LUN_RESET:
		return o->lun_reset ? reset_checked(d, "LUN RESET", a[0], a[1], o->lun_reset)
				    : HBK_SR_FUNCTION_REJECTED;
	case HBK_MSG_ABORT_TASK_SET: f2 = o->abort_task_set; break;
	case HBK_MSG_CLEAR_ACA: f2 = o->clear_aca; break;
	case HBK_MSG_CLEAR_TASK_SET: f2 = o->clear_task_set; break;
	}
	return f2 ? f2(d, a[0], a[1]) : HBK_SR_FUNCTION_REJECTED;
}

/* Runs one call; *fd is a descriptor that came with it (consumed or left). */
static size_t serve(struct hbk_drv *d, union call_buf *m, int *fd, union reply_buf *r)
{
	const struct hbk_drv_ops *o = d->ops;
	const uint64_t *arg = m->call.arg;
	uint64_t *val = r->reply.val;
	int err = 0;
	size_t len = sizeof(r->reply);

	switch (m->hdr.type) {
	case HBK_MSG_HELLO:
		do_hello(d, &r->hello);
		return sizeof(r->hello);
	case HBK_MSG_SHARE_REGION:
		err = do_share_region(d, *fd);
		*fd = -1;
		break;
	case HBK_MSG_INIT_CONTROLLER:
		err = o->init_controller ? o->init_controller(d) : 0;
		break;
	case HBK_MSG_REPORT_INITIATOR_ID:
		val[0] = UINT64_MAX;
		err = o->report_initiator_id ? o->report_initiator_id(d, &val[0]) : 0;
		break;
	case HBK_MSG_REPORT_HIGHEST_ID:
		err = o->report_highest_id ? o->report_highest_id(d, &val[0]) : 0;
		break;
	case HBK_MSG_REPORT_MAX_TASKS:
		err = do_max_tasks(d, &val[0]);
		break;
	case HBK_MSG_GET_DMA_SPEC: {
		struct hbk_drv_dma_spec s = { .max_transfer = 1u << 20, .alignment = 4096,
					      .address_bits = 64, .segment_type = HBK_SEG_HOST64 };
		err = o->get_dma_spec ? o->get_dma_spec(d, &s) : 0;
		val[HBK_DMA_VAL_MAX_TRANSFER] = s.max_transfer;
		val[HBK_DMA_VAL_ALIGNMENT] = s.alignment;
		val[HBK_DMA_VAL_ADDRESS_BITS] = s.address_bits;
		val[HBK_DMA_VAL_SEGMENT_TYPE] = s.segment_type;
		d->dma_alignment = s.alignment;
		break;
	}
	case HBK_MSG_MAP_HBA_DATA:
		if (arg[0] >= d->nactions) {
			err = -EINVAL;
			break;
		}
		val[0] = arg[0] + 1;
		err = o->map_hba_data ? o->map_hba_data(d, (uint32_t)arg[0], &val[0]) : 0;
		break;
	case HBK_MSG_MAP_BUNDLED:
		err = do_map_bundled(d, arg[0]);
		if (!err)
			err = submitter_start(d);
		break;
	case HBK_MSG_START:
		err = o->start ? o->start(d) : 0;
		d->started = !err;
		break;
	case HBK_MSG_DEVICE_MANAGEMENT:
		val[0] = o->device_management ? o->device_management(d) : false;
		break;
	case HBK_MSG_INIT_TARGET:
		err = o->init_target ? o->init_target(d, arg[0]) : 0;
		break;
	case HBK_MSG_MULTIPATHING:
		val[0] = o->multipathing ? o->multipathing(d) : false;
		break;
	case HBK_MSG_AUTOSENSE:
		val[0] = o->autosense ? o->autosense(d) : false;
		break;
	case HBK_MSG_PARALLEL_FEATURE:
		val[0] = o->parallel_feature ? o->parallel_feature(d, (uint32_t)arg[0]) : false;
		break;
	case HBK_MSG_HIGHEST_LUN:
		val[0] = o->highest_lun ? o->highest_lun(d) : 0;
		break;
	case HBK_MSG_PROCESS_TASK:
		do_process_task(d, &m->task, &r->task);
		return sizeof(r->task);
	case HBK_MSG_ABORT_TASK: case HBK_MSG_ABORT_TASK_SET: case HBK_MSG_CLEAR_ACA:
	case HBK_MSG_CLEAR_TASK_SET: case HBK_MSG_LUN_RESET: case HBK_MSG_TARGET_RESET:
		val[0] = tmf(o, d, m->hdr.type, arg);
		break;
	case HBK_MSG_NEXUS_LOSS:
		if (o->nexus_loss)
			o->nexus_loss(d, arg[0], arg[1]);
		break;
	case HBK_MSG_STOP:
		if (o->stop)
			o->stop(d);
		d->stopped = true;
		break;
	default:
		err = -ENOSYS;
	}
	r->reply.status = err;
	return len;
}

static int serve_calls(struct hbk_drv *d)
{
	union call_buf m;
	union reply_buf r;
	for (;;) {
		int fd = -1;
		const char *why = NULL;
		int n = hbk_msg_recv(d->call_fd, &m, sizeof(m), -1, &fd, &why);
		if (n == -ECONNRESET)
			return 0; /* the host went away */
		if (n == -EBADMSG) {
			hbk_log(HBK_LOG_ERR, "malformed call from the host: %s", why);
			continue;
		}
		if (n < 0)
			return n;
		if (m.hdr.flags & HBK_MSGF_REPLY || m.hdr.type > HBK_MSG_CALL_LAST) {
			hbk_log(HBK_LOG_ERR, "unexpected %s on the call channel", hbk_msg_name(m.hdr.type));
			if (fd >= 0)
				close(fd);
			continue;
		}
		memset(&r, 0, sizeof(r));
		if (m.hdr.type == HBK_MSG_STOP)
			submitter_stop(d);  /* no more bundled work reaches the driver */
		struct hbk_drv_queue *q = bound_queue(d, m.hdr.type);
		pthread_mutex_lock(&q->exec);
		cur_queue = q;
		size_t len = serve(d, &m, &fd, &r);
		cur_queue = NULL;
		pthread_mutex_unlock(&q->exec);
		if (fd >= 0)
			close(fd);

		hbk_msg_init(&r.hdr, m.hdr.type, m.hdr.seq, (uint32_t)len);
		r.hdr.flags = HBK_MSGF_REPLY;
		int err = hbk_msg_send(d->call_fd, &r, len, -1);
		if (err)
			return err == -EPIPE || err == -ECONNRESET ? 0 : err;
		if (m.hdr.type == HBK_MSG_STOP)
			return 0;
	}
}

/* ---- Start-up ------------------------------------------------------------- */

static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n))
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (!a[n] && *i + 1 < argc)
		return argv[++*i];
	return NULL;
}

static int listen_for_host(const char *path, int *call_fd, int *event_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (ls < 0)
		return -errno;
	unlink(path);
	int err = 0;
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 2) < 0)
		err = -errno;
	if (!err) {
		hbk_log(HBK_LOG_INFO, "waiting for a host on %s", path);
		*call_fd = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		*event_fd = *call_fd >= 0 ? accept4(ls, NULL, NULL, SOCK_CLOEXEC) : -1;
		if (*event_fd < 0)
			err = -errno;
	}
	close(ls);
	unlink(path);
	return err;
}

int hbk_drv_main(const struct hbk_drv_ops *ops, void *priv, int argc, char **argv)
{
	struct hbk_drv *d = calloc(1, sizeof(*d));
	if (!d)
		return 1;
	d->ops = ops;
	d->priv = priv;
	d->argc = argc;
	d->argv = argv;
	d->call_fd = d->event_fd = -1;
	d->bundled.d = d;
	atomic_init(&d->bundled.refs, 1);
	pthread_mutex_init(&d->queues_lock, NULL);
	pthread_mutex_init(&d->call_lock, NULL);
	pthread_mutex_init(&d->cring_lock, NULL);
	pthread_cond_init(&d->call_cond, NULL);
	hbk_log_set_who(ops->name ? ops->name : "driver");

	const char *listen_path = NULL;
	d->asked = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*d->asked));
	if (!d->asked) {
		free(d);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		const char *v;
		int first = i;
		if ((v = opt_value(argc, argv, &i, "--call-fd")))
			d->call_fd = atoi(v);
		else if ((v = opt_value(argc, argv, &i, "--event-fd")))
			d->event_fd = atoi(v);
		else if ((v = opt_value(argc, argv, &i, "--listen")))
			listen_path = v;
		for (int k = first; v && k <= i; k++)
			d->asked[k] = true;   /* the runtime's own */
	}
	int rc = 1;
	if (listen_path) {
		int err = listen_for_host(listen_path, &d->call_fd, &d->event_fd);
		if (err) {
			hbk_log(HBK_LOG_ERR, "cannot listen on %s: %s", listen_path, hbk_strerror(err));
			goto free_d;
		}
	}
	if (d->call_fd < 0 || d->event_fd < 0) {
		hbk_log(HBK_LOG_ERR, "usage: %s (--call-fd N --event-fd M | --listen PATH) [NAME=VALUE...]",
			argv[0]);
		goto free_d;
	}
	/* A helper the driver starts must not hold the channels open: the host
	 * sees the driver's death as their end. */
	fcntl(d->call_fd, F_SETFD, FD_CLOEXEC);
	fcntl(d->event_fd, F_SETFD, FD_CLOEXEC);
	/* HELLO reports HBK_MAX_BINDINGS bindings, and the host checks what it
	 * is told (HBK-C01): one past them would run unchecked. */
	unsigned nbind = 0;
	for (const struct hbk_drv_binding *b = ops->bindings; b && b->entry; b++)
		nbind++;
	if (nbind > HBK_MAX_BINDINGS) {
		hbk_log(HBK_LOG_ERR, "%u queue bindings: at most %u", nbind, HBK_MAX_BINDINGS);
		goto close_fds;
	}
	struct hbk_drv_queue *def = queue_new(d, HBK_QUEUE_NAME_DEFAULT);
	if (!def)
		goto close_fds;
	def->id = HBK_QUEUE_DEFAULT;
	d->queues[d->nqueues++] = def;
	if (pthread_create(&d->reader, NULL, event_reader, d))
		goto stop_queues;
	d->reader_started = true;

	int err = serve_calls(d);
	submitter_stop(d);
	rc = err ? 1 : 0;
	if (err)
		hbk_log(HBK_LOG_ERR, "call server: %s", hbk_strerror(err));
	if (d->started && !d->stopped && ops->stop) {
		/* The host went away without STOP: the driver still has work
		 * and DMA in flight, so it stops before its queues and the
		 * arena go away, on the queue STOP is bound to. */
		hbk_log(HBK_LOG_WARN, "the host went away without stopping the controller; "
			"stopping it");
		struct hbk_drv_queue *q = bound_queue(d, HBK_MSG_STOP);
		pthread_mutex_lock(&q->exec);
		cur_queue = q;
		ops->stop(d);
		cur_queue = NULL;
		pthread_mutex_unlock(&q->exec);
	}

stop_queues:
	queues_stop(d);
	if (d->reader_started) {
		shutdown(d->event_fd, SHUT_RDWR);
		pthread_join(d->reader, NULL);
	}
close_fds:
	close(d->call_fd);
	close(d->event_fd);
free_d:
	if (d->have_region)
		hbk_region_unmap(&d->region);
	free(d->slot_at_driver);
	free(d->slot_tag);
	free(d->slot_refused);
	free(d->slot_arriving);
	free(d->actions);
	free(d->asked);
	pthread_mutex_destroy(&d->queues_lock);
	pthread_mutex_destroy(&d->call_lock);
	pthread_mutex_destroy(&d->cring_lock);
	pthread_cond_destroy(&d->call_cond);
	free(d);
	return rc;
}
