/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the RAID-controller block commands of the SCSI emulation:
 * VERIFY and WRITE AND VERIFY 10/12/16, WRITE SAME 10/16 (UNMAP, NDOB,
 * limits), COMPARE AND WRITE (including its atomicity against concurrent
 * COMPARE AND WRITEs), GET LBA STATUS, START STOP UNIT, PREVENT ALLOW
 * MEDIUM REMOVAL and the CDB usage checks, each against the memory backend
 * of test_scsi_fixture.h with its data effects and exact sense.
 */
#include "test_scsi_fixture.h"

static uint8_t *blk(struct fixture *f, uint64_t lba)
{
	return f->be.data + lba * MEM_BS;
}

/* ---- VERIFY ------------------------------------------------------------------ */

static void verify10_bytchk0_reads_medium(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_VERIFY10, 10, 4);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->r.bytes, 0);
	assert_int_equal(f->be.reads, 1);
	assert_int_equal(f->be.last_lba, 10);
	assert_int_equal(f->be.last_nblocks, 4);
}

static void verify12_bytchk1_match(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12], data[3 * MEM_BS];

	fill_pattern(data, sizeof data, 4);
	memcpy(blk(f, 30), data, sizeof data);
	cdb12(cdb, HBK_SCSI_OP_VERIFY12, 30, 3);
	cdb[1] = 0x02;                                     /* BYTCHK 01b */
	run(f, 0, cdb, 12, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, sizeof data);
}

static void verify16_bytchk1_miscompare_offset(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[3 * MEM_BS];

	fill_pattern(data, sizeof data, 4);
	memcpy(blk(f, 30), data, sizeof data);
	data[700] ^= 1;
	cdb16(cdb, HBK_SCSI_OP_VERIFY16, 30, 3);
	cdb[1] = 0x02;
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_miscompare(f, 700);
	assert_int_equal(f->be.writes, 0);
}

static void verify_bytchk3_one_block_against_each(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], one[MEM_BS];

	fill_pattern(one, sizeof one, 9);
	for (unsigned i = 0; i < 5; i++)
		memcpy(blk(f, 40 + i), one, MEM_BS);
	cdb10(cdb, HBK_SCSI_OP_VERIFY10, 40, 5);
	cdb[1] = 0x06;                                     /* BYTCHK 11b */
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, MEM_BS);
	blk(f, 42)[5] ^= 0x80;
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_miscompare(f, 2 * MEM_BS + 5);
}

static void verify_field_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[MEM_BS] = { 0 };

	cdb10(cdb, HBK_SCSI_OP_VERIFY10, 0, 1);
	cdb[1] = 0x04;                                     /* BYTCHK 10b: reserved */
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	cdb[1] = 0x20;                                     /* VRPROTECT */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
	cdb[1] = 0x02;                                     /* data-out missing */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
	cdb10(cdb, HBK_SCSI_OP_VERIFY10, MEM_BLOCKS - 1, 2);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb10(cdb, HBK_SCSI_OP_VERIFY10, 0, 257);          /* above max transfer */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
	assert_int_equal(f->be.reads, 0);
}

static void verify_zero_blocks_and_dpo(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_VERIFY10, MEM_BLOCKS, 0);   /* just past the end, 0 blocks */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	cdb10(cdb, HBK_SCSI_OP_VERIFY10, 0, 1);
	cdb[1] = 0x10;                                     /* DPO */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->be.reads, 1);
}

static void verify_read_error_is_medium_error(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	f->be.fail = -EIO;
	cdb16(cdb, HBK_SCSI_OP_VERIFY16, 0, 8);
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_MEDIUM_ERROR, HBK_ASC_UNRECOVERED_READ_ERROR);
}

/* ---- WRITE AND VERIFY ----------------------------------------------------------- */

static void write_verify10_writes_through_and_compares(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[2 * MEM_BS];

	fill_pattern(data, sizeof data, 2);
	cdb10(cdb, HBK_SCSI_OP_WRITE_VERIFY10, 50, 2);
	cdb[1] = 0x02;                                     /* BYTCHK */
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, sizeof data);
	assert_memory_equal(blk(f, 50), data, sizeof data);
	assert_int_equal(f->be.writes, 1);
	assert_int_equal(f->be.reads, 1);                  /* the read-back */
}

