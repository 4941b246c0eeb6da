/* SPDX-License-Identifier: MIT */
/*
 * Controller lifecycle on the host: spawn or attach to the driver process,
 * the start-up order of the controller model, the call channel (one call at a
 * time, each with a time limit), the event thread that reads completions and
 * driver -> host calls, the control thread that serves those calls, driver
 * failure handling and teardown.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host/host_priv.h"

extern char **environ;

static const char *const cons_name[HBK_CONS_COUNT] = {
	"max segment count (read)", "max segment count (write)",
	"max byte count (read)", "max byte count (write)",
	"min segment alignment", "addressable bit count", "data alignment mask",
};

/*
 * HBK-C02 beyond a CREATE_TARGET called on Default: the driver stopped
 * answering (what: a call, or the open's wait for its first LUN) while a
 * CREATE_TARGET of its is still in progress.  That creation waits for its
 * target's discovery I/O and INIT_TARGET, which the driver serves; a driver
 * that waits for the creation in turn (in its start entry point, on the
 * queue its completions or INIT_TARGET need, or holding I/O until create
 * target returns) has deadlocked, as the seed's did.  Any thread.
 */
static void c02_if_creating(struct hbk_ctl *c, const char *what)
{
	pthread_mutex_lock(&c->lun_lock);
	unsigned creating = c->creating;
	pthread_mutex_unlock(&c->lun_lock);
	if (creating)
		hbk_chk_violation(c, 2, "%s is stuck while a CREATE_TARGET is in progress: creating "
				  "a target waits for its discovery I/O and INIT_TARGET, which the "
				  "driver is not serving, so the driver waits on itself. Fix: serve any "
				  "I/O before creating targets, and create them from a queue that "
				  "neither a waiting entry point, INIT_TARGET nor completions need",
				  what);
}

/* ---- The call channel ----------------------------------------------------- */

int hbk_ctl_call(struct hbk_ctl *c, void *msg, size_t len, int pass_fd,
		 void *reply, size_t reply_len)
{
	struct hbk_msg_hdr *h = msg;
	unsigned type = h->type;
	pthread_mutex_lock(&c->call_lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->call_lock);
		return -ENODEV;
	}
	h->seq = ++c->call_seq;
	int err = hbk_msg_send(c->call_fd, msg, len, pass_fd);
	const char *why = "";
	if (!err) {
		int n = hbk_msg_recv(c->call_fd, reply, reply_len, (int)c->opts.call_timeout_ms,
				     NULL, &why);
		const struct hbk_msg_hdr *r = reply;
		if (n >= 0 && (r->type != type || !(r->flags & HBK_MSGF_REPLY) || r->seq != h->seq)) {
			n = -EBADMSG;
			why = "reply does not match the call";
		} else if (n >= 0 && (size_t)n != reply_len) {
			n = -EBADMSG;
			why = "reply has the wrong length";
		}
		err = n < 0 ? n : 0;
	}
	pthread_mutex_unlock(&c->call_lock);
	if (err == -ETIMEDOUT) {
		c02_if_creating(c, hbk_msg_name(type));
		hbk_ctl_driver_failed(c, HBK_DS_DEVICE_NOT_RESPONDING, 12,
				      "the driver did not answer %s within %u ms: it is hung; "
				      "outstanding I/O is failed. Fix: return from every entry "
				      "point promptly and defer slow work to a queue",
				      hbk_msg_name(type), c->opts.call_timeout_ms);
	} else if (err == -EBADMSG)
		hbk_ctl_driver_failed(c, HBK_DS_DELIVERY_FAILURE, 12,
				      "malformed reply to %s: %s; the connection is cut. Fix: "
				      "answer calls only through hbk_drv_main", hbk_msg_name(type), why);
	else if (err)
		hbk_ctl_driver_failed(c, HBK_DS_DEVICE_NOT_PRESENT, 12,
				      "the driver went away during %s (%s)", hbk_msg_name(type),
				      hbk_strerror(err));
	return err;
}

int hbk_ctl_call_simple(struct hbk_ctl *c, unsigned type, const uint64_t *arg,
			unsigned nargs, uint64_t *val)
{
	struct hbk_msg_call m;
	struct hbk_msg_reply r;
	memset(&m, 0, sizeof(m));
	hbk_msg_init(&m.hdr, type, 0, sizeof(m));
	for (unsigned i = 0; i < nargs && i < 4; i++)
		m.arg[i] = arg[i];
	int err = hbk_ctl_call(c, &m, sizeof(m), -1, &r, sizeof(r));
	if (err)
		return err;
	if (val)
		memcpy(val, r.val, sizeof(r.val));
	return r.status;
}

/* ---- Driver failure ------------------------------------------------------- */

bool hbk_ctl_driver_exited(pid_t pid)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	int rc = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
	/* ECHILD: the application reaps its children itself, and did. */
	return rc ? errno == ECHILD : si.si_pid == pid;
}

