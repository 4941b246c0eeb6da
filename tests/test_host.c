/* SPDX-License-Identifier: MIT */
/*
 * Integration tests of the host library with the ram driver as a real child
 * process: discovery, data integrity on both paths, transfer splitting,
 * bounce and zero-copy buffers, SCSI errors, unmap, pool exhaustion,
 * teardown with I/O outstanding, attach mode, and the batching statistics.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/testlib.h"

#define RAM "drivers/hbk-ram"

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

extern char **environ;

static struct hbk_ctl *open_ram(enum hbk_ctl_mode mode, const char *const *args)
{
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open(RAM, mode, args, 0, 0, &c), 0);
	assert_non_null(c);
	return c;
}

static void discovery_registers_the_lun(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=64M", NULL });
	assert_true(hbk_ctl_bundled(c));
	assert_int_equal(hbk_ctl_lun_count(c), 1);
	struct hbk_lun_info info = tl_info(hbk_ctl_lun(c, 0));
	const struct hbk_lun_info *li = &info;
	assert_string_equal(li->vendor, "HBAKIT");
	assert_string_equal(li->product, "RAM DISK");
	assert_string_equal(li->serial, "RAM00000000");
	assert_int_equal(li->block_size, 512);
	assert_int_equal(li->nblocks, (64u << 20) / 512);
	assert_true(li->thin);
	assert_memory_equal(li->devid, "naa.6", 5);
	assert_int_equal(li->max_xfer_bytes, 1u << 20);
	hbk_ctl_close(c);
}

static void discovery_finds_every_target_and_lun(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO,
				     (const char *[]){ "targets=2", "luns=3", "size=1M", NULL });
	/* The driver creates its targets one after the other; open returns
	 * once that is over. */
	assert_int_equal(hbk_ctl_lun_count(c), 6);
	bool seen[2][3] = { { false } };
	for (unsigned i = 0; i < 6; i++) {
		struct hbk_lun_info info = tl_info(hbk_ctl_lun(c, i));
		const struct hbk_lun_info *li = &info;
		assert_true(li->target < 2 && li->lun < 3);
		seen[li->target][li->lun] = true;
	}
	for (int t = 0; t < 2; t++)
		for (int l = 0; l < 3; l++)
			assert_true(seen[t][l]);
	hbk_ctl_close(c);
}

static void pattern_roundtrip(enum hbk_ctl_mode mode)
{
	struct hbk_ctl *c = open_ram(mode, (const char *[]){ "size=32M", NULL });
	assert_int_equal(hbk_ctl_bundled(c), mode != HBK_MODE_PER_TASK);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t *buf = malloc(64 * 512);
	for (uint64_t lba = 0; lba < 4096; lba += 64) {
		tl_fill(buf, lba, 64, 512, 7);
		assert_int_equal(tl_rw(l, true, lba, 64, buf), 0);
	}
	for (uint64_t lba = 0; lba < 4096; lba += 64) {
		memset(buf, 0, 64 * 512);
		assert_int_equal(tl_rw(l, false, lba, 64, buf), 0);
		assert_true(tl_check(buf, lba, 64, 512, 7));
	}
	free(buf);
	hbk_ctl_close(c);
}

static void data_survives_roundtrip_bundled(void **state)
{
	(void)state;
	pattern_roundtrip(HBK_MODE_BUNDLED);
}

static void data_survives_roundtrip_per_task(void **state)
{
	(void)state;
	pattern_roundtrip(HBK_MODE_PER_TASK);
}

/* A max transfer below one 4 KiB page cannot be kept (the host splits and
 * bounces in pages): the controller is refused with the reason, instead of
 * sending the driver more than it can take. */
static void small_max_transfer_is_refused(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	tl_capture_begin();
	int err = tl_open(RAM, HBK_MODE_AUTO,
			  (const char *[]){ "max-transfer=2048", NULL }, 0, 0, &c);
	const char *log = tl_capture_end();
	assert_true(err < 0);
	assert_null(c);
	assert_non_null(strstr(log, "max transfer of 2048 bytes"));
}

