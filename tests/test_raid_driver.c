/* SPDX-License-Identifier: MIT */
/*
 * End-to-end tests of hbk-raid, the driver of the emulated RAID controller,
 * spawned as a real child process and driven through the host library on
 * both paths: discovery of the virtual drives (INQUIRY and VPD), data
 * integrity on memory and RAID drives, the card's transfer limit, bundled
 * completions carrying many slots under load, a task abort that reaches
 * the controller, a LUN reset ending held I/O with TASK ABORTED, a reset
 * covering a bundled call still on its way to the card, I/O stuck
 * past task management leaving the other drives served, teardown with I/O stuck in the card
 * (cancelled, never carried out into buffers the host gave back), arrays given by
 * specs (array=, next to vd=), and bad options.  tests/test_raid_integrity.c
 * takes arrays of files through every failure.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/common.h"
#include "tests/lib/testlib.h"

#define RAID "drivers/hbk-raid"
#define BS 512u

static struct hbk_ctl *open_raid(enum hbk_ctl_mode mode, const char *const *args,
				 uint32_t task_timeout_ms)
{
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open(RAID, mode, args, 0, task_timeout_ms, &c), 0);
	assert_non_null(c);
	assert_int_equal(hbk_ctl_bundled(c), mode != HBK_MODE_PER_TASK);
	return c;
}

static struct hbk_lun *lun_of(struct hbk_ctl *c, uint64_t target)
{
	for (unsigned i = 0; i < hbk_ctl_lun_count(c); i++)
		if (tl_info(hbk_ctl_lun(c, i)).target == target)
			return hbk_ctl_lun(c, i);
	fail_msg("no LUN on target %llu", (unsigned long long)target);
	return NULL;
}

static uint64_t spread(unsigned i)
{
	return 64 + i * 8ull;
}

/* ---- Discovery and data ------------------------------------------------------------ */

static void discovery_sees_the_virtual_drives(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_raid(HBK_MODE_AUTO, (const char *[]){
		"vd=alpha:64M,beta:32M:4096,mirror:raid1:2x8M", "max-transfer=256k", NULL }, 0);
	assert_string_equal(hbk_ctl_driver_name(c), "hbk-raid");
	assert_int_equal(hbk_ctl_lun_count(c), 3);
	static const struct { const char *serial; uint32_t bs; uint64_t bytes; bool thin; } want[] = {
		{ "HBK0-VD0-alpha", 512, 64u << 20, true },
		{ "HBK0-VD1-beta", 4096, 32u << 20, true },
		{ "HBK0-VD2-mirror", 512, 0, true },   /* RAID 1 over memory disks honours UNMAP */
	};
	for (unsigned t = 0; t < 3; t++) {
		struct hbk_lun_info li = tl_info(lun_of(c, t));
		assert_int_equal(li.lun, 0);
		assert_string_equal(li.vendor, "HBAKIT");
		assert_string_equal(li.product, "VIRTUAL DRIVE");
		assert_string_equal(li.serial, want[t].serial);
		assert_memory_equal(li.devid, "naa.6", 5);
		assert_int_equal(li.block_size, want[t].bs);
		if (want[t].bytes)
			assert_int_equal(li.nblocks * li.block_size, want[t].bytes);
		else
			assert_true(li.nblocks > 0 && li.nblocks * li.block_size <= 8u << 20);
		assert_int_equal(li.max_xfer_bytes, 256 * 1024);
		assert_int_equal(li.thin, want[t].thin);
	}
	/* INQUIRY VPD 00h: the pages the firmware's emulation serves. */
	uint8_t vpd[64] = { 0 };
	struct hbk_scsi_cmd cmd = { .lun = lun_of(c, 0), .cdb = { 0x12, 1, 0x00, 0, sizeof(vpd) },
				    .cdb_len = 6, .dir = HBK_DIR_READ, .buf = vpd, .len = sizeof(vpd) };
	assert_int_equal(hbk_sam_exec(c, &cmd), 0);
	assert_true(hbk_scsi_ok(&cmd.result));
	assert_int_equal(vpd[1], 0x00);
	assert_non_null(memchr(vpd + 4, 0x83, vpd[3]));
	assert_non_null(memchr(vpd + 4, 0xb0, vpd[3]));
	hbk_ctl_close(c);
}

