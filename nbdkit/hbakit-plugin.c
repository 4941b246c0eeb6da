/* SPDX-License-Identifier: MIT */
/*
 * nbdkit-hbakit-plugin: serves the LUNs of an hbakit controller over NBD, so
 * fio, nbdcopy, qemu-img and every other NBD client reach the storage behind
 * an hbakit driver.  One controller (one driver process) is opened after
 * nbdkit forks and shared by every connection; each LUN is one export.
 * Reads and writes go straight to the block API with nbdkit's buffer, which
 * the host copies once through the shared data arena; flush, FUA, trim
 * (UNMAP), zero (WRITE SAME(16), with UNMAP where the LUN allows it, else
 * written zeroes) and extents (GET LBA STATUS) map onto SCSI commands whose
 * support is probed per LUN at its first connection.  Failures come back as
 * the errno NBD expects for the SCSI sense.  docs/nbdkit.md has the keys.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/bytes.h"
#include "common/common.h"
#include "hbk/host.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#define MAX_DRIVER_ARGS 64
#define RETRIES         4           /* for BUSY, NOT READY, UNIT ATTENTION, ABORTED */
#define ZERO_LEN        (1u << 20)  /* zero source for WRITE SAME and written zeroes */
#define WS_CHUNK        (1u << 22)  /* most blocks per WRITE SAME without a LUN limit */
#define LOGGED_ERRORS   20          /* I/O errors logged one by one, then counted */

#define OP_MODE_SENSE10 0x5a
#define OP_INQUIRY      0x12
#define OP_SAI16        0x9e        /* SERVICE ACTION IN (16) */
#define SA_RC16         0x10
#define SA_GET_LBA_STAT 0x12
#define OP_MAINT_IN     0xa3
#define SA_RSOC         0x0c        /* REPORT SUPPORTED OPERATION CODES */
#define OP_WRITE_SAME16 0x93

/* ---- Configuration (set before the fork, read-only afterwards) ---------------- */

static char *driver;
static char *attach;
static char *driver_args[MAX_DRIVER_ARGS + 1];
static unsigned ndriver_args;
static enum hbk_ctl_mode mode = HBK_MODE_AUTO;
static char *default_lun;           /* export name of the default export */
static uint32_t call_timeout_ms, task_timeout_ms, settle_ms;
static int32_t poll_us;

/* ---- The controller and what the plugin learned about its LUNs ---------------- */

enum { WS_NO, WS_YES, WS_TRY };     /* WRITE SAME(16): absent, present, unknown */

struct lunx {
	struct hbk_lun *lun;
	uint64_t target, lun_id;
	uint32_t bs, max_xfer;
	bool ro, wce, thin, lbprz, rotational, extents;
	int ws;                     /* WS_*: atomic, WS_TRY falls to WS_NO once refused */
	bool ws_unmap;              /* atomic: WRITE SAME with the UNMAP bit */
	uint64_t ws_max;            /* blocks per WRITE SAME; 0: no limit reported */
};

static struct hbk_ctl *ctl;
static uint8_t *zeroes;             /* ZERO_LEN zero bytes, in the arena if it had room */
static bool zeroes_in_arena;
static pthread_mutex_t lunx_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lunx **lunxs;         /* probed LUNs, guarded by lunx_lock */
static unsigned nlunxs;
static unsigned long io_errors;     /* atomic */

struct conn {
	struct lunx *x;
	uint64_t size;
};

/* ---- Configuration callbacks --------------------------------------------------- */

static void hbakit_unload(void)
{
	free(driver);
	free(attach);
	free(default_lun);
	for (unsigned i = 0; i < ndriver_args; i++)
		free(driver_args[i]);
}

static int replace(char **slot, char *value)
{
	if (!value)
		return -1;
	free(*slot);
	*slot = value;
	return 0;
}

