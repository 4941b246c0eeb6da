/* SPDX-License-Identifier: MIT */
/*
 * A driver whose LUN answers the host's discovery in ways a real device may
 * and a careless initiator gets wrong.  rc16_ua=N: the first N READ
 * CAPACITY(16) end with CHECK CONDITION, UNIT ATTENTION, POWER ON OCCURRED
 * (as a LUN other than 0 answers after a reset, TEST UNIT READY having gone
 * to LUN 0 only).  big=1: the LUN claims 2^33 blocks, so READ CAPACITY(10)
 * answers FFFFFFFFh.  luns=2: the target has a LUN 1 too (on the same
 * memory); lun1_blocks=N and lun1_bs=N: its READ CAPACITY(16) claims N
 * blocks, or blocks of N bytes.  rl_busy=N: the first N REPORT LUNS end
 * BUSY.  rl=dup: REPORT LUNS lists LUN 0 three times (peripheral, flat,
 * peripheral); rl=rev300: it lists LUNs 299 down to 0, more than the host's
 * first allocation length holds.  mangle=SEED: every command but READ and WRITE gets a
 * corrupted answer, drawn from SEED: flipped and overwritten bytes (headers
 * and length fields most often), a short transfer, or BUSY / CHECK CONDITION
 * with random sense of random length.  recovered=1: READs and WRITEs at
 * LBA 4242 and above end CHECK CONDITION, RECOVERED ERROR, RECOVERED DATA
 * WITH RETRIES, with all their data moved (the command succeeded).
 */
#include <stdlib.h>
#include <string.h>

#include "tests/drivers/lib/tdrv.h"

#define BIG_BLOCKS (1ull << 33)

static unsigned rc16_uas, rl_busies;   /* on the interrupt queue only */
static struct hbk_scsi_lun second;
static struct hbk_scsi_lun *luns[2];   /* luns=2: the target's LUNs 0 and 1 */

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void check_condition(struct tdrv_io *io, uint8_t key, uint8_t asc, uint8_t ascq)
{
	uint8_t sense[18] = { 0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq };
	hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE,
			      HBK_STATUS_CHECK_CONDITION, 0, sense, sizeof(sense));
}

/* Replaces a READ's data with len bytes of data (at most what it asked). */
static void answer(struct tdrv *t, struct tdrv_io *io, const uint8_t *data, uint32_t len)
{
	uint64_t n = len < io->task.requested_transfer_count ? len
							       : io->task.requested_transfer_count;
	uint8_t *buf = hbk_drv_dma(t->d, io->task.buffer_iova, io->task.requested_transfer_count);
	if (!buf)
		return;
	memcpy(buf, data, n);
	hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE, HBK_STATUS_GOOD, n,
			      NULL, 0);
}

static uint64_t rng;   /* on the interrupt queue only */

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return n ? (uint32_t)(rng % n) : 0;
}

static void mangle(struct tdrv *t, struct tdrv_io *io)
{
	uint64_t req = io->task.requested_transfer_count;
	uint32_t what = rnd(8);
	if (what == 0) {
		hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE,
				      rnd(2) ? HBK_STATUS_BUSY : HBK_STATUS_TASK_SET_FULL, 0, NULL, 0);
		return;
	}
	if (what == 1) {
		static const uint8_t first[] = { 0x70, 0x71, 0x72, 0x73, 0x00, 0xff };
		uint8_t sense[HBK_SENSE_MAX];
		for (unsigned i = 0; i < sizeof(sense); i++)
			sense[i] = (uint8_t)rnd(256);
		sense[0] = first[rnd(sizeof(first))];
		hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE,
				      HBK_STATUS_CHECK_CONDITION, rnd(2) ? 0 : rnd((uint32_t)req + 1),
				      sense, (uint8_t)rnd(sizeof(sense) + 1));
		return;
	}
	if (!req || io->resp.completion_status != HBK_STATUS_GOOD)
		return;
	uint8_t *buf = hbk_drv_dma(t->d, io->task.buffer_iova, req);
	if (!buf)
		return;
	uint64_t n = io->resp.bytes_transferred;
	if (rnd(4) == 0)
		n = rnd((uint32_t)req + 1);
	else if (rnd(4) == 0)
		n = req;
	for (uint32_t k = rnd(6); k; k--) {
		uint64_t at = rnd(4) ? rnd(16) : rnd((uint32_t)req);
		if (at >= req)
			continue;
		buf[at] = rnd(3) == 0 ? 0xff : rnd(3) == 0 ? 0 : (uint8_t)rnd(256);
	}
	io->resp.bytes_transferred = n;
}