static void large_io_is_split_at_max_transfer(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO,
				     (const char *[]){ "size=32M", "max-transfer=64k", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	assert_int_equal(tl_info(l).max_xfer_bytes, 64 * 1024);
	uint32_t n = (4u << 20) / 512;
	uint8_t *buf = malloc(4u << 20);
	tl_fill(buf, 100, n, 512, 3);
	struct hbk_ctl_stats before, after;
	hbk_ctl_stats(c, &before);
	assert_int_equal(tl_rw(l, true, 100, n, buf), 0);
	hbk_ctl_stats(c, &after);
	assert_int_equal(after.tasks - before.tasks, 64); /* 4 MiB / 64 KiB */
	memset(buf, 0, 4u << 20);
	assert_int_equal(tl_rw(l, false, 100, n, buf), 0);
	assert_true(tl_check(buf, 100, n, 512, 3));
	free(buf);
	hbk_ctl_close(c);
}

static void arena_buffers_are_zero_copy_and_correct(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=8M", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t *a = hbk_ctl_buf_alloc(c, 128 * 1024);
	uint8_t *b = hbk_ctl_buf_alloc(c, 128 * 1024);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	tl_fill(a, 9, 256, 512, 11);
	assert_int_equal(tl_rw(l, true, 9, 256, a), 0);
	assert_int_equal(tl_rw(l, false, 9, 256, b), 0);
	assert_true(tl_check(b, 9, 256, 512, 11));
	hbk_ctl_buf_free(c, a);
	hbk_ctl_buf_free(c, b);
	/* Freed space is reusable; freeing an interior pointer or twice is
	 * refused without touching anyone's allocation. */
	uint8_t *big = hbk_ctl_buf_alloc(c, 256 * 1024);
	assert_ptr_equal(big, a);
	uint8_t *after = hbk_ctl_buf_alloc(c, 4096);
	assert_ptr_equal(after, big + 256 * 1024);
	tl_capture_begin();
	hbk_ctl_buf_free(c, big + 4096);
	hbk_ctl_buf_free(c, after);
	hbk_ctl_buf_free(c, after);
	const char *log = tl_capture_end();
	assert_non_null(strstr(log, "did not return"));
	/* The interior free changed nothing: the 256 KiB are still taken. */
	assert_ptr_equal(hbk_ctl_buf_alloc(c, 4096), after);
	hbk_ctl_buf_free(c, big);
	hbk_ctl_close(c);
}

/* An arena buffer that breaks the driver's declared alignment is copied
 * through an aligned bounce chunk instead of being handed over as is. */
static void misaligned_arena_buffer_is_bounced(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=8M", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t *a = hbk_ctl_buf_alloc(c, 64 * 1024);
	assert_non_null(a);
	uint8_t *odd = a + 512;  /* inside the arena, not 4 KiB aligned */
	tl_fill(odd, 40, 16, 512, 6);
	assert_int_equal(tl_rw(l, true, 40, 16, odd), 0);
	memset(odd, 0, 16 * 512);
	assert_int_equal(tl_rw(l, false, 40, 16, odd), 0);
	assert_true(tl_check(odd, 40, 16, 512, 6));
	hbk_ctl_buf_free(c, a);
	hbk_ctl_close(c);
}

static void scsi_errors_come_back_as_results(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=1M", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t buf[4096];
	/* READ(16) past the end: ILLEGAL REQUEST / LBA OUT OF RANGE. */
	struct hbk_scsi_cmd cmd = { .lun = l, .cdb = { 0x88 }, .cdb_len = 16, .dir = HBK_DIR_READ,
				    .buf = buf, .len = 512 };
	cmd.cdb[8] = 0x08;  /* LBA 2048 = first block past 1 MiB */
	cmd.cdb[13] = 1;
	assert_int_equal(hbk_sam_exec(c, &cmd), 0);
	assert_int_equal(cmd.result.service, HBK_SR_TASK_COMPLETE);
	assert_int_equal(cmd.result.status, HBK_STATUS_CHECK_CONDITION);
	assert_int_equal(cmd.result.sense_key, HBK_SK_ILLEGAL_REQUEST);
	assert_int_equal(cmd.result.asc, 0x21);
	assert_int_equal(hbk_blk_errno(&cmd.result), -ENOSPC);
	/* An opcode nobody serves: INVALID COMMAND OPERATION CODE. */
	struct hbk_scsi_cmd bad = { .lun = l, .cdb = { 0xee }, .cdb_len = 6 };
	assert_int_equal(hbk_sam_exec(c, &bad), 0);
	assert_int_equal(bad.result.status, HBK_STATUS_CHECK_CONDITION);
	assert_int_equal(bad.result.asc, 0x20);
	/* Malformed commands never reach the driver. */
	struct hbk_scsi_cmd odd = { .lun = l, .cdb = { 0x00 }, .cdb_len = 7 };
	assert_int_equal(hbk_sam_exec(c, &odd), -EINVAL);
	/* Block I/O out of range is refused before it is sent. */
	assert_int_equal(tl_rw(l, false, 2047, 2, buf), -EINVAL);
	hbk_ctl_close(c);
}

/* DATA PROTECT is ENOSPC when a thin LUN ran out of space (27h/07h SPACE
 * ALLOCATION FAILED WRITE PROTECT), EROFS when the LUN is write protected. */
static void data_protect_maps_space_allocation_failure_to_enospc(void **state)
{
	(void)state;
	struct hbk_scsi_result r = { .service = HBK_SR_TASK_COMPLETE,
				     .status = HBK_STATUS_CHECK_CONDITION,
				     .sense_key = HBK_SK_DATA_PROTECT };
	r.asc = HBK_ASC_SPACE_ALLOC_FAILED >> 8;
	r.ascq = HBK_ASC_SPACE_ALLOC_FAILED & 0xff;
	assert_int_equal(hbk_blk_errno(&r), -ENOSPC);
	r.asc = HBK_ASC_WRITE_PROTECTED >> 8;
	r.ascq = HBK_ASC_WRITE_PROTECTED & 0xff;
	assert_int_equal(hbk_blk_errno(&r), -EROFS);
	r.ascq = 0x01;   /* HARDWARE WRITE PROTECTED */
	assert_int_equal(hbk_blk_errno(&r), -EROFS);
}

/* RECOVERED ERROR is a command that succeeded after some recovery (SPC-5
 * 4.4.2): a read or write answered with it, its data all moved, succeeds. */
static void recovered_error_is_success(void **state)
{
	(void)state;
	struct hbk_scsi_result r = { .service = HBK_SR_TASK_COMPLETE,
				     .status = HBK_STATUS_CHECK_CONDITION,
				     .sense_key = HBK_SK_RECOVERED_ERROR, .asc = 0x17, .ascq = 0x01 };
	assert_int_equal(hbk_blk_errno(&r), 0);
	/* Deferred sense (fixed 71h, descriptor 73h) reports an earlier
	 * command's error: this one was not processed, even with RECOVERED
	 * ERROR, so it is not a success. */
	static const uint8_t fixed[18] = { 0x71, 0, HBK_SK_RECOVERED_ERROR, 0, 0, 0, 0, 10,
					   0, 0, 0, 0, 0x17, 0x01 };
	static const uint8_t desc[8] = { 0x73, HBK_SK_RECOVERED_ERROR, 0x17, 0x01 };
	assert_int_equal(hbk_scsi_sense_decode(fixed, sizeof(fixed), &r), 0);
	assert_int_equal(r.sense_key, HBK_SK_RECOVERED_ERROR);
	assert_int_equal(hbk_blk_errno(&r), -EAGAIN);
	assert_int_equal(hbk_scsi_sense_decode(desc, sizeof(desc), &r), 0);
	assert_int_equal(hbk_blk_errno(&r), -EAGAIN);
	static const uint8_t current[18] = { 0x70, 0, HBK_SK_RECOVERED_ERROR, 0, 0, 0, 0, 10,
					     0, 0, 0, 0, 0x17, 0x01 };
	assert_int_equal(hbk_scsi_sense_decode(current, sizeof(current), &r), 0);
	assert_int_equal(hbk_blk_errno(&r), 0);
	static uint8_t out[8 * 512], in[8 * 512];
	tl_fill(out, 4242, 8, 512, 31);
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/hostile_disc", HBK_MODE_AUTO,
				 (const char *[]){ "recovered=1", NULL }, 0, 0, &c), 0);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	assert_int_equal(tl_rw(l, true, 4242, 8, out), 0);
	assert_int_equal(tl_rw(l, false, 4242, 8, in), 0);
	assert_true(tl_check(in, 4242, 8, 512, 31));
	hbk_ctl_close(c);
}

static void unmap_reads_back_zeroes(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=4M", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t buf[16 * 512];
	tl_fill(buf, 32, 16, 512, 1);
	assert_int_equal(tl_rw(l, true, 32, 16, buf), 0);
	struct hbk_blk_io io = { .lun = l, .op = HBK_BLK_UNMAP, .lba = 36, .nblocks = 8 };
	assert_int_equal(hbk_blk_exec(&io), 0);
	struct hbk_blk_io fl = { .lun = l, .op = HBK_BLK_FLUSH };
	assert_int_equal(hbk_blk_exec(&fl), 0);
	assert_int_equal(tl_rw(l, false, 32, 16, buf), 0);
	assert_true(tl_check(buf, 32, 4, 512, 1));
	for (unsigned i = 4 * 512; i < 12 * 512; i++)
		assert_int_equal(buf[i], 0);
	assert_true(tl_check(buf + 12 * 512, 44, 4, 512, 1));
	hbk_ctl_close(c);
}

/* A LUN that takes at most 64 blocks per UNMAP: a larger unmap becomes one
 * UNMAP per 64 blocks, every one of them accepted. */
static void unmap_split_at_the_lun_limit(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=4M", "max-unmap=64", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	assert_int_equal(tl_info(l).max_unmap_blocks, 64);
	uint8_t *buf = malloc(1000 * 512);
	tl_fill(buf, 100, 1000, 512, 2);
	assert_int_equal(tl_rw(l, true, 100, 1000, buf), 0);
	struct hbk_ctl_stats before, after;
	hbk_ctl_stats(c, &before);
	struct hbk_blk_io io = { .lun = l, .op = HBK_BLK_UNMAP, .lba = 100, .nblocks = 1000 };
	assert_int_equal(hbk_blk_exec(&io), 0);
	hbk_ctl_stats(c, &after);
	assert_int_equal(after.tasks - before.tasks, 16);   /* ceil(1000 / 64) */
	assert_int_equal(tl_rw(l, false, 100, 1000, buf), 0);
	for (unsigned i = 0; i < 1000 * 512; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
	hbk_ctl_close(c);
}

/* Submits the whole load, waits for it, asserts no I/O failed and returns
 * the controller's statistics for just this load. */
static struct hbk_ctl_stats load_run(struct tl_load *ld, struct hbk_ctl *c, unsigned n,
				     bool write)
{
	hbk_ctl_stats_reset(c);
	tl_load_start(ld, hbk_ctl_lun(c, 0), n, write, NULL, 5);
	assert_int_equal(tl_load_wait(ld, 0), 0);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.tasks, n);
	return s;
}

static void pool_exhaustion_queues_in_order(void **state)
{
	(void)state;
	/* 4 pooled tasks, 512 I/Os at once: the rest wait for free tasks. */
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=4M", "tasks=4", NULL });
	struct tl_load ld;
	load_run(&ld, c, 512, true);
	tl_load_free(&ld);
	struct hbk_ctl_stats s = load_run(&ld, c, 512, false);
	for (unsigned i = 0; i < ld.n; i++)
		assert_true(tl_check(ld.data + (size_t)i * 4096, i * 8ull, 8, 512, 5));
	assert_int_equal(s.hist[5] + s.hist[4], 0); /* never more than 4 per call */
	tl_load_free(&ld);
	hbk_ctl_close(c);
}