int hbk_ctl_driver_pidfd(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Whether the driver is still ours to signal: not reaped by anyone (its pid
 * and its process group's id cannot have been reused). */
static bool driver_unreaped(pid_t pid)
{
	siginfo_t si;
	return !waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
}

void hbk_ctl_driver_failed(struct hbk_ctl *c, uint8_t status, unsigned rule, const char *fmt, ...)
{
	pthread_mutex_lock(&c->lock);
	bool first = !c->dead, quiet = c->closing;
	pid_t pid = c->pid;
	c->dead = true;
	pthread_cond_broadcast(&c->send_cond);
	pthread_mutex_unlock(&c->lock);
	if (!first)
		return;
	if (!quiet) {
		char text[512];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		hbk_chk_violation(c, rule, "%s", text);
		/* A spawned driver that misbehaved is ended so it cannot write
		 * into the arena any more. */
		if (pid > 0 && driver_unreaped(pid))
			kill(-pid, SIGKILL);   /* its group: helpers it forked too */
	}
	/* The sockets are cut so no thread waits on the driver. */
	shutdown(c->call_fd, SHUT_RDWR);
	shutdown(c->event_fd, SHUT_RDWR);
	hbk_io_fail_all(c, status);
}

/* ---- Event and control threads -------------------------------------------- */

static void ctl_reply(struct hbk_ctl *c, const struct hbk_msg_hdr *call, int status, uint64_t val0)
{
	struct hbk_msg_reply r;
	memset(&r, 0, sizeof(r));
	hbk_msg_init(&r.hdr, call->type, call->seq, sizeof(r));
	r.hdr.flags = HBK_MSGF_REPLY;
	r.status = status;
	r.val[0] = val0;
	/* Never waits: a driver that does not read the replies to its calls
	 * would hold this thread for ever. */
	if (hbk_msg_send_flags(c->event_fd, &r, sizeof(r), -1, MSG_DONTWAIT) == -EAGAIN)
		hbk_ctl_driver_failed(c, HBK_DS_DELIVERY_FAILURE, 12,
				      "the driver does not read the replies to its calls; the "
				      "connection is cut. Fix: make driver -> host calls only "
				      "through the hbk_drv_* calls, which wait for the reply");
}

static void serve_driver_call(struct hbk_ctl *c, struct ctl_msg *cm)
{
	const struct hbk_msg_hdr *h = &cm->m.hdr;
	const uint64_t *arg = cm->m.call.arg;
	int status = 0;
	uint64_t val = 0;

	switch (h->type) {
	case HBK_MSG_REPORT_CONSTRAINTS:
		pthread_mutex_lock(&c->lock);
		c->cons_present |= cm->m.cons.present;
		for (unsigned k = 0; k < HBK_CONS_COUNT; k++)
			if (cm->m.cons.present & (1u << k))
				c->cons[k] = cm->m.cons.value[k];
		pthread_mutex_unlock(&c->lock);
		break;
	case HBK_MSG_CREATE_TARGET:
		pthread_mutex_lock(&c->lock);
		bool started = c->started;  /* orders the reads of startup's results */
		pthread_mutex_unlock(&c->lock);
		if (!started) {
			hbk_log(HBK_LOG_ERR, "CREATE_TARGET(%llu) before the controller was started; "
				"refused (create targets once start has been called)",
				(unsigned long long)arg[0]);
			status = -EAGAIN;
			break;
		}
		if (h->queue == HBK_QUEUE_DEFAULT) {
			hbk_chk_violation(c, 2, "CREATE_TARGET(%llu) was called on the driver's Default queue: "
					  "it would deadlock, because initialising the target and its "
					  "discovery I/O need that queue; refused with EDEADLK. Fix: call "
					  "create target from another queue (e.g. AuxiliaryQueue), as "
					  "drivers/ram does from its start entry point",
					  (unsigned long long)arg[0]);
			status = -EDEADLK;
			break;
		}
		pthread_mutex_lock(&c->lun_lock);
		c->creating++;
		pthread_mutex_unlock(&c->lun_lock);
		status = hbk_disc_create_target(c, arg[0]);
		pthread_mutex_lock(&c->lun_lock);
		c->creating--;
		c->created_ns = hbk_now_ns();
		pthread_cond_broadcast(&c->lun_cond);
		pthread_mutex_unlock(&c->lun_lock);
		break;
	case HBK_MSG_DESTROY_TARGET:
		status = hbk_disc_destroy_target(c, arg[0]);
		break;
	case HBK_MSG_TARGET_PRESENT:
		val = hbk_disc_target_present(c, arg[0]);
		break;
	case HBK_MSG_MEDIA_CHANGED:
		status = hbk_disc_media_changed(c, arg[0], arg[1]);
		break;
	default:
		status = -ENOSYS;
	}
	ctl_reply(c, h, status, val);
}

static void *control_thread(void *arg)
{
	hbk_thread_name("hbk-control");
	struct hbk_ctl *c = arg;
	pthread_mutex_lock(&c->ctl_lock);
	for (;;) {
		while (!c->ctl_head && !c->ctl_stop)
			pthread_cond_wait(&c->ctl_cond, &c->ctl_lock);
		struct ctl_msg *cm = c->ctl_head;
		if (!cm)
			break;
		c->ctl_head = cm->next;
		if (!c->ctl_head)
			c->ctl_tail = NULL;
		pthread_mutex_unlock(&c->ctl_lock);
		serve_driver_call(c, cm);
		free(cm);
		pthread_mutex_lock(&c->ctl_lock);
		c->ctl_queued--;
	}
	pthread_mutex_unlock(&c->ctl_lock);
	return NULL;
}

/* Driver -> host calls waiting for the control thread at most: the runtime
 * has at most 8 in flight, so more is a driver that does not wait. */
#define CTL_CALLS_MAX 64u

/* Queues a driver -> host call for the control thread; false when the
 * driver has too many waiting (it is cut off).  Event thread. */
static bool queue_driver_call(struct hbk_ctl *c, const void *msg, size_t len)
{
	pthread_mutex_lock(&c->ctl_lock);
	bool flood = c->ctl_queued >= CTL_CALLS_MAX;
	pthread_mutex_unlock(&c->ctl_lock);
	if (flood) {
		hbk_ctl_driver_failed(c, HBK_DS_DELIVERY_FAILURE, 12,
				      "more than %u driver -> host calls wait for their replies; the "
				      "connection is cut. Fix: make them only through the hbk_drv_* "
				      "calls, which wait for the reply", CTL_CALLS_MAX);
		return false;
	}
	struct ctl_msg *cm = calloc(1, sizeof(*cm));
	if (!cm) {
		ctl_reply(c, msg, -ENOMEM, 0);
		return true;
	}
	memcpy(&cm->m, msg, HBK_MIN(len, sizeof(cm->m)));
	pthread_mutex_lock(&c->ctl_lock);
	c->ctl_queued++;
	if (c->ctl_tail)
		c->ctl_tail->next = cm;
	else
		c->ctl_head = cm;
	c->ctl_tail = cm;
	pthread_cond_signal(&c->ctl_cond);
	pthread_mutex_unlock(&c->ctl_lock);
	return true;
}

/* Drains the completion ring; false when the driver broke it (then the
 * driver is cut off and the event thread ends). */
static bool drain_ring(struct hbk_ctl *c)
{
	if (hbk_io_ring_drain(c) != -EPROTO)
		return true;
	hbk_ctl_driver_failed(c, HBK_DS_DELIVERY_FAILURE, 12,
			      "the completion ring's tail ran past entries the host has not "
			      "consumed; the connection is cut and outstanding I/O failed. "
			      "Fix: complete only through hbk_drv_bundled_complete");
	return false;
}

/*
 * The event channel ended: whether the spawned driver closed it and runs on,
 * rather than died (a dying process closes its descriptors a moment before
 * it can be waited for, so it is given up to 100 ms to show as exited).
 * False for a driver the host did not spawn, or once the host is closing
 * the controller or cut the driver off.  Event thread.
 */
static bool channel_closed(struct hbk_ctl *c)
{
	pthread_mutex_lock(&c->lock);
	bool ending = c->closing || c->dead;   /* the host ended it: nothing to tell */
	pid_t pid = c->pid;                    /* close reaps it and clears it under the lock */
	pthread_mutex_unlock(&c->lock);
	if (pid <= 0 || ending)
		return false;
	for (int i = 0; i < 100; i++) {
		if (hbk_ctl_driver_exited(pid))
			return false;
		usleep(1000);
	}
	return true;
}

static void *event_thread(void *arg)
{
	hbk_thread_name("hbk-events");
	struct hbk_ctl *c = arg;
	union {
		struct hbk_msg_hdr hdr;
		struct hbk_msg_slots slots;
		struct hbk_msg_completion comp;
		struct hbk_msg_violation viol;
		uint8_t raw[HBK_MSG_MAX];
	} m;
	for (;;) {
		bool ring = atomic_load_explicit(&c->ring_on, memory_order_acquire);
		/* Bundled completions first: the ring holds everything the driver
		 * published before its latest message.  Sleep only once the ring
		 * is empty and the driver knows to ring the doorbell. */
		if (ring && !drain_ring(c))
			break;
		if (ring && (hbk_io_ring_poll(c) || !hbk_io_ring_sleep(c)))
			continue;
		const char *why = NULL;
		int n = hbk_msg_recv(c->event_fd, &m, sizeof(m), -1, NULL, &why);
		if (ring) {
			hbk_io_ring_awake(c);
			if (!drain_ring(c))
				break;
		}
		if (n == -EBADMSG) {
			hbk_ctl_driver_failed(c, HBK_DS_DELIVERY_FAILURE, 12,
					      "malformed message from the driver: %s; the "
					      "connection is cut and outstanding I/O failed. Fix: "
					      "send only through the hbk_drv_* calls", why);
			break;
		}
		if (n < 0) {
			if (channel_closed(c))
				hbk_ctl_driver_failed(c, HBK_DS_DEVICE_NOT_PRESENT, 12,
						      "the driver closed its event channel (%s) while "
						      "its process runs on: no completion can reach "
						      "the host; outstanding I/O is failed with "
						      "DeviceNotPresent. Fix: never close a descriptor "
						      "the driver runtime owns", hbk_strerror(n));
			else
				hbk_ctl_driver_failed(c, HBK_DS_DEVICE_NOT_PRESENT, 12,
						      "the driver process went away (%s); outstanding "
						      "I/O is failed with DeviceNotPresent",
						      hbk_strerror(n));
			break;
		}
		switch (m.hdr.type) {
		case HBK_MSG_RING_DOORBELL:
			atomic_fetch_add_explicit(&c->st_doorbells, 1, memory_order_relaxed);
			break;
		case HBK_MSG_BUNDLED_COMPLETION:
			atomic_fetch_add_explicit(&c->st_msgs, 1, memory_order_relaxed);
			hbk_io_bundled_completion(c, &m.slots);
			break;
		case HBK_MSG_PARALLEL_COMPLETION:
			atomic_fetch_add_explicit(&c->st_msgs, 1, memory_order_relaxed);
			hbk_io_parallel_completion(c, &m.comp);
			break;
		case HBK_MSG_VIOLATION:
			m.viol.text[sizeof(m.viol.text) - 1] = 0;
			if (m.viol.rule < 32 && (HBK_RUNTIME_RULES >> m.viol.rule & 1)) {
				hbk_chk_violation(c, m.viol.rule, "reported by the driver runtime: %s",
						  m.viol.text);
				if (m.viol.task_tag)
					hbk_io_completion_refused(c, m.viol.task_tag);
				break;
			}
			hbk_ctl_driver_failed(c, HBK_DS_DELIVERY_FAILURE, 12,
					      "VIOLATION of rule %u, which the driver runtime never "
					      "reports (a forged message); the connection is cut. Fix: "
					      "send only through the hbk_drv_* calls", m.viol.rule);
			return NULL;
		default:
			if (m.hdr.type >= HBK_MSG_CREATE_TARGET && !(m.hdr.flags & HBK_MSGF_REPLY)) {
				if (!queue_driver_call(c, &m, (size_t)n))
					return NULL;
				break;
			}
			hbk_ctl_driver_failed(c, HBK_DS_DELIVERY_FAILURE, 12,
					      "unexpected %s on the event channel; the connection "
					      "is cut. Fix: send only through the hbk_drv_* calls",
					      hbk_msg_name(m.hdr.type));
			return NULL;
		}
	}
	return NULL;
}

/* ---- Connecting to the driver --------------------------------------------- */

static int spawn_driver(struct hbk_ctl *c)
{
	int call[2], event[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, call) < 0)
		return -errno;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, event) < 0) {
		int err = -errno;
		close(call[0]);
		close(call[1]);
		return err;
	}
	const char *argv[64];
	unsigned n = 0;
	argv[n++] = c->opts.driver;
	argv[n++] = "--call-fd=3";
	argv[n++] = "--event-fd=4";
	for (const char *const *a = c->opts.driver_args; a && *a && n < HBK_ARRAY_SIZE(argv) - 1; a++)
		argv[n++] = *a;
	argv[n] = NULL;

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, call[1], 3);
	posix_spawn_file_actions_adddup2(&fa, event[1], 4);
	/* The driver starts with no signal blocked and the stop signals at
	 * their defaults, whatever the application set for its own threads
	 * (a server that takes SIGTERM in sigwait blocks it everywhere). */
	posix_spawnattr_t sa;
	sigset_t none, stops;
	sigemptyset(&none);
	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGPIPE);
	posix_spawnattr_init(&sa);
	posix_spawnattr_setsigmask(&sa, &none);
	posix_spawnattr_setsigdefault(&sa, &stops);
	/* A process group of its own: a terminal's Ctrl-C (SIGINT to the
	 * foreground group) reaches the application, which stops the driver
	 * cleanly (its cache destaged), and not the driver, which it would
	 * kill with acknowledged writes in that cache.  A driver whose host
	 * dies stops itself when the sockets close. */
	posix_spawnattr_setpgroup(&sa, 0);
	posix_spawnattr_setflags(&sa, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
					  POSIX_SPAWN_SETPGROUP);
	int err = -posix_spawn(&c->pid, c->opts.driver, &fa, &sa, (char *const *)argv, environ);
	posix_spawnattr_destroy(&sa);
	posix_spawn_file_actions_destroy(&fa);
	close(call[1]);
	close(event[1]);
	if (err) {
		close(call[0]);
		close(event[0]);
		c->pid = 0;
		return err;
	}
	c->call_fd = call[0];
	c->event_fd = event[0];
	return 0;
}