static bool complete(struct tdrv *t, struct tdrv_io *io)
{
	uint64_t lba;
	const char *seed = tdrv_arg(t, "mangle", NULL);
	if (seed && !tdrv_task_lba(&io->task, &lba)) {
		if (!rng)
			rng = strtoull(seed, NULL, 0) * 0x9e3779b97f4a7c15ull | 1;
		mangle(t, io);
		return false;
	}
	if (atoi(tdrv_arg(t, "recovered", "0")) && tdrv_is_trigger(&io->task) &&
	    io->resp.completion_status == HBK_STATUS_GOOD) {
		uint8_t sense[18] = { 0x70, 0, 0x01, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x17, 0x01 };
		hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE,
				      HBK_STATUS_CHECK_CONDITION, io->resp.bytes_transferred,
				      sense, sizeof(sense));
		return false;
	}
	const uint8_t *cdb = io->task.cdb;
	bool big = atoi(tdrv_arg(t, "big", "0"));
	if (cdb[0] == 0x9e && (cdb[1] & 0x1f) == 0x10) {          /* READ CAPACITY(16) */
		if (rc16_uas < (unsigned)atoi(tdrv_arg(t, "rc16_ua", "0"))) {
			rc16_uas++;
			check_condition(io, 0x06, 0x29, 0x01);
		} else if (io->resp.completion_status == HBK_STATUS_GOOD &&
			   io->resp.bytes_transferred >= 12) {
			uint8_t *buf = hbk_drv_dma(t->d, io->task.buffer_iova, 12);
			bool lun1 = hbk_scsi_lun_decode(io->task.lun) == 1;
			uint64_t n = big ? BIG_BLOCKS : 0;
			if (lun1)
				n = strtoull(tdrv_arg(t, "lun1_blocks", "0"), NULL, 0);
			if (buf && n) {
				put_be32(buf, (uint32_t)((n - 1) >> 32));
				put_be32(buf + 4, (uint32_t)(n - 1));
			}
			uint32_t bs = lun1 ? (uint32_t)strtoul(tdrv_arg(t, "lun1_bs", "0"), NULL, 0) : 0;
			if (buf && bs)
				put_be32(buf + 8, bs);
		}
	} else if (cdb[0] == 0x25 && big) {                       /* READ CAPACITY(10) */
		uint8_t data[8];
		put_be32(data, 0xffffffffu);
		put_be32(data + 4, TDRV_BS);
		answer(t, io, data, sizeof(data));
	} else if (cdb[0] == 0xa0) {                              /* REPORT LUNS */
		if (rl_busies < (unsigned)atoi(tdrv_arg(t, "rl_busy", "0"))) {
			rl_busies++;
			hbk_drv_response_fill(&io->resp, &io->task, HBK_SR_TASK_COMPLETE,
					      HBK_STATUS_BUSY, 0, NULL, 0);
		} else if (!strcmp(tdrv_arg(t, "rl", ""), "rev300")) {
			static uint8_t data[8 + 300 * 8];
			memset(data, 0, sizeof(data));
			put_be32(data, 300 * 8);
			for (unsigned i = 0; i < 300; i++)
				hbk_scsi_lun_encode(299 - i, data + 8 + 8 * i);
			answer(t, io, data, sizeof(data));
		} else if (!strcmp(tdrv_arg(t, "rl", ""), "dup")) {
			uint8_t data[8 + 3 * 8] = { 0 };
			put_be32(data, 3 * 8);
			data[16] = 0x40;            /* LUN 0, flat space addressing */
			answer(t, io, data, sizeof(data));
		}
	}
	return false;
}

static int init(struct tdrv *t, struct hbk_drv_constraints *cons)
{
	(void)cons;
	if (atoi(tdrv_arg(t, "luns", "1")) < 2)
		return 0;
	struct hbk_scsi_lun_cfg cfg = t->lun.cfg;
	cfg.serial = "TDRV0001";
	cfg.naa++;
	int err = hbk_scsi_lun_init(&second, &cfg);
	if (err)
		return err;
	luns[0] = &t->lun;
	luns[1] = &second;
	t->target.luns = luns;
	t->target.lun_count = 2;
	return 0;
}

static const struct tdrv_hooks hooks = { .init = init, .complete = complete };

int main(int argc, char **argv)
{
	struct hbk_drv_ops ops = tdrv_ops;
	ops.name = "hostile_disc";
	return tdrv_main(argc, argv, &ops, &hooks);
}