/* A pool of 3 tasks (not a power of two) through the wrap of the prepared
 * ring's free-running indices, which the host puts within the first 4096
 * tasks: every one of 6000 I/Os completes, in order, none twice. */
static void prepared_ring_wraps(void **state)
{
	(void)state;
	for (int mode = HBK_MODE_PER_TASK; mode <= HBK_MODE_BUNDLED; mode++) {
		struct hbk_ctl *c = open_ram((enum hbk_ctl_mode)mode,
					     (const char *[]){ "size=32M", "tasks=3", NULL });
		struct tl_load ld;
		load_run(&ld, c, 6000, true);
		tl_load_free(&ld);
		struct hbk_ctl_stats s;
		hbk_ctl_stats(c, &s);
		for (unsigned r = 0; r < HBK_RULES; r++)
			assert_int_equal(s.violations[r], 0);
		hbk_ctl_close(c);
	}
}

/* ---- Task management and initiators ------------------------------------------------ */

static void count_done(struct hbk_scsi_cmd *cmd)
{
	atomic_fetch_add((atomic_uint *)cmd->priv, 1);
}

static bool capturing;

/* Teardown: gives stderr back if a failed assertion left it captured. */
static int capture_off(void **state)
{
	(void)state;
	if (capturing)
		tl_capture_end();
	capturing = false;
	return 0;
}

/* Closes c after checking that the host counted no violation and that the
 * captured log (begun before the driver started) has no HBK-C11, which the
 * runtime logs before it answers a reset. */
static void close_without_violations(struct hbk_ctl *c)
{
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	for (unsigned r = 0; r < HBK_RULES; r++)
		assert_int_equal(s.violations[r], 0);
	hbk_ctl_close(c);
	capturing = false;
	assert_null(strstr(tl_capture_end(), "HBK-C11"));
}

/*
 * 70 reads on a driver whose calls carrying them take 300 ms, that holds
 * each task 2 ms more on its InterruptQueue and that pools 64 tasks: 6 wait
 * at the host.  Only READs and WRITEs are slow (slow-below): the open's
 * discovery, a dozen calls with none, does not wait 300 ms on each.
 * Task management takes waiting commands off the queue (TASK ABORTED,
 * without the driver) and reaches the driver for the rest, which answers a
 * LUN RESET once it has given back every task it held: no HBK-C11 report.
 */
static void task_management_aborts_queued_commands(void **state)
{
	(void)state;
	enum { N = 70, POOL = 64 };
	struct hbk_ctl *c = NULL;
	tl_capture_begin();   /* before the driver starts: its log too */
	capturing = true;
	assert_int_equal(tl_open("tests/drivers/stall", HBK_MODE_BUNDLED,
				 (const char *[]){ "delay-us=300000", "slow-below=4096",
						   "hold-us=2000", NULL },
				 0, 0, &c), 0);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	struct hbk_scsi_cmd *cmd = calloc(N, sizeof(*cmd));
	uint8_t *buf = malloc((size_t)N * 4096);
	assert_true(cmd && buf);
	atomic_uint done = 0;
	for (unsigned i = 0; i < N; i++) {
		cmd[i] = (struct hbk_scsi_cmd){ .lun = l, .cdb = { 0x28, 0, 0, 0, 0, (uint8_t)(i * 8),
								   0, 0, 8, 0 },
						.cdb_len = 10, .dir = HBK_DIR_READ, .buf = buf + i * 4096ull,
						.len = 4096, .done = count_done, .priv = &done };
		assert_int_equal(hbk_sam_submit(c, &cmd[i]), 0);
	}
	assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_ABORT_TASK, NULL), -EINVAL);
	assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_LUN_RESET, &cmd[0]), -EINVAL);
	assert_int_equal(hbk_sam_tmf(c, 0, 0, (enum hbk_tmf)99, NULL), -EINVAL);
	/* The last command waits for a pool task: it ends here and now. */
	assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_ABORT_TASK, &cmd[N - 1]),
			 HBK_SR_FUNCTION_COMPLETE);
	assert_int_equal(atomic_load(&done), 1);
	assert_int_equal(cmd[N - 1].result.service, HBK_SR_TASK_COMPLETE);
	assert_int_equal(cmd[N - 1].result.status, HBK_STATUS_TASK_ABORTED);
	/* The LUN reset takes the rest of the queue (before its call, which
	 * waits for the driver's current 300 ms call); the driver answers
	 * once those it holds have run to their end. */
	assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_LUN_RESET, NULL), HBK_SR_FUNCTION_COMPLETE);
	for (unsigned i = POOL; i < N; i++)
		assert_int_equal(cmd[i].result.status, HBK_STATUS_TASK_ABORTED);
	for (int ms = 0; ms < 5000 && atomic_load(&done) < N; ms++)
		usleep(1000);
	assert_int_equal(atomic_load(&done), N);
	/* Those at the driver ran to their end, before the reset. */
	for (unsigned i = 0; i < POOL; i++) {
		assert_int_equal(cmd[i].result.service, HBK_SR_TASK_COMPLETE);
		assert_int_equal(cmd[i].result.status, HBK_STATUS_GOOD);
	}
	/* A finished command is no longer at the driver: nothing to abort. */
	assert_int_equal(hbk_sam_tmf(c, 0, 0, HBK_TMF_ABORT_TASK, &cmd[POOL - 1]),
			 HBK_SR_FUNCTION_COMPLETE);
	close_without_violations(c);
	free(cmd);
	free(buf);
}

/*
 * Resets while the ram driver is busy: 32 WRITEs of 1 MiB at the driver,
 * then LUN RESET, and in the next round TARGET RESET, on both paths.  A
 * reset answers FUNCTION COMPLETE only once no task it covers is left at
 * the driver: the driver runtime reports none kept (HBK-C11, logged before
 * the answer goes back), and every command comes back, once: executed,
 * ended by the unit attention the reset set, or aborted at the host.
 */
static void resets_under_load_leave_no_task_at_the_driver(void **state)
{
	(void)state;
	enum { N = 32, ROUNDS = 4, BLOCKS = (1u << 20) / 512 };
	for (int mode = HBK_MODE_PER_TASK; mode <= HBK_MODE_BUNDLED; mode++) {
		tl_capture_begin();   /* before the driver starts: its log too */
		capturing = true;
		struct hbk_ctl *c = open_ram((enum hbk_ctl_mode)mode,
					     (const char *[]){ "size=64M", NULL });
		struct hbk_lun *l = hbk_ctl_lun(c, 0);
		struct hbk_scsi_cmd *cmd = calloc(N, sizeof(*cmd));
		uint8_t *buf = hbk_ctl_buf_alloc(c, (size_t)N << 20);   /* zero copy */
		assert_true(cmd && buf);
		for (unsigned round = 0; round < ROUNDS; round++) {
			atomic_uint done = 0;
			for (unsigned i = 0; i < N; i++) {
				uint32_t lba = i * BLOCKS;
				cmd[i] = (struct hbk_scsi_cmd){
					.lun = l, .cdb = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
							   (uint8_t)(lba >> 8), (uint8_t)lba, 0,
							   (uint8_t)(BLOCKS >> 8), (uint8_t)BLOCKS, 0 },
					.cdb_len = 10, .dir = HBK_DIR_WRITE, .buf = buf + ((size_t)i << 20),
					.len = 1u << 20, .done = count_done, .priv = &done };
				assert_int_equal(hbk_sam_submit(c, &cmd[i]), 0);
			}
			enum hbk_tmf op = round % 2 ? HBK_TMF_TARGET_RESET : HBK_TMF_LUN_RESET;
			assert_int_equal(hbk_sam_tmf(c, 0, 0, op, NULL), HBK_SR_FUNCTION_COMPLETE);
			for (int ms = 0; ms < 5000 && atomic_load(&done) < N; ms++)
				usleep(1000);
			assert_int_equal(atomic_load(&done), N);
			for (unsigned i = 0; i < N; i++) {
				uint8_t st = cmd[i].result.status;
				assert_int_equal(cmd[i].result.service, HBK_SR_TASK_COMPLETE);
				assert_true(st == HBK_STATUS_GOOD || st == HBK_STATUS_CHECK_CONDITION ||
					    st == HBK_STATUS_TASK_ABORTED);
			}
		}
		close_without_violations(c);
		free(cmd);
	}
}