static int connect_path(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

static int attach_driver(struct hbk_ctl *c)
{
	int fd = connect_path(c->opts.attach);
	if (fd < 0)
		return fd;
	c->call_fd = fd;
	fd = connect_path(c->opts.attach);
	if (fd < 0)
		return fd;
	c->event_fd = fd;
	return 0;
}

/* ---- Start-up ------------------------------------------------------------- */

static int hello(struct hbk_ctl *c)
{
	struct hbk_msg_call m;
	struct hbk_msg_hello_reply r;
	memset(&m, 0, sizeof(m));
	hbk_msg_init(&m.hdr, HBK_MSG_HELLO, 0, sizeof(m));
	int err = hbk_ctl_call(c, &m, sizeof(m), -1, &r, sizeof(r));
	if (err)
		return err;
	if (r.abi_version != HBK_ABI_VERSION) {
		hbk_log(HBK_LOG_ERR, "driver speaks ABI version %u, the host %u", r.abi_version,
			HBK_ABI_VERSION);
		return -EPROTO;
	}
	memcpy(c->driver_name, r.driver_name, sizeof(c->driver_name));
	c->driver_name[sizeof(c->driver_name) - 1] = 0;
	for (unsigned i = 0; i < r.binding_count && i < HBK_MAX_BINDINGS; i++) {
		struct hbk_msg_binding *b = &r.binding[i];
		b->queue[sizeof(b->queue) - 1] = 0;
		bool io_entry = b->entry == HBK_MSG_PROCESS_TASK || b->entry == HBK_MSG_PROCESS_BUNDLED;
		if (io_entry && strcmp(b->queue, "Default")) {
			hbk_chk_violation(c, 1, "driver '%s' binds %s to queue '%s': the I/O entry "
					  "points are served on the Default queue and may not be bound "
					  "elsewhere (the load-time panic of the reference model); driver "
					  "refused. Fix: remove the binding and use the bundled path for "
					  "parallelism", c->driver_name, hbk_msg_name(b->entry), b->queue);
			return -EPERM;
		}
	}
	return r.status;
}

static int startup(struct hbk_ctl *c)
{
	uint64_t v[4];
	int err = hello(c);
	if (err)
		return err;
	if ((err = hbk_ctl_call_simple(c, HBK_MSG_INIT_CONTROLLER, NULL, 0, NULL))) {
		hbk_log(HBK_LOG_ERR, "driver failed to initialise: %s", hbk_strerror(err));
		return err;
	}
	pthread_mutex_lock(&c->lock);
	uint32_t present = c->cons_present;
	uint64_t cons[HBK_CONS_COUNT];
	memcpy(cons, c->cons, sizeof(cons));
	pthread_mutex_unlock(&c->lock);
	for (unsigned k = 0; k < HBK_CONS_COUNT; k++)
		if (!(present & (1u << k))) {
			hbk_chk_violation(c, 8, "the driver did not report the HBA constraint '%s' "
					  "before returning from initialise; start refused. Fix: call "
					  "hbk_drv_report_constraints with every key from init_controller",
					  cons_name[k]);
			return -EINVAL;
		}
	if ((err = hbk_ctl_call_simple(c, HBK_MSG_REPORT_INITIATOR_ID, NULL, 0, v)))
		return err;
	c->initiator_id = v[0];
	if ((err = hbk_ctl_call_simple(c, HBK_MSG_REPORT_HIGHEST_ID, NULL, 0, v)))
		return err;
	c->highest_id = v[0];
	if ((err = hbk_ctl_call_simple(c, HBK_MSG_REPORT_MAX_TASKS, NULL, 0, v)))
		return err;
	if (!v[0] || v[0] > HBK_MAX_TASKS) {
		hbk_log(HBK_LOG_ERR, "driver reports a maximum task count of %llu; it must be "
			"1..%u", (unsigned long long)v[0], HBK_MAX_TASKS);
		return -EINVAL;
	}
	c->ntasks = (uint32_t)v[0];
	if ((err = hbk_ctl_call_simple(c, HBK_MSG_GET_DMA_SPEC, NULL, 0, v)))
		return err;
	c->max_transfer = v[HBK_DMA_VAL_MAX_TRANSFER];
	/* Buffers handed over without a copy must meet both the DMA spec's
	 * alignment and the data alignment mask; bounce chunks are 4 KiB
	 * aligned, so that is the most a driver may ask. */
	uint64_t align = HBK_MAX(v[HBK_DMA_VAL_ALIGNMENT], cons[HBK_CONS_DATA_ALIGNMENT_MASK] + 1);
	if (!align || align & (align - 1) || align > 4096) {
		hbk_log(HBK_LOG_ERR, "driver asks for a buffer alignment of %llu bytes; it must be "
			"a power of two up to 4096", (unsigned long long)align);
		return -EINVAL;
	}
	c->dma_alignment = (uint32_t)align;
	uint64_t byte_limit = HBK_MIN(cons[HBK_CONS_MAX_BYTE_COUNT_READ],
				      cons[HBK_CONS_MAX_BYTE_COUNT_WRITE]);
	if (byte_limit && byte_limit < c->max_transfer)
		c->max_transfer = byte_limit;
	/* Transfers are split and bounced in 4 KiB pages: a smaller limit
	 * cannot be kept, and rounding it up would overrun the driver. */
	if (c->max_transfer < 4096 || c->max_transfer > (64u << 20)) {
		hbk_log(HBK_LOG_ERR, "driver reports a max transfer of %llu bytes (DMA spec and "
			"byte-count constraints); it must be 4 KiB..64 MiB",
			(unsigned long long)c->max_transfer);
		return -EINVAL;
	}
	c->max_transfer &= ~4095ull;

	if ((err = hbk_io_init(c)))
		return err;
	if ((err = hbk_ctl_call(c, &(struct hbk_msg_call){
			.hdr = { .magic = HBK_MSG_MAGIC, .type = HBK_MSG_SHARE_REGION,
				 .len = sizeof(struct hbk_msg_call) } },
			sizeof(struct hbk_msg_call), c->region.fd, &(struct hbk_msg_reply){ 0 },
			sizeof(struct hbk_msg_reply))))
		return err;

	/* The pool: one MAP_HBA_DATA per task; ids must be unique. */
	for (uint32_t i = 0; i < c->ntasks; i++) {
		uint64_t idx = i;
		if ((err = hbk_ctl_call_simple(c, HBK_MSG_MAP_HBA_DATA, &idx, 1, v)))
			return err;
		c->tasks[i].task_id = v[0];
		for (uint32_t j = 0; j < i; j++)
			if (c->tasks[j].task_id == v[0]) {
				hbk_log(HBK_LOG_ERR, "driver gave task %u the id %llu of task %u; "
					"task ids must be unique", i, (unsigned long long)v[0], j);
				return -EINVAL;
			}
	}

	if (c->opts.mode != HBK_MODE_PER_TASK) {
		uint64_t n = c->ntasks;
		c->region.hdr->map_cookie = 0;
		err = hbk_ctl_call_simple(c, HBK_MSG_MAP_BUNDLED, &n, 1, NULL);
		if (!err && c->region.hdr->map_cookie == HBK_MAP_COOKIE) {
			c->bundled = true;
			/* The event thread may be blocked already: host_waiting
			 * starts at 1, so the driver's first completion rings. */
			atomic_store_explicit(&c->ring_on, true, memory_order_release);
		} else if (c->dead) {
			return -ENODEV;
		} else if (err == -ENOTSUP) {
			hbk_log(HBK_LOG_INFO, "driver '%s' serves the per-task path only", c->driver_name);
		} else {
			hbk_chk_violation(c, 9, "MAP_BUNDLED of %u slots: %s; the controller stays on "
					  "the per-task path. Fix: map both buffers with "
					  "hbk_drv_mem_map inside map_bundled and keep the addresses",
					  c->ntasks, err == -EFAULT ? "the driver accepted the buffers "
					  "without mapping them (unusable address)" :
					  err ? hbk_strerror(err) : "the mapping is not usable (no proof "
					  "written through it)");
		}
		if (!c->bundled && c->opts.mode == HBK_MODE_BUNDLED) {
			hbk_log(HBK_LOG_ERR, "bundled path required but the driver declined it");
			return -ENOTSUP;
		}
	}
	/* I/O may flow from here on: a driver may create targets from another
	 * queue while its start entry point still runs. */
	pthread_mutex_lock(&c->lock);
	c->stopping = false;
	pthread_mutex_unlock(&c->lock);
	/* The per-task path's sender; bundled tasks go straight into the
	 * submission ring from the thread that submits them. */
	if (!c->bundled) {
		if (pthread_create(&c->sender, NULL, hbk_io_sender, c))
			return -EAGAIN;
		c->sender_up = true;
	}
	c->timer_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->timer_efd < 0)
		return -errno;
	if (pthread_create(&c->timer, NULL, hbk_io_timer, c))
		return -EAGAIN;
	c->timer_up = true;
	pthread_mutex_lock(&c->lock);
	c->started = true;
	pthread_mutex_unlock(&c->lock);
	if ((err = hbk_ctl_call_simple(c, HBK_MSG_START, NULL, 0, NULL))) {
		hbk_log(HBK_LOG_ERR, "driver failed to start: %s", hbk_strerror(err));
		return err;
	}

	if ((err = hbk_ctl_call_simple(c, HBK_MSG_DEVICE_MANAGEMENT, NULL, 0, v)))
		return err;
	if (!v[0]) {
		/* The framework creates targets 0..highest itself. */
		for (uint64_t t = 0; t <= c->highest_id && t < 256; t++)
			if (t != c->initiator_id)
				hbk_disc_create_target(c, t);
	}
	return 0;
}

