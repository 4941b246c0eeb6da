/* SPDX-License-Identifier: MIT */
/*
 * Tests of the contract checker, rule by rule (HBK-C01..C12): each opens a
 * controller on a misbehaving driver from tests/drivers/, commits the seed's
 * mistake, and asserts that the rule fired, that the host neither crashed
 * nor hung (every wait is bounded), and that good I/O still works wherever
 * the rule lets the controller keep serving.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hbk/host.h"
#include "tests/lib/testlib.h"

#define BS        512u
#define TRIGGER   4242u   /* tests/drivers/lib/tdrv.h: TDRV_TRIGGER_LBA */
#define WAIT_MS   5000u   /* bound of every wait for an outcome */
#define NBLK      8u

/* ---- Fixture: one controller per test, closed by the teardown ------------- */

static struct hbk_ctl *ctl;
static bool capturing;

static int teardown(void **state)
{
	(void)state;
	if (capturing) {
		tl_capture_end();
		capturing = false;
	}
	hbk_ctl_close(ctl);
	ctl = NULL;
	return 0;
}

static void capture_begin(void)
{
	tl_capture_begin();
	capturing = true;
}

static const char *capture_end(void)
{
	capturing = false;
	return tl_capture_end();
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Opens tests/drivers/<name> (driver args: NULL-terminated list). */
static int open_drv(const char *name, enum hbk_ctl_mode mode, const char *const *args,
		    uint32_t call_ms, uint32_t task_ms)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "tests/drivers/%s", name);
	return tl_open(rel, mode, args, call_ms, task_ms, &ctl);
}

/* open_drv with the open's wait for the first LUN (settle_ms) given, for
 * the cases that wait it out: tl_open's is 3 s. */
static int open_drv_settle(const char *name, enum hbk_ctl_mode mode, const char *const *args,
			   uint32_t settle_ms)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "tests/drivers/%s", name);
	struct hbk_ctl_opts o = { .driver = tl_path(rel), .driver_args = args, .mode = mode,
				  .settle_ms = settle_ms };
	return hbk_ctl_open(&o, &ctl);
}

/* Opens and requires a controller with its LUN. */
static struct hbk_lun *open_lun(const char *name, enum hbk_ctl_mode mode, const char *const *args,
				uint32_t call_ms, uint32_t task_ms)
{
	assert_int_equal(open_drv(name, mode, args, call_ms, task_ms), 0);
	assert_non_null(ctl);
	assert_int_equal(hbk_ctl_lun_count(ctl), 1);
	struct hbk_lun *l = hbk_ctl_lun(ctl, 0);
	assert_non_null(l);
	assert_int_equal(tl_info(l).block_size, BS);
	return l;
}

static uint64_t viol(unsigned rule)
{
	struct hbk_ctl_stats s;
	hbk_ctl_stats(ctl, &s);
	return s.violations[rule];
}

/* Bounded wait for violations[rule] >= min; the counter may be bumped by
 * another host thread just after the I/O that caused it completed. */
static bool wait_viol(unsigned rule, uint64_t min)
{
	uint64_t end = now_ms() + WAIT_MS;
	while (viol(rule) < min) {
		if (now_ms() > end)
			return false;
		usleep(1000);
	}
	return true;
}

/* Writes a pattern at lba, reads it back and checks it. */
static void good_io(struct hbk_lun *l, uint64_t lba, uint32_t seed)
{
	static _Alignas(4096) uint8_t wbuf[NBLK * BS], rbuf[NBLK * BS];
	tl_fill(wbuf, lba, NBLK, BS, seed);
	assert_int_equal(tl_rw(l, true, lba, NBLK, wbuf), 0);
	memset(rbuf, 0, sizeof(rbuf));
	assert_int_equal(tl_rw(l, false, lba, NBLK, rbuf), 0);
	assert_true(tl_check(rbuf, lba, NBLK, BS, seed));
}

/* ---- Asynchronous block I/O with a bounded wait ----------------------------- */

/* Static storage: a late completion (after a failed assertion) must never
 * land on a dead stack frame. */
struct aio {
	struct hbk_blk_io io;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	_Alignas(64) uint8_t buf[BS];
};
static struct aio aios[8];

static void aio_done(struct hbk_blk_io *io)
{
	struct aio *a = io->priv;
	pthread_mutex_lock(&a->lock);
	a->done = true;
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

/* Submits a one-block WRITE of a pattern at lba. */
static struct aio *aio_write(unsigned i, struct hbk_lun *l, uint64_t lba)
{
	struct aio *a = &aios[i];
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	a->done = false;
	tl_fill(a->buf, lba, 1, BS, 7);
	memset(&a->io, 0, sizeof(a->io));
	a->io.lun = l;
	a->io.op = HBK_BLK_WRITE;
	a->io.lba = lba;
	a->io.nblocks = 1;
	a->io.buf = a->buf;
	a->io.done = aio_done;
	a->io.priv = a;
	assert_int_equal(hbk_blk_submit(&a->io), 0);
	return a;
}

static bool aio_wait(struct aio *a, uint32_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&a->lock);
	int rc = 0;
	while (!a->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&a->cond, &a->lock, &ts);
	bool done = a->done;
	pthread_mutex_unlock(&a->lock);
	return done;
}

/* Synchronous one-block I/O that also returns the SCSI result. */
static int rw_result(struct hbk_lun *l, bool write, uint64_t lba, struct hbk_scsi_result *res)
{
	static _Alignas(4096) uint8_t buf[BS];
	struct hbk_blk_io io;
	memset(&io, 0, sizeof(io));
	tl_fill(buf, lba, 1, BS, 3);
	io.lun = l;
	io.op = write ? HBK_BLK_WRITE : HBK_BLK_READ;
	io.lba = lba;
	io.nblocks = 1;
	io.buf = buf;
	int err = hbk_blk_exec(&io);
	*res = io.result;
	return err;
}

static void assert_contains(const char *text, const char *what)
{
	if (!strstr(text, what))
		fail_msg("expected \"%s\" in the log", what);
}

/* The controller is dead: it says so and refuses new I/O at once. */
static void assert_dead(struct hbk_lun *l)
{
	static _Alignas(4096) uint8_t buf[BS];
	assert_false(hbk_ctl_alive(ctl));
	assert_int_equal(tl_rw(l, false, 0, 1, buf), -ENODEV);
	uint64_t t0 = now_ms();
	hbk_ctl_close(ctl);
	ctl = NULL;
	assert_true(now_ms() - t0 < 3000);
}

/* ---- HBK-C01: I/O entry point bound to a custom queue ----------------------- */

static void c01_case(const char *const *args, const char *entry)
{
	capture_begin();
	int rc = open_drv("bad_queue_binding", HBK_MODE_AUTO, args, 0, 0);
	const char *out = capture_end();
	assert_int_equal(rc, -EPERM);
	assert_null(ctl);
	assert_contains(out, "HBK-C01");
	assert_contains(out, entry);
	assert_contains(out, "'MyParallelIOQueue'");
}