/* The path a test runs on: its cmocka state (see BOTH_PATHS). */
static const enum hbk_ctl_mode bundled = HBK_MODE_BUNDLED, per_task = HBK_MODE_PER_TASK;
#define BOTH_PATHS(f) { #f "_bundled", f, NULL, NULL, (void *)&bundled }, \
		      { #f "_per_task", f, NULL, NULL, (void *)&per_task }

static enum hbk_ctl_mode path_of(void **state)
{
	return *(const enum hbk_ctl_mode *)*state;
}

/* Writes and reads back a pattern on every drive of the controller. */
static void data_survives_roundtrip(void **state)
{
	struct hbk_ctl *c = open_raid(path_of(state), (const char *[]){
		"vd=mem:16M,r5:raid5:3x4M:16k", "queues=2", NULL }, 0);
	uint8_t *buf = malloc(64 * BS);
	for (uint64_t t = 0; t < 2; t++) {
		struct hbk_lun *l = lun_of(c, t);
		for (uint64_t lba = 0; lba < 2048; lba += 64) {
			tl_fill(buf, lba, 64, BS, (uint32_t)t + 7);
			assert_int_equal(tl_rw(l, true, lba, 64, buf), 0);
		}
		for (uint64_t lba = 0; lba < 2048; lba += 64) {
			memset(buf, 0, 64 * BS);
			assert_int_equal(tl_rw(l, false, lba, 64, buf), 0);
			assert_true(tl_check(buf, lba, 64, BS, (uint32_t)t + 7));
		}
	}
	free(buf);
	hbk_ctl_close(c);
}

static void io_is_split_at_the_card_limit(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_raid(HBK_MODE_AUTO, (const char *[]){
		"vd=v:16M", "max-transfer=64k", NULL }, 0);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	assert_int_equal(tl_info(l).max_xfer_bytes, 64 * 1024);
	uint32_t n = (2u << 20) / BS;
	uint8_t *buf = malloc(2u << 20);
	tl_fill(buf, 100, n, BS, 5);
	hbk_ctl_stats_reset(c);
	assert_int_equal(tl_rw(l, true, 100, n, buf), 0);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.tasks, 32);  /* 2 MiB / 64 KiB */
	memset(buf, 0, 2u << 20);
	assert_int_equal(tl_rw(l, false, 100, n, buf), 0);
	assert_true(tl_check(buf, 100, n, BS, 5));
	/* Thin: UNMAP reaches the memory volume, which reads back zeros. */
	struct hbk_blk_io io = { .lun = l, .op = HBK_BLK_UNMAP, .lba = 108, .nblocks = 8 };
	assert_int_equal(hbk_blk_exec(&io), 0);
	assert_int_equal(tl_rw(l, false, 100, 24, buf), 0);
	assert_true(tl_check(buf, 100, 8, BS, 5));
	for (unsigned i = 8 * BS; i < 16 * BS; i++)
		assert_int_equal(buf[i], 0);
	assert_true(tl_check(buf + 16 * BS, 116, 8, BS, 5));
	free(buf);
	hbk_ctl_close(c);
}

/* Under load the interrupt handler completes many bundled slots per call. */
static void bundled_completions_carry_many_slots(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_raid(HBK_MODE_BUNDLED, (const char *[]){
		"vd=v:16M", "coalesce-count=16", "coalesce-us=200", NULL }, 0);
	struct tl_load ld;
	hbk_ctl_stats_reset(c);
	tl_load_start(&ld, hbk_ctl_lun(c, 0), 1024, true, spread, 3);
	assert_int_equal(tl_load_wait(&ld, 0), 0);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.tasks, 1024);
	assert_int_equal(s.completions, 1024);
	assert_true(s.completion_msgs * 2 <= s.completions);  /* > 1 slot per completion */
	assert_true(s.io_calls < s.tasks);                     /* > 1 slot per call */
	assert_int_equal(s.failed_by_host + s.timeouts, 0);
	tl_load_free(&ld);
	tl_load_start(&ld, hbk_ctl_lun(c, 0), 1024, false, spread, 3);
	assert_int_equal(tl_load_wait(&ld, 0), 0);
	for (unsigned i = 0; i < ld.n; i++)
		assert_true(tl_check(ld.io[i].buf, spread(i), 8, BS, 3));
	tl_load_free(&ld);
	hbk_ctl_close(c);
}