/*
 * Waits until the driver's start-up target creation is over: at least one
 * LUN, no create-target call running, and none for SETTLE_QUIET_NS (drivers
 * create their targets one after another), or until settle_ms passed.
 */
#define SETTLE_QUIET_NS 50000000ull

static void settle(struct hbk_ctl *c)
{
	uint64_t end = hbk_now_ns() + (uint64_t)c->opts.settle_ms * 1000000ull;
	uint64_t completed = atomic_load(&c->st_completions);
	pthread_mutex_lock(&c->lun_lock);
	for (;;) {
		uint64_t now = hbk_now_ns();
		bool quiet = c->nluns && !c->creating && now - c->created_ns >= SETTLE_QUIET_NS;
		if (quiet || now >= end || c->dead)
			break;
		uint64_t wake = HBK_MIN(end, now + 10000000ull);
		struct timespec ts = { .tv_sec = (time_t)(wake / 1000000000ull),
				       .tv_nsec = (long)(wake % 1000000000ull) };
		pthread_cond_timedwait(&c->lun_cond, &c->lun_lock, &ts);
	}
	/* Stuck, not slow: nothing the driver was given came back meanwhile. */
	bool stuck = !c->nluns && c->creating && !c->dead &&
		     atomic_load(&c->st_completions) == completed;
	pthread_mutex_unlock(&c->lun_lock);
	if (stuck)
		c02_if_creating(c, "the open's wait for the first LUN");
}

