/* SPDX-License-Identifier: MIT */
/*
 * Implementation of the integration-test helpers: build paths, controller
 * opening, stderr capture and data patterns (see testlib.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/testlib.h"

const char *tl_path(const char *rel)
{
	static char buf[4][512];
	static unsigned next;
	char *p = buf[next++ % 4];
	const char *build = getenv("BUILD");
	snprintf(p, sizeof(buf[0]), "%s/%s", build && *build ? build : "build", rel);
	return p;
}

int tl_open(const char *rel, enum hbk_ctl_mode mode, const char *const *args,
	    uint32_t call_timeout_ms, uint32_t task_timeout_ms, struct hbk_ctl **c)
{
	struct hbk_ctl_opts o = {
		.driver = tl_path(rel),
		.driver_args = args,
		.mode = mode,
		.call_timeout_ms = call_timeout_ms,
		.task_timeout_ms = task_timeout_ms,
		.settle_ms = 3000,
	};
	return hbk_ctl_open(&o, c);
}

static int saved_fd = -1;
static FILE *capture;
static char captured[65536];

void tl_capture_begin(void)
{
	fflush(stderr);
	capture = tmpfile();
	saved_fd = dup(2);
	dup2(fileno(capture), 2);
}

const char *tl_capture_end(void)
{
	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	saved_fd = -1;
	rewind(capture);
	size_t n = fread(captured, 1, sizeof(captured) - 1, capture);
	captured[n] = 0;
	fclose(capture);
	capture = NULL;
	ssize_t w = write(2, captured, n);
	(void)w;
	return captured;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

void tl_fill(void *buf, uint64_t lba, uint32_t nblocks, uint32_t bs, uint32_t seed)
{
	uint64_t *w = buf;
	for (uint64_t b = 0; b < nblocks; b++)
		for (uint32_t i = 0; i < bs / 8; i++)
			w[b * (bs / 8) + i] = mix(((lba + b) << 20) ^ ((uint64_t)seed << 48) ^ i);
}

bool tl_check(const void *buf, uint64_t lba, uint32_t nblocks, uint32_t bs, uint32_t seed)
{
	const uint64_t *w = buf;
	for (uint64_t b = 0; b < nblocks; b++)
		for (uint32_t i = 0; i < bs / 8; i++)
			if (w[b * (bs / 8) + i] != mix(((lba + b) << 20) ^ ((uint64_t)seed << 48) ^ i))
				return false;
	return true;
}

int tl_rw(struct hbk_lun *l, bool write, uint64_t lba, uint32_t nblocks, void *buf)
{
	struct hbk_blk_io io;
	memset(&io, 0, sizeof(io));
	io.lun = l;
	io.op = write ? HBK_BLK_WRITE : HBK_BLK_READ;
	io.lba = lba;
	io.nblocks = nblocks;
	io.buf = buf;
	return hbk_blk_exec(&io);
}

int tl_scsi(struct hbk_lun *l, uint64_t initiator, const uint8_t *cdb, unsigned cdb_len,
	    enum hbk_dir dir, void *buf, uint64_t len)
{
	struct hbk_scsi_cmd cmd = { .lun = l, .cdb_len = (uint8_t)cdb_len, .dir = (uint8_t)dir,
				    .initiator = initiator, .buf = buf, .len = len };
	memcpy(cmd.cdb, cdb, cdb_len);
	int err = hbk_sam_exec(hbk_lun_ctl(l), &cmd);
	if (err)
		return err;
	return cmd.result.service == HBK_SR_TASK_COMPLETE ? cmd.result.status
							  : 0x100 + cmd.result.service;
}

/* PERSISTENT RESERVE OUT: service action sa with key and sa_key, type WRITE EXCLUSIVE. */
static int pr_out(struct hbk_lun *l, uint64_t initiator, uint8_t sa, uint64_t key,
		  uint64_t sa_key)
{
	uint8_t cdb[10] = { 0x5f, sa, 0x01, 0, 0, 0, 0, 0, 24, 0 };
	uint8_t param[24] = { 0 };
	for (int i = 0; i < 8; i++) {
		param[i] = (uint8_t)(key >> (56 - 8 * i));
		param[8 + i] = (uint8_t)(sa_key >> (56 - 8 * i));
	}
	return tl_scsi(l, initiator, cdb, sizeof(cdb), HBK_DIR_WRITE, param, sizeof(param));
}