/*
 * Interrupt moderation: with one I/O at a time, a reply interrupts at once,
 * although the configured count is 32 and neither the card going idle
 * (coalesce-idle=0) nor the time limit (1 s) would fire it soon.  With the
 * count fixed (coalesce-adaptive=0), a reply waits out the limit.
 */
static void a_lone_reply_interrupts_at_once(void **state)
{
	(void)state;
	static const char *const slow[] = { "vd=v:16M", "coalesce-idle=0", "coalesce-us=1000000", NULL };
	uint64_t t0 = hbk_now_ns();
	struct hbk_ctl *c = open_raid(HBK_MODE_BUNDLED, slow, 0);
	assert_int_equal(hbk_ctl_lun_count(c), 1);  /* discovery's replies waited for nothing */
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t buf[8 * BS];
	for (unsigned i = 0; i < 8; i++) {
		tl_fill(buf, 8 * i, 8, BS, 4);
		assert_int_equal(tl_rw(l, true, 8 * i, 8, buf), 0);
		assert_int_equal(tl_rw(l, false, 8 * i, 8, buf), 0);
		assert_true(tl_check(buf, 8 * i, 8, BS, 4));
	}
	assert_true(hbk_now_ns() - t0 < 4000000000ull);  /* not 16 times the 1 s limit */
	hbk_ctl_close(c);

	/* Discovery pays the limit on every reply too: 100 ms keeps it well
	 * inside the open's wait for the LUN. */
	c = open_raid(HBK_MODE_BUNDLED, (const char *[]){ "vd=v:16M", "coalesce-idle=0",
			"coalesce-us=100000", "coalesce-adaptive=0", NULL }, 0);
	assert_int_equal(hbk_ctl_lun_count(c), 1);
	t0 = hbk_now_ns();
	assert_int_equal(tl_rw(hbk_ctl_lun(c, 0), false, 0, 8, buf), 0);
	assert_true(hbk_now_ns() - t0 >= 80000000ull);
	hbk_ctl_close(c);
}

/* ---- Task management and teardown ------------------------------------------------------ */

/*
 * An I/O hangs in the card (hold-lba): it times out, the host's ABORT TASK
 * becomes an abort frame, the card terminates the I/O and the task comes
 * back with TaskTimeoutOccurred, with no escalation to a LUN reset.
 */