static struct hbk_ctl *ctl_new(const struct hbk_ctl_opts *opts)
{
	struct hbk_ctl *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->opts = *opts;
	if (!c->opts.call_timeout_ms)
		c->opts.call_timeout_ms = 5000;
	if (!c->opts.task_timeout_ms)
		c->opts.task_timeout_ms = 30000;
	if (!c->opts.user_arena_bytes)
		c->opts.user_arena_bytes = 64u << 20;
	if (!c->opts.settle_ms)
		c->opts.settle_ms = 5000;
	if (!c->opts.exit_timeout_ms)
		c->opts.exit_timeout_ms = 30000;
	c->poll_ns = c->opts.poll_us < 0 ? 0 : (uint64_t)(c->opts.poll_us ? c->opts.poll_us : 100) * 1000;
	c->poll_score = HBK_POLL_SCORE_MAX;   /* polls pay until they show otherwise */
	c->call_fd = c->event_fd = -1;
	c->region.fd = -1;
	c->stopping = true; /* no I/O before START */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->send_cond, NULL);
	pthread_mutex_init(&c->call_lock, NULL);
	pthread_mutex_init(&c->ctl_lock, NULL);
	pthread_cond_init(&c->ctl_cond, NULL);
	pthread_mutex_init(&c->lun_lock, NULL);
	pthread_cond_init(&c->lun_cond, &ca);
	pthread_mutex_init(&c->buf_lock, NULL);
	c->timer_efd = -1;
	c->timer_wake_ns = UINT64_MAX;
	pthread_condattr_destroy(&ca);
	return c;
}