static int hbakit_config(const char *key, const char *value)
{
	if (!strcmp(key, "driver"))
		return replace(&driver, nbdkit_absolute_path(value));
	if (!strcmp(key, "attach"))
		return replace(&attach, nbdkit_absolute_path(value));
	if (!strcmp(key, "lun"))
		return replace(&default_lun, strdup(value));
	if (!strcmp(key, "call-timeout"))
		return nbdkit_parse_uint32_t(key, value, &call_timeout_ms);
	if (!strcmp(key, "task-timeout"))
		return nbdkit_parse_uint32_t(key, value, &task_timeout_ms);
	if (!strcmp(key, "settle"))
		return nbdkit_parse_uint32_t(key, value, &settle_ms);
	if (!strcmp(key, "poll")) {
		/* As hbakit's --poll-us: 0 or -1 never polls.  (In hbk_ctl_opts 0
		 * is the library's default, which leaving poll out gives.) */
		if (nbdkit_parse_int32_t(key, value, &poll_us) == -1)
			return -1;
		if (poll_us < -1 || poll_us > 1000000) {
			nbdkit_error("poll takes microseconds up to 1000000, or 0 or -1 for never, "
				     "not '%s'", value);
			return -1;
		}
		if (!poll_us)
			poll_us = -1;
		return 0;
	}
	if (!strcmp(key, "driver-arg")) {
		if (!strchr(value, '=') || ndriver_args == MAX_DRIVER_ARGS) {
			nbdkit_error("driver-arg takes K=V, at most %d times", MAX_DRIVER_ARGS);
			return -1;
		}
		return (driver_args[ndriver_args++] = strdup(value)) ? 0 : -1;
	}
	if (!strcmp(key, "mode")) {
		if (!strcmp(value, "bundled"))
			mode = HBK_MODE_BUNDLED;
		else if (!strcmp(value, "per-task"))
			mode = HBK_MODE_PER_TASK;
		else if (!strcmp(value, "auto"))
			mode = HBK_MODE_AUTO;
		else {
			nbdkit_error("mode takes bundled, per-task or auto, not '%s'", value);
			return -1;
		}
		return 0;
	}
	nbdkit_error("unknown parameter '%s'", key);
	return -1;
}

/* The ram driver built next to this plugin: build/drivers/hbk-ram. */
static char *sibling_driver(void)
{
	Dl_info dl;
	char *dir, *path;
	if (!dladdr((void *)sibling_driver, &dl) || !dl.dli_fname || !(dir = realpath(dl.dli_fname, NULL)))
		return NULL;
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	if (asprintf(&path, "%s/drivers/hbk-ram", dir) < 0)
		path = NULL;
	free(dir);
	return path;
}

static int hbakit_config_complete(void)
{
	if (driver && attach) {
		nbdkit_error("give driver=PATH or attach=SOCKET, not both");
		return -1;
	}
	if (!driver && !attach && !(driver = sibling_driver())) {
		nbdkit_error("driver=PATH or attach=SOCKET is required");
		return -1;
	}
	if (driver && access(driver, X_OK)) {
		nbdkit_error("driver %s: %s", driver, strerror(errno));
		return -1;
	}
	return 0;
}

#define hbakit_config_help \
	"driver=PATH          Driver executable to spawn (default: hbk-ram next to the plugin).\n" \
	"driver-arg=K=V       Argument for the driver (repeatable), e.g. driver-arg=size=1G.\n" \
	"attach=SOCKET        Attach to a driver started with --listen SOCKET instead.\n" \
	"mode=bundled|per-task|auto  I/O path (default auto: bundled if the driver takes it).\n" \
	"lun=N|lunN|tTlL      The default export (default: the first LUN).\n" \
	"call-timeout=MS task-timeout=MS settle=MS  Controller timeouts (0: library default).\n" \
	"poll=US              Completion ring polling before the event thread sleeps\n" \
	"                     (default 100; 0 or -1: never)."

/* ---- Opening and closing the controller (after nbdkit forks) ------------------- */

static int hbakit_after_fork(void)
{
	struct hbk_ctl_opts o = {
		.driver = attach ? NULL : driver,
		.driver_args = (const char *const *)driver_args,
		.attach = attach,
		.mode = mode,
		.call_timeout_ms = call_timeout_ms,
		.task_timeout_ms = task_timeout_ms,
		.settle_ms = settle_ms,
		.poll_us = poll_us,
	};
	int err = hbk_ctl_open(&o, &ctl);
	if (err) {
		nbdkit_error("cannot open the controller (%s): %s", attach ? attach : driver,
			     strerror(-err));
		return -1;
	}
	zeroes = hbk_ctl_buf_alloc(ctl, ZERO_LEN);
	zeroes_in_arena = zeroes != NULL;
	if (!zeroes && !(zeroes = calloc(1, ZERO_LEN))) {
		nbdkit_error("out of memory");
		return -1;
	}
	memset(zeroes, 0, ZERO_LEN);
	char poll[32] = "the library's default";
	if (poll_us < 0)
		snprintf(poll, sizeof(poll), "never");
	else if (poll_us)
		snprintf(poll, sizeof(poll), "%" PRId32 " us", poll_us);
	nbdkit_debug("hbakit: controller %s on the %s path, %u LUN(s), completion ring polling: %s",
		     hbk_ctl_driver_name(ctl), hbk_ctl_bundled(ctl) ? "bundled" : "per-task",
		     hbk_ctl_lun_count(ctl), poll);
	return 0;
}