/* A unit attention (the LUN was reset) ends a command unexecuted: block
 * I/O sends it again, a few times at most. */
static void block_io_retries_after_a_unit_attention(void **state)
{
	(void)state;
	static uint8_t out[8 * 512], in[8 * 512];
	tl_fill(out, 4242, 8, 512, 77);
	for (int mode = HBK_MODE_PER_TASK; mode <= HBK_MODE_BUNDLED; mode++) {
		struct hbk_ctl *c = NULL;
		assert_int_equal(tl_open("tests/drivers/unit_attention", (enum hbk_ctl_mode)mode,
					 (const char *[]){ "ua=3", NULL }, 0, 0, &c), 0);
		struct hbk_lun *l = hbk_ctl_lun(c, 0);
		assert_int_equal(tl_rw(l, true, 4242, 8, out), 0);      /* 3 UAs, then done */
		memset(in, 0, sizeof(in));
		assert_int_equal(tl_rw(l, false, 4242, 8, in), 0);
		assert_true(tl_check(in, 4242, 8, 512, 77));
		hbk_ctl_close(c);
		/* A LUN that never stops reporting them: the I/O fails, retryable. */
		assert_int_equal(tl_open("tests/drivers/unit_attention", (enum hbk_ctl_mode)mode,
					 (const char *[]){ "ua=1000", NULL }, 0, 0, &c), 0);
		struct hbk_blk_io io = { .lun = hbk_ctl_lun(c, 0), .op = HBK_BLK_READ, .lba = 4242,
					 .nblocks = 8, .buf = in };
		hbk_ctl_stats_reset(c);
		assert_int_equal(hbk_blk_exec(&io), -EAGAIN);
		assert_int_equal(io.result.sense_key, HBK_SK_UNIT_ATTENTION);
		struct hbk_ctl_stats s;
		hbk_ctl_stats(c, &s);
		assert_int_equal(s.tasks, 5);   /* the first try and 4 more */
		hbk_ctl_close(c);
	}
}

/* A LUN other than 0 meets discovery with its unit attention still pending
 * (TEST UNIT READY went to LUN 0): READ CAPACITY(16) is sent again, not
 * traded for READ CAPACITY(10), which cannot tell a capacity of 2^32 blocks
 * or more. */
static void discovery_retries_read_capacity_after_a_unit_attention(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/hostile_disc", HBK_MODE_AUTO,
				 (const char *[]){ "big=1", "rc16_ua=1", NULL }, 0, 0, &c), 0);
	assert_int_equal(hbk_ctl_lun_count(c), 1);
	struct hbk_lun_info info = tl_info(hbk_ctl_lun(c, 0));
	assert_int_equal(info.nblocks, 1ull << 33);
	assert_int_equal(info.block_size, 512);
	hbk_ctl_close(c);
}

/* REPORT LUNS naming one LUN more than once (here LUN 0 in peripheral and
 * in flat addressing, then again) registers it once. */
static void discovery_registers_a_lun_listed_twice_once(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/hostile_disc", HBK_MODE_AUTO,
				 (const char *[]){ "rl=dup", NULL }, 0, 0, &c), 0);
	assert_int_equal(hbk_ctl_lun_count(c), 1);
	struct hbk_lun_info info = tl_info(hbk_ctl_lun(c, 0));
	assert_int_equal(info.lun, 0);
	hbk_ctl_close(c);
}

/* A target too busy for REPORT LUNS at first still has every LUN found:
 * the command is sent again rather than taken to mean "LUN 0 only". */
static void discovery_retries_a_busy_report_luns(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/hostile_disc", HBK_MODE_AUTO,
				 (const char *[]){ "luns=2", "rl_busy=2", NULL }, 0, 0, &c), 0);
	assert_int_equal(hbk_ctl_lun_count(c), 2);
	assert_int_equal(tl_info(hbk_ctl_lun(c, 1)).lun, 1);
	hbk_ctl_close(c);
}

/* A REPORT LUNS list longer than the first allocation length is asked for
 * again, whole: the LUNs the host serves may come last (SPC sets no order). */
static void discovery_reads_a_long_lun_list_whole(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/hostile_disc", HBK_MODE_AUTO,
				 (const char *[]){ "luns=2", "rl=rev300", NULL }, 0, 0, &c), 0);
	assert_int_equal(hbk_ctl_lun_count(c), 2);
	hbk_ctl_close(c);
}

/* A LUN whose one block is more than the HBA moves per command, or whose
 * capacity in bytes does not fit in 63 bits, is not registered: every I/O
 * to the first would fail, and the size of the second overflows. */
static void discovery_skips_a_lun_the_host_cannot_address(void **state)
{
	(void)state;
	static const char *const bad[][2] = {
		{ "lun1_bs=2097152", NULL },              /* 2 MiB blocks, 1 MiB transfers */
		{ "lun1_blocks=0x80000000000000", NULL }, /* 2^55 blocks of 512 bytes */
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct hbk_ctl *c = NULL;
		assert_int_equal(tl_open("tests/drivers/hostile_disc", HBK_MODE_AUTO,
					 (const char *[]){ "luns=2", bad[i][0], NULL }, 0, 0, &c),
				 0);
		assert_int_equal(hbk_ctl_lun_count(c), 1);
		assert_int_equal(tl_info(hbk_ctl_lun(c, 0)).lun, 0);
		hbk_ctl_close(c);
	}
	/* The largest that fit are fine. */
	static const char *const good[][2] = {
		{ "lun1_bs=1048576", NULL },              /* one block per transfer */
		{ "lun1_blocks=0x3fffffffffffff", NULL }, /* 2^63 - 512 bytes */
	};
	for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct hbk_ctl *c = NULL;
		assert_int_equal(tl_open("tests/drivers/hostile_disc", HBK_MODE_AUTO,
					 (const char *[]){ "luns=2", good[i][0], NULL }, 0, 0, &c),
				 0);
		assert_int_equal(hbk_ctl_lun_count(c), 2);
		hbk_ctl_close(c);
	}
}

/* Discovery answered with corrupted data, short transfers, busy statuses
 * and random sense (hostile_disc mangle=SEED, over HBK_MANGLE_SEEDS seeds,
 * 16 by default) registers only LUNs the block API can serve, and their
 * I/O works. */