int hbk_ctl_open(const struct hbk_ctl_opts *opts, struct hbk_ctl **out)
{
	*out = NULL;
	if (!opts || !!opts->driver == !!opts->attach)
		return -EINVAL;
	struct hbk_ctl *c = ctl_new(opts);
	if (!c)
		return -ENOMEM;
	int err = opts->driver ? spawn_driver(c) : attach_driver(c);
	if (err) {
		hbk_log(HBK_LOG_ERR, "cannot %s driver %s: %s", opts->driver ? "start" : "attach to",
			opts->driver ? opts->driver : opts->attach, hbk_strerror(err));
		goto close_c;
	}
	if (pthread_create(&c->reader, NULL, event_thread, c) ||
	    (c->reader_up = true, pthread_create(&c->control, NULL, control_thread, c))) {
		err = -EAGAIN;
		goto close_c;
	}
	c->control_up = true;
	err = startup(c);
	if (err)
		goto close_c;
	settle(c);
	*out = c;
	return 0;

close_c:
	hbk_ctl_close(c);
	return err;
}

/* ---- Teardown ------------------------------------------------------------- */


/* Waits for a spawned driver to exit: up to exit_timeout_ms when it
 * answered STOP (grace), else not at all; then kills what is left of its
 * process group and reaps it. */