static void hbakit_cleanup(void)
{
	if (!ctl)
		return;
	struct hbk_ctl_stats s;
	hbk_ctl_stats(ctl, &s);
	nbdkit_debug("hbakit: %" PRIu64 " tasks in %" PRIu64 " calls, %" PRIu64 " failed by the "
		     "host, %" PRIu64 " timeouts, %lu I/O errors, %" PRIu64 " completion ring polls",
		     s.tasks, s.io_calls, s.failed_by_host, s.timeouts,
		     __atomic_load_n(&io_errors, __ATOMIC_RELAXED), s.ring_polls);
	if (zeroes_in_arena)
		hbk_ctl_buf_free(ctl, zeroes);
	else
		free(zeroes);
	zeroes = NULL;
	hbk_ctl_close(ctl);
	ctl = NULL;
	for (unsigned i = 0; i < nlunxs; i++)
		free(lunxs[i]);
	free(lunxs);
	lunxs = NULL;
	nlunxs = 0;
}

/* ---- SCSI commands and errors -------------------------------------------------- */

/* True when a failed command was refused as unsupported: ILLEGAL REQUEST with
 * INVALID COMMAND OPERATION CODE (asc 0x20) or INVALID FIELD IN CDB (0x24). */
static bool refused(const struct hbk_scsi_result *r, uint8_t asc)
{
	return r->service == HBK_SR_TASK_COMPLETE && r->status == HBK_STATUS_CHECK_CONDITION &&
	       r->sense_key == HBK_SK_ILLEGAL_REQUEST && r->asc == asc;
}

static bool transient(int err)
{
	return err == -EAGAIN || err == -EBUSY;
}

/* Sleeps before retry `try` (1, 2, 4, 8 ms); false when nbdkit is shutting
 * down or the client left, so the caller gives up. */
static bool backoff(unsigned try)
{
	return try < RETRIES && !nbdkit_nanosleep(0, 1000000u << try);
}

/*
 * The wait of an nbdkit worker for its I/O (the library's futex latch).
 * Each worker's first wait makes it SCHED_BATCH: a woken batch thread does
 * not preempt the host's event thread, which then completes its whole batch
 * before the workers run (measured: 3.9 -> 3.3 context switches per I/O,
 * +10..20% IOPS).  The host completes every submitted command (the driver's
 * death and task timeouts included), so the wait needs no time limit.
 */
static void wait_done(struct hbk_latch *w)
{
	static __thread bool batch;
	if (!batch) {
		struct sched_param sp = { 0 };
		pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
		batch = true;
	}
	hbk_latch_wait(w);
}

/*
 * Called after each command, before the reply goes back to nbdkit.  nbdkit
 * 1.32 aborts (assertion `sock >= 0' in raw_send_socket) when one worker of
 * a connection closes a vanished client's socket while another is about to
 * send its reply; hbakit completes many requests of a connection at once,
 * so their replies race that close.  nbdkit_nanosleep(0, 0) reports a client
 * that hung up (or a server shutting down); the worker then waits until the
 * worker that hit the dead socket has marked the connection dead, so nbdkit
 * skips this reply instead of sending it.  One ppoll per command.
 */
static void client_gone_guard(void)
{
	if (nbdkit_nanosleep(0, 0)) {
		struct timespec ts = { 0, 20000000 };
		nanosleep(&ts, NULL);
	}
}

static void cmd_done(struct hbk_scsi_cmd *cmd)
{
	hbk_latch_open(cmd->priv, 0);
}

static void io_done(struct hbk_blk_io *io)
{
	hbk_latch_open(io->priv, 0);
}

/*
 * Runs one SCSI command on the LUN and waits; retries transient failures.
 * Returns 0, or the hbk_blk_errno code with *res holding the result.  Any
 * nbdkit thread.
 */
static int scsi(struct hbk_lun *l, const uint8_t cdb[16], uint8_t cdb_len, uint8_t dir,
		void *buf, uint32_t len, struct hbk_scsi_result *res)
{
	struct hbk_scsi_cmd cmd;
	struct hbk_latch w;
	int err;
	for (unsigned try = 0;; try++) {
		memset(&cmd, 0, sizeof(cmd));
		cmd.lun = l;
		memcpy(cmd.cdb, cdb, 16);
		cmd.cdb_len = cdb_len;
		cmd.dir = dir;
		cmd.buf = buf;
		cmd.len = len;
		cmd.done = cmd_done;
		cmd.priv = &w;
		hbk_latch_reset(&w);
		err = hbk_sam_submit(ctl, &cmd);
		if (!err) {
			wait_done(&w);
			client_gone_guard();
			err = hbk_blk_errno(&cmd.result);
		}
		if (!transient(err) || !backoff(try))
			break;
	}
	*res = cmd.result;
	return err;
}

/* Runs a block I/O and waits, retrying transient failures.  Returns 0 or the
 * hbk_blk_errno code with io->result set.  Any nbdkit thread. */