static void write_verify_is_fua(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[MEM_BS] = { 1 };

	cdb16(cdb, HBK_SCSI_OP_WRITE_VERIFY16, 7, 1);
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->be.writes, 1);
	/* last_fua belongs to the write; the verify that followed only read. */
	assert_true(f->be.last_fua);
}

static void write_verify12_catches_bad_medium(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12], data[2 * MEM_BS];

	fill_pattern(data, sizeof data, 6);
	f->be.flip = true;                                 /* the medium corrupts byte 0 */
	cdb12(cdb, HBK_SCSI_OP_WRITE_VERIFY12, 60, 2);
	cdb[1] = 0x02;
	run(f, 0, cdb, 12, data, sizeof data, HBK_DIR_WRITE);
	assert_miscompare(f, 0);
	cdb[1] = 0x00;                                     /* BYTCHK 0: medium check only */
	run(f, 0, cdb, 12, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
}

static void write_verify_field_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[MEM_BS] = { 0 };

	cdb10(cdb, HBK_SCSI_OP_WRITE_VERIFY10, 0, 1);
	cdb[1] = 0x04;                                     /* BYTCHK 1xb: reserved */
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	cdb[1] = 0x40;                                     /* WRPROTECT */
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	cdb10(cdb, HBK_SCSI_OP_WRITE_VERIFY10, MEM_BLOCKS, 1);
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb10(cdb, HBK_SCSI_OP_WRITE_VERIFY10, 0, 2);      /* one block of data-out short */
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	assert_int_equal(f->be.writes, 0);
}

/* ---- WRITE SAME ------------------------------------------------------------------- */

static void ws_cdb(uint8_t *cdb, bool sixteen, uint8_t flags, uint64_t lba, uint32_t n)
{
	if (sixteen)
		cdb16(cdb, HBK_SCSI_OP_WRITE_SAME16, lba, n);
	else
		cdb10(cdb, HBK_SCSI_OP_WRITE_SAME10, (uint32_t)lba, (uint16_t)n);
	cdb[1] = flags;
}

static void write_same10_replicates_block(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], one[MEM_BS];

	fill_pattern(one, sizeof one, 3);
	ws_cdb(cdb, false, 0, 20, 5);
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, MEM_BS);
	for (unsigned i = 0; i < 5; i++)
		assert_memory_equal(blk(f, 20 + i), one, MEM_BS);
	assert_int_equal(blk(f, 25)[0], 0);
	assert_int_equal(f->be.unmaps, 0);
}

/* The data-out of WRITE SAME is one block: more or less is refused, and
 * nothing is written. */
static void write_same_data_out_is_one_block(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], two[2 * MEM_BS];

	fill_pattern(two, sizeof two, 4);
	for (int sixteen = 0; sixteen <= 1; sixteen++) {
		ws_cdb(cdb, sixteen, 0, 30, 4);
		run(f, 0, cdb, sixteen ? 16 : 10, two, sizeof two, HBK_DIR_WRITE);
		assert_invalid_field(f);
		run(f, 0, cdb, sixteen ? 16 : 10, two, MEM_BS / 2, HBK_DIR_WRITE);
		assert_invalid_field(f);
	}
	assert_int_equal(f->be.writes + f->be.unmaps, 0);
	assert_int_equal(blk(f, 30)[0], 0);
}

static void write_same16_many_blocks_in_chunks(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], one[MEM_BS];

	fill_pattern(one, sizeof one, 8);
	ws_cdb(cdb, true, 0, 0, MEM_BLOCKS);               /* more than one scratch chunk */
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	assert_true(f->be.writes > 1);
	for (unsigned i = 0; i < MEM_BLOCKS; i++)
		assert_memory_equal(blk(f, i), one, MEM_BS);
}

static void write_same_unmap_zero_block_unmaps(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], zero[MEM_BS] = { 0 };

	memset(blk(f, 100), 0xab, 8 * MEM_BS);
	for (int sixteen = 0; sixteen < 2; sixteen++) {
		ws_cdb(cdb, sixteen, 0x08, 100 + 4 * sixteen, 4);
		run(f, 0, cdb, sixteen ? 16 : 10, zero, sizeof zero, HBK_DIR_WRITE);
		assert_good(f);
	}
	assert_int_equal(f->be.unmaps, 2);
	assert_int_equal(f->be.unmapped, 8);
	assert_int_equal(f->be.writes, 0);
	assert_true(f->be.deallocated[100] && f->be.deallocated[107]);
	assert_int_equal(blk(f, 107)[MEM_BS - 1], 0);
}