static void task_abort_reaches_the_controller(void **state)
{
	tl_capture_begin();
	struct hbk_ctl *c = open_raid(path_of(state), (const char *[]){ "vd=v:16M", "hold-lba=2048", NULL }, 300);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t buf[8 * BS];
	tl_fill(buf, 2044, 8, BS, 1);
	struct hbk_blk_io io = { .lun = l, .op = HBK_BLK_WRITE, .lba = 2044, .nblocks = 8, .buf = buf };
	assert_int_equal(hbk_blk_exec(&io), -ETIMEDOUT);
	assert_int_equal(io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
	assert_int_equal(io.result.status, HBK_DS_TASK_TIMEOUT);
	assert_true(hbk_ctl_alive(c));
	tl_fill(buf, 0, 8, BS, 2);
	assert_int_equal(tl_rw(l, true, 0, 8, buf), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(tl_rw(l, false, 0, 8, buf), 0);
	assert_true(tl_check(buf, 0, 8, BS, 2));
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.timeouts, 1);
	hbk_ctl_close(c);
	const char *log = tl_capture_end();
	assert_non_null(strstr(log, "escalating with ABORT_TASK"));
	assert_non_null(strstr(log, "hbk-raid: ABORT TASK target 0 lun 0: done by the controller, "
				    "1 task(s) terminated"));
	assert_null(strstr(log, "LUN_RESET"));
}

static void flag_done(struct hbk_scsi_cmd *cmd)
{
	atomic_store((atomic_int *)cmd->priv, 1);
}

/* Submits a READ of LBA 2044..2051 on l into buf (8 blocks), which a
 * driver started with hold-lba=2048 holds in the card; *done is set when
 * it ends. */
static void submit_held_read(struct hbk_ctl *c, struct hbk_scsi_cmd *cmd, struct hbk_lun *l,
			     uint8_t *buf, atomic_int *done)
{
	*cmd = (struct hbk_scsi_cmd){ .lun = l, .cdb = { 0x28, 0, 0, 0, 0x07, 0xfc, 0, 0, 8, 0 },
				      .cdb_len = 10, .dir = HBK_DIR_READ, .buf = buf, .len = 8 * BS,
				      .done = flag_done, .priv = done };
	assert_int_equal(hbk_sam_submit(c, cmd), 0);
}

/*
 * ABORT TASK racing the task's own completion: a reply the interrupt
 * handler has taken but not yet handed up is no longer at the card, and
 * the abort must not answer FUNCTION COMPLETE before the completion is on
 * its way (the runtime would report HBK-C11 for a task kept).  Rounds of
 * READs, the last one aborted as soon as it is sent; the handler waits
 * 2 ms between taking replies and completing their tasks
 * (drain-delay-us), so that the abort comes in that gap.
 */
static void abort_racing_completion_is_no_violation(void **state)
{
	(void)state;
	tl_capture_begin();   /* a line per abort the card does */
	struct hbk_ctl *c = open_raid(HBK_MODE_BUNDLED, (const char *[]){ "vd=v:16M",
				      "drain-delay-us=2000", NULL }, 0);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	enum { N = 8, ROUNDS = 200 };
	static struct hbk_scsi_cmd cmd[N];
	static atomic_int done[N];
	uint8_t *buf = malloc((size_t)N * BS);
	for (unsigned r = 0; r < ROUNDS; r++) {
		for (unsigned i = 0; i < N; i++) {
			atomic_store(&done[i], 0);
			cmd[i] = (struct hbk_scsi_cmd){ .lun = l, .cdb = { 0x28, 0, 0, 0, 0, (uint8_t)(8 * i), 0, 0, 1, 0 },
							.cdb_len = 10, .dir = HBK_DIR_READ, .buf = buf + i * BS,
							.len = BS, .done = flag_done, .priv = &done[i] };
			assert_int_equal(hbk_sam_submit(c, &cmd[i]), 0);
		}
		int sr = hbk_sam_tmf(c, 0, 0, HBK_TMF_ABORT_TASK, &cmd[N - 1]);
		assert_true(sr == HBK_SR_FUNCTION_COMPLETE || sr == HBK_SR_FUNCTION_REJECTED);
		for (unsigned i = 0; i < N; i++)
			while (!atomic_load(&done[i]))
				usleep(50);
	}
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	free(buf);
	hbk_ctl_close(c);
	const char *log = tl_capture_end();
	assert_null(strstr(log, "HBK-C11"));
	assert_int_equal(s.violations[11], 0);
}

/*
 * A LUN RESET while an I/O hangs in the card: the card terminates it and
 * the command ends with TASK ABORTED (the control page says TAS 1), as
 * SAM-5 has it for a task another nexus' task management aborted (the
 * iSCSI target answers it so to the other sessions), not with a delivery
 * failure.
 */
static void lun_reset_ends_io_with_task_aborted(void **state)
{
	struct hbk_ctl *c = open_raid(path_of(state), (const char *[]){ "vd=v:16M", "hold-lba=2048", NULL },
				      20000);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t buf[8 * BS];
	atomic_int done = 0;
	struct hbk_scsi_cmd cmd;
	submit_held_read(c, &cmd, l, buf, &done);
	usleep(100000);
	assert_int_equal(atomic_load(&done), 0);
	assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_LUN_RESET, NULL), HBK_SR_FUNCTION_COMPLETE);
	for (int i = 0; i < 2000 && !atomic_load(&done); i++)
		usleep(1000);
	assert_int_equal(atomic_load(&done), 1);
	assert_int_equal(cmd.result.service, HBK_SR_TASK_COMPLETE);
	assert_int_equal(cmd.result.status, HBK_STATUS_TASK_ABORTED);
	assert_true(hbk_ctl_alive(c));
	hbk_ctl_close(c);
}

/*
 * A LUN RESET or TARGET RESET that comes while a bundled call is on its way
 * to the card (its slots at the driver, their frames not posted yet: the
 * driver started with post-delay-us) covers that WRITE too: the reset
 * answers FUNCTION COMPLETE once the WRITE is back, and the driver runtime
 * reports no task kept (HBK-C11, logged before the answer goes back).
 */