static int blk(struct hbk_blk_io *io)
{
	struct hbk_latch w;
	int err;
	io->done = io_done;
	io->priv = &w;
	for (unsigned try = 0;; try++) {
		hbk_latch_reset(&w);
		err = hbk_blk_submit(io);
		if (!err) {
			wait_done(&w);
			client_gone_guard();
			err = io->error;
		}
		if (!transient(err) || !backoff(try))
			return err;
	}
}

/*
 * Reports a failed request to nbdkit: logs it (the first LOGGED_ERRORS one by
 * one) and sets the NBD error.  The mapping follows what NBD clients expect:
 * a request past the end is EINVAL for a read and ENOSPC for a write (the
 * LUN shrank under the connection), DATA PROTECT space allocation failure is
 * ENOSPC, write protect and reservation conflict EPERM, an unsupported
 * command ENOTSUP; medium and hardware errors, miscompares, timeouts and a
 * device or driver that is gone are EIO (ESHUTDOWN would tell the client the
 * server is going away, which it is not).  Returns -1 for the callback.
 */
static int fail(const char *what, int err, const struct hbk_scsi_result *r, bool write)
{
	int e;
	switch (err) {
	case -ENOSPC: e = write ? ENOSPC : EINVAL; break;
	case -EINVAL: e = EINVAL; break;
	case -EOPNOTSUPP: e = ENOTSUP; break;
	case -EROFS: case -EBADE: e = EPERM; break;
	case -ENOMEM: e = ENOMEM; break;
	default: e = EIO; break;
	}
	unsigned long n = __atomic_add_fetch(&io_errors, 1, __ATOMIC_RELAXED);
	if (n <= LOGGED_ERRORS) {
		char s[64] = "";
		bool known = r && r->service != HBK_SR_REQUEST_IN_PROCESS;   /* it ran */
		if (known)
			hbk_scsi_result_str(r, s, sizeof(s));
		nbdkit_error("%s: %s%s%s%s", what, strerror(-err), known ? " (" : "", s,
			     known ? ")" : "");
		if (n == LOGGED_ERRORS)
			nbdkit_error("further I/O errors are counted, not logged");
	}
	nbdkit_set_error(e);
	return -1;
}

/* ---- Probing a LUN ---------------------------------------------------------------- */

static void cdb_inquiry_vpd(uint8_t cdb[16], uint8_t page, uint16_t len)
{
	memset(cdb, 0, 16);
	cdb[0] = OP_INQUIRY;
	cdb[1] = 0x01;
	cdb[2] = page;
	put_be16(cdb + 3, len);
}

/* Fills what block limits, provisioning, caching and opcode support say.
 * Everything not learned keeps its safe default: a write cache present, no
 * WRITE SAME known (tried once), no extents. */