static void discovery_survives_mangled_answers(void **state)
{
	(void)state;
	const char *env = getenv("HBK_MANGLE_SEEDS");
	unsigned seeds = env ? (unsigned)atoi(env) : 16;
	for (unsigned seed = 1; seed <= seeds; seed++) {
		char arg[32];
		snprintf(arg, sizeof(arg), "mangle=%u", seed);
		/* Most seeds leave a LUN or two; waiting for the first LUN of
		 * one that leaves none takes settle_ms. */
		struct hbk_ctl_opts o = { .driver = tl_path("tests/drivers/hostile_disc"),
					  .driver_args = (const char *[]){ "luns=2", arg, NULL },
					  .settle_ms = 200 };
		struct hbk_ctl *c = NULL;
		int err = hbk_ctl_open(&o, &c);
		if (err) {
			assert_null(c);
			continue;
		}
		for (unsigned i = 0; i < hbk_ctl_lun_count(c); i++) {
			struct hbk_lun *l = hbk_ctl_lun(c, i);
			struct hbk_lun_info info = tl_info(l);
			assert_true(info.lun < 2);
			assert_true(info.block_size > 0);
			assert_true(info.max_xfer_bytes >= info.block_size);
			assert_int_equal(info.max_xfer_bytes % info.block_size, 0);
			assert_true(info.max_xfer_bytes <= (1u << 20));   /* the HBA's */
			assert_true(info.nblocks <= INT64_MAX / info.block_size);
			uint8_t *buf = calloc(1, info.block_size);
			assert_non_null(buf);
			tl_rw(l, true, 0, 1, buf);
			tl_rw(l, false, 0, 1, buf);
			free(buf);
		}
		hbk_ctl_close(c);
	}
}

/* Each command carries its initiator to the driver, which keeps
 * reservations per initiator, on both paths. */
static void reservations_are_kept_per_initiator(void **state)
{
	(void)state;
	for (int mode = HBK_MODE_PER_TASK; mode <= HBK_MODE_BUNDLED; mode++) {
		struct hbk_ctl *c = open_ram((enum hbk_ctl_mode)mode, (const char *[]){ "size=1M", NULL });
		tl_check_reservations_per_initiator(hbk_ctl_lun(c, 0), 16);
		hbk_ctl_close(c);
	}
}

/* While the driver is busy in process_bundled, whatever is posted to the
 * submission ring goes to it in the next batch. */
static void a_busy_driver_takes_what_piled_up_in_one_batch(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/stall", HBK_MODE_BUNDLED,
				 (const char *[]){ "delay-us=20000", NULL }, 0, 0, &c), 0);
	struct tl_load ld;
	/* 64: the test driver's task count, so none waits for a task */
	struct hbk_ctl_stats s = load_run(&ld, c, 64, true);
	/* The first batch is taken at once; the 20 ms it takes is ample time
	 * to post the other 63, which then go 32 to a batch. */
	assert_true(s.io_calls <= 4);
	assert_true(s.hist[5] >= 1);
	/* Posting to a submitter that is awake costs no wake: at most one
	 * per batch (the one that found it asleep). */
	assert_true(s.driver_wakes <= s.io_calls);
	tl_load_free(&ld);
	hbk_ctl_close(c);
}

/* The per-task path never carries more than one task per call. */
static void per_task_path_sends_one_task_per_call(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/stall", HBK_MODE_PER_TASK,
				 (const char *[]){ "delay-us=1000", NULL }, 0, 0, &c), 0);
	struct tl_load ld;
	struct hbk_ctl_stats s = load_run(&ld, c, 64, false);
	assert_int_equal(s.io_calls, ld.n);
	assert_int_equal(s.hist[0], ld.n);
	tl_load_free(&ld);
	hbk_ctl_close(c);
}

static void iodepth_one_sends_one_slot_per_call(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_BUNDLED, (const char *[]){ "size=4M", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint8_t buf[4096];
	hbk_ctl_stats_reset(c);
	for (unsigned i = 0; i < 200; i++)
		assert_int_equal(tl_rw(l, false, i * 8ull, 8, buf), 0);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.tasks, 200);
	assert_int_equal(s.hist[0], 200);
	hbk_ctl_close(c);
}

/*
 * The completion ring's doorbell: with polling off the event thread sleeps
 * whenever the ring is empty, so at iodepth 1 every completion must wake it
 * (a lost wake-up hangs this test); with polling on (the default) it is
 * still correct under a mixed load from several threads.
 */
/* Writes, reads back and checks n blocks at iodepth 1 from lba on; returns
 * the number of failures (callable off the cmocka thread). */
static unsigned ring_rw(struct hbk_lun *l, uint64_t lba, unsigned n)
{
	uint8_t buf[4096];
	unsigned bad = 0;
	for (unsigned i = 0; i < n; i++, lba += 8) {
		tl_fill(buf, lba, 8, 512, i);
		bad += tl_rw(l, true, lba, 8, buf) != 0;
		memset(buf, 0, sizeof(buf));
		bad += tl_rw(l, false, lba, 8, buf) != 0;
		bad += !tl_check(buf, lba, 8, 512, i);
	}
	return bad;
}

/* GET LBA STATUS from lba: the descriptors' (start, count, status) into d
 * (up to max), their number returned. */
static unsigned lba_status(struct hbk_ctl *c, struct hbk_lun *l, uint64_t lba,
			   uint64_t (*d)[3], unsigned max)
{
	uint8_t buf[8 + 16 * 8] = { 0 };
	struct hbk_scsi_cmd cmd = { .lun = l, .cdb = { 0x9e, 0x12 }, .cdb_len = 16,
				    .dir = HBK_DIR_READ, .buf = buf, .len = sizeof(buf) };
	for (int i = 0; i < 8; i++)
		cmd.cdb[2 + i] = (uint8_t)(lba >> (56 - 8 * i));
	cmd.cdb[13] = sizeof(buf);
	assert_int_equal(hbk_sam_exec(c, &cmd), 0);
	assert_true(hbk_scsi_ok(&cmd.result));
	unsigned n = ((unsigned)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3]) - 4;
	n = n / 16 < max ? n / 16 : max;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *p = buf + 8 + 16 * i;
		d[i][0] = d[i][1] = 0;
		for (int k = 0; k < 8; k++)
			d[i][0] = d[i][0] << 8 | p[k];
		for (int k = 8; k < 12; k++)
			d[i][1] = d[i][1] << 8 | p[k];
		d[i][2] = p[12] & 0xf;
	}
	return n;
}

/* The ram LUN is thin with zero reclaim: blocks never written and blocks
 * written with zeros are deallocated (1), others mapped (0), in extents
 * that cross the 64-block words of its written-block map. */
static void ram_lba_status_follows_the_data(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=1G", NULL });
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint64_t d[8][3], total = (1ull << 30) / 512;
	assert_int_equal(lba_status(c, l, 0, d, 8), 1);
	assert_true(d[0][0] == 0 && d[0][1] == total && d[0][2] == 1);
	uint8_t buf[200 * 512];
	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(tl_rw(l, true, 100, 200, buf), 0);     /* 100..299 mapped */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(tl_rw(l, true, 150, 20, buf), 0);      /* 150..169 zero again */
	assert_int_equal(lba_status(c, l, 0, d, 8), 5);
	static const uint64_t want[5][3] = {
		{ 0, 100, 1 }, { 100, 50, 0 }, { 150, 20, 1 }, { 170, 130, 0 }, { 300, 0, 1 },
	};
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(d[i][0], want[i][0]);
		assert_int_equal(d[i][1], i < 4 ? want[i][1] : total - 300);
		assert_int_equal(d[i][2], want[i][2]);
	}
	assert_int_equal(lba_status(c, l, 101, d, 1), 1);       /* from inside an extent */
	assert_true(d[0][0] == 101 && d[0][1] == 49 && d[0][2] == 0);
	hbk_ctl_close(c);
}

static void completion_ring_doorbell_wakes_a_sleeping_host(void **state)
{
	(void)state;
	struct hbk_ctl_opts o = { .driver = tl_path(RAM), .mode = HBK_MODE_BUNDLED,
				  .driver_args = (const char *[]){ "size=4M", NULL },
				  .poll_us = -1 };
	struct hbk_ctl *c = NULL;
	assert_int_equal(hbk_ctl_open(&o, &c), 0);
	hbk_ctl_stats_reset(c);
	assert_int_equal(ring_rw(hbk_ctl_lun(c, 0), 0, 500), 0);
	struct hbk_ctl_stats s;
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.completions, 1000);
	assert_true(s.doorbells >= 900); /* all but the few that beat the sleep */
	hbk_ctl_close(c);
}