static void reap_driver(struct hbk_ctl *c, bool grace)
{
	if (c->pid <= 0)
		return;
	pid_t pid = c->pid;
	bool gone = false;
	/* A driver may still be writing its cache out after STOP: killing it
	 * then would lose acknowledged writes, so it gets exit_timeout_ms.  One
	 * that did not answer STOP within the call time limit is hung: waiting
	 * longer for it only delays the close. */
	uint64_t start = hbk_now_ns();
	uint64_t end = start + (grace ? (uint64_t)c->opts.exit_timeout_ms * 1000000 : 0);
	bool told = false;
	/* The driver's exit makes its pidfd readable: the close returns as
	 * soon as it is gone rather than at the next 10 ms look, which each
	 * close paid.  Without pidfd_open (Linux before 5.3), the looks. */
	int pidfd = grace ? hbk_ctl_driver_pidfd(pid) : -1;
	uint64_t now;
	while (!gone && (now = hbk_now_ns()) < end) {
		gone = hbk_ctl_driver_exited(pid);
		/* In slices of at most 100 ms, for the note at 2 s, and never
		 * past the limit. */
		int ms = (int)HBK_MIN((end - now + 999999) / 1000000, 100u);
		if (!gone && pidfd >= 0) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			if (poll(&p, 1, ms) > 0 && !hbk_ctl_driver_exited(pid)) {
				/* Readable, yet waitid does not see the exit (a
				 * tracer holds the process): looks, not a spin. */
				close(pidfd);
				pidfd = -1;
			}
		} else if (!gone) {
			usleep((useconds_t)HBK_MIN(ms, 10) * 1000);
		}
		if (!gone && !told && hbk_now_ns() - start > 2000000000ull) {
			hbk_log(HBK_LOG_INFO, "waiting for the driver to finish after STOP "
				"(up to %u ms)", c->opts.exit_timeout_ms);
			told = true;
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	if (!gone && grace) {
		hbk_log(HBK_LOG_WARN, "driver did not exit within %u ms of STOP; killing it",
			c->opts.exit_timeout_ms);
	} else if (!gone && !hbk_ctl_driver_exited(pid)) {
		hbk_log(HBK_LOG_WARN, "driver did not answer STOP; killing it");
	}
	/* The whole process group: the driver if it still runs, and any
	 * helper it forked, which would otherwise keep the arena mapped.  Only
	 * while the driver is not reaped: then its group's id cannot have been
	 * taken by another process. */
	if (driver_unreaped(pid)) {
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	pthread_mutex_lock(&c->lock);
	c->pid = 0;
	pthread_mutex_unlock(&c->lock);
}

void hbk_ctl_close(struct hbk_ctl *c)
{
	if (!c)
		return;
	/* Stop accepting requests; fail whatever is outstanding. */
	pthread_mutex_lock(&c->lock);
	c->closing = true;
	bool alive = !c->dead && c->call_fd >= 0;
	pthread_mutex_unlock(&c->lock);
	hbk_io_fail_all(c, HBK_DS_DEVICE_NOT_PRESENT);

	pthread_mutex_lock(&c->lock);
	c->stopping = true;
	pthread_cond_broadcast(&c->send_cond);
	pthread_mutex_unlock(&c->lock);
	if (c->sender_up)
		pthread_join(c->sender, NULL);
	hbk_io_timer_kick(c);
	if (c->timer_up)
		pthread_join(c->timer, NULL);

	pthread_mutex_lock(&c->lock);
	c->stopped = true;
	pthread_mutex_unlock(&c->lock);
	bool stop_sent = alive && c->tasks;
	bool hung = stop_sent && hbk_ctl_call_simple(c, HBK_MSG_STOP, NULL, 0, NULL) != 0;
	pthread_mutex_lock(&c->lock);
	c->dead = true;
	pthread_mutex_unlock(&c->lock);
	if (c->call_fd >= 0)
		shutdown(c->call_fd, SHUT_RDWR);
	if (c->event_fd >= 0)
		shutdown(c->event_fd, SHUT_RDWR);
	reap_driver(c, !hung);
	if (c->reader_up)
		pthread_join(c->reader, NULL);
	pthread_mutex_lock(&c->ctl_lock);
	c->ctl_stop = true;
	pthread_cond_broadcast(&c->ctl_cond);
	pthread_mutex_unlock(&c->ctl_lock);
	if (c->control_up)
		pthread_join(c->control, NULL);
	for (struct ctl_msg *cm = c->ctl_head, *next; cm; cm = next) {
		next = cm->next;
		free(cm);
	}
	if (c->call_fd >= 0)
		close(c->call_fd);
	if (c->event_fd >= 0)
		close(c->event_fd);
	hbk_disc_free(c);
	hbk_io_fini(c);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->send_cond);
	pthread_mutex_destroy(&c->call_lock);
	pthread_mutex_destroy(&c->ctl_lock);
	pthread_cond_destroy(&c->ctl_cond);
	pthread_mutex_destroy(&c->lun_lock);
	pthread_cond_destroy(&c->lun_cond);
	pthread_mutex_destroy(&c->buf_lock);
	if (c->timer_efd >= 0)
		close(c->timer_efd);
	free(c);
}

/* ---- Queries -------------------------------------------------------------- */

bool hbk_ctl_bundled(const struct hbk_ctl *c)
{
	return c->bundled;
}

bool hbk_ctl_alive(const struct hbk_ctl *c)
{
	return !c->dead;
}

const char *hbk_ctl_driver_name(const struct hbk_ctl *c)
{
	return c->driver_name;
}

int hbk_ctl_driver_pid(const struct hbk_ctl *c)
{
	return c->pid;
}

void hbk_ctl_stats(struct hbk_ctl *c, struct hbk_ctl_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->io_calls = atomic_load(&c->st_calls);
	s->tasks = atomic_load(&c->st_tasks);
	s->completions = atomic_load(&c->st_completions);
	s->completion_msgs = atomic_load(&c->st_msgs);
	s->doorbells = atomic_load(&c->st_doorbells);
	s->timeouts = atomic_load(&c->st_timeouts);
	s->failed_by_host = atomic_load(&c->st_failed);
	s->driver_wakes = atomic_load(&c->st_wakes);
	s->ring_polls = atomic_load(&c->st_polls);
	s->ring_polls_caught = atomic_load(&c->st_polls_caught);
	s->timer_wakes = atomic_load(&c->st_timer_wakes);
	for (unsigned i = 0; i < HBK_HIST_BUCKETS; i++)
		s->hist[i] = atomic_load(&c->st_hist[i]);
	/* Bundled batches are counted by the driver runtime, in the ring. */
	for (unsigned i = 0; c->bundled && i < HBK_HIST_BUCKETS; i++) {
		uint64_t b = __atomic_load_n(&c->region.sring->hist[i], __ATOMIC_RELAXED) -
			     atomic_load(&c->st_sring_base[i]);
		s->hist[i] += b;
		s->io_calls += b;
	}
	for (unsigned i = 0; i < HBK_RULES; i++)
		s->violations[i] = atomic_load(&c->st_viol[i]);
}

void hbk_ctl_stats_reset(struct hbk_ctl *c)
{
	atomic_store(&c->st_calls, 0);
	atomic_store(&c->st_tasks, 0);
	atomic_store(&c->st_completions, 0);
	atomic_store(&c->st_msgs, 0);
	atomic_store(&c->st_doorbells, 0);
	atomic_store(&c->st_wakes, 0);
	atomic_store(&c->st_polls, 0);
	atomic_store(&c->st_polls_caught, 0);
	for (unsigned i = 0; i < HBK_HIST_BUCKETS; i++) {
		atomic_store(&c->st_hist[i], 0);
		if (c->bundled)
			atomic_store(&c->st_sring_base[i],
				     __atomic_load_n(&c->region.sring->hist[i], __ATOMIC_RELAXED));
	}
}