static void probe(struct lunx *x)
{
	struct hbk_scsi_result r;
	uint8_t cdb[16], d[256];
	bool lbpws = false;

	memset(cdb, 0, 16);         /* MODE SENSE(10) caching page, no block descriptors */
	cdb[0] = OP_MODE_SENSE10;
	cdb[1] = 0x08;
	cdb[2] = 0x08;
	put_be16(cdb + 7, sizeof(d));
	memset(d, 0, sizeof(d));
	x->wce = true;
	if (!scsi(x->lun, cdb, 10, HBK_DIR_READ, d, sizeof(d), &r) && r.bytes >= 8) {
		uint32_t at = 8 + get_be16(d + 6);
		x->ro = d[3] & 0x80;
		if (at + 3 <= r.bytes && (d[at] & 0x3f) == 0x08)
			x->wce = d[at + 2] & 0x04;
	}

	memset(cdb, 0, 16);         /* READ CAPACITY(16): LBPRZ */
	cdb[0] = OP_SAI16;
	cdb[1] = SA_RC16;
	put_be32(cdb + 10, 32);
	memset(d, 0, sizeof(d));
	if (!scsi(x->lun, cdb, 16, HBK_DIR_READ, d, 32, &r) && r.bytes >= 15)
		x->lbprz = x->thin && (d[14] & 0x40);

	cdb_inquiry_vpd(cdb, 0xb0, 64);   /* block limits: MAXIMUM WRITE SAME LENGTH */
	memset(d, 0, sizeof(d));
	if (!scsi(x->lun, cdb, 6, HBK_DIR_READ, d, 64, &r) && r.bytes >= 44 && get_be16(d + 2) >= 40)
		x->ws_max = get_be64(d + 36);

	cdb_inquiry_vpd(cdb, 0xb1, 64);   /* characteristics: rotation rate 1 = none */
	memset(d, 0, sizeof(d));
	if (!scsi(x->lun, cdb, 6, HBK_DIR_READ, d, 64, &r) && r.bytes >= 6)
		x->rotational = get_be16(d + 4) > 1;

	if (x->thin) {                    /* logical block provisioning: LBPWS */
		cdb_inquiry_vpd(cdb, 0xb2, 64);
		memset(d, 0, sizeof(d));
		if (!scsi(x->lun, cdb, 6, HBK_DIR_READ, d, 64, &r) && r.bytes >= 6)
			lbpws = d[5] & 0x40;
	}

	/* REPORT SUPPORTED OPERATION CODES for WRITE SAME(16): SUPPORT 011b or
	 * 101b is yes, 001b no; its CDB usage map says whether UNMAP may be
	 * set.  A LUN without the command falls back to VPD B0/B2 and then to
	 * trying WRITE SAME once. */
	memset(cdb, 0, 16);
	cdb[0] = OP_MAINT_IN;
	cdb[1] = SA_RSOC;
	cdb[2] = 0x01;
	cdb[3] = OP_WRITE_SAME16;
	put_be32(cdb + 6, 64);
	memset(d, 0, sizeof(d));
	x->ws = x->ws_max || lbpws ? WS_YES : WS_TRY;
	x->ws_unmap = x->thin && x->lbprz && lbpws;
	if (!scsi(x->lun, cdb, 12, HBK_DIR_READ, d, 64, &r) && r.bytes >= 2) {
		uint8_t support = d[1] & 0x07;
		if (support == 3 || support == 5) {
			x->ws = WS_YES;
			if (r.bytes >= 6 && get_be16(d + 2) >= 2)
				x->ws_unmap = x->thin && x->lbprz && (d[5] & 0x08);
		} else if (support == 1) {
			x->ws = WS_NO;
		}
	}

	if (x->thin) {                    /* GET LBA STATUS, tried once at LBA 0 */
		memset(cdb, 0, 16);
		cdb[0] = OP_SAI16;
		cdb[1] = SA_GET_LBA_STAT;
		put_be32(cdb + 10, 24);
		x->extents = !scsi(x->lun, cdb, 16, HBK_DIR_READ, d, 24, &r);
	}
	nbdkit_debug("hbakit: LUN t%" PRIu64 "l%" PRIu64 ": bs %u, %s, write cache %s, WRITE SAME "
		     "%s%s (max %" PRIu64 " blocks), extents %s", x->target, x->lun_id, x->bs,
		     x->thin ? (x->lbprz ? "thin, unmapped reads zero" : "thin") : "thick",
		     x->wce ? "on" : "off", x->ws == WS_YES ? "yes" : x->ws == WS_NO ? "no" : "unknown",
		     x->ws_unmap ? " with UNMAP" : "", x->ws_max, x->extents ? "yes" : "no");
}

/* The probed record of l, probing it on first use.  NULL on allocation failure. */
static struct lunx *lunx_get(struct hbk_lun *l, const struct hbk_lun_info *info)
{
	pthread_mutex_lock(&lunx_lock);
	for (unsigned i = 0; i < nlunxs; i++)
		if (lunxs[i]->lun == l) {
			pthread_mutex_unlock(&lunx_lock);
			return lunxs[i];
		}
	struct lunx *x = calloc(1, sizeof(*x));
	struct lunx **grown = realloc(lunxs, (nlunxs + 1) * sizeof(*lunxs));
	if (grown)
		lunxs = grown;
	if (x && grown) {
		x->lun = l;
		x->target = info->target;
		x->lun_id = info->lun;
		x->bs = info->block_size;
		x->max_xfer = info->max_xfer_bytes / info->block_size * info->block_size;
		x->thin = info->thin;
		probe(x);   /* under the lock: concurrent first opens wait for one probe */
		lunxs[nlunxs++] = x;
	} else {
		free(x);
		x = NULL;
	}
	pthread_mutex_unlock(&lunx_lock);
	return x;
}

/* ---- Exports ------------------------------------------------------------------- */

/*
 * The LUN an export name names: "tTlL" (target T, LUN L), "lunN" or "N" (the
 * Nth LUN the controller registered, from 0).  NULL when there is none.
 */
static struct hbk_lun *lun_by_name(const char *name, struct hbk_lun_info *info)
{
	unsigned long long t, n;
	unsigned count = hbk_ctl_lun_count(ctl);
	char end;
	if (sscanf(name, "t%llul%llu%c", &t, &n, &end) == 2) {
		for (unsigned i = 0; i < count; i++) {
			struct hbk_lun *l = hbk_ctl_lun(ctl, i);
			if (!hbk_lun_info(l, info) && info->target == t && info->lun == n)
				return l;
		}
		return NULL;
	}
	if (!strncmp(name, "lun", 3))
		name += 3;
	if (sscanf(name, "%llu%c", &n, &end) != 1 || n >= count)
		return NULL;
	struct hbk_lun *l = hbk_ctl_lun(ctl, (unsigned)n);
	return l && !hbk_lun_info(l, info) ? l : NULL;
}