static void *ring_worker(void *arg)
{
	/* Beyond the 256 blocks of 4 KiB the bursts write. */
	return (void *)(uintptr_t)ring_rw(arg, 4096, 300);
}

static void completion_ring_under_polling_and_load(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_BUNDLED, (const char *[]){ "size=4M", NULL });
	struct tl_load ld;
	pthread_t th;
	/* One thread at iodepth 1 beside bursts of 256: the event thread
	 * alternates between polling and sleeping. */
	assert_int_equal(pthread_create(&th, NULL, ring_worker, hbk_ctl_lun(c, 0)), 0);
	for (unsigned k = 0; k < 8; k++) {
		tl_load_start(&ld, hbk_ctl_lun(c, 0), 256, true, NULL, 5);
		assert_int_equal(tl_load_wait(&ld, 0), 0);
		tl_load_free(&ld);
	}
	void *bad;
	pthread_join(th, &bad);
	assert_int_equal((uintptr_t)bad, 0);
	hbk_ctl_close(c);
}

/* Reads at iodepth 1, each submitted from the completion of the one before,
 * as an asynchronous application does. */
struct chain {
	struct hbk_blk_io io;
	struct hbk_lun *lun;
	uint64_t lba;
	unsigned left, errors;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	uint8_t buf[4096];
};

static void chain_end(struct chain *ch)
{
	pthread_mutex_lock(&ch->lock);
	ch->done = true;
	pthread_cond_signal(&ch->cond);
	pthread_mutex_unlock(&ch->lock);
}

static void chain_next(struct hbk_blk_io *io)
{
	struct chain *ch = io->priv;
	ch->errors += io->error != 0;
	if (!ch->left--) {
		chain_end(ch);
		return;
	}
	ch->io = (struct hbk_blk_io){ .lun = ch->lun, .op = HBK_BLK_READ, .lba = ch->lba,
				      .nblocks = 8, .buf = ch->buf, .done = chain_next, .priv = ch };
	if (hbk_blk_submit(&ch->io)) {
		ch->errors++;
		chain_end(ch);
	}
}

static unsigned chain_run(struct hbk_lun *l, uint64_t lba, unsigned n)
{
	struct chain ch = { .lun = l, .lba = lba, .left = n, .lock = PTHREAD_MUTEX_INITIALIZER,
			    .cond = PTHREAD_COND_INITIALIZER };
	chain_next(&(struct hbk_blk_io){ .priv = &ch });
	pthread_mutex_lock(&ch.lock);
	while (!ch.done)
		pthread_cond_wait(&ch.cond, &ch.lock);
	pthread_mutex_unlock(&ch.lock);
	return ch.errors;
}

/* The event thread polls the completion ring only while its polls catch.
 * With a 2 ms poll window, a driver taking 20 ms per read stops the polling
 * after three misses, save a sample every 16th wait; once the same
 * controller answers at once again, a sample catches, polling resumes and
 * goes on catching.  A driver taking 3 ms, a window and a half, stops it
 * as well: waits that short are no sign that a poll would catch. */
static void ring_polling_follows_how_soon_completions_come(void **state)
{
	(void)state;
	struct hbk_ctl_opts o = { .driver = tl_path("tests/drivers/stall"), .mode = HBK_MODE_BUNDLED,
				  .driver_args = (const char *[]){ "delay-us=20000", "slow-below=64",
								   NULL },
				  .poll_us = 2000 };
	struct hbk_ctl *c = NULL;
	assert_int_equal(hbk_ctl_open(&o, &c), 0);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	struct hbk_ctl_stats s;

	/* Polling on to begin with: the open's own commands may have left it
	 * off on a busy machine (their completions missing the window), and
	 * then the slow reads below would see only the 16th-wait samples.
	 * Fast reads, as in the second part below, until most polls catch. */
	unsigned tries = 0;
	do {
		assert_true(++tries <= 10);
		hbk_ctl_stats_reset(c);
		assert_int_equal(chain_run(l, 64, 200), 0);
		hbk_ctl_stats(c, &s);
	} while (s.ring_polls_caught < 150);

	hbk_ctl_stats_reset(c);
	assert_int_equal(chain_run(l, 0, 10), 0);
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.completions, 10);
	assert_int_equal(s.ring_polls_caught, 0);
	assert_in_range(s.ring_polls, 1, 4);

	/* Fast again: polling resumes.  On a busy machine a poll preempted
	 * past its window misses and delays that; three tries of 400. */
	tries = 0;
	do {
		assert_true(++tries <= 3);
		hbk_ctl_stats_reset(c);
		assert_int_equal(chain_run(l, 64, 400), 0);
		hbk_ctl_stats(c, &s);
		assert_int_equal(s.completions, 400);
	} while (s.ring_polls_caught < 200);
	hbk_ctl_close(c);

	o.driver_args = (const char *[]){ "delay-us=3000", "slow-below=64", NULL };
	assert_int_equal(hbk_ctl_open(&o, &c), 0);
	l = hbk_ctl_lun(c, 0);
	hbk_ctl_stats_reset(c);
	assert_int_equal(chain_run(l, 0, 48), 0);
	hbk_ctl_stats(c, &s);
	assert_int_equal(s.completions, 48);
	/* Three misses, then a sample every 16th wait; a poll preempted past
	 * the 3 ms may catch one, which buys another miss or two.  Polling
	 * on would have made 48. */
	assert_true(s.ring_polls_caught <= 2);
	assert_in_range(s.ring_polls, 1, 12);
	hbk_ctl_close(c);
}

/* Interrupts raised through an event source of the InterruptQueue: every
 * I/O on both paths completes with its data, also while the submitting
 * thread detaches and re-attaches the source under the queue's poll. */
static void event_source_interrupts_complete_io(void **state)
{
	(void)state;
	for (int mode = HBK_MODE_PER_TASK; mode <= HBK_MODE_BUNDLED; mode++) {
		struct hbk_ctl *c = NULL;
		assert_int_equal(tl_open("tests/drivers/event_source", (enum hbk_ctl_mode)mode,
					 (const char *[]){ "churn=7", NULL }, 0, 0, &c), 0);
		assert_int_equal(hbk_ctl_bundled(c), mode == HBK_MODE_BUNDLED);
		struct tl_load ld;
		for (unsigned k = 0; k < 4; k++) {
			load_run(&ld, c, 500, true);
			tl_load_free(&ld);
			load_run(&ld, c, 500, false);
			for (unsigned i = 0; i < ld.n; i++)
				assert_true(tl_check(ld.data + (size_t)i * 4096, i * 8ull, 8, 512, 5));
			tl_load_free(&ld);
		}
		hbk_ctl_close(c);
	}
}

static void close_fails_outstanding_io(void **state)
{
	(void)state;
	struct hbk_ctl *c = open_ram(HBK_MODE_AUTO, (const char *[]){ "size=16M", "tasks=8", NULL });
	struct tl_load ld;
	tl_load_start(&ld, hbk_ctl_lun(c, 0), 1000, false, NULL, 0);
	hbk_ctl_close(c);
	/* Every callback ran.  With 8 tasks for 1000 reads most were still
	 * waiting at close, and each of those failed as DeviceNotPresent. */
	assert_int_equal(ld.outstanding, 0);
	assert_true(ld.errors > 0);
	unsigned failed = 0;
	for (unsigned i = 0; i < ld.n; i++)
		if (ld.io[i].error) {
			failed++;
			assert_int_equal(ld.io[i].result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
			assert_int_equal(ld.io[i].result.status, HBK_DS_DEVICE_NOT_PRESENT);
			assert_int_equal(ld.io[i].error, -ENODEV);
		}
	assert_int_equal(failed, ld.errors);
	tl_load_free(&ld);
}

static void attach_to_a_listening_driver(void **state)
{
	(void)state;
	char path[64];
	snprintf(path, sizeof(path), "/tmp/hbk-test-%d.sock", getpid());
	pid_t pid;
	char *argv[] = { (char *)tl_path(RAM), "--listen", path, "size=2M", NULL };
	assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, argv, environ), 0);
	struct hbk_ctl *c = NULL;
	struct hbk_ctl_opts o = { .attach = path, .settle_ms = 3000 };
	int err = -1;
	for (int i = 0; i < 200 && err; i++) {   /* until the driver listens */
		err = hbk_ctl_open(&o, &c);
		if (err)
			usleep(10000);
	}
	assert_int_equal(err, 0);
	assert_int_equal(hbk_ctl_lun_count(c), 1);
	uint8_t buf[4096];
	tl_fill(buf, 0, 8, 512, 2);
	assert_int_equal(tl_rw(hbk_ctl_lun(c, 0), true, 0, 8, buf), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(tl_rw(hbk_ctl_lun(c, 0), false, 0, 8, buf), 0);
	assert_true(tl_check(buf, 0, 8, 512, 2));
	hbk_ctl_close(c);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);   /* the driver exits after STOP */
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A host that dies without closing: the driver stops itself (its interrupt
 * work and DMA end before its queues and the arena go away) and exits. */