void tl_check_reservations_per_initiator(struct hbk_lun *l, uint64_t lba)
{
	enum { A = 0x5000c500aa000001ull, B = 0x5000c500bb000002ull };
	uint8_t buf[8 * 512];
	uint8_t wr[10] = { 0x2a, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16),
			   (uint8_t)(lba >> 8), (uint8_t)lba, 0, 0, 8, 0 };
	uint8_t rd[10];
	memcpy(rd, wr, sizeof(rd));
	rd[0] = 0x28;
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(pr_out(l, A, 0x00, 0, 0xa1), HBK_STATUS_GOOD);   /* REGISTER */
	assert_int_equal(pr_out(l, A, 0x01, 0xa1, 0), HBK_STATUS_GOOD);   /* RESERVE */
	assert_int_equal(tl_scsi(l, B, wr, 10, HBK_DIR_WRITE, buf, sizeof(buf)),
			 HBK_STATUS_RESERVATION_CONFLICT);
	assert_int_equal(tl_scsi(l, 0, wr, 10, HBK_DIR_WRITE, buf, sizeof(buf)),
			 HBK_STATUS_RESERVATION_CONFLICT);
	assert_int_equal(tl_scsi(l, A, wr, 10, HBK_DIR_WRITE, buf, sizeof(buf)), HBK_STATUS_GOOD);
	assert_int_equal(tl_scsi(l, B, rd, 10, HBK_DIR_READ, buf, sizeof(buf)), HBK_STATUS_GOOD);
	/* B may not release A's reservation: it is not even registered. */
	assert_int_equal(pr_out(l, B, 0x02, 0xb2, 0), HBK_STATUS_RESERVATION_CONFLICT);
	assert_int_equal(pr_out(l, A, 0x02, 0xa1, 0), HBK_STATUS_GOOD);   /* RELEASE */
	assert_int_equal(tl_scsi(l, B, wr, 10, HBK_DIR_WRITE, buf, sizeof(buf)), HBK_STATUS_GOOD);
	assert_int_equal(pr_out(l, A, 0x00, 0xa1, 0), HBK_STATUS_GOOD);   /* unregister */
}

struct hbk_lun_info tl_info(const struct hbk_lun *l)
{
	struct hbk_lun_info info;
	hbk_lun_info(l, &info);
	return info;
}

static void load_done(struct hbk_blk_io *io)
{
	struct tl_load *ld = io->priv;
	pthread_mutex_lock(&ld->lock);
	ld->errors += io->error != 0;
	ld->outstanding--;
	pthread_cond_broadcast(&ld->cond);
	pthread_mutex_unlock(&ld->lock);
}

void tl_load_start(struct tl_load *ld, struct hbk_lun *l, unsigned n, bool write,
		   uint64_t (*lba)(unsigned i), uint32_t seed)
{
	*ld = (struct tl_load){ .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
				.n = n, .outstanding = n, .io = calloc(n, sizeof(*ld->io)),
				.data = malloc((size_t)n * 4096) };
	assert_non_null(ld->io);
	assert_non_null(ld->data);
	for (unsigned i = 0; i < n; i++) {
		struct hbk_blk_io *io = &ld->io[i];
		*io = (struct hbk_blk_io){ .lun = l, .op = write ? HBK_BLK_WRITE : HBK_BLK_READ,
					   .lba = lba ? lba(i) : i * 8ull, .nblocks = 8,
					   .buf = ld->data + (size_t)i * 4096, .done = load_done,
					   .priv = ld };
		if (write)
			tl_fill(io->buf, io->lba, 8, 512, seed);
		assert_int_equal(hbk_blk_submit(io), 0);
	}
}

unsigned tl_load_wait(struct tl_load *ld, unsigned left)
{
	pthread_mutex_lock(&ld->lock);
	while (ld->outstanding > left)
		pthread_cond_wait(&ld->cond, &ld->lock);
	unsigned errors = ld->errors;
	pthread_mutex_unlock(&ld->lock);
	return errors;
}

void tl_load_free(struct tl_load *ld)
{
	free(ld->io);
	free(ld->data);
}