static void write_same_unmap_nonzero_block_writes(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], one[MEM_BS];

	fill_pattern(one, sizeof one, 1);
	ws_cdb(cdb, true, 0x08, 200, 3);
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->be.unmaps, 0);
	assert_memory_equal(blk(f, 202), one, MEM_BS);
}

static void write_same_unmap_needs_lbprz(void **state)
{
	struct fixture *f = *state;
	struct hbk_scsi_lun_cfg cfg = mem_cfg(f);
	uint8_t cdb[16], zero[MEM_BS] = { 0 };

	cfg.lbprz = false;                                 /* unmapped reads: undefined */
	mem_reinit(f, &cfg);
	memset(blk(f, 10), 0xab, 2 * MEM_BS);
	ws_cdb(cdb, true, 0x08, 10, 2);
	run(f, 0, cdb, 16, zero, sizeof zero, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->be.unmaps, 0);                 /* zeros written instead */
	assert_int_equal(f->be.writes, 1);
	assert_int_equal(blk(f, 11)[3], 0);
	inquiry_cdb(cdb, true, 0xb2, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[5], 0x80);                 /* LBPU only */
}

static void write_same16_ndob(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	memset(blk(f, 300), 0xcd, 4 * MEM_BS);
	ws_cdb(cdb, true, 0x01, 300, 2);                   /* NDOB: write zeros */
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->r.bytes, 0);
	assert_int_equal(f->be.writes, 1);
	assert_int_equal(blk(f, 301)[0], 0);
	ws_cdb(cdb, true, 0x09, 302, 2);                   /* NDOB + UNMAP */
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->be.unmaps, 1);
	assert_int_equal(blk(f, 303)[0], 0);
}

static void write_same_thick_lun_writes(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], zero[BIG_BS] = { 0 };

	ws_cdb(cdb, true, 0x08, BIG_BLOCKS - 4, 4);
	run(f, 2, cdb, 16, zero, sizeof zero, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, BIG_BS);
}

static void write_same_length_limits(void **state)
{
	struct fixture *f = *state;
	struct hbk_scsi_lun_cfg cfg = mem_cfg(f);
	uint8_t cdb[16], one[MEM_BS] = { 7 };

	ws_cdb(cdb, false, 0, MEM_BLOCKS - 3, 0);          /* 0 blocks: to the end */
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	for (unsigned i = 1; i <= 3; i++)
		assert_int_equal(blk(f, MEM_BLOCKS - i)[0], 7);
	assert_int_equal(blk(f, MEM_BLOCKS - 4)[0], 0);
	ws_cdb(cdb, false, 0, MEM_BLOCKS, 0);              /* from past the end */
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cfg.max_write_same_blocks = 8;
	mem_reinit(f, &cfg);
	ws_cdb(cdb, false, 0, MEM_BLOCKS - 9, 0);          /* 9 to the end: over the limit */
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_invalid_field(f);
	ws_cdb(cdb, false, 0, MEM_BLOCKS - 8, 0);
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	ws_cdb(cdb, true, 0x08, 0, 9);
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_invalid_field(f);
	ws_cdb(cdb, true, 0, 0, 8);
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	inquiry_cdb(cdb, true, 0xb0, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_true(get_be64(f->buf + 36) == 8);
}

static void write_same_out_of_range(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], one[MEM_BS] = { 7 };

	ws_cdb(cdb, true, 0, MEM_BLOCKS - 1, 2);
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	ws_cdb(cdb, true, 0, 0x8000000000000000ull, 1);
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	ws_cdb(cdb, true, 0, UINT64_MAX, 1);
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	assert_int_equal(f->be.writes, 0);
}