static void driver_stops_when_the_host_vanishes(void **state)
{
	(void)state;
	char path[64], log[64];
	snprintf(path, sizeof(path), "/tmp/hbk-test-%d-v.sock", getpid());
	snprintf(log, sizeof(log), "/tmp/hbk-test-%d-v.log", getpid());
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	pid_t pid;
	char *argv[] = { (char *)tl_path(RAM), "--listen", path, "size=2M", NULL };
	assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	pid_t host = fork();
	assert_true(host >= 0);
	if (!host) {
		struct hbk_ctl *c = NULL;
		struct hbk_ctl_opts o = { .attach = path, .settle_ms = 3000 };
		int err = -1;
		for (int i = 0; i < 200 && err; i++) {
			err = hbk_ctl_open(&o, &c);
			if (err)
				usleep(10000);
		}
		uint8_t buf[4096] = { 0 };
		_exit(err || tl_rw(hbk_ctl_lun(c, 0), true, 0, 8, buf) ? 1 : 0);
	}
	int status;
	assert_int_equal(waitpid(host, &status, 0), host);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	char text[4096] = { 0 };
	FILE *f = fopen(log, "r");
	assert_non_null(f);
	assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
	fclose(f);
	unlink(log);
	fputs(text, stderr);  /* into the test log, where sanitizer reports are looked for */
	assert_non_null(strstr(text, "went away without stopping the controller"));
}

/* A driver still busy after STOP (writing a cache out) is waited for, not
 * killed: close takes as long as the driver needs, within exit_timeout_ms. */
static void close_waits_for_a_driver_finishing_after_stop(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/stall", HBK_MODE_AUTO,
				 (const char *[]){ "exit-delay-ms=2500", NULL }, 0, 0, &c), 0);
	uint8_t buf[4096] = { 0 };
	assert_int_equal(tl_rw(hbk_ctl_lun(c, 0), true, 0, 8, buf), 0);
	tl_capture_begin();
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	hbk_ctl_close(c);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	const char *out = tl_capture_end();
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(s >= 2.4);
	assert_null(strstr(out, "killing it"));
}

static void ignore_blk(struct hbk_blk_io *io)
{
	(void)io;
}

/* A driver hung in its bundled entry point cannot answer STOP: close kills
 * it once the call's time limit passes, without the exit grace a driver
 * that answered gets, and the I/O in flight fails. */
static void close_kills_a_driver_that_does_not_answer_stop(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	assert_int_equal(tl_open("tests/drivers/stall", HBK_MODE_BUNDLED, NULL, 1000, 0, &c), 0);
	static _Alignas(4096) uint8_t buf[512];
	struct hbk_blk_io io = { .lun = hbk_ctl_lun(c, 0), .op = HBK_BLK_WRITE, .lba = 4242,
				 .nblocks = 1, .buf = buf, .done = ignore_blk };
	assert_int_equal(hbk_blk_submit(&io), 0);   /* the driver never returns from it */
	usleep(100000);
	tl_capture_begin();
	uint64_t t0 = now_ms();
	hbk_ctl_close(c);
	uint64_t ms = now_ms() - t0;
	const char *out = tl_capture_end();
	assert_true(ms < 5000);                      /* the call limit, not the 30 s grace */
	assert_non_null(strstr(out, "driver did not answer STOP; killing it"));
	assert_int_equal(io.result.service, HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE);
}

/*
 * ABORT TASK racing with the end of its command: A is held 150 ms, and the
 * abort waits for the call channel, which a 300 ms LUN RESET keeps busy;
 * meanwhile A ends and its callback submits B, which takes A's slot.  The
 * abort names A by its task_tag, unique per issue, so B (held 1000 ms) is
 * left alone and ends GOOD.  With a per-slot tag it was ended TASK ABORTED.
 */
static struct {
	struct hbk_ctl *c;
	struct hbk_scsi_cmd a, b;
	_Alignas(4096) uint8_t buf[2][512];
	atomic_int a_result, b_result;   /* service << 8 | status, -1 until done */
} race;

static void race_read(struct hbk_scsi_cmd *cmd, uint32_t lba, uint8_t *buf,
		      void (*done)(struct hbk_scsi_cmd *))
{
	*cmd = (struct hbk_scsi_cmd){ .cdb = { 0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
					       (uint8_t)(lba >> 8), (uint8_t)lba, 0, 0, 1, 0 },
				      .cdb_len = 10, .dir = HBK_DIR_READ, .buf = buf, .len = 512,
				      .done = done };
}

static void race_b_done(struct hbk_scsi_cmd *cmd)
{
	atomic_store(&race.b_result, cmd->result.service << 8 | cmd->result.status);
}

static void race_a_done(struct hbk_scsi_cmd *cmd)
{
	atomic_store(&race.a_result, cmd->result.service << 8 | cmd->result.status);
	race_read(&race.b, 6000, race.buf[1], race_b_done);
	assert_int_equal(hbk_sam_submit(race.c, &race.b), 0);
}

static void *race_lun_reset(void *arg)
{
	(void)arg;
	hbk_sam_tmf(race.c, 0, 0, HBK_TMF_LUN_RESET, NULL);
	return NULL;
}

static void abort_task_spares_the_next_command_in_the_slot(void **state)
{
	(void)state;
	atomic_init(&race.a_result, -1);
	atomic_init(&race.b_result, -1);
	assert_int_equal(tl_open("tests/drivers/abort_by_tag", HBK_MODE_BUNDLED, NULL, 0, 0, &race.c), 0);
	race_read(&race.a, 5000, race.buf[0], race_a_done);
	assert_int_equal(hbk_sam_submit(race.c, &race.a), 0);
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, race_lun_reset, NULL), 0);
	usleep(30000);                               /* the LUN RESET holds the channel */
	int sr = hbk_sam_tmf(race.c, 0, 0, HBK_TMF_ABORT_TASK, &race.a);
	pthread_join(th, NULL);
	assert_int_equal(sr, HBK_SR_FUNCTION_COMPLETE);
	assert_int_equal(atomic_load(&race.a_result), HBK_SR_TASK_COMPLETE << 8 | HBK_STATUS_GOOD);
	for (int i = 0; i < 3000 && atomic_load(&race.b_result) < 0; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&race.b_result), HBK_SR_TASK_COMPLETE << 8 | HBK_STATUS_GOOD);
	hbk_ctl_close(race.c);
}