static const char *hbakit_default_export(int readonly, int is_tls)
{
	(void)readonly;
	(void)is_tls;
	struct hbk_lun_info info;
	const char *spec = default_lun ? default_lun : "0";
	if (!lun_by_name(spec, &info))
		return spec;   /* .open reports it */
	return nbdkit_printf_intern("t%" PRIu64 "l%" PRIu64, info.target, info.lun);
}

static int hbakit_list_exports(int readonly, int is_tls, struct nbdkit_exports *exports)
{
	(void)readonly;
	(void)is_tls;
	unsigned count = hbk_ctl_lun_count(ctl);
	for (unsigned i = 0; i < count; i++) {
		struct hbk_lun_info li;
		char name[48], desc[160];
		if (hbk_lun_info(hbk_ctl_lun(ctl, i), &li))
			continue;
		snprintf(name, sizeof(name), "t%" PRIu64 "l%" PRIu64, li.target, li.lun);
		snprintf(desc, sizeof(desc), "lun%u: %s %s %s, %" PRIu64 " x %u bytes%s", i,
			 li.vendor, li.product, li.serial, li.nblocks, li.block_size,
			 li.thin ? ", thin" : "");
		if (nbdkit_add_export(exports, name, desc))
			return -1;
	}
	return 0;
}

/* ---- Connections --------------------------------------------------------------- */

static void *hbakit_open(int readonly)
{
	(void)readonly;
	const char *name = nbdkit_export_name();
	struct hbk_lun_info info;
	if (!name || !*name)
		name = default_lun ? default_lun : "0";
	if (!hbk_ctl_alive(ctl)) {
		nbdkit_error("the controller is gone (driver %s died or hung); restart nbdkit",
			     hbk_ctl_driver_name(ctl));
		return NULL;
	}
	struct hbk_lun *l = lun_by_name(name, &info);
	if (!l) {
		nbdkit_error("no LUN '%s' (export names: tTlL, lunN; nbdinfo --list shows them)", name);
		return NULL;
	}
	struct conn *h = calloc(1, sizeof(*h));
	if (!h || !(h->x = lunx_get(l, &info))) {
		free(h);
		nbdkit_error("out of memory");
		return NULL;
	}
	h->size = info.nblocks * info.block_size;
	return h;
}

static void hbakit_close(void *handle)
{
	free(handle);
}

static int64_t hbakit_get_size(void *handle)
{
	return (int64_t)((struct conn *)handle)->size;
}

static int hbakit_block_size(void *handle, uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
	const struct lunx *x = ((struct conn *)handle)->x;
	*minimum = x->bs;
	*preferred = x->bs > 4096 ? x->bs : 4096;
	*maximum = 0xffffffff;
	return 0;
}

static int hbakit_can_write(void *handle)
{
	return !((struct conn *)handle)->x->ro;
}

static int hbakit_can_flush(void *handle)
{
	(void)handle;
	return 1;
}

static int hbakit_can_fua(void *handle)
{
	(void)handle;
	return NBDKIT_FUA_NATIVE;   /* the FUA bit of WRITE(10/16); a flush after the others */
}

/*
 * Every connection reaches the same logical unit through the one controller,
 * and a SCSI LU has one cache for all its initiators: a write completed on
 * any connection is read back by every other, and SYNCHRONIZE CACHE on any
 * connection makes every completed write durable.  That is what multi-conn
 * promises, with or without a volatile write cache.
 */
static int hbakit_can_multi_conn(void *handle)
{
	(void)handle;
	return 1;
}

static int hbakit_can_trim(void *handle)
{
	return ((struct conn *)handle)->x->thin;
}

static int hbakit_can_zero(void *handle)
{
	(void)handle;
	return 1;
}

static int hbakit_can_fast_zero(void *handle)
{
	return __atomic_load_n(&((struct conn *)handle)->x->ws, __ATOMIC_RELAXED) == WS_YES;
}

static int hbakit_can_extents(void *handle)
{
	return ((struct conn *)handle)->x->extents;
}

static int hbakit_is_rotational(void *handle)
{
	return ((struct conn *)handle)->x->rotational;
}

/* ---- I/O ----------------------------------------------------------------------- */

/* nbdkit has checked the range against the size; the LUN wants whole blocks. */
static bool aligned(const struct lunx *x, uint32_t count, uint64_t offset)
{
	if ((offset | count) % x->bs == 0)
		return true;
	nbdkit_error("request of %" PRIu32 " bytes at %" PRIu64 " is not a multiple of the %u-byte "
		     "block (put --filter=blocksize in front for such clients)", count, offset, x->bs);
	nbdkit_set_error(EINVAL);
	return false;
}