static void write_same_refused_flags(void **state)
{
	struct fixture *f = *state;
	/* ANCHOR+UNMAP (ANC_SUP 0), ANCHOR alone, WRPROTECT, PBDATA, LBDATA */
	const uint8_t bad16[] = { 0x18, 0x10, 0x20, 0x04, 0x02 };
	uint8_t cdb[16], one[MEM_BS] = { 7 };

	for (size_t i = 0; i < sizeof bad16; i++) {
		ws_cdb(cdb, true, bad16[i], 0, 1);
		run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
		assert_invalid_field(f);
	}
	ws_cdb(cdb, false, 0x01, 0, 1);                    /* NDOB is not in WRITE SAME(10) */
	run(f, 0, cdb, 10, one, sizeof one, HBK_DIR_WRITE);
	assert_invalid_field(f);
	ws_cdb(cdb, false, 0, 0, 1);                       /* no data-out */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
	assert_int_equal(f->be.writes + f->be.unmaps, 0);
}

/* ---- COMPARE AND WRITE --------------------------------------------------------------- */

static void caw_cdb(uint8_t *cdb, uint64_t lba, uint8_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = HBK_SCSI_OP_COMPARE_AND_WRITE;
	put_be64(cdb + 2, lba);
	cdb[13] = n;
}

static void caw_match_writes(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[4 * MEM_BS];

	fill_pattern(data, 2 * MEM_BS, 1);                 /* what is there */
	fill_pattern(data + 2 * MEM_BS, 2 * MEM_BS, 2);    /* what replaces it */
	memcpy(blk(f, 70), data, 2 * MEM_BS);
	caw_cdb(cdb, 70, 2);
	cdb[1] = 0x08;                                     /* FUA */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, sizeof data);
	assert_memory_equal(blk(f, 70), data + 2 * MEM_BS, 2 * MEM_BS);
	assert_true(f->be.last_fua);
}

static void caw_miscompare_leaves_data(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[4 * MEM_BS], before[2 * MEM_BS];

	fill_pattern(data, sizeof data, 5);
	memcpy(blk(f, 80), data, 2 * MEM_BS);
	blk(f, 81)[1] ^= 0x10;                             /* offset 513 differs */
	memcpy(before, blk(f, 80), sizeof before);
	caw_cdb(cdb, 80, 2);
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_miscompare(f, MEM_BS + 1);
	assert_memory_equal(blk(f, 80), before, sizeof before);
	assert_int_equal(f->be.writes, 0);
}

static void caw_limits(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[4 * MEM_BS] = { 0 };

	caw_cdb(cdb, 0, 129);                              /* above max: 256 / 2 */
	run(f, 0, cdb, 16, f->buf, sizeof f->buf, HBK_DIR_WRITE);
	assert_invalid_field(f);
	caw_cdb(cdb, MEM_BLOCKS - 1, 2);
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	caw_cdb(cdb, 0, 2);
	run(f, 0, cdb, 16, data, 3 * MEM_BS, HBK_DIR_WRITE); /* data-out short */
	assert_invalid_field(f);
	cdb[1] = 0x20;                                     /* WRPROTECT */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	caw_cdb(cdb, 0, 2);
	run(f, 0, cdb, 16, f->buf, 5 * MEM_BS, HBK_DIR_WRITE); /* data-out too long */
	assert_invalid_field(f);
	caw_cdb(cdb, 0, 0);                                /* nothing to do */
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE); /* ... yet data-out comes */
	assert_invalid_field(f);
	assert_int_equal(f->be.reads + f->be.writes, 0);
}

/* Each worker adds one to a counter block by COMPARE AND WRITE, retrying on
 * MISCOMPARE: with the compare and the write atomic no increment is lost. */
struct caw_worker {
	struct fixture *f;
	unsigned id, done, failures;
};

#define CAW_ROUNDS 150