static void reset_covers_a_bundled_call_on_its_way(void **state)
{
	(void)state;
	static const enum hbk_tmf ops[] = { HBK_TMF_LUN_RESET, HBK_TMF_TARGET_RESET };
	for (unsigned i = 0; i < 2; i++) {
		tl_capture_begin();
		struct hbk_ctl *c = open_raid(HBK_MODE_BUNDLED, (const char *[]){ "vd=v:16M",
					      "post-delay-us=300000", NULL }, 0);
		uint8_t buf[8 * BS];
		tl_fill(buf, 0, 8, BS, 5);
		atomic_int done = 0;
		struct hbk_scsi_cmd cmd = { .lun = hbk_ctl_lun(c, 0),
					    .cdb = { 0x2a, 0, 0, 0, 0, 0, 0, 0, 8, 0 }, .cdb_len = 10,
					    .dir = HBK_DIR_WRITE, .buf = buf, .len = sizeof(buf),
					    .done = flag_done, .priv = &done };
		assert_int_equal(hbk_sam_submit(c, &cmd), 0);
		usleep(100000);                        /* the call waits before posting */
		int sr = hbk_sam_tmf(c, 0, 0, ops[i], NULL);
		for (int ms = 0; ms < 2000 && !atomic_load(&done); ms++)
			usleep(1000);
		struct hbk_ctl_stats st;
		hbk_ctl_stats(c, &st);
		hbk_ctl_close(c);
		const char *log = tl_capture_end();
		assert_int_equal(sr, HBK_SR_FUNCTION_COMPLETE);
		assert_int_equal(atomic_load(&done), 1);
		assert_int_equal(cmd.result.service, HBK_SR_TASK_COMPLETE);
		assert_int_equal(st.violations[11], 0);
		assert_null(strstr(log, "HBK-C11"));
	}
}

/*
 * An I/O stuck for good on drive a (abort cannot end it, as behind a member
 * disk that never answers): each task management function for it waits at
 * the card until the driver gives up and rejects it, its frame still
 * holding one of the card's task management contexts.  Once the four are
 * held the driver sends no more (a fifth would stop the request ring behind
 * it) and rejects at once, and drive b is served throughout.  The driver
 * gives up after 500 ms (tm-wait-ms) rather than its default 1.5 s: each
 * of the four waits it out.
 */
static void stuck_io_leaves_other_drives_served(void **state)
{
	(void)state;
	tl_capture_begin();
	struct hbk_ctl *c = open_raid(HBK_MODE_BUNDLED, (const char *[]){ "vd=a:16M,b:16M", "hold-lba=2048",
				      "hold-stuck=1", "tm-wait-ms=500", NULL }, 60000);
	struct hbk_lun *a = lun_of(c, 0), *b = lun_of(c, 1);
	uint8_t held[8 * BS], buf[8 * BS];
	atomic_int done = 0;
	struct hbk_scsi_cmd cmd;
	submit_held_read(c, &cmd, a, held, &done);     /* stuck */
	usleep(200000);                                   /* in the volume, past cancel */
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_LUN_RESET, NULL), HBK_SR_FUNCTION_REJECTED);
	uint64_t t0 = hbk_now_ns();
	assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_LUN_RESET, NULL), HBK_SR_FUNCTION_REJECTED);
	assert_true(hbk_now_ns() - t0 < 500000000ull);   /* not sent: no wait for the card */
	tl_fill(buf, 0, 8, BS, 3);
	assert_int_equal(tl_rw(b, true, 0, 8, buf), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(tl_rw(b, false, 0, 8, buf), 0);
	assert_true(tl_check(buf, 0, 8, BS, 3));
	assert_int_equal(atomic_load(&done), 0);
	hbk_ctl_close(c);                                 /* the stuck read fails here */
	assert_int_equal(atomic_load(&done), 1);
	const char *log = tl_capture_end();
	assert_non_null(strstr(log, "no answer from the controller"));
	assert_non_null(strstr(log, "not sent, the card still holds 4 unanswered task management frames"));
}

struct tmf_call {
	struct hbk_ctl *c;
	uint32_t result;
	atomic_int done;
};

static void *lun_reset_a(void *arg)
{
	struct tmf_call *t = arg;
	t->result = (uint32_t)hbk_sam_tmf(t->c, 0, 0, HBK_TMF_LUN_RESET, NULL);
	atomic_store(&t->done, 1);
	return NULL;
}