static void test_c01_process_task_on_custom_queue(void **state)
{
	(void)state;
	c01_case(NULL, "PROCESS_TASK");
}

static void test_c01_process_bundled_on_custom_queue(void **state)
{
	(void)state;
	static const char *const args[] = { "entry=bundled", NULL };
	c01_case(args, "PROCESS_BUNDLED");
}

/* ---- HBK-C02: create target on the Default queue ------------------------------ */

static void test_c02_create_target_on_default_refused(void **state)
{
	(void)state;
	capture_begin();
	int rc = open_drv("create_on_default", HBK_MODE_AUTO, NULL, 0, 0);
	const char *out = capture_end();
	assert_int_equal(rc, 0);
	assert_contains(out, "HBK-C02");
	const char *p = strstr(out, "create_on_default: rc=");
	assert_non_null(p);
	int drc = 0;
	unsigned long long ms = 0;
	assert_int_equal(sscanf(p, "create_on_default: rc=%d ms=%llu", &drc, &ms), 2);
	assert_int_equal(drc, -EDEADLK);
	assert_true(ms < 1000);             /* at once, not after a deadlock */
	assert_int_equal(viol(2), 1);
	/* The driver's fallback from its AuxiliaryQueue made the LUN. */
	assert_int_equal(hbk_ctl_lun_count(ctl), 1);
	good_io(hbk_ctl_lun(ctl, 0), 0, 1);
}

/* ---- HBK-C03: bundled completion of a slot the driver does not own ------------ */

/* "A B" (or "A") as the NULL-terminated argument list args of two (one);
 * first holds A. */
static void driver_args(const char *spec, char *first, size_t n, const char **args)
{
	const char *second = strchr(spec, ' ');
	snprintf(first, n, "%.*s", second ? (int)(second - spec) : (int)strlen(spec), spec);
	args[0] = first;
	args[1] = second ? second + 1 : NULL;
	args[2] = NULL;
}

static void c03_case(const char *fault, const char *logged, const char *driver_says)
{
	char first[32];
	const char *args[3];
	driver_args(fault, first, sizeof(first), args);
	capture_begin();
	struct hbk_lun *l = open_lun("bundled_unowned", HBK_MODE_AUTO, args, 0, 0);
	assert_true(hbk_ctl_bundled(ctl));
	good_io(l, 0, 1);
	assert_int_equal(viol(3), 0);
	struct hbk_scsi_result r;
	assert_int_equal(rw_result(l, true, TRIGGER, &r), 0);  /* the real task is fine */
	assert_true(wait_viol(3, 1));
	good_io(l, 64, 2);
	const char *out = capture_end();
	assert_contains(out, "HBK-C03");
	assert_contains(out, logged);
	if (driver_says)
		assert_contains(out, driver_says);
	assert_true(hbk_ctl_alive(ctl));
}

/* Through the runtime's call: the runtime refuses it, so the host never
 * sees a completion it could take for a reissued slot's. */
static void test_c03_never_issued_slot(void **state)
{
	(void)state;
	c03_case("fault=never", "slot 63, which is not at the driver", "bundled_unowned: rc=-114");
}

static void test_c03_double_completion(void **state)
{
	(void)state;
	c03_case("fault=double", "not at the driver: never issued or completed twice",
		 "bundled_unowned: rc=-114");
}

/* The same as messages of the driver's own, past the runtime: the host
 * refuses them. */
static void test_c03_never_issued_slot_raw(void **state)
{
	(void)state;
	c03_case("fault=never via=raw", "slot 63, which the driver does not own", NULL);
}

static void test_c03_double_completion_raw(void **state)
{
	(void)state;
	c03_case("fault=double via=raw", "already completed", NULL);
}

static void test_c03_out_of_range_slot(void **state)
{
	(void)state;
	c03_case("fault=range", "slot 999, out of range", NULL);
}

static void test_c03_too_many_slots_refused_by_runtime(void **state)
{
	(void)state;
	/* The runtime refuses it (and tells the driver) instead of sending it. */
	c03_case("fault=count", "with 33 slots", "bundled_unowned: rc=-22");
}

/* ---- HBK-C04: completion by the wrong path ----------------------------------- */