/* A read or write on nbdkit's buffer: one bounce copy through the arena. */
static int rw(void *handle, uint8_t op, void *buf, uint32_t count, uint64_t offset, bool fua)
{
	const struct lunx *x = ((struct conn *)handle)->x;
	if (!aligned(x, count, offset))
		return -1;
	struct hbk_blk_io io = {
		.lun = x->lun, .op = op, .fua = fua, .lba = offset / x->bs,
		.nblocks = count / x->bs, .buf = buf,
	};
	int err = blk(&io);
	return err ? fail(op == HBK_BLK_READ ? "read" : "write", err, &io.result,
			  op == HBK_BLK_WRITE) : 0;
}

static int hbakit_pread(void *handle, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)flags;
	return rw(handle, HBK_BLK_READ, buf, count, offset, false);
}

static int hbakit_pwrite(void *handle, const void *buf, uint32_t count, uint64_t offset,
			 uint32_t flags)
{
	/* The host only reads a write's buffer. */
	return rw(handle, HBK_BLK_WRITE, (void *)buf, count, offset, flags & NBDKIT_FLAG_FUA);
}

static int flush_lun(const struct lunx *x)
{
	struct hbk_blk_io io = { .lun = x->lun, .op = HBK_BLK_FLUSH };
	int err = blk(&io);
	return err ? fail("flush", err, &io.result, true) : 0;
}

static int hbakit_flush(void *handle, uint32_t flags)
{
	(void)flags;
	return flush_lun(((struct conn *)handle)->x);
}

/* FUA for the commands without a FUA bit (UNMAP, WRITE SAME): a flush after
 * them, whatever WCE says, since a LUN that writes data through may still
 * deallocate lazily (a hole punched in a member file is durable only once
 * that file is synced). */
static int fua_after(const struct lunx *x, uint32_t flags)
{
	return flags & NBDKIT_FLAG_FUA ? flush_lun(x) : 0;
}

static int hbakit_trim(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	const struct lunx *x = ((struct conn *)handle)->x;
	if (!aligned(x, count, offset))
		return -1;
	/* One hbk_blk I/O: it sends one UNMAP per max_unmap blocks itself, and
	 * a 32-bit byte count always fits its block count. */
	struct hbk_blk_io io = {
		.lun = x->lun, .op = HBK_BLK_UNMAP, .lba = offset / x->bs, .nblocks = count / x->bs,
	};
	int err = io.nblocks ? blk(&io) : 0;
	if (err)
		return fail("trim", err, &io.result, true);
	return fua_after(x, flags);
}

/*
 * Zeroes [lba, lba + n) with WRITE SAME(16) of one zero block, with the UNMAP
 * bit when asked and allowed.  Returns 0, -EOPNOTSUPP when the LUN refuses
 * the command (remembered: later zeroes write), or -1 with the error set.
 */
static int write_same(struct lunx *x, uint64_t lba, uint64_t n, bool unmap)
{
	uint64_t per = x->ws_max && x->ws_max < WS_CHUNK ? x->ws_max : WS_CHUNK;
	while (n) {
		uint32_t now = (uint32_t)(n < per ? n : per);
		uint8_t cdb[16] = { OP_WRITE_SAME16 };
		struct hbk_scsi_result r;
		bool u = unmap && __atomic_load_n(&x->ws_unmap, __ATOMIC_RELAXED);
		cdb[1] = u ? 0x08 : 0;
		put_be64(cdb + 2, lba);
		put_be32(cdb + 10, now);
		int err = scsi(x->lun, cdb, 16, HBK_DIR_WRITE, zeroes, x->bs, &r);
		if (err && u && refused(&r, 0x24)) {   /* UNMAP bit refused: plain from now on */
			__atomic_store_n(&x->ws_unmap, false, __ATOMIC_RELAXED);
			continue;
		}
		if (err && (refused(&r, 0x20) || refused(&r, 0x24))) {
			__atomic_store_n(&x->ws, WS_NO, __ATOMIC_RELAXED);
			nbdkit_debug("hbakit: WRITE SAME(16) refused; zeroes are written from now on");
			return -EOPNOTSUPP;
		}
		if (err)
			return fail("zero (WRITE SAME)", err, &r, true);
		__atomic_store_n(&x->ws, WS_YES, __ATOMIC_RELAXED);
		lba += now;
		n -= now;
	}
	return 0;
}