static void *caw_worker_main(void *arg)
{
	struct caw_worker *w = arg;
	uint8_t cdb[16], rd[10], data[2 * MEM_BS], other[MEM_BS];
	struct hbk_scsi_reply r;
	const struct hbk_scsi_req caw = {
		.initiator = w->id, .cdb = cdb, .cdb_len = 16,
		.buf = data, .buf_len = sizeof data, .dir = HBK_DIR_WRITE,
	};

	caw_cdb(cdb, 0, 1);
	cdb10(rd, HBK_SCSI_OP_READ10, 0, 1);
	while (w->done < CAW_ROUNDS) {
		hbk_scsi_execute(&w->f->t, 0, rd, 10, data, MEM_BS, HBK_DIR_READ, &r);
		w->failures += r.status != HBK_STATUS_GOOD;
		memcpy(data + MEM_BS, data, MEM_BS);
		put_be32(data + MEM_BS, get_be32(data) + 1);
		hbk_scsi_exec(&w->f->t, &caw, &r);
		if (r.status == HBK_STATUS_GOOD)
			w->done++;
		else
			w->failures += (r.sense[2] & 0x0f) != HBK_SK_MISCOMPARE;
		/* Plain writes elsewhere share the lock with each other. */
		fill_pattern(other, sizeof other, (uint8_t)w->done);
		cdb10(rd, HBK_SCSI_OP_WRITE10, 1 + w->id, 1);
		hbk_scsi_execute(&w->f->t, 0, rd, 10, other, sizeof other, HBK_DIR_WRITE, &r);
		w->failures += r.status != HBK_STATUS_GOOD;
		cdb10(rd, HBK_SCSI_OP_READ10, 0, 1);
	}
	return NULL;
}

static void caw_is_atomic(void **state)
{
	struct fixture *f = *state;
	struct caw_worker w[4];

	for (unsigned i = 0; i < 4; i++)
		w[i] = (struct caw_worker){ .f = f, .id = i };
	run_threads(caw_worker_main, w, sizeof w[0], 4);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(w[i].failures, 0);
	assert_int_equal(get_be32(blk(f, 0)), 4 * CAW_ROUNDS);
}

/* ---- GET LBA STATUS ------------------------------------------------------------------- */

static void glbas_cdb(uint8_t *cdb, uint64_t lba, uint32_t alloc)
{
	memset(cdb, 0, 16);
	cdb[0] = HBK_SCSI_OP_SERVICE_ACTION_IN16;
	cdb[1] = HBK_SCSI_SA_GET_LBA_STATUS;
	put_be64(cdb + 2, lba);
	put_be32(cdb + 10, alloc);
}

static void assert_lba_desc(const uint8_t *d, uint64_t lba, uint32_t n, uint8_t status)
{
	assert_true(get_be64(d) == lba);
	assert_int_equal(get_be32(d + 8), n);
	assert_int_equal(d[12] & 0x0f, status);
}

static void glbas_all_mapped(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	glbas_cdb(cdb, 5, 4096);
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 24);
	assert_int_equal(get_be32(f->buf), 20);            /* PARAMETER DATA LENGTH */
	assert_lba_desc(f->buf + 8, 5, MEM_BLOCKS - 5, 0);
}

static void glbas_reports_unmapped_extents(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	assert_int_equal(mem_unmap(&f->be, 10, 10), 0);
	glbas_cdb(cdb, 0, 4096);
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8 + 3 * 16);
	assert_lba_desc(f->buf + 8, 0, 10, 0);
	assert_lba_desc(f->buf + 24, 10, 10, 1);           /* deallocated */
	assert_lba_desc(f->buf + 40, 20, MEM_BLOCKS - 20, 0);
	glbas_cdb(cdb, 15, 24);                            /* room for one descriptor */
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 24);
	assert_int_equal(get_be32(f->buf), 20);
	assert_lba_desc(f->buf + 8, 15, 5, 1);
}

static void glbas_thick_lun_caps_count(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	glbas_cdb(cdb, 0, 40);                             /* two descriptors fit */
	run_in(f, 2, cdb, 16, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 40);
	assert_lba_desc(f->buf + 8, 0, UINT32_MAX, 0);
	assert_lba_desc(f->buf + 24, UINT32_MAX, (uint32_t)(BIG_BLOCKS - UINT32_MAX), 0);
}

static void glbas_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	glbas_cdb(cdb, MEM_BLOCKS, 24);
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	glbas_cdb(cdb, 0, 24);
	cdb[14] = 0x01;                                    /* REPORT TYPE: not served */
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_invalid_field(f);
	glbas_cdb(cdb, 0, 24);
	f->be.fail = -EIO;
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_check(f, HBK_SK_MEDIUM_ERROR, HBK_ASC_UNRECOVERED_READ_ERROR);
}