/*
 * While a LOGICAL UNIT RESET for drive a waits at the card for an I/O stuck
 * there, a READ on drive b, with a 500 ms timeout, completes in time: the
 * reset's wait holds no queue the I/O needs.  On the bundled path it
 * completes while the reset still waits (1.5 s); on the per-task path the
 * host's call channel, one call at a time, holds the READ behind the
 * reset's call, which the driver keeps short there.
 */
static void task_management_leaves_other_drives_flowing(void **state)
{
	struct hbk_ctl *c = open_raid(path_of(state), (const char *[]){ "vd=a:16M,b:16M",
				      "hold-lba=2048", "hold-stuck=1", NULL }, 60000);
	struct hbk_lun *a = lun_of(c, 0), *b = lun_of(c, 1);
	uint8_t held[8 * BS], buf[8 * BS];
	atomic_int done = 0;
	struct hbk_scsi_cmd stuck;
	submit_held_read(c, &stuck, a, held, &done);     /* stuck */
	usleep(200000);
	struct tmf_call t = { .c = c };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, lun_reset_a, &t), 0);
	usleep(50000);                                     /* the reset is at the card */
	struct hbk_scsi_cmd rd = { .lun = b, .cdb = { 0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0 },
				   .cdb_len = 10, .dir = HBK_DIR_READ, .buf = buf, .len = sizeof(buf),
				   .timeout_ms = 500 };
	assert_int_equal(hbk_sam_exec(c, &rd), 0);
	assert_int_equal(rd.result.service, HBK_SR_TASK_COMPLETE);
	assert_int_equal(rd.result.status, HBK_STATUS_GOOD);
	if (path_of(state) == HBK_MODE_BUNDLED)
		assert_int_equal(atomic_load(&t.done), 0);
	pthread_join(th, NULL);
	assert_int_equal(t.result, HBK_SR_FUNCTION_REJECTED);
	struct hbk_ctl_stats st;
	hbk_ctl_stats(c, &st);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(atomic_load(&done), 0);
	hbk_ctl_close(c);
}

static uint64_t two_held(unsigned i)
{
	return i < 2 ? 0 : spread(i);  /* the first two touch the held block 0 */
}

/*
 * Close with two I/Os stuck in the card: they fail with DeviceNotPresent,
 * the driver resets the card at STOP and exits cleanly (under ASan its
 * leak check runs at that exit), and nothing completes after STOP.
 */