static int hbakit_zero(void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
	struct lunx *x = ((struct conn *)handle)->x;
	if (!aligned(x, count, offset))
		return -1;
	uint64_t lba = offset / x->bs, n = count / x->bs;
	if (__atomic_load_n(&x->ws, __ATOMIC_RELAXED) != WS_NO) {
		int err = write_same(x, lba, n, flags & NBDKIT_FLAG_MAY_TRIM);
		if (err != -EOPNOTSUPP)
			return err ? err : fua_after(x, flags);
	}
	if (flags & NBDKIT_FLAG_FAST_ZERO) {
		nbdkit_set_error(ENOTSUP);
		return -1;
	}
	/* No WRITE SAME: write zeroes, a max transfer (at most ZERO_LEN) at a time. */
	uint32_t per = (x->max_xfer && x->max_xfer < ZERO_LEN ? x->max_xfer : ZERO_LEN) / x->bs;
	while (n) {
		struct hbk_blk_io io = {
			.lun = x->lun, .op = HBK_BLK_WRITE, .fua = flags & NBDKIT_FLAG_FUA,
			.lba = lba, .nblocks = (uint32_t)(n < per ? n : per), .buf = zeroes,
		};
		int err = blk(&io);
		if (err)
			return fail("zero (write)", err, &io.result, true);
		lba += io.nblocks;
		n -= io.nblocks;
	}
	return 0;
}

/*
 * Extents from GET LBA STATUS: each descriptor is mapped (data) or
 * deallocated/anchored (a hole, reading as zeroes when LBPRZ).  Asks again
 * from where the answer ended until the range is covered.
 */
static int hbakit_extents(void *handle, uint32_t count, uint64_t offset, uint32_t flags,
			  struct nbdkit_extents *ext)
{
	const struct lunx *x = ((struct conn *)handle)->x;
	uint64_t lba = offset / x->bs, end = (offset + count + x->bs - 1) / x->bs;
	uint8_t d[8 + 16 * 64];
	while (lba < end) {
		uint8_t cdb[16] = { OP_SAI16, SA_GET_LBA_STAT };
		struct hbk_scsi_result r;
		put_be64(cdb + 2, lba);
		put_be32(cdb + 10, sizeof(d));
		int err = scsi(x->lun, cdb, 16, HBK_DIR_READ, d, sizeof(d), &r);
		if (err)
			return fail("extents (GET LBA STATUS)", err, &r, false);
		uint64_t have = r.bytes < 8 ? 0 : (r.bytes - 8) / 16;
		uint64_t said = get_be32(d) < 4 ? 0 : (get_be32(d) - 4) / 16;
		uint64_t ndesc = have < said ? have : said, from = lba;
		for (uint64_t i = 0; i < ndesc; i++) {
			const uint8_t *p = d + 8 + 16 * i;
			uint64_t start = get_be64(p), len = get_be32(p + 8);
			if (start > lba || start + len <= lba)
				break;   /* a gap or a step back: stop trusting this answer */
			/* PROVISIONING STATUS (SBC-4): 1h deallocated and 2h
			 * anchored have no data; 0h mapped or unknown, 3h
			 * mapped and 4h unknown may. */
			unsigned prov = p[12] & 0x0f;
			uint32_t type = prov == 1 || prov == 2 ? NBDKIT_EXTENT_HOLE |
				(x->lbprz ? NBDKIT_EXTENT_ZERO : 0) : 0;
			if (nbdkit_add_extent(ext, lba * x->bs, (start + len - lba) * x->bs, type))
				return -1;
			lba = start + len;
			if ((flags & NBDKIT_FLAG_REQ_ONE) || lba >= end)
				return 0;
		}
		if (lba == from)
			break;   /* no progress: the rest is reported as data */
	}
	if (lba < end && nbdkit_add_extent(ext, lba * x->bs, (end - lba) * x->bs, 0))
		return -1;
	return 0;
}

static struct nbdkit_plugin plugin = {
	.name = "hbakit",
	.longname = "hbakit user-space SCSI controller",
	.version = "1.0",
	.description = "Serves the LUNs of an hbakit controller driver.",
	.unload = hbakit_unload,
	.config = hbakit_config,
	.config_complete = hbakit_config_complete,
	.config_help = hbakit_config_help,
	.magic_config_key = "driver",
	.after_fork = hbakit_after_fork,
	.cleanup = hbakit_cleanup,
	.list_exports = hbakit_list_exports,
	.default_export = hbakit_default_export,
	.open = hbakit_open,
	.close = hbakit_close,
	.get_size = hbakit_get_size,
	.block_size = hbakit_block_size,
	.can_write = hbakit_can_write,
	.can_flush = hbakit_can_flush,
	.can_fua = hbakit_can_fua,
	.can_multi_conn = hbakit_can_multi_conn,
	.can_trim = hbakit_can_trim,
	.can_zero = hbakit_can_zero,
	.can_fast_zero = hbakit_can_fast_zero,
	.can_extents = hbakit_can_extents,
	.is_rotational = hbakit_is_rotational,
	.pread = hbakit_pread,
	.pwrite = hbakit_pwrite,
	.flush = hbakit_flush,
	.trim = hbakit_trim,
	.zero = hbakit_zero,
	.extents = hbakit_extents,
	.errno_is_preserved = 0,
};

struct nbdkit_plugin *plugin_init(void);   /* for -Wmissing-prototypes */
NBDKIT_REGISTER_PLUGIN(plugin)