static void c04_case(enum hbk_ctl_mode mode, const char *fault, const char *logged)
{
	const char *args[] = { fault, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("wrong_path", mode, args, 0, 0);
	assert_int_equal(hbk_ctl_bundled(ctl), mode != HBK_MODE_PER_TASK);
	struct hbk_scsi_result r;
	assert_int_equal(rw_result(l, true, TRIGGER, &r), 0);
	assert_true(wait_viol(4, 1));
	good_io(l, 0, 1);
	const char *out = capture_end();
	assert_contains(out, "HBK-C04");
	assert_contains(out, logged);
}

static void test_c04_bundled_completion_of_per_task_task(void **state)
{
	(void)state;
	c04_case(HBK_MODE_PER_TASK, "fault=raw", "arrived by the per-task path");
}

static void test_c04_bundled_completion_without_bundled_handle(void **state)
{
	(void)state;
	c04_case(HBK_MODE_PER_TASK, "fault=api", "without the bundled handle");
}

static void test_c04_parallel_completion_of_bundled_slot(void **state)
{
	(void)state;
	c04_case(HBK_MODE_AUTO, "fault=raw", "arrived by the bundled path");
}

/* ---- HBK-C05: malformed response ---------------------------------------------- */

static void c05_case(enum hbk_ctl_mode mode, const char *fault, const char *field)
{
	const char *args[] = { fault, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("bad_response", mode, args, 0, 0);
	good_io(l, 0, 1);
	struct hbk_scsi_result r;
	assert_int_equal(rw_result(l, false, TRIGGER, &r), -ENODEV);
	assert_int_equal(r.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_int_equal(r.status, HBK_DS_DELIVERY_FAILURE);
	assert_int_equal(viol(5), 1);
	good_io(l, 64, 2);
	const char *out = capture_end();
	assert_contains(out, "HBK-C05");
	assert_contains(out, field);
}

static void test_c05_bad_version(void **state)
{
	(void)state;
	c05_case(HBK_MODE_AUTO, "fault=version", "version is not 1");
}

static void test_c05_wrong_task_id(void **state)
{
	(void)state;
	c05_case(HBK_MODE_AUTO, "fault=taskid", "controller_task_id");
}

static void test_c05_bytes_over_requested(void **state)
{
	(void)state;
	c05_case(HBK_MODE_AUTO, "fault=bytes", "bytes_transferred exceeds");
}

static void test_c05_sense_too_long(void **state)
{
	(void)state;
	c05_case(HBK_MODE_AUTO, "fault=sense", "sense_len exceeds 252");
}

static void test_c05_status_not_a_status(void **state)
{
	(void)state;
	c05_case(HBK_MODE_AUTO, "fault=status", "completion_status is not a SCSI status");
}

static void test_c05_delivery_status_not_one(void **state)
{
	(void)state;
	c05_case(HBK_MODE_PER_TASK, "fault=delivery", "completion_status is not a delivery status");
}

static void test_c05_bad_version_per_task(void **state)
{
	(void)state;
	c05_case(HBK_MODE_PER_TASK, "fault=version", "per-task completion");
}

/* GOOD with fewer bytes than asked is a legal response, but a block READ
 * that got nothing did not read: it fails with -EIO, on both paths, and
 * the buffer is not taken for data. */
static void test_short_transfer_is_an_error(void **state)
{
	(void)state;
	for (int mode = HBK_MODE_PER_TASK; mode <= HBK_MODE_BUNDLED; mode++) {
		const char *args[] = { "fault=short", NULL };
		struct hbk_lun *l = open_lun("bad_response", (enum hbk_ctl_mode)mode, args, 0, 0);
		struct hbk_scsi_result r;
		assert_int_equal(rw_result(l, false, TRIGGER, &r), -EIO);
		assert_int_equal(r.status, HBK_STATUS_GOOD);
		assert_int_equal(r.bytes, 0);
		assert_int_equal(viol(5), 0);
		good_io(l, 0, 1);
		teardown(NULL);
	}
}

/* ---- HBK-C06: bundled handle over-released ------------------------------------ */

static void c06_case(const char *fault)
{
	const char *args[] = { fault, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("over_release", HBK_MODE_AUTO, args, 0, 0);
	assert_true(hbk_ctl_bundled(ctl));
	good_io(l, 0, 1);
	assert_true(wait_viol(6, 1));
	good_io(l, 64, 2);
	assert_true(hbk_ctl_alive(ctl));
	const char *out = capture_end();
	assert_contains(out, "HBK-C06");
	assert_contains(out, "over-release of the bundled completion handle");
}

static void test_c06_release_per_bundled_call(void **state)
{
	(void)state;
	c06_case("fault=release");
}

static void test_c06_retain_once_release_twice(void **state)
{
	(void)state;
	c06_case("fault=retain");
}

/* ---- HBK-C07: per-task handle misuse ------------------------------------------ */

static void c07_case(const char *fault, uint64_t min, const char *logged)
{
	char first[32];
	const char *args[3];
	driver_args(fault, first, sizeof(first), args);
	capture_begin();
	struct hbk_lun *l = open_lun("double_complete", HBK_MODE_PER_TASK, args, 0, 0);
	assert_false(hbk_ctl_bundled(ctl));
	good_io(l, 0, 1);
	static _Alignas(4096) uint8_t buf[BS];
	tl_fill(buf, TRIGGER, 1, BS, 9);
	assert_int_equal(tl_rw(l, true, TRIGGER, 1, buf), 0);
	assert_true(wait_viol(7, min));
	good_io(l, 64, 2);
	assert_true(hbk_ctl_alive(ctl));
	const char *out = capture_end();
	assert_contains(out, "HBK-C07");
	assert_contains(out, logged);
}

static void test_c07_completed_twice(void **state)
{
	(void)state;
	c07_case("fault=twice", 1, "which is not at the driver: completed twice");
}

static void test_c07_completed_twice_raw(void **state)
{
	(void)state;
	c07_case("fault=twice via=raw", 1, "which is not outstanding");
}

static void test_c07_completed_and_final_status(void **state)
{
	(void)state;
	c07_case("fault=final", 1, "answered with a final status after ParallelTaskCompletion");
}

static void test_c07_handle_used_after_last_release(void **state)
{
	(void)state;
	c07_case("fault=stale", 1, "after its last release");
}

/*
 * A second completion that comes late, once the host gave the slot to the
 * next command (tests/drivers/late_double): the write at TRIGGER completes
 * twice, 200 ms apart, and the read after it, on the same slot, is held
 * 600 ms.  The repeated completion carries the write's task_tag, so the
 * runtime refuses it (C03 bundled, C07 per task) instead of ending the
 * read early with data the device has not moved.
 */
static void late_double_case(enum hbk_ctl_mode mode, unsigned rule, const char *logged)
{
	static _Alignas(4096) uint8_t wbuf[BS], rbuf[BS];
	capture_begin();
	struct hbk_lun *l = open_lun("late_double", mode, NULL, 0, 0);
	tl_fill(wbuf, 5000, 1, BS, 2);
	assert_int_equal(tl_rw(l, true, 5000, 1, wbuf), 0);
	tl_fill(wbuf, TRIGGER, 1, BS, 1);
	assert_int_equal(tl_rw(l, true, TRIGGER, 1, wbuf), 0);
	memset(rbuf, 0, sizeof(rbuf));
	uint64_t t0 = now_ms();
	assert_int_equal(tl_rw(l, false, 5000, 1, rbuf), 0);
	assert_true(now_ms() - t0 >= 550);        /* its own completion, not the write's */
	assert_true(tl_check(rbuf, 5000, 1, BS, 2));
	assert_true(wait_viol(rule, 1));
	assert_true(hbk_ctl_alive(ctl));
	const char *out = capture_end();
	assert_contains(out, logged);
}

static void test_c03_late_double_completion(void **state)
{
	(void)state;
	late_double_case(HBK_MODE_BUNDLED, 3, "whose response is an earlier task's");
}

static void test_c07_late_double_completion(void **state)
{
	(void)state;
	late_double_case(HBK_MODE_PER_TASK, 7, "with the response of an earlier task on its slot");
}

/*
 * A driver that completes a task without filling its response
 * (tests/drivers/noresp): the slot's response, or the one it passes, is an
 * earlier task's, so the runtime refuses the completion and the task stays
 * at the driver, which no longer thinks it holds it.  It does not wait out
 * its 30 s timeout: one escalation grace period (2 s) after the refusal,
 * ABORT TASK gets it back and the application sees TaskTimeoutOccurred.
 */
static void noresp_case(enum hbk_ctl_mode mode, unsigned rule, const char *logged)
{
	capture_begin();
	struct hbk_lun *l = open_lun("noresp", mode, NULL, 0, 0);
	good_io(l, 0, 1);
	uint64_t t0 = now_ms();
	struct aio *a = aio_write(0, l, TRIGGER);
	assert_true(aio_wait(a, 4000));
	assert_true(now_ms() - t0 >= 1500);       /* a late double's task gets its grace */
	assert_int_equal(a->io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_int_equal(a->io.result.status, HBK_DS_TASK_TIMEOUT);
	assert_true(wait_viol(rule, 1));
	assert_int_equal(viol(11), 1);
	assert_true(hbk_ctl_alive(ctl));
	good_io(l, 64, 2);
	const char *out = capture_end();
	assert_contains(out, logged);
	assert_contains(out, "escalating with ABORT_TASK");
}

static void test_c03_completion_without_response_escalates_soon(void **state)
{
	(void)state;
	noresp_case(HBK_MODE_BUNDLED, 3, "whose response is an earlier task's");
}

static void test_c07_completion_without_response_escalates_soon(void **state)
{
	(void)state;
	noresp_case(HBK_MODE_PER_TASK, 7, "with the response of an earlier task on its slot");
}

/* ---- HBK-C08: missing HBA constraint ------------------------------------------- */

static void c08_case(const char *omit, const char *key)
{
	const char *args[] = { omit, NULL };
	capture_begin();
	int rc = open_drv("missing_constraint", HBK_MODE_AUTO, args, 0, 0);
	const char *out = capture_end();
	assert_int_equal(rc, -EINVAL);
	assert_null(ctl);
	assert_contains(out, "HBK-C08");
	assert_contains(out, key);
}

static void test_c08_missing_data_alignment_mask(void **state)
{
	(void)state;
	c08_case("omit=6", "'data alignment mask'");
}

static void test_c08_missing_max_byte_count_read(void **state)
{
	(void)state;
	c08_case("omit=2", "'max byte count (read)'");
}

/* ---- HBK-C09: unusable bundled mapping --------------------------------------- */

static void c09_case(const char *fault, const char *logged)
{
	const char *args[] = { fault, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("null_mapping", HBK_MODE_AUTO, args, 0, 0);
	const char *out = capture_end();
	assert_false(hbk_ctl_bundled(ctl));
	assert_int_equal(viol(9), 1);
	assert_contains(out, "HBK-C09");
	assert_contains(out, logged);
	good_io(l, 0, 1);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(ctl, &s);
	assert_true(s.tasks > 0 && s.hist[0] == s.io_calls); /* one task per call */
}

static void test_c09_accepted_without_mapping(void **state)
{
	(void)state;
	c09_case("fault=nomap", "without mapping them");
}

static void test_c09_mapping_fails(void **state)
{
	(void)state;
	c09_case("fault=enomem", "stays on the per-task path");
}

/* Mapping the buffers without a process_bundled entry point declines the
 * bundled path: no violation, and the per-task path serves (before, the
 * host took the bundled path and each call came back refused). */
static void test_c09_no_process_bundled_stays_per_task(void **state)
{
	(void)state;
	static const char *const args[] = { "fault=noprocess", NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("null_mapping", HBK_MODE_AUTO, args, 0, 0);
	capture_end();
	assert_false(hbk_ctl_bundled(ctl));
	assert_int_equal(viol(9), 0);
	good_io(l, 0, 4);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(ctl, &s);
	assert_true(s.tasks > 0 && s.hist[0] == s.io_calls); /* one task per call */
}

static void test_c09_bundled_required_open_fails(void **state)
{
	(void)state;
	static const char *const args[] = { "fault=nomap", NULL };
	capture_begin();
	int rc = open_drv("null_mapping", HBK_MODE_BUNDLED, args, 0, 0);
	const char *out = capture_end();
	assert_int_equal(rc, -ENOTSUP);
	assert_null(ctl);
	assert_contains(out, "HBK-C09");
}

/* ---- HBK-C10: completion outside the controller's life ------------------------- */

static void c10_before_start(const char *via)
{
	const char *args[] = { "when=init", via, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("early_completion", HBK_MODE_AUTO, args, 0, 0);
	const char *out = capture_end();
	assert_int_equal(viol(10), 1);
	assert_contains(out, "HBK-C10");
	assert_contains(out, "before START");
	good_io(l, 0, 1);
}

static void test_c10_bundled_completion_before_start(void **state)
{
	(void)state;
	c10_before_start("via=bundled");
}

static void test_c10_parallel_completion_before_start(void **state)
{
	(void)state;
	c10_before_start("via=parallel");
}

static void test_c10_bundled_completion_after_stop(void **state)
{
	(void)state;
	static const char *const args[] = { "when=stop", NULL };
	struct hbk_lun *l = open_lun("early_completion", HBK_MODE_AUTO, args, 0, 0);
	assert_true(hbk_ctl_bundled(ctl));
	good_io(l, 0, 1);
	assert_int_equal(viol(10), 0);
	capture_begin();
	uint64_t t0 = now_ms();
	hbk_ctl_close(ctl);
	ctl = NULL;
	const char *out = capture_end();
	assert_true(now_ms() - t0 < 3000);
	assert_contains(out, "HBK-C10");
	assert_contains(out, "after STOP");
}

/* ---- HBK-C11: task timeout and its escalation ----------------------------------- */

static void c11_case(const char *ignore, const char *logged, uint64_t min)
{
	const char *args[] = { ignore, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("drop_task", HBK_MODE_AUTO, args, 0, 300);
	struct aio *a = aio_write(0, l, TRIGGER);
	good_io(l, 0, 1);                  /* other I/O is unaffected meanwhile */
	assert_true(aio_wait(a, WAIT_MS));
	assert_int_equal(a->io.error, -ETIMEDOUT);
	assert_int_equal(a->io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_int_equal(a->io.result.status, HBK_DS_TASK_TIMEOUT);
	assert_true(viol(11) >= min);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(ctl, &s);
	assert_int_equal(s.timeouts, 1);
	assert_true(hbk_ctl_alive(ctl));
	good_io(l, 64, 2);
	const char *out = capture_end();
	assert_contains(out, "HBK-C11");
	assert_contains(out, logged);
}

static void test_c11_timeout_returned_on_abort(void **state)
{
	(void)state;
	c11_case("ignore=none", "escalating with ABORT_TASK", 1);
}

static void test_c11_timeout_returned_on_lun_reset(void **state)
{
	(void)state;
	c11_case("ignore=abort", "escalating with LUN_RESET", 2);
}

/* An ABORT TASK answered FUNCTION COMPLETE while the driver keeps the task
 * is reported from the abort itself; the escalation goes on to the LUN
 * RESET, which gives the task back. */
static void test_c11_abort_complete_but_task_kept(void **state)
{
	(void)state;
	c11_case("ignore=lie-abort", "answered FUNCTION COMPLETE but kept the task", 2);
}

static void test_c11_ignored_escalation_declares_hung(void **state)
{
	(void)state;
	static const char *const args[] = { "ignore=all", NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("drop_task", HBK_MODE_AUTO, args, 0, 300);
	struct aio *a = aio_write(0, l, TRIGGER);
	assert_true(aio_wait(a, WAIT_MS));
	const char *out = capture_end();
	assert_int_equal(a->io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_true(a->io.result.status == HBK_DS_TASK_TIMEOUT ||
		    a->io.result.status == HBK_DS_DEVICE_NOT_RESPONDING);
	assert_contains(out, "TARGET_RESET");
	assert_true(viol(11) >= 3);
	assert_true(viol(12) >= 1);        /* the driver is declared hung */
	assert_dead(l);
}

/*
 * A reset answered FUNCTION COMPLETE while the driver keeps a task it
 * covers (tests/drivers/drop_task ignore=lie) is reported at once, from
 * the reset itself, not only once the escalation has run out.  Nothing
 * timed out here: the task timeout is 30 s.
 */
static void c11_reset_keeps(enum hbk_ctl_mode mode, enum hbk_tmf op, const char *logged)
{
	static const char *const args[] = { "ignore=lie", NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("drop_task", mode, args, 0, 0);
	good_io(l, 0, 1);
	struct aio *a = aio_write(0, l, TRIGGER);
	good_io(l, 64, 2);                 /* taken after the write: the write is at the driver */
	assert_int_equal(hbk_sam_tmf(ctl, 0, 0, op, NULL), HBK_SR_FUNCTION_COMPLETE);
	assert_true(wait_viol(11, 1));
	assert_false(aio_wait(a, 0));      /* still held */
	assert_int_equal(viol(11), 1);
	const char *out = capture_end();
	assert_contains(out, "HBK-C11");
	assert_contains(out, logged);
	assert_contains(out, "answered FUNCTION COMPLETE but kept 1 task(s) it covers");
}

static void test_c11_lun_reset_complete_but_task_kept(void **state)
{
	(void)state;
	c11_reset_keeps(HBK_MODE_BUNDLED, HBK_TMF_LUN_RESET, "LUN RESET of target 0 lun 0 answered");
}

static void test_c11_target_reset_complete_but_task_kept_per_task(void **state)
{
	(void)state;
	c11_reset_keeps(HBK_MODE_PER_TASK, HBK_TMF_TARGET_RESET, "TARGET RESET of target 0 answered");
}

/* A reset that gives the task back (ignore=abort) before answering
 * FUNCTION COMPLETE is no violation. */
static void test_c11_lun_reset_giving_tasks_back_is_sound(void **state)
{
	(void)state;
	static const char *const args[] = { "ignore=abort", NULL };
	struct hbk_lun *l = open_lun("drop_task", HBK_MODE_AUTO, args, 0, 0);
	struct aio *a = aio_write(0, l, TRIGGER);
	good_io(l, 64, 2);                 /* taken after the write: the write is at the driver */
	assert_int_equal(hbk_sam_tmf(ctl, 0, 0, HBK_TMF_LUN_RESET, NULL), HBK_SR_FUNCTION_COMPLETE);
	assert_true(aio_wait(a, WAIT_MS));
	assert_int_equal(a->io.error, 0);
	good_io(l, 128, 3);
	assert_int_equal(viol(11), 0);
}

/*
 * Task management bound to a queue of its own (tests/drivers/reset_race)
 * runs while the submitter is still handing slots to process_bundled on
 * the Default queue.  A reset that begins then cannot cover a task the
 * driver has not received: its FUNCTION COMPLETE is no violation, and the
 * task, handed over after the reset, completes normally.
 */
static void test_c11_reset_during_hand_over_is_sound(void **state)
{
	(void)state;
	int sig[2];
	assert_int_equal(pipe(sig), 0);
	/* Inherited by the driver (not close-on-exec), above the descriptors
	 * 3 and 4 its channels take there. */
	int w = fcntl(sig[1], F_DUPFD, 10);
	assert_true(w >= 10);
	close(sig[1]);
	char fdarg[32];
	snprintf(fdarg, sizeof(fdarg), "signal-fd=%d", w);
	const char *const args[] = { "how=gate", fdarg, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("reset_race", HBK_MODE_BUNDLED, args, 0, 0);
	close(w);
	good_io(l, 0, 1);
	struct aio *a = aio_write(0, l, TRIGGER);
	struct pollfd p = { .fd = sig[0], .events = POLLIN };
	char b;
	assert_int_equal(poll(&p, 1, WAIT_MS), 1); /* process_bundled has the write */
	assert_int_equal(read(sig[0], &b, 1), 1);
	close(sig[0]);
	assert_int_equal(hbk_sam_tmf(ctl, 0, 0, HBK_TMF_LUN_RESET, NULL), HBK_SR_FUNCTION_COMPLETE);
	assert_true(aio_wait(a, WAIT_MS));
	assert_int_equal(a->io.error, 0);
	good_io(l, 64, 2);
	assert_int_equal(viol(11), 0);
	const char *out = capture_end();
	if (strstr(out, "HBK-C11"))
		fail_msg("unexpected HBK-C11 in the log:\n%s", out);
}

/* The same driver answering a reset FUNCTION COMPLETE while it keeps a
 * task it had received (how=lie): reported, whatever queue the reset
 * runs on. */
static void test_c11_reset_on_own_queue_keeping_a_task(void **state)
{
	(void)state;
	static const char *const args[] = { "how=lie", NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("reset_race", HBK_MODE_BUNDLED, args, 0, 0);
	struct aio *a = aio_write(0, l, TRIGGER);
	good_io(l, 64, 2);                 /* taken after the write: the write is at the driver */
	assert_int_equal(hbk_sam_tmf(ctl, 0, 0, HBK_TMF_LUN_RESET, NULL), HBK_SR_FUNCTION_COMPLETE);
	assert_true(wait_viol(11, 1));
	assert_true(aio_wait(a, WAIT_MS)); /* the driver completes it later all the same */
	assert_int_equal(viol(11), 1);
	const char *out = capture_end();
	assert_contains(out, "LUN RESET of target 0 lun 0 answered FUNCTION COMPLETE but kept 1 task(s)");
}

/*
 * An idle controller's task timer sleeps: with no task at the driver and
 * nothing in the submission ring it does not wake at all.  A task that
 * comes then still times out when it should.
 */
static void test_c11_idle_timer_sleeps_and_still_fires(void **state)
{
	(void)state;
	static const char *const args[] = { "ignore=none", NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("drop_task", HBK_MODE_AUTO, args, 400, 300);
	good_io(l, 0, 1);
	usleep(800 * 1000);                /* past every deadline the I/O left */
	struct hbk_ctl_stats s0, s1;
	hbk_ctl_stats(ctl, &s0);
	usleep(1000 * 1000);
	hbk_ctl_stats(ctl, &s1);
	uint64_t wakes = s1.timer_wakes - s0.timer_wakes;
	printf("# timer wake-ups in 1 s idle: %llu\n", (unsigned long long)wakes);
	assert_true(wakes <= 1);
	uint64_t t0 = now_ms();
	struct aio *a = aio_write(0, l, TRIGGER);
	assert_true(aio_wait(a, WAIT_MS));
	uint64_t took = now_ms() - t0;
	assert_int_equal(a->io.error, -ETIMEDOUT);
	assert_int_equal(a->io.result.status, HBK_DS_TASK_TIMEOUT);
	assert_true(took >= 300);
	assert_true(took < 3000);
	const char *out = capture_end();
	assert_contains(out, "escalating with ABORT_TASK");
}

/* Tasks handed over one after another with a short timeout: the timer wakes
 * when one can come due, not for every task handed over (each kicked it
 * while their deadlines fell in the coarse tick of its last pass). */
static void test_c11_busy_timer_is_not_kicked_per_task(void **state)
{
	(void)state;
	static const char *const args[] = { "ignore=none", NULL };
	struct hbk_lun *l = open_lun("drop_task", HBK_MODE_AUTO, args, 0, 200);
	struct hbk_ctl_stats s0, s1;
	hbk_ctl_stats(ctl, &s0);
	unsigned n = 0;
	for (uint64_t end = now_ms() + 1000; now_ms() < end; n++)
		good_io(l, n % 64, n);
	hbk_ctl_stats(ctl, &s1);
	uint64_t wakes = s1.timer_wakes - s0.timer_wakes;
	printf("# %u I/Os in 1 s, task timeout 200 ms: %llu timer wake-ups\n", n,
	       (unsigned long long)wakes);
	/* One a deadline that passes (five in the second) and the first task. */
	assert_true(wakes <= 20);
}

/* ---- HBK-C12: the driver dies, hangs or sends garbage ---------------------------- */

static void c12_crash(const char *how, unsigned n)
{
	char after[32];
	snprintf(after, sizeof(after), "after=%u", n);
	const char *args[] = { how, after, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("crash_mid_io", HBK_MODE_AUTO, args, 0, 0);
	good_io(l, 0, 1);
	struct aio *a[4];
	for (unsigned i = 0; i < n; i++)
		a[i] = aio_write(i, l, TRIGGER + i);
	for (unsigned i = 0; i < n; i++) {
		assert_true(aio_wait(a[i], WAIT_MS));
		assert_int_equal(a[i]->io.error, -ENODEV);
		assert_int_equal(a[i]->io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
		assert_int_equal(a[i]->io.result.status, HBK_DS_DEVICE_NOT_PRESENT);
	}
	assert_true(wait_viol(12, 1));
	const char *out = capture_end();
	assert_contains(out, "HBK-C12");
	assert_dead(l);
}

static void test_c12_driver_exits_mid_io(void **state)
{
	(void)state;
	c12_crash("how=exit", 4);
}

static void test_c12_driver_aborts_mid_io(void **state)
{
	(void)state;
	c12_crash("how=abort", 1);
}

static void c12_hang(enum hbk_ctl_mode mode)
{
	capture_begin();
	struct hbk_lun *l = open_lun("stall", mode, NULL, 500, 0);
	good_io(l, 0, 1);
	uint64_t t0 = now_ms();
	struct aio *a = aio_write(0, l, TRIGGER);
	assert_true(aio_wait(a, WAIT_MS));
	assert_true(now_ms() - t0 >= 400);
	assert_int_equal(a->io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_int_equal(a->io.result.status, HBK_DS_DEVICE_NOT_RESPONDING);
	assert_int_equal(viol(12), 1);
	const char *out = capture_end();
	assert_contains(out, "HBK-C12");
	assert_contains(out, "it is hung");
	assert_dead(l);
}

static void test_c12_driver_hangs_in_process_bundled(void **state)
{
	(void)state;
	c12_hang(HBK_MODE_AUTO);
}

static void test_c12_driver_hangs_in_per_task_call(void **state)
{
	(void)state;
	c12_hang(HBK_MODE_PER_TASK);
}

/* A framing fault cuts the connection and fails the outstanding task. */
static void c12_garbage(const char *kind, const char *reason)
{
	char arg[64];
	snprintf(arg, sizeof(arg), "garbage=%s", kind);
	const char *args[] = { arg, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("garbage", HBK_MODE_AUTO, args, 0, 0);
	good_io(l, 0, 1);
	struct aio *a = aio_write(0, l, TRIGGER);
	assert_true(aio_wait(a, WAIT_MS));
	assert_int_equal(a->io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_int_equal(a->io.result.status, HBK_DS_DELIVERY_FAILURE);
	assert_int_equal(viol(12), 1);
	const char *out = capture_end();
	assert_contains(out, "HBK-C12");
	assert_contains(out, reason);
	assert_dead(l);
}

static void test_c12_garbage_wrong_magic(void **state)
{
	(void)state;
	c12_garbage("magic", "wrong magic");
}

static void test_c12_garbage_truncated(void **state)
{
	(void)state;
	c12_garbage("short", "shorter than its header");
}

static void test_c12_garbage_length_mismatch(void **state)
{
	(void)state;
	c12_garbage("len", "declared length differs");
}

static void test_c12_garbage_unknown_type(void **state)
{
	(void)state;
	c12_garbage("type", "unknown message type");
}

static void test_c12_garbage_call_on_event_channel(void **state)
{
	(void)state;
	c12_garbage("call", "unexpected START");
}

static void test_c12_garbage_oversized(void **state)
{
	(void)state;
	c12_garbage("big", "larger than any valid message");
}

static void test_c12_garbage_ring_tail(void **state)
{
	(void)state;
	c12_garbage("ringtail", "completion ring's tail ran past");
}

static void test_c12_call_flood(void **state)
{
	(void)state;
	c12_garbage("flood", "driver -> host calls wait for their replies");
}

/* Content faults in a well-framed message are HBK-C03; the controller lives. */
static void c12_content(const char *kind, uint64_t min, const char *logged)
{
	char arg[64];
	snprintf(arg, sizeof(arg), "garbage=%s", kind);
	const char *args[] = { arg, NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("garbage", HBK_MODE_AUTO, args, 0, 0);
	struct hbk_scsi_result r;
	assert_int_equal(rw_result(l, true, TRIGGER, &r), 0);
	assert_true(wait_viol(3, min));
	assert_int_equal(viol(12), 0);
	assert_true(hbk_ctl_alive(ctl));
	good_io(l, 0, 1);
	const char *out = capture_end();
	assert_contains(out, "HBK-C03");
	assert_contains(out, logged);
}

static void test_c12_garbage_count_40_is_c03(void **state)
{
	(void)state;
	c12_content("count40", 1, "BUNDLED_COMPLETION with 40 slots");
}

static void test_c12_garbage_indices_out_of_range_are_c03(void **state)
{
	(void)state;
	c12_content("index", 2, "slot 1000, out of range");
}

static void test_c12_ring_indices_out_of_range_are_c03(void **state)
{
	(void)state;
	c12_content("ringindex", 2, "(completion ring) of slot 1000, out of range");
}

/* The shared region is sealed at its size: a driver that truncates it
 * fails to, and the host (which would die of SIGBUS on its next access to
 * a slot or the arena) keeps serving. */
static void test_c12_region_cannot_shrink(void **state)
{
	(void)state;
	const char *args[] = { "garbage=shrink", NULL };
	capture_begin();
	struct hbk_lun *l = open_lun("garbage", HBK_MODE_AUTO, args, 0, 0);
	struct hbk_scsi_result r;
	assert_int_equal(rw_result(l, true, TRIGGER, &r), 0);
	good_io(l, 0, 1);
	assert_true(hbk_ctl_alive(ctl));
	const char *out = capture_end();
	assert_contains(out, "truncating the shared region: Operation not permitted");
}

/* ---- Past the runtime's calls (tests/drivers/stray) ------------------------------ */

/* Opens the stray driver with fault=KIND (and one more argument). */
static struct hbk_lun *open_stray(const char *kind, enum hbk_ctl_mode mode, const char *more)
{
	char fault[64];
	snprintf(fault, sizeof(fault), "fault=%s", kind);
	const char *args[] = { fault, more, NULL };
	return open_lun("stray", mode, args, 0, 0);
}

/* A stray store adds a completion ring entry naming a READ's slot, whose
 * response is still the earlier task's.  The host refuses it (the tag is
 * not the task's) instead of ending the READ with that response; the READ
 * completes properly after, and the runtime, finding the tail moved under
 * it, says so and goes on from there. */
static void test_c03_stray_ring_entry_with_stale_response(void **state)
{
	(void)state;
	static _Alignas(4096) uint8_t wbuf[BS], rbuf[BS];
	capture_begin();
	struct hbk_lun *l = open_stray("ring_tail", HBK_MODE_BUNDLED, NULL);
	tl_fill(wbuf, TRIGGER, 1, BS, 5);
	assert_int_equal(tl_rw(l, true, TRIGGER, 1, wbuf), 0);
	memset(rbuf, 0, sizeof(rbuf));
	assert_int_equal(tl_rw(l, false, TRIGGER, 1, rbuf), 0);
	assert_true(tl_check(rbuf, TRIGGER, 1, BS, 5));
	good_io(l, 0, 1);
	good_io(l, 64, 2);
	assert_true(wait_viol(3, 2));
	assert_true(hbk_ctl_alive(ctl));
	const char *out = capture_end();
	assert_contains(out, "with an earlier task's response");
	assert_contains(out, "something else wrote into the shared region");
}

/* The seed's HBK-C04: ParallelTaskCompletion given the bundled handle.
 * The runtime names it before reading anything through the handle. */
static void test_c04_per_task_completion_with_bundled_handle(void **state)
{
	(void)state;
	capture_begin();
	struct hbk_lun *l = open_stray("per_task_for_bundled", HBK_MODE_BUNDLED, NULL);
	good_io(l, TRIGGER, 3);
	assert_true(wait_viol(4, 1));
	assert_int_equal(viol(7), 0);
	const char *out = capture_end();
	assert_contains(out, "ParallelTaskCompletion with the bundled completion handle");
}

static void test_c07_per_task_completion_without_handle(void **state)
{
	(void)state;
	capture_begin();
	struct hbk_lun *l = open_stray("null_action", HBK_MODE_PER_TASK, NULL);
	good_io(l, TRIGGER, 4);
	assert_true(wait_viol(7, 1));
	const char *out = capture_end();
	assert_contains(out, "ParallelTaskCompletion with no handle");
}

/* A VIOLATION for a rule the runtime never reports is forged: not counted
 * under that rule, and the driver is cut off. */
static void test_c12_forged_violation(void **state)
{
	(void)state;
	static _Alignas(4096) uint8_t buf[BS];
	capture_begin();
	struct hbk_lun *l = open_stray("forge_violation", HBK_MODE_AUTO, NULL);
	good_io(l, 0, 1);
	(void)tl_rw(l, false, TRIGGER, 1, buf);
	assert_true(wait_viol(12, 1));
	assert_int_equal(viol(2), 0);
	const char *out = capture_end();
	assert_contains(out, "VIOLATION of rule 2, which the driver runtime never reports");
	assert_dead(l);
}

/* A helper the driver forked dies with it at close: it would keep the
 * arena mapped (the driver leads a process group of its own). */
static void test_close_ends_the_drivers_helpers(void **state)
{
	(void)state;
	char pidfile[64], arg[80], stat[64], st[256];
	snprintf(pidfile, sizeof(pidfile), "/tmp/hbk-stray-%d.pid", (int)getpid());
	snprintf(arg, sizeof(arg), "pidfile=%s", pidfile);
	struct hbk_lun *l = open_stray("fork_helper", HBK_MODE_AUTO, arg);
	good_io(l, TRIGGER, 6);
	FILE *f = fopen(pidfile, "r");
	assert_non_null(f);
	int pid = 0;
	assert_int_equal(fscanf(f, "%d", &pid), 1);
	fclose(f);
	unlink(pidfile);
	assert_int_equal(kill(pid, 0), 0);
	hbk_ctl_close(ctl);
	ctl = NULL;
	/* Gone, or a zombie waiting for its new parent. */
	snprintf(stat, sizeof(stat), "/proc/%d/stat", pid);
	bool ended = false;
	for (unsigned i = 0; i < 500 && !ended; i++) {
		f = fopen(stat, "r");
		ended = !f || (fgets(st, sizeof(st), f) && strstr(st, ") Z "));
		if (f)
			fclose(f);
		if (!ended)
			usleep(10000);
	}
	assert_true(ended);
}

/* The seed's deadlock in the forms HBK-C02's Default-queue check does not
 * see: a start entry point that waits for its own target's creation (the
 * creation's INIT_TARGET needs the call channel START holds), and a driver
 * that holds I/O until create target returned (the creation waits for that
 * I/O).  Both are named as C02, not only as a hung driver or no LUN. */
static void test_c02_start_waits_for_its_target(void **state)
{
	(void)state;
	const char *args[] = { "fault=start_waits", NULL };
	capture_begin();
	int rc = open_drv("stray", HBK_MODE_BUNDLED, args, 500, 0);
	const char *out = capture_end();
	assert_int_not_equal(rc, 0);
	assert_null(ctl);
	assert_contains(out, "HBK-C02 START is stuck while a CREATE_TARGET is in progress");
}

static void test_c02_io_held_until_target_created(void **state)
{
	(void)state;
	const char *args[] = { "fault=hold_until_created", NULL };
	capture_begin();
	int rc = open_drv_settle("stray", HBK_MODE_BUNDLED, args, 1000);   /* stuck: any wait ends so */
	assert_true(wait_viol(2, 1));
	const char *out = capture_end();
	assert_int_equal(rc, 0);
	assert_int_equal(hbk_ctl_lun_count(ctl), 0);
	assert_contains(out, "the open's wait for the first LUN is stuck while a CREATE_TARGET");
}

/* A driver that is slow, not stuck (each task takes 0.5 s, a third of the
 * open's 1.5 s wait for the LUN): the open may give up waiting for the
 * LUN, but no deadlock is claimed. */
static void test_c02_not_for_a_slow_driver(void **state)
{
	(void)state;
	const char *args[] = { "delay-us=500000", NULL };
	capture_begin();
	int rc = open_drv_settle("stall", HBK_MODE_BUNDLED, args, 1500);
	capture_end();
	assert_int_equal(rc, 0);
	assert_int_equal(viol(2), 0);
}

/* Not a driver's mistake: an I/O without a done callback is refused, not
 * called through a NULL pointer when it completes. */
static void test_blk_io_without_done_refused(void **state)
{
	(void)state;
	static _Alignas(4096) uint8_t buf[BS];
	struct hbk_lun *l = open_stray("none", HBK_MODE_AUTO, NULL);
	struct hbk_blk_io io;
	memset(&io, 0, sizeof(io));
	io.lun = l;
	io.op = HBK_BLK_READ;
	io.nblocks = 1;
	io.buf = buf;
	assert_int_equal(hbk_blk_submit(&io), -EINVAL);
	good_io(l, 0, 7);
}

/* The driver dies while a helper it forked keeps its channels open: the
 * host sees the exit itself, not only through the task's timeout. */
static void test_c12_driver_dies_behind_a_forked_helper(void **state)
{
	(void)state;
	capture_begin();
	struct hbk_lun *l = open_stray("fork_and_die", HBK_MODE_AUTO, NULL);
	good_io(l, 0, 1);
	struct aio *a = aio_write(0, l, TRIGGER);
	assert_true(aio_wait(a, 3000));   /* the task timeout is 30 s */
	assert_int_equal(a->io.error, -ENODEV);
	assert_int_equal(a->io.result.status, HBK_DS_DEVICE_NOT_PRESENT);
	assert_true(wait_viol(12, 1));
	const char *out = capture_end();
	assert_contains(out, "went away");
	assert_dead(l);
}

/* The driver closes its own event channel while the runtime's reader waits
 * on it: the host sees the channel hang up at once (not the task's 30 s
 * timeout), names what happened and fails the outstanding I/O. */
static void c12_closed_event_channel(enum hbk_ctl_mode mode)
{
	capture_begin();
	struct hbk_lun *l = open_stray("close_events", mode, NULL);
	good_io(l, 0, 1);
	struct aio *a = aio_write(0, l, TRIGGER);
	assert_true(aio_wait(a, 3000));   /* the task timeout is 30 s */
	assert_int_equal(a->io.error, -ENODEV);
	assert_int_equal(a->io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_int_equal(a->io.result.status, HBK_DS_DEVICE_NOT_PRESENT);
	assert_true(wait_viol(12, 1));
	const char *out = capture_end();
	assert_contains(out, "the driver closed its event channel");
	assert_dead(l);
}

static void test_c12_driver_closes_its_event_channel_bundled(void **state)
{
	(void)state;
	c12_closed_event_channel(HBK_MODE_BUNDLED);
}

static void test_c12_driver_closes_its_event_channel_per_task(void **state)
{
	(void)state;
	c12_closed_event_channel(HBK_MODE_PER_TASK);
}

/* More queue bindings than HELLO carries (and the host checks): the
 * driver does not start. */
static void test_c01_too_many_bindings(void **state)
{
	(void)state;
	const char *args[] = { "fault=bindings17", NULL };
	capture_begin();
	int rc = open_drv("stray", HBK_MODE_AUTO, args, 0, 0);
	const char *out = capture_end();
	assert_int_not_equal(rc, 0);
	assert_null(ctl);
	assert_contains(out, "17 queue bindings: at most 16");
}

/* ---- Main ------------------------------------------------------------------------ */

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	/* A driver that aborts must not spend seconds writing a core. */
	struct rlimit rl = { 0, 0 };
	setrlimit(RLIMIT_CORE, &rl);
	const struct CMUnitTest tests[] = {
		T(test_c01_process_task_on_custom_queue),
		T(test_c01_process_bundled_on_custom_queue),
		T(test_c02_create_target_on_default_refused),
		T(test_c03_never_issued_slot),
		T(test_c03_double_completion),
		T(test_c03_never_issued_slot_raw),
		T(test_c03_double_completion_raw),
		T(test_c03_out_of_range_slot),
		T(test_c03_too_many_slots_refused_by_runtime),
		T(test_c04_bundled_completion_of_per_task_task),
		T(test_c04_bundled_completion_without_bundled_handle),
		T(test_c04_parallel_completion_of_bundled_slot),
		T(test_c05_bad_version),
		T(test_c05_wrong_task_id),
		T(test_c05_bytes_over_requested),
		T(test_c05_sense_too_long),
		T(test_c05_status_not_a_status),
		T(test_c05_delivery_status_not_one),
		T(test_c05_bad_version_per_task),
		T(test_short_transfer_is_an_error),
		T(test_c06_release_per_bundled_call),
		T(test_c06_retain_once_release_twice),
		T(test_c07_completed_twice),
		T(test_c07_completed_twice_raw),
		T(test_c07_completed_and_final_status),
		T(test_c07_handle_used_after_last_release),
		T(test_c03_late_double_completion),
		T(test_c07_late_double_completion),
		T(test_c03_completion_without_response_escalates_soon),
		T(test_c07_completion_without_response_escalates_soon),
		T(test_c08_missing_data_alignment_mask),
		T(test_c08_missing_max_byte_count_read),
		T(test_c09_accepted_without_mapping),
		T(test_c09_mapping_fails),
		T(test_c09_no_process_bundled_stays_per_task),
		T(test_c09_bundled_required_open_fails),
		T(test_c10_bundled_completion_before_start),
		T(test_c10_parallel_completion_before_start),
		T(test_c10_bundled_completion_after_stop),
		T(test_c11_timeout_returned_on_abort),
		T(test_c11_timeout_returned_on_lun_reset),
		T(test_c11_abort_complete_but_task_kept),
		T(test_c11_ignored_escalation_declares_hung),
		T(test_c11_lun_reset_complete_but_task_kept),
		T(test_c11_target_reset_complete_but_task_kept_per_task),
		T(test_c11_lun_reset_giving_tasks_back_is_sound),
		T(test_c11_reset_during_hand_over_is_sound),
		T(test_c11_reset_on_own_queue_keeping_a_task),
		T(test_c11_idle_timer_sleeps_and_still_fires),
		T(test_c11_busy_timer_is_not_kicked_per_task),
		T(test_c12_driver_exits_mid_io),
		T(test_c12_driver_aborts_mid_io),
		T(test_c12_driver_hangs_in_process_bundled),
		T(test_c12_driver_hangs_in_per_task_call),
		T(test_c12_garbage_wrong_magic),
		T(test_c12_garbage_truncated),
		T(test_c12_garbage_length_mismatch),
		T(test_c12_garbage_unknown_type),
		T(test_c12_garbage_call_on_event_channel),
		T(test_c12_garbage_oversized),
		T(test_c12_garbage_ring_tail),
		T(test_c12_call_flood),
		T(test_c12_garbage_count_40_is_c03),
		T(test_c12_garbage_indices_out_of_range_are_c03),
		T(test_c03_stray_ring_entry_with_stale_response),
		T(test_c04_per_task_completion_with_bundled_handle),
		T(test_c07_per_task_completion_without_handle),
		T(test_c12_forged_violation),
		T(test_close_ends_the_drivers_helpers),
		T(test_c01_too_many_bindings),
		T(test_c12_driver_dies_behind_a_forked_helper),
		T(test_c12_driver_closes_its_event_channel_bundled),
		T(test_c12_driver_closes_its_event_channel_per_task),
		T(test_blk_io_without_done_refused),
		T(test_c02_start_waits_for_its_target),
		T(test_c02_io_held_until_target_created),
		T(test_c02_not_for_a_slow_driver),
		T(test_c12_ring_indices_out_of_range_are_c03),
		T(test_c12_region_cannot_shrink),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