/* ---- START STOP UNIT and PREVENT ALLOW MEDIUM REMOVAL ---------------------------------- */

static void start_stop(struct fixture *f, uint64_t it, uint8_t byte4)
{
	const uint8_t cdb[6] = { HBK_SCSI_OP_START_STOP_UNIT, 0, 0, 0, byte4, 0 };

	run_as(f, it, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
}

static void prevent_allow(struct fixture *f, uint64_t it, uint8_t prevent)
{
	const uint8_t cdb[6] = { HBK_SCSI_OP_PREVENT_ALLOW, 0, 0, 0, prevent, 0 };

	run_as(f, it, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
}

static void stopped_unit_is_not_ready(void **state)
{
	struct fixture *f = *state;
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };
	const uint8_t rc10[10] = { HBK_SCSI_OP_READ_CAPACITY10 };
	uint8_t cdb[10];

	start_stop(f, 0, 0x00);                            /* stop */
	assert_good(f);
	assert_int_equal(f->be.flushes, 1);                /* the cache went first */
	run(f, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
	cdb10(cdb, HBK_SCSI_OP_SYNC_CACHE10, 0, 0);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
	run_in(f, 0, rc10, 10, sizeof f->buf);             /* no medium access */
	assert_good(f);
	inquiry_cdb(cdb, false, 0, 96);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->be.reads, 0);
	start_stop(f, 0, 0x01);                            /* start */
	assert_good(f);
	run(f, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
}

static void stop_no_flush_and_flush_error(void **state)
{
	struct fixture *f = *state;
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };

	start_stop(f, 0, 0x04);                            /* NO_FLUSH */
	assert_good(f);
	assert_int_equal(f->be.flushes, 0);
	start_stop(f, 0, 0x01);
	f->be.fail = -EIO;
	start_stop(f, 0, 0x00);
	assert_check(f, HBK_SK_MEDIUM_ERROR, HBK_ASC_WRITE_ERROR);
	f->be.fail = 0;
	run(f, 0, tur, 6, NULL, 0, HBK_DIR_NONE);          /* still started */
	assert_good(f);
}

/* Every defined power condition is GOOD, ignores START and LOEJ, and takes
 * a stopped LUN back to work but for LU_CONTROL; reserved values and
 * modifiers beyond a condition's own are refused. */
static void power_conditions(void **state)
{
	struct fixture *f = *state;
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };
	static const struct { uint8_t pc, max_mod; } defined[] = {
		{ 0x1, 0 }, { 0x2, 2 }, { 0x3, 1 }, { 0x7, 0 }, { 0xa, 2 }, { 0xb, 1 },
	};
	uint8_t cdb[6] = { HBK_SCSI_OP_START_STOP_UNIT };

	for (unsigned pc = 1; pc < 16; pc++) {
		unsigned max_mod = 16;                     /* 16: not defined */
		for (size_t i = 0; i < sizeof defined / sizeof defined[0]; i++)
			if (defined[i].pc == pc)
				max_mod = defined[i].max_mod;
		for (unsigned mod = 0; mod < 4; mod++) {
			start_stop(f, 0, 0x00);            /* stop first */
			assert_good(f);
			cdb[3] = (uint8_t)mod;
			cdb[4] = (uint8_t)(pc << 4 | 0x02);  /* LOEJ, ignored */
			run(f, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
			if (max_mod == 16 || mod > max_mod) {
				assert_invalid_field(f);
				continue;
			}
			assert_good(f);
			run(f, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
			if (pc == 0x7)                     /* LU_CONTROL: still stopped */
				assert_check(f, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
			else
				assert_good(f);
		}
	}
	assert_int_equal(f->be.reads + f->be.writes, 0);
}

static void start_stop_refusals(void **state)
{
	struct fixture *f = *state;
	const uint8_t immed[6] = { HBK_SCSI_OP_START_STOP_UNIT, 0x01, 0, 0, 0x01, 0 };
	const uint8_t modifier[6] = { HBK_SCSI_OP_START_STOP_UNIT, 0, 0, 0x01, 0x01, 0 };

	start_stop(f, 0, 0x41);                            /* POWER CONDITION 4h: reserved */
	assert_invalid_field(f);
	start_stop(f, 0, 0x02);                            /* LOEJ: not removable */
	assert_invalid_field(f);
	start_stop(f, 0, 0x03);                            /* LOEJ + START */
	assert_invalid_field(f);
	start_stop(f, 0, 0x08);                            /* reserved bit */
	assert_invalid_field(f);
	run(f, 0, modifier, 6, NULL, 0, HBK_DIR_NONE);     /* a MODIFIER with START_VALID */
	assert_invalid_field(f);
	run(f, 0, immed, 6, NULL, 0, HBK_DIR_NONE);        /* IMMED is fine */
	assert_good(f);
}

static void prevent_blocks_eject_until_all_allow(void **state)
{
	struct fixture *f = *state;

	prevent_allow(f, 1, 0x01);
	assert_good(f);
	prevent_allow(f, 2, 0x01);
	assert_good(f);
	start_stop(f, 3, 0x02);                            /* eject */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
	prevent_allow(f, 1, 0x00);
	start_stop(f, 3, 0x02);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
	prevent_allow(f, 2, 0x00);
	start_stop(f, 3, 0x02);
	assert_invalid_field(f);                           /* no longer prevented */
	assert_int_equal(f->mem.nexus_count, 0);           /* nothing left to remember */
	prevent_allow(f, 1, 0x02);                         /* obsolete values */
	assert_invalid_field(f);
	prevent_allow(f, 1, 0x03);
	assert_invalid_field(f);
}

static void prevent_table_full(void **state)
{
	struct fixture *f = *state;

	for (uint64_t it = 0; it < HBK_SCSI_NEXUS_MAX; it++) {
		prevent_allow(f, 100 + it, 0x01);
		assert_good(f);
	}
	prevent_allow(f, 999, 0x01);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INSUFFICIENT_RESOURCES);
	prevent_allow(f, 999, 0x00);                       /* allowing needs no room */
	assert_good(f);
}

/* ---- CDB usage data: unused bits are refused ------------------------------------------- */

static void unused_cdb_bits_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	cdb[1] = 0x10 | 0x08 | 0x02;                       /* DPO, FUA, FUA_NV: accepted */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	cdb[1] = 0x01;                                     /* obsolete RELADR */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	cdb[1] = 0;
	cdb[6] = 0x40;                                     /* reserved bit by GROUP NUMBER */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	cdb[6] = 0x05;                                     /* GROUP NUMBER: accepted */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	cdb[6] = 0;
	cdb[9] = 0x80;                                     /* vendor bits of CONTROL */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	cdb10(cdb, HBK_SCSI_OP_SYNC_CACHE10, 0, 0);
	cdb[1] = 0x04;                                     /* obsolete SYNC_NV */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
	cdb[1] = 0x02;                                     /* IMMED */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(verify10_bytchk0_reads_medium),
		T(verify12_bytchk1_match),
		T(verify16_bytchk1_miscompare_offset),
		T(verify_bytchk3_one_block_against_each),
		T(verify_field_errors),
		T(verify_zero_blocks_and_dpo),
		T(verify_read_error_is_medium_error),
		T(write_verify10_writes_through_and_compares),
		T(write_verify_is_fua),
		T(write_verify12_catches_bad_medium),
		T(write_verify_field_errors),
		T(write_same10_replicates_block),
		T(write_same_data_out_is_one_block),
		T(write_same16_many_blocks_in_chunks),
		T(write_same_unmap_zero_block_unmaps),
		T(write_same_unmap_nonzero_block_writes),
		T(write_same_unmap_needs_lbprz),
		T(write_same16_ndob),
		T(write_same_thick_lun_writes),
		T(write_same_length_limits),
		T(write_same_out_of_range),
		T(write_same_refused_flags),
		T(caw_match_writes),
		T(caw_miscompare_leaves_data),
		T(caw_limits),
		T(caw_is_atomic),
		T(glbas_all_mapped),
		T(glbas_reports_unmapped_extents),
		T(glbas_thick_lun_caps_count),
		T(glbas_errors),
		T(stopped_unit_is_not_ready),
		T(stop_no_flush_and_flush_error),
		T(power_conditions),
		T(start_stop_refusals),
		T(prevent_blocks_eject_until_all_allow),
		T(prevent_table_full),
		T(unused_cdb_bits_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