static void teardown_fails_io_in_flight(void **state)
{
	tl_capture_begin();
	struct hbk_ctl *c = open_raid(path_of(state), (const char *[]){ "vd=v:16M", "hold-lba=0", NULL }, 0);
	struct tl_load ld;
	tl_load_start(&ld, hbk_ctl_lun(c, 0), 64, false, two_held, 3);
	assert_int_equal(tl_load_wait(&ld, 2), 0);
	hbk_ctl_close(c);
	const char *log = tl_capture_end();
	assert_int_equal(ld.outstanding, 0);
	assert_int_equal(ld.errors, 2);
	for (unsigned i = 0; i < 2; i++) {
		assert_int_equal(ld.io[i].error, -ENODEV);
		assert_int_equal(ld.io[i].result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
		assert_int_equal(ld.io[i].result.status, HBK_DS_DEVICE_NOT_PRESENT);
	}
	assert_null(strstr(log, "did not exit"));
	assert_null(strstr(log, "HBK-C"));
	tl_load_free(&ld);
}

/* The application takes its buffer back once its task has failed. */
static void reuse_buffer(struct hbk_scsi_cmd *cmd)
{
	memset(cmd->buf, 0xbb, cmd->len);
	flag_done(cmd);
}

/*
 * Close with a READ held in the card, its hold stuck or not: the host
 * fails the READ, whose application reuses the buffer at once, and only
 * then does STOP reach the driver.  The card's reset cancels the held
 * READ: nothing lands in the buffer afterwards (the buffer is in the
 * arena, for the card to DMA into; a second mapping of its page keeps it
 * readable once the controller is closed), and the stuck hold does not
 * keep the reset waiting.
 */
static void teardown_cancels_held_io(void **state)
{
	for (int stuck = 0; stuck < 2; stuck++) {
		struct hbk_ctl *c = open_raid(path_of(state), (const char *[]){
			"vd=v:16M", "hold-lba=8", stuck ? "hold-stuck=1" : "hold-stuck=0", NULL }, 0);
		struct hbk_lun *l = hbk_ctl_lun(c, 0);
		uint8_t *buf = hbk_ctl_buf_alloc(c, 4096);
		assert_non_null(buf);
		assert_int_equal((uintptr_t)buf % 4096, 0);
		uint8_t *alias = mremap(buf, 0, 4096, MREMAP_MAYMOVE);
		assert_true(alias != MAP_FAILED);
		memset(buf, 0x5a, 4096);
		assert_int_equal(tl_rw(l, true, 0, 8, buf), 0);     /* blocks 0..7: data */
		memset(buf, 0, 4096);
		atomic_int done = 0;
		struct hbk_scsi_cmd cmd = { .lun = l, .cdb = { 0x28, 0, 0, 0, 0, 1, 0, 0, 8, 0 },
					    .cdb_len = 10, .dir = HBK_DIR_READ, .buf = buf, .len = 4096,
					    .done = reuse_buffer, .priv = &done };
		assert_int_equal(hbk_sam_submit(c, &cmd), 0);       /* blocks 1..8: held */
		usleep(100000);
		assert_int_equal(atomic_load(&done), 0);
		tl_capture_begin();
		hbk_ctl_close(c);
		const char *log = tl_capture_end();
		assert_int_equal(atomic_load(&done), 1);
		assert_int_equal(cmd.result.status, HBK_DS_DEVICE_NOT_PRESENT);
		for (unsigned i = 0; i < 4096; i++)
			if (alias[i] != 0xbb)
				fail_msg("stuck=%d: byte %u of the failed READ's buffer is %#x after "
					 "close: the card moved data into it", stuck, i, alias[i]);
		munmap(alias, 4096);
		assert_null(strstr(log, "killing it"));   /* STOP answered, the driver exited */
		assert_null(strstr(log, "HBK-C"));
	}
}

/*
 * array=NAME:SPEC, repeated, after the vd= drives: each spec is one drive,
 * commas and colons and all; thin only where the array honours UNMAP.
 */
/* The request frame carries each command's initiator to the firmware's
 * reservations, on both paths. */
static void reservations_are_kept_per_initiator(void **state)
{
	(void)state;
	for (int mode = HBK_MODE_PER_TASK; mode <= HBK_MODE_BUNDLED; mode++) {
		struct hbk_ctl *c = open_raid((enum hbk_ctl_mode)mode,
					      (const char *[]){ "vd=r5:raid5:3x4M", NULL }, 0);
		tl_check_reservations_per_initiator(lun_of(c, 0), 64);
		hbk_ctl_close(c);
	}
}

static void arrays_from_specs(void **state)
{
	(void)state;
	tl_capture_begin();
	struct hbk_ctl *c = open_raid(HBK_MODE_BUNDLED, (const char *[]){
		"vd=m:16M", "array=r5:level=5,members=3,size=4m,chunk=16k,cache=1m",
		"--array=r0:level=raid0,size=2m,latency=ssd", NULL }, 0);
	const char *log = tl_capture_end();
	assert_non_null(strstr(log, "hbk-raid: array r5: created raid5, 3 members, 8 MiB, optimal"));
	assert_non_null(strstr(log, "hbk-raid: array r0: created raid0, 2 members, 4 MiB, optimal"));
	assert_int_equal(hbk_ctl_lun_count(c), 3);
	static const struct { const char *serial; uint64_t bytes; bool thin; } want[] = {
		{ "HBK0-VD0-m", 16u << 20, true },
		{ "HBK0-VD1-r5", 8u << 20, false },   /* RAID 5 discards whole stripes only */
		{ "HBK0-VD2-r0", 4u << 20, true },
	};
	uint8_t *buf = malloc(128 * BS);
	assert_non_null(buf);
	for (unsigned t = 0; t < 3; t++) {
		struct hbk_lun *l = lun_of(c, t);
		struct hbk_lun_info li = tl_info(l);
		assert_string_equal(li.serial, want[t].serial);
		assert_int_equal(li.nblocks * li.block_size, want[t].bytes);
		assert_int_equal(li.thin, want[t].thin);
		tl_fill(buf, 1000, 128, BS, t + 40);
		assert_int_equal(tl_rw(l, true, 1000, 128, buf), 0);
		memset(buf, 0, 128 * BS);
		assert_int_equal(tl_rw(l, false, 1000, 128, buf), 0);
		assert_true(tl_check(buf, 1000, 128, BS, t + 40));
	}
	/* SYNCHRONIZE CACHE reaches the cached array. */
	struct hbk_blk_io fl = { .lun = lun_of(c, 1), .op = HBK_BLK_FLUSH };
	assert_int_equal(hbk_blk_exec(&fl), 0);
	/* UNMAP reaches the RAID 0 members, which read back zeros. */
	struct hbk_blk_io un = { .lun = lun_of(c, 2), .op = HBK_BLK_UNMAP, .lba = 1000, .nblocks = 128 };
	assert_int_equal(hbk_blk_exec(&un), 0);
	assert_int_equal(tl_rw(lun_of(c, 2), false, 1000, 128, buf), 0);
	for (unsigned i = 0; i < 128 * BS; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
	hbk_ctl_close(c);
}

static void bad_options_fail_the_open(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"vd=x:banana", "vd=x:raid4:3x4M", "vd=x:raid5:0x4M", "vd=a:1M,a:1M", "tasks=0",
		"max-transfer=6000", "coalesce-us=9000000", "array=nameonly", "array=:level=0,size=1m",
		"array=x:level=4,size=1m", "array=x:level=0,disk=file:/nonexistent/d0.img",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct hbk_ctl *c = NULL;
		tl_capture_begin();
		int err = tl_open(RAID, HBK_MODE_AUTO, (const char *[]){ bad[i], NULL }, 0, 0, &c);
		const char *log = tl_capture_end();
		assert_true(err < 0);
		assert_null(c);
		assert_non_null(strstr(log, "hbk-raid: "));
	}
	/* A vd= entry too long for the parser's copy: its tail (here the
	 * block size) was cut off and the rest taken, a 512-byte drive. */
	char vd[160];
	int n = snprintf(vd, sizeof(vd), "vd=v:");
	while (n < 5 + 122)
		vd[n++] = '0';
	snprintf(vd + n, sizeof(vd) - (size_t)n, "16M:4096");
	struct hbk_ctl *lc = NULL;
	tl_capture_begin();
	int lerr = tl_open(RAID, HBK_MODE_AUTO, (const char *[]){ vd, NULL }, 0, 0, &lc);
	const char *llog = tl_capture_end();
	if (lc)
		hbk_ctl_close(lc);
	assert_true(lerr < 0);
	assert_non_null(strstr(llog, ": too long"));
	/* An option given twice: the second was dropped without a word. */
	static const char *const twice[][3] = {
		{ "vd=a:1M", "vd=b:2M", "hbk-raid: vd= given more than once" },
		{ "tasks=8", "tasks=16", "hbk-raid: tasks= given more than once" },
		/* A mistyped option was ignored, the default taken instead. */
		{ "vd=a:1M", "coalesce-cont=1", "hbk-raid: coalesce-cont=1: not an option of this driver" },
	};
	for (size_t i = 0; i < sizeof(twice) / sizeof(twice[0]); i++) {
		struct hbk_ctl *c = NULL;
		tl_capture_begin();
		int err = tl_open(RAID, HBK_MODE_AUTO, (const char *[]){ twice[i][0], twice[i][1], NULL },
				  0, 0, &c);
		const char *log = tl_capture_end();
		assert_true(err < 0);
		assert_null(c);
		assert_non_null(strstr(log, twice[i][2]));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(discovery_sees_the_virtual_drives),
		BOTH_PATHS(data_survives_roundtrip),
		cmocka_unit_test(io_is_split_at_the_card_limit),
		cmocka_unit_test(bundled_completions_carry_many_slots),
		cmocka_unit_test(a_lone_reply_interrupts_at_once),
		cmocka_unit_test(abort_racing_completion_is_no_violation),
		BOTH_PATHS(task_abort_reaches_the_controller),
		BOTH_PATHS(lun_reset_ends_io_with_task_aborted),
		cmocka_unit_test(reset_covers_a_bundled_call_on_its_way),
		cmocka_unit_test(stuck_io_leaves_other_drives_served),
		BOTH_PATHS(task_management_leaves_other_drives_flowing),
		BOTH_PATHS(teardown_fails_io_in_flight),
		BOTH_PATHS(teardown_cancels_held_io),
		cmocka_unit_test(arrays_from_specs),
		cmocka_unit_test(reservations_are_kept_per_initiator),
		cmocka_unit_test(bad_options_fail_the_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