/* device_management false: the framework probes targets 0..highest itself. */
static void framework_creates_targets_when_driver_does_not(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	uint64_t t0 = now_ms();
	assert_int_equal(tl_open("tests/drivers/framework_managed", HBK_MODE_AUTO, NULL, 0, 0, &c), 0);
	assert_true(now_ms() - t0 < 3000);  /* absent targets fail fast */
	assert_int_equal(hbk_ctl_lun_count(c), 1);
	assert_int_equal(tl_info(hbk_ctl_lun(c, 0)).target, 0);
	uint8_t buf[4096];
	tl_fill(buf, 8, 8, 512, 4);
	assert_int_equal(tl_rw(hbk_ctl_lun(c, 0), true, 8, 8, buf), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(tl_rw(hbk_ctl_lun(c, 0), false, 8, 8, buf), 0);
	assert_true(tl_check(buf, 8, 8, 512, 4));
	hbk_ctl_close(c);
}

/* Media change, presence and destruction reported by the driver. */
static void driver_target_calls_reach_the_host(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	tl_capture_begin();  /* before the spawn: the driver's stderr too */
	assert_int_equal(tl_open("tests/drivers/target_lifecycle", HBK_MODE_AUTO, NULL, 0, 0, &c), 0);
	struct hbk_lun *l = hbk_ctl_lun(c, 0);
	uint64_t full = tl_info(l).nblocks;
	uint8_t buf[4096];
	tl_fill(buf, 4242, 8, 512, 9);
	assert_int_equal(tl_rw(l, true, 4242, 8, buf), 0);
	for (int i = 0; i < 500 && tl_info(l).nblocks == full; i++)
		usleep(10000);
	assert_int_equal(tl_info(l).nblocks, full / 2);
	/* The host checks ranges against the new capacity. */
	assert_int_equal(tl_rw(l, false, full / 2, 1, buf), -EINVAL);
	assert_int_equal(tl_rw(l, false, 4242, 8, buf), 0);
	struct hbk_lun_info info;
	for (int i = 0; i < 500 && hbk_lun_info(l, &info) == 0; i++)
		usleep(10000);
	assert_int_equal(hbk_lun_info(l, &info), -ENODEV);
	assert_int_equal(tl_rw(l, false, 0, 1, buf), -ENODEV);
	hbk_ctl_close(c);
	const char *log = tl_capture_end();
	assert_non_null(strstr(log, "lifecycle: media changed: 0"));
	assert_non_null(strstr(log, "lifecycle: present before 1, destroy 0, present after 0"));
}

/* Garbage on the driver's call channel: the runtime logs it and goes on. */
static void driver_survives_garbage_from_a_host(void **state)
{
	(void)state;
	char path[64];
	snprintf(path, sizeof(path), "/tmp/hbk-garbage-%d.sock", getpid());
	pid_t pid;
	char *argv[] = { (char *)tl_path(RAM), "--listen", path, "size=1M", NULL };
	assert_int_equal(posix_spawn(&pid, argv[0], NULL, NULL, argv, environ), 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int call = -1, event = -1;
	for (int i = 0; i < 200 && event < 0; i++) {
		int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			if (call < 0)
				call = fd;
			else
				event = fd;
		} else {
			close(fd);
			usleep(10000);
		}
	}
	assert_true(call >= 0 && event >= 0);
	/* Truncated, wrong magic, unknown type, and a well-formed HELLO last. */
	uint8_t junk[16] = { 1, 2, 3 };
	assert_int_equal(send(call, junk, 3, 0), 3);
	assert_int_equal(send(call, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	struct hbk_msg_call m = { .hdr = { .magic = HBK_MSG_MAGIC, .type = 99, .len = sizeof(m) } };
	assert_int_equal(send(call, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	m.hdr.type = HBK_MSG_HELLO;
	m.hdr.seq = 7;
	assert_int_equal(send(call, &m, sizeof(m), 0), (ssize_t)sizeof(m));
	struct hbk_msg_hello_reply r;
	struct pollfd p = { .fd = call, .events = POLLIN };
	assert_int_equal(poll(&p, 1, 5000), 1);
	/* The unknown type gets an ENOSYS reply; then the HELLO is answered. */
	ssize_t n;
	do
		n = recv(call, &r, sizeof(r), 0);
	while (n > 0 && r.hdr.seq != 7);
	assert_int_equal(n, (ssize_t)sizeof(r));
	assert_int_equal(r.hdr.type, HBK_MSG_HELLO);
	assert_string_equal(r.driver_name, "hbk-ram");
	close(call);
	close(event);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);  /* host gone: clean exit */
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void open_fails_cleanly_without_a_driver(void **state)
{
	(void)state;
	struct hbk_ctl *c = NULL;
	struct hbk_ctl_opts o = { .driver = "/nonexistent/driver" };
	tl_capture_begin();
	int err = hbk_ctl_open(&o, &c);
	tl_capture_end();
	assert_true(err < 0);
	assert_null(c);
	struct hbk_ctl_opts none = { 0 };
	assert_int_equal(hbk_ctl_open(&none, &c), -EINVAL);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(discovery_registers_the_lun),
		cmocka_unit_test(discovery_finds_every_target_and_lun),
		cmocka_unit_test(data_survives_roundtrip_bundled),
		cmocka_unit_test(data_survives_roundtrip_per_task),
		cmocka_unit_test(small_max_transfer_is_refused),
		cmocka_unit_test(large_io_is_split_at_max_transfer),
		cmocka_unit_test(arena_buffers_are_zero_copy_and_correct),
		cmocka_unit_test(misaligned_arena_buffer_is_bounced),
		cmocka_unit_test(scsi_errors_come_back_as_results),
		cmocka_unit_test(data_protect_maps_space_allocation_failure_to_enospc),
		cmocka_unit_test(recovered_error_is_success),
		cmocka_unit_test(unmap_reads_back_zeroes),
		cmocka_unit_test(unmap_split_at_the_lun_limit),
		cmocka_unit_test(pool_exhaustion_queues_in_order),
		cmocka_unit_test(prepared_ring_wraps),
		cmocka_unit_test(a_busy_driver_takes_what_piled_up_in_one_batch),
		cmocka_unit_test_teardown(task_management_aborts_queued_commands, capture_off),
		cmocka_unit_test_teardown(resets_under_load_leave_no_task_at_the_driver, capture_off),
		cmocka_unit_test(reservations_are_kept_per_initiator),
		cmocka_unit_test(block_io_retries_after_a_unit_attention),
		cmocka_unit_test(discovery_retries_read_capacity_after_a_unit_attention),
		cmocka_unit_test(discovery_registers_a_lun_listed_twice_once),
		cmocka_unit_test(discovery_retries_a_busy_report_luns),
		cmocka_unit_test(discovery_reads_a_long_lun_list_whole),
		cmocka_unit_test(discovery_skips_a_lun_the_host_cannot_address),
		cmocka_unit_test(discovery_survives_mangled_answers),
		cmocka_unit_test(per_task_path_sends_one_task_per_call),
		cmocka_unit_test(iodepth_one_sends_one_slot_per_call),
		cmocka_unit_test(ram_lba_status_follows_the_data),
		cmocka_unit_test(completion_ring_doorbell_wakes_a_sleeping_host),
		cmocka_unit_test(completion_ring_under_polling_and_load),
		cmocka_unit_test(ring_polling_follows_how_soon_completions_come),
		cmocka_unit_test(event_source_interrupts_complete_io),
		cmocka_unit_test(close_fails_outstanding_io),
		cmocka_unit_test(attach_to_a_listening_driver),
		cmocka_unit_test(driver_stops_when_the_host_vanishes),
		cmocka_unit_test(close_waits_for_a_driver_finishing_after_stop),
		cmocka_unit_test(close_kills_a_driver_that_does_not_answer_stop),
		cmocka_unit_test(abort_task_spares_the_next_command_in_the_slot),
		cmocka_unit_test(framework_creates_targets_when_driver_does_not),
		cmocka_unit_test(driver_target_calls_reach_the_host),
		cmocka_unit_test(driver_survives_garbage_from_a_host),
		cmocka_unit_test(open_fails_cleanly_without_a_driver),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
