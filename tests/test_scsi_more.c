/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the SCSI emulation's later commands and LUN state: PRE-FETCH
 * 10/16 (CONDITION MET, ranges), ORWRITE(16) (data, checks, atomicity under
 * concurrent ORWRITEs), WRITE ATOMIC(16) and its VPD B0 limits, READ DEFECT
 * DATA 10/12, RESERVE(6)/RELEASE(6) and the SPC-2 access rules, unit
 * attentions (LUN and target reset, I_T nexus loss, REQUEST SENSE, MODE
 * SELECT and persistent reservation events), the removable medium (load,
 * eject, prevention), the write-protected medium, the physical block
 * exponent and WRITE SAME to the end of the medium.  Each checks data and
 * sense exactly against the memory backend of test_scsi_fixture.h.
 * Initiators A, B and C are 0xA, 0xB and 0xC.
 */
#include <sched.h>

#include "test_scsi_fixture.h"

enum { A = 0xa, B = 0xb, C = 0xc };
#define KA 0x1111aaaa1111aaaaull
#define KB 0x2222bbbb2222bbbbull

static uint8_t *blk(struct fixture *f, uint64_t lba)
{
	return f->be.data + lba * MEM_BS;
}

static void tur_as(struct fixture *f, uint64_t it)
{
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };

	run_as(f, it, 0, tur, 6, NULL, 0, HBK_DIR_NONE);
}

/* The next command of `it` meets unit attention asc_ascq, once. */
static void expect_ua(struct fixture *f, uint64_t it, uint16_t asc_ascq)
{
	tur_as(f, it);
	assert_check(f, HBK_SK_UNIT_ATTENTION, asc_ascq);
	tur_as(f, it);
	assert_good(f);
}

static void expect_good_tur(struct fixture *f, uint64_t it)
{
	tur_as(f, it);
	assert_good(f);
}

static void assert_condition_met(const struct fixture *f)
{
	assert_int_equal(f->r.status, HBK_STATUS_CONDITION_MET);
	assert_int_equal(f->r.sense_len, 0);
	assert_int_equal(f->r.bytes, 0);
}

static void pr_out(struct fixture *f, uint64_t it, unsigned sa, unsigned type, uint64_t key,
		   uint64_t sa_key)
{
	uint8_t cdb[10] = { HBK_SCSI_OP_PR_OUT, (uint8_t)sa, (uint8_t)type }, p[24] = { 0 };

	put_be32(cdb + 5, sizeof p);
	put_be64(p, key);
	put_be64(p + 8, sa_key);
	run_as(f, it, 0, cdb, 10, p, sizeof p, HBK_DIR_WRITE);
}

static void prevent_as(struct fixture *f, uint64_t it, bool prevent)
{
	const uint8_t cdb[6] = { HBK_SCSI_OP_PREVENT_ALLOW, 0, 0, 0, prevent, 0 };

	run_as(f, it, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
}

static void start_stop_as(struct fixture *f, uint64_t it, uint8_t byte4)
{
	const uint8_t cdb[6] = { HBK_SCSI_OP_START_STOP_UNIT, 0, 0, 0, byte4, 0 };

	run_as(f, it, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
}

/* LUN 0 again, with a configuration changed by fn. */
static void reconfigure(struct fixture *f, void (*fn)(struct hbk_scsi_lun_cfg *cfg))
{
	struct hbk_scsi_lun_cfg cfg = mem_cfg(f);

	fn(&cfg);
	mem_reinit(f, &cfg);
}

/* ---- PRE-FETCH ------------------------------------------------------------------- */

static void prefetch_condition_met(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	cdb10(cdb, HBK_SCSI_OP_PREFETCH10, 0, 8);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_condition_met(f);
	cdb[1] = 0x02;                                     /* IMMED */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_condition_met(f);
	cdb10(cdb, HBK_SCSI_OP_PREFETCH10, MEM_BLOCKS - 8, 8); /* the last blocks */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_condition_met(f);
	cdb16(cdb, HBK_SCSI_OP_PREFETCH16, 100, 0);        /* 0: to the end */
	cdb[14] = 0x3f;                                    /* GROUP NUMBER */
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_condition_met(f);
	assert_int_equal(f->be.reads, 0);                  /* memory: already cached */
}

static void prefetch_ranges(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	cdb10(cdb, HBK_SCSI_OP_PREFETCH10, MEM_BLOCKS - 1, 2);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb10(cdb, HBK_SCSI_OP_PREFETCH10, MEM_BLOCKS, 0); /* 0 blocks from past the end */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb16(cdb, HBK_SCSI_OP_PREFETCH16, 1ull << 63, 1);
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb16(cdb, HBK_SCSI_OP_PREFETCH16, BIG_BLOCKS - 1, 1); /* above 2^32 on LUN 2 */
	run(f, 2, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_condition_met(f);
	cdb10(cdb, HBK_SCSI_OP_PREFETCH10, 0, 1);
	cdb[1] = 0x01;                                     /* obsolete bit */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
	start_stop_as(f, 0, 0x00);
	cdb[1] = 0;
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
}

/* PRE-FETCH reads: allowed under Write Exclusive, not Exclusive Access. */
static void prefetch_reservations(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	pr_out(f, A, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KA);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE, KA, 0);
	assert_good(f);
	cdb10(cdb, HBK_SCSI_OP_PREFETCH10, 0, 1);
	run_as(f, B, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_condition_met(f);
	pr_out(f, A, HBK_PR_PREEMPT, HBK_PR_EA, KA, KA);   /* now Exclusive Access */
	assert_good(f);
	run_as(f, B, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_conflict(f);
}

/* ---- ORWRITE --------------------------------------------------------------------- */

static void orwrite_ors_into_the_medium(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[3 * MEM_BS], before[3 * MEM_BS];

	fill_pattern(before, sizeof before, 1);
	memcpy(blk(f, 40), before, sizeof before);
	fill_pattern(data, sizeof data, 77);
	cdb16(cdb, HBK_SCSI_OP_ORWRITE16, 40, 3);
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, sizeof data);
	for (size_t i = 0; i < sizeof data; i++)
		assert_int_equal(blk(f, 40)[i], before[i] | data[i]);
	assert_int_equal(blk(f, 43)[0], 0);                /* nothing beyond */
	assert_false(f->be.last_fua);                      /* write back cache */
	cdb[1] = 0x18;                                     /* DPO, FUA */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_true(f->be.last_fua);
}

static void orwrite_checks(void **state)
{
	struct fixture *f = *state;
	static uint8_t data[300 * MEM_BS];
	uint8_t cdb[16];

	cdb16(cdb, HBK_SCSI_OP_ORWRITE16, 0, 0);           /* 0 blocks: nothing */
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	cdb16(cdb, HBK_SCSI_OP_ORWRITE16, MEM_BLOCKS - 1, 2);
	run(f, 0, cdb, 16, data, 2 * MEM_BS, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb16(cdb, HBK_SCSI_OP_ORWRITE16, 0, 257);         /* over the 256-block maximum */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	cdb16(cdb, HBK_SCSI_OP_ORWRITE16, 0, 2);
	cdb[1] = 0x20;                                     /* ORPROTECT */
	run(f, 0, cdb, 16, data, 2 * MEM_BS, HBK_DIR_WRITE);
	assert_invalid_field(f);
	cdb[1] = 0;
	run(f, 0, cdb, 16, data, MEM_BS, HBK_DIR_WRITE);   /* one block of data-out for two */
	assert_invalid_field(f);
	assert_int_equal(f->be.reads + f->be.writes, 0);
	f->be.fail = -EIO;
	run(f, 0, cdb, 16, data, 2 * MEM_BS, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_MEDIUM_ERROR, HBK_ASC_UNRECOVERED_READ_ERROR);
}

struct or_arg {
	struct fixture *f;
	pthread_barrier_t *start;
	uint8_t bit;
};

/* Each thread ORs its own bit into one byte after another of the same
 * block, each byte once: an update lost to another thread's stays lost. */
static void *or_thread(void *p)
{
	struct or_arg *a = p;
	uint8_t cdb[16], data[MEM_BS];
	const struct hbk_scsi_req req = {
		.initiator = a->bit, .cdb = cdb, .cdb_len = 16,
		.buf = data, .buf_len = sizeof data, .dir = HBK_DIR_WRITE,
	};
	struct hbk_scsi_reply r;

	memset(data, 0, sizeof data);
	cdb16(cdb, HBK_SCSI_OP_ORWRITE16, 200, 1);
	pthread_barrier_wait(a->start);
	for (size_t i = 0; i < MEM_BS; i++) {
		data[i] = a->bit;
		hbk_scsi_exec(&a->f->t, &req, &r);
		data[i] = 0;
		if (r.status != HBK_STATUS_GOOD)
			return (void *)1;
	}
	return NULL;
}

/* The memory backend, yielding the CPU after each read: another thread's
 * write lands between an ORWRITE's read and write unless they are atomic. */
static int yielding_read(void *ctx, uint64_t lba, uint32_t nblocks, void *buf)
{
	int err = mem_read(ctx, lba, nblocks, buf);

	sched_yield();
	return err;
}

static const struct hbk_scsi_backend_ops yielding_ops = {
	.read = yielding_read, .write = mem_write, .flush = mem_flush, .unmap = mem_unmap,
	.lba_status = mem_lba_status,
};

static void cfg_yielding(struct hbk_scsi_lun_cfg *cfg)
{
	cfg->ops = &yielding_ops;
}

static void orwrite_is_atomic(void **state)
{
	struct fixture *f = *state;
	struct or_arg args[8];
	pthread_barrier_t start;

	reconfigure(f, cfg_yielding);
	pthread_barrier_init(&start, NULL, 8);
	for (unsigned i = 0; i < 8; i++)
		args[i] = (struct or_arg){ f, &start, (uint8_t)(1u << i) };
	run_threads(or_thread, args, sizeof args[0], 8);
	pthread_barrier_destroy(&start);
	for (size_t i = 0; i < MEM_BS; i++)
		assert_int_equal(blk(f, 200)[i], 0xff);
}

/* ---- WRITE ATOMIC ---------------------------------------------------------------- */

static void atomic_cdb(uint8_t *cdb, uint64_t lba, uint16_t n)
{
	memset(cdb, 0, 16);
	cdb[0] = HBK_SCSI_OP_WRITE_ATOMIC16;
	put_be64(cdb + 2, lba);
	put_be16(cdb + 12, n);
}

static void write_atomic_writes(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[4 * MEM_BS];

	fill_pattern(data, sizeof data, 5);
	atomic_cdb(cdb, 10, 4);
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, sizeof data);
	assert_memory_equal(blk(f, 10), data, sizeof data);
	assert_int_equal(f->be.writes, 1);                 /* one backend write */
	atomic_cdb(cdb, 0, 0);
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->be.writes, 1);
	atomic_cdb(cdb, MEM_BLOCKS - 1, 2);
	run(f, 0, cdb, 16, data, 2 * MEM_BS, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	atomic_cdb(cdb, 0, 257);                           /* over the atomic maximum (256) */
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
	atomic_cdb(cdb, 0, 1);
	cdb[10] = 1;                                       /* ATOMIC BOUNDARY: not supported */
	run(f, 0, cdb, 16, data, MEM_BS, HBK_DIR_WRITE);
	assert_invalid_field(f);
	atomic_cdb(cdb, 0, 1);
	cdb[1] = 0x20;                                     /* WRPROTECT */
	run(f, 0, cdb, 16, data, MEM_BS, HBK_DIR_WRITE);
	assert_invalid_field(f);
}

static void cfg_atomic_limits(struct hbk_scsi_lun_cfg *cfg)
{
	cfg->max_atomic_blocks = 16;
	cfg->atomic_alignment = 4;
	cfg->atomic_granularity = 2;
}

static void write_atomic_limits_and_vpd(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[16 * MEM_BS] = { 0 };

	inquiry_cdb(cdb, true, 0xb0, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_int_equal(get_be32(f->buf + 44), 256);      /* the maximum transfer length */
	assert_int_equal(get_be32(f->buf + 48), 0);        /* any alignment */
	assert_int_equal(get_be32(f->buf + 52), 0);        /* any granularity */
	assert_int_equal(get_be32(f->buf + 56), 0);        /* no atomic boundaries */
	assert_int_equal(get_be32(f->buf + 60), 0);
	reconfigure(f, cfg_atomic_limits);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_int_equal(get_be32(f->buf + 44), 16);
	assert_int_equal(get_be32(f->buf + 48), 4);
	assert_int_equal(get_be32(f->buf + 52), 2);
	atomic_cdb(cdb, 4, 16);
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	atomic_cdb(cdb, 2, 2);                             /* misaligned */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	atomic_cdb(cdb, 4, 3);                             /* not a multiple of 2 */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	atomic_cdb(cdb, 4, 18);                            /* over 16 */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_invalid_field(f);
	atomic_cdb(cdb, MEM_BLOCKS + 2, 2);                /* range before alignment */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
}

static void lun_init_checks_new_fields(void **state)
{
	struct fixture *f = *state;
	struct hbk_scsi_lun lun;
	struct hbk_scsi_lun_cfg cfg = mem_cfg(f);

	cfg.lbppbe = 16;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg = mem_cfg(f);
	cfg.max_atomic_blocks = 65536;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg = mem_cfg(f);
	cfg.atomic_granularity = 257;                      /* above the 256-block limit */
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg.atomic_granularity = 256;
	cfg.lbppbe = 15;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), 0);
	hbk_scsi_lun_fini(&lun);
}

/* ---- READ DEFECT DATA ------------------------------------------------------------ */

static void read_defect_data10_header_only(void **state)
{
	struct fixture *f = *state;
	/* REQ_PLIST, REQ_GLIST, format 100b (bytes from index) */
	uint8_t cdb[10] = { HBK_SCSI_OP_READ_DEFECT10, 0, 0x18 | 0x04 };

	put_be16(cdb + 7, 32);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 4);
	assert_int_equal(f->buf[0], 0);
	assert_int_equal(f->buf[1], 0x1c);                 /* PLISTV, GLISTV, format 100b */
	assert_int_equal(get_be16(f->buf + 2), 0);         /* DEFECT LIST LENGTH */
	assert_int_equal(f->buf[4], 0xee);
	cdb[2] = 0x03;                                     /* no list asked: neither valid */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_int_equal(f->buf[1], 0x03);
	put_be16(cdb + 7, 2);                              /* allocation length cuts it */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 2);
	assert_int_equal(f->buf[2], 0xee);
	put_be16(cdb + 7, 0);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 0);
	cdb[2] = 0x07;                                     /* format 111b is reserved */
	put_be16(cdb + 7, 32);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	cdb[2] = 0x20;                                     /* reserved bit */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
}

static void read_defect_data12_header_only(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12] = { HBK_SCSI_OP_READ_DEFECT12, 0x10 | 0x03 };      /* P, long block */

	put_be32(cdb + 2, 5);                              /* ADDRESS DESCRIPTOR INDEX */
	put_be32(cdb + 6, 64);
	run_in(f, 0, cdb, 12, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(f->buf[1], 0x13);                 /* PLISTV, format 011b */
	assert_int_equal(get_be16(f->buf + 2), 0);         /* GENERATION CODE: none */
	assert_int_equal(get_be32(f->buf + 4), 0);         /* DEFECT LIST LENGTH */
	assert_int_equal(f->buf[8], 0xee);
}

/* ---- RESERVE(6) / RELEASE(6) ----------------------------------------------------- */

static void reserve6_as(struct fixture *f, uint64_t it)
{
	const uint8_t cdb[6] = { HBK_SCSI_OP_RESERVE6 };

	run_as(f, it, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
}

/* RELEASE(6) that must complete GOOD (see release6_try). */
static void release6_as(struct fixture *f, uint64_t it)
{
	const uint8_t cdb[6] = { HBK_SCSI_OP_RELEASE6 };

	run_as(f, it, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
}

static void release6_try(struct fixture *f, uint64_t it)
{
	const uint8_t cdb[6] = { HBK_SCSI_OP_RELEASE6 };

	run_as(f, it, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
}

static void reserve6_excludes_others(void **state)
{
	struct fixture *f = *state;
	uint8_t read[10], inq[6], luns[12] = { HBK_SCSI_OP_REPORT_LUNS };
	uint8_t sense[6] = { HBK_SCSI_OP_REQUEST_SENSE, 0, 0, 0, 18 };
	uint8_t msense[6] = { HBK_SCSI_OP_MODE_SENSE6, 0, 0x3f, 0, 255 }, data[MEM_BS];

	cdb10(read, HBK_SCSI_OP_READ10, 0, 1);
	inquiry_cdb(inq, false, 0, 96);
	put_be32(luns + 6, 64);
	reserve6_as(f, A);
	assert_good(f);
	reserve6_as(f, A);                                 /* the holder again */
	assert_good(f);
	tur_as(f, B);
	assert_conflict(f);
	run_as(f, B, 0, read, 10, data, sizeof data, HBK_DIR_READ);
	assert_conflict(f);
	run_as(f, B, 0, msense, 6, data, sizeof data, HBK_DIR_READ);
	assert_conflict(f);
	reserve6_as(f, B);
	assert_conflict(f);
	prevent_as(f, B, true);
	assert_conflict(f);
	/* What SPC-2 lets through. */
	run_as(f, B, 0, inq, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	run_as(f, B, 0, luns, 12, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	run_as(f, B, 0, sense, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	prevent_as(f, B, false);
	assert_good(f);
	release6_as(f, B);                                 /* not the holder: no effect */
	tur_as(f, B);
	assert_conflict(f);
	run_as(f, A, 0, read, 10, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	release6_as(f, A);
	tur_as(f, B);
	assert_good(f);
	reserve6_as(f, B);
	assert_good(f);
	tur_as(f, A);
	assert_conflict(f);
}

/* The two kinds of reservation exclude each other.  Under registrations,
 * RESERVE(6) and RELEASE(6) conflict but for SPC-4 5.13.3's exceptions
 * (CRH 1); under RESERVE(6), every PERSISTENT RESERVE IN and OUT conflicts,
 * the holder's too (SPC-4 5.13.1), so the holder cannot register and then
 * find its RELEASE(6) doing nothing. */
static void reserve6_and_registrations(void **state)
{
	struct fixture *f = *state;
	uint8_t read[10], data[MEM_BS];
	const uint8_t read_keys[10] = { HBK_SCSI_OP_PR_IN, HBK_PR_READ_KEYS, 0, 0, 0, 0, 0, 0, 64 };

	cdb10(read, HBK_SCSI_OP_READ10, 0, 1);
	pr_out(f, C, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KB);
	assert_good(f);
	reserve6_as(f, A);                                 /* neither holder nor registrant */
	assert_conflict(f);
	release6_try(f, A);
	assert_conflict(f);
	release6_as(f, C);                                 /* a registrant's: GOOD, no effect */
	pr_out(f, C, HBK_PR_RESERVE, HBK_PR_WE, KB, 0);
	assert_good(f);
	reserve6_as(f, C);                                 /* the holder's: GOOD, no effect */
	assert_good(f);
	run_as(f, A, 0, read, 10, data, sizeof data, HBK_DIR_READ);
	assert_good(f);                                    /* only Write Exclusive applies */
	pr_out(f, C, HBK_PR_REGISTER, 0, KB, 0);           /* C unregisters, releasing */
	assert_good(f);

	reserve6_as(f, A);
	assert_good(f);
	pr_out(f, A, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KA); /* the holder's PR OUT too */
	assert_conflict(f);
	run_as(f, A, 0, read_keys, 10, data, sizeof data, HBK_DIR_READ);
	assert_conflict(f);
	pr_out(f, C, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KB); /* and another's */
	assert_conflict(f);
	release6_as(f, A);                                 /* so RELEASE(6) still works */
	tur_as(f, B);
	assert_good(f);
	pr_out(f, B, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KB);
	assert_good(f);
}

static void reserve6_ends_with_reset_and_nexus_loss(void **state)
{
	struct fixture *f = *state;

	reserve6_as(f, A);
	assert_good(f);
	hbk_scsi_lun_reset(&f->mem);
	expect_good_tur(f, B);                             /* B never used the LUN: no UA */
	expect_ua(f, A, HBK_ASC_BUS_DEVICE_RESET);
	reserve6_as(f, A);
	assert_good(f);
	hbk_scsi_nexus_loss(&f->t, B);                     /* not the holder's */
	tur_as(f, B);
	assert_conflict(f);
	hbk_scsi_nexus_loss(&f->t, A);
	expect_good_tur(f, B);
	reserve6_as(f, B);
	assert_good(f);
	hbk_scsi_target_reset(&f->t);
	expect_ua(f, B, HBK_ASC_BUS_DEVICE_RESET);
	reserve6_as(f, C);
	assert_good(f);
}

/* ---- Unit attentions ------------------------------------------------------------- */

static void ua_after_lun_reset_once_per_nexus(void **state)
{
	struct fixture *f = *state;
	uint8_t inq[6], luns[12] = { HBK_SCSI_OP_REPORT_LUNS }, data[128];

	expect_good_tur(f, A);                             /* no power-on unit attention */
	expect_good_tur(f, B);
	hbk_scsi_lun_reset(&f->mem);
	inquiry_cdb(inq, false, 0, 96);
	run_as(f, A, 0, inq, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);                                    /* INQUIRY neither reports */
	put_be32(luns + 6, sizeof data);
	run_as(f, A, 0, luns, 12, data, sizeof data, HBK_DIR_READ);
	assert_good(f);                                    /* nor REPORT LUNS */
	expect_ua(f, A, HBK_ASC_BUS_DEVICE_RESET);
	expect_ua(f, B, HBK_ASC_BUS_DEVICE_RESET);
	expect_good_tur(f, C);                             /* came after the reset */
	tur_as(f, A);
	run_as(f, A, 2, inq, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);                                    /* LUN 2 was not reset */
}

/* The UA is reported instead of any other outcome, even for a command the
 * LUN does not serve, and the command does not run. */
static void ua_comes_first(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16] = { 0xc0 }, data[MEM_BS] = { 9 };

	expect_good_tur(f, A);
	hbk_scsi_lun_reset(&f->mem);
	run_as(f, A, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_UNIT_ATTENTION, HBK_ASC_BUS_DEVICE_RESET);
	hbk_scsi_lun_reset(&f->mem);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 3, 1);
	run_as(f, A, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_UNIT_ATTENTION, HBK_ASC_BUS_DEVICE_RESET);
	assert_int_equal(f->be.writes, 0);
	run_as(f, A, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(blk(f, 3)[0], 9);
}

static void request_sense_returns_the_ua(void **state)
{
	struct fixture *f = *state;
	uint8_t rs[6] = { HBK_SCSI_OP_REQUEST_SENSE, 0, 0, 0, 18 }, data[32];

	expect_good_tur(f, A);
	expect_good_tur(f, B);
	hbk_scsi_lun_reset(&f->mem);
	memset(data, 0xee, sizeof data);
	run_as(f, A, 0, rs, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(f->r.bytes, 18);
	assert_int_equal(data[0], 0x70);
	assert_int_equal(data[2] & 0x0f, HBK_SK_UNIT_ATTENTION);
	assert_int_equal(data[12], 0x29);
	assert_int_equal(data[13], 0x03);
	expect_good_tur(f, A);                             /* reported: cleared */
	rs[1] = 0x01;                                      /* descriptor format */
	run_as(f, B, 0, rs, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(data[0], 0x72);
	assert_int_equal(data[1], HBK_SK_UNIT_ATTENTION);
	assert_int_equal(data[2], 0x29);
	assert_int_equal(data[3], 0x03);
	expect_good_tur(f, B);
	run_as(f, A, 0, rs, 6, data, sizeof data, HBK_DIR_READ);   /* nothing left */
	assert_int_equal(data[1] & 0x0f, HBK_SK_NO_SENSE);
}

static void reset_restores_state(void **state)
{
	struct fixture *f = *state;
	uint8_t msel[6] = { HBK_SCSI_OP_MODE_SELECT6, 0x10, 0, 0, 24 }, p[24] = { 0 };
	uint8_t msense[6] = { HBK_SCSI_OP_MODE_SENSE6, 0x08, 0x08, 0, 255 }, data[64];
	uint8_t keys[10] = { HBK_SCSI_OP_PR_IN, HBK_PR_READ_KEYS };

	p[4] = 0x08;                                       /* caching page, WCE 0 */
	p[5] = 18;
	run_as(f, A, 0, msel, 6, p, sizeof p, HBK_DIR_WRITE);
	assert_good(f);
	assert_false(lun_state(&f->mem) & HBK_LUN_WCE);
	pr_out(f, A, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KA);
	assert_good(f);
	prevent_as(f, A, true);
	assert_good(f);
	assert_true(hbk_pr_removal_prevented(&f->mem));
	hbk_scsi_lun_reset(&f->mem);
	assert_false(hbk_pr_removal_prevented(&f->mem));
	assert_true(lun_state(&f->mem) & HBK_LUN_WCE);     /* the default again */
	expect_ua(f, A, HBK_ASC_BUS_DEVICE_RESET);
	run_as(f, A, 0, msense, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(data[4 + 2] & 0x04, 0x04);        /* WCE */
	put_be16(keys + 7, 16);
	run_as(f, A, 0, keys, 10, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(get_be32(data + 4), 8);           /* the registration stays */
	assert_true(get_be64(data + 8) == KA);
}

static void mode_select_tells_the_others(void **state)
{
	struct fixture *f = *state;
	uint8_t msel[6] = { HBK_SCSI_OP_MODE_SELECT6, 0x10, 0, 0, 24 }, p[24] = { 0 };

	expect_good_tur(f, B);
	p[4] = 0x08;
	p[5] = 18;
	p[6] = 0x04;                                       /* WCE 1: no change */
	run_as(f, A, 0, msel, 6, p, sizeof p, HBK_DIR_WRITE);
	assert_good(f);
	expect_good_tur(f, B);
	p[6] = 0;                                          /* WCE 0: a change */
	run_as(f, A, 0, msel, 6, p, sizeof p, HBK_DIR_WRITE);
	assert_good(f);
	expect_ua(f, B, HBK_ASC_MODE_PARAMETERS_CHANGED);
	expect_good_tur(f, A);                             /* not the one that changed it */
}

static void release_of_registrants_only_tells_registrants(void **state)
{
	struct fixture *f = *state;

	pr_out(f, A, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KA);
	pr_out(f, B, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KB);
	expect_good_tur(f, C);
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_WE_RO, KA, 0);
	assert_good(f);
	pr_out(f, A, HBK_PR_RELEASE, HBK_PR_WE_RO, KA, 0);
	assert_good(f);
	expect_ua(f, B, HBK_ASC_RESERVATIONS_RELEASED);
	expect_good_tur(f, A);
	expect_good_tur(f, C);                             /* not registered */
	pr_out(f, A, HBK_PR_RESERVE, HBK_PR_EA_RO, KA, 0); /* released by unregistering */
	assert_good(f);
	pr_out(f, A, HBK_PR_REGISTER, 0, KA, 0);
	assert_good(f);
	expect_ua(f, B, HBK_ASC_RESERVATIONS_RELEASED);
	pr_out(f, B, HBK_PR_RESERVE, HBK_PR_WE, KB, 0);    /* a plain type: nobody told */
	assert_good(f);
	pr_out(f, B, HBK_PR_RELEASE, HBK_PR_WE, KB, 0);
	assert_good(f);
	expect_good_tur(f, A);
}

/* A reset supersedes what was pending; one condition is reported per command. */
static void ua_precedence(void **state)
{
	struct fixture *f = *state;

	pr_out(f, A, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KA);
	pr_out(f, B, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KB);
	pr_out(f, A, HBK_PR_CLEAR, 0, KA, 0);
	assert_good(f);
	hbk_scsi_lun_reset(&f->mem);
	expect_ua(f, B, HBK_ASC_BUS_DEVICE_RESET);         /* not 2Ah/03h as well */
}

static void ua_table_full(void **state)
{
	struct fixture *f = *state;

	expect_good_tur(f, A);
	pr_out(f, A, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KA);
	pr_out(f, B, HBK_PR_REGISTER_AND_IGNORE, 0, 0, KB);
	pr_out(f, B, HBK_PR_CLEAR, 0, KB, 0);              /* A has 2Ah/03h pending */
	for (uint64_t it = 0x100; it < 0x100 + 3 * HBK_SCSI_UA_MAX; it++) {
		if (it < 0x100 + HBK_SCSI_UA_MAX - 2)
			expect_good_tur(f, it);            /* room in the table */
		else                                       /* room made by giving a nexus up */
			expect_ua(f, it, HBK_ASC_POWER_ON_RESET);
	}
	assert_int_equal(atomic_load(&f->mem.ua_count), HBK_SCSI_UA_MAX);
	expect_ua(f, A, HBK_ASC_RESERVATIONS_PREEMPTED);   /* its slot was kept */
	/* A nexus given up comes back: what it missed is lost, so it is told
	 * to find out the LUN's state afresh. */
	expect_ua(f, 0x100, HBK_ASC_POWER_ON_RESET);
	hbk_scsi_nexus_loss(&f->t, A);
	assert_int_equal(atomic_load(&f->mem.ua_count), HBK_SCSI_UA_MAX - 1);
}

struct ua_arg {
	struct fixture *f;
	uint64_t it;
	unsigned bad;
};

static void *ua_thread(void *p)
{
	struct ua_arg *a = p;
	const uint8_t tur[6] = { HBK_SCSI_OP_TEST_UNIT_READY };
	const struct hbk_scsi_req req = { .initiator = a->it, .cdb = tur, .cdb_len = 6 };
	struct hbk_scsi_reply r;

	for (int i = 0; i < 2000; i++) {
		hbk_scsi_exec(&a->f->t, &req, &r);
		if (r.status != HBK_STATUS_GOOD &&
		    !(r.status == HBK_STATUS_CHECK_CONDITION && r.sense[2] == HBK_SK_UNIT_ATTENTION &&
		      r.sense[12] == 0x29 && r.sense[13] == 0x03))
			a->bad++;
	}
	return NULL;
}

static void *reset_thread(void *p)
{
	struct ua_arg *a = p;

	for (int i = 0; i < 500; i++) {
		hbk_scsi_lun_reset(&a->f->mem);
		if (i % 50 == 0)
			hbk_scsi_nexus_loss(&a->f->t, 0x200 + (uint64_t)(i % 3));
	}
	return NULL;
}

/* Commands of many nexuses while resets and nexus losses come: only GOOD or
 * the reset's unit attention, and afterwards exactly one per nexus. */
static void ua_concurrent(void **state)
{
	struct fixture *f = *state;
	struct ua_arg args[6];

	for (unsigned i = 0; i < 6; i++)
		args[i] = (struct ua_arg){ f, 0x200 + i, 0 };
	{
		pthread_t th;

		assert_int_equal(pthread_create(&th, NULL, reset_thread, &args[5]), 0);
		run_threads(ua_thread, args, sizeof args[0], 5);
		pthread_join(th, NULL);
	}
	for (unsigned i = 0; i < 5; i++) {
		assert_int_equal(args[i].bad, 0);
		tur_as(f, args[i].it);                     /* known again if it was lost */
	}
	hbk_scsi_lun_reset(&f->mem);
	for (unsigned i = 0; i < 5; i++)
		expect_ua(f, args[i].it, HBK_ASC_BUS_DEVICE_RESET);
}

/* ---- The removable medium -------------------------------------------------------- */

static void cfg_removable(struct hbk_scsi_lun_cfg *cfg)
{
	cfg->removable = true;
}

static void removable_load_and_eject(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[64];

	reconfigure(f, cfg_removable);
	inquiry_cdb(cdb, false, 0, 96);
	run_in(f, 0, cdb, 6, 96);
	assert_int_equal(f->buf[1], 0x80);                 /* RMB */
	start_stop_as(f, A, 0x02);                         /* eject */
	assert_good(f);
	assert_int_equal(f->be.flushes, 1);
	tur_as(f, A);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
	cdb10(cdb, HBK_SCSI_OP_READ_CAPACITY10, 0, 0);
	run_in(f, 0, cdb, 10, 8);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
	cdb10(cdb, HBK_SCSI_OP_SYNC_CACHE10, 0, 1);
	cdb[1] = 0x06;                                     /* IMMED and an obsolete bit */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
	cdb[0] = HBK_SCSI_OP_MODE_SENSE6;                  /* not a medium command */
	memset(cdb + 1, 0, 5);
	cdb[2] = 0x3f;
	cdb[4] = 64;
	run_in(f, 0, cdb, 6, sizeof data);
	assert_good(f);
	start_stop_as(f, A, 0x01);                         /* START alone: no medium */
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
	start_stop_as(f, A, 0x02);                         /* eject again: fine */
	assert_good(f);
	start_stop_as(f, A, 0x03);                         /* load */
	assert_good(f);
	expect_good_tur(f, A);
	start_stop_as(f, A, 0x06);                         /* eject, NO_FLUSH */
	assert_good(f);
	assert_int_equal(f->be.flushes, 1);
	start_stop_as(f, A, 0x03);
	assert_good(f);
	start_stop_as(f, A, 0x12);                         /* IDLE: LOEJ is ignored */
	assert_good(f);
	expect_good_tur(f, A);                             /* the medium stays */
}

static void removable_prevention(void **state)
{
	struct fixture *f = *state;

	reconfigure(f, cfg_removable);
	prevent_as(f, A, true);
	assert_good(f);
	start_stop_as(f, B, 0x02);                         /* any nexus may not eject */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
	expect_good_tur(f, A);
	prevent_as(f, A, false);
	assert_good(f);
	start_stop_as(f, A, 0x02);
	assert_good(f);
	prevent_as(f, B, true);                            /* the mechanism locked: no load */
	assert_good(f);
	start_stop_as(f, A, 0x03);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_MEDIUM_REMOVAL_PREVENTED);
	hbk_scsi_nexus_loss(&f->t, B);                     /* B's prevention ends with it */
	start_stop_as(f, A, 0x03);
	assert_good(f);
	expect_good_tur(f, A);
}

/* A LUN with a fixed medium keeps refusing LOEJ (sbc.c). */
/* REQUEST SENSE of `it` in both formats: GOOD, with sense key `key` and
 * ASC/ASCQ `asc_ascq` as its parameter data. */
static void expect_polled_sense(struct fixture *f, uint64_t it, uint8_t key, uint16_t asc_ascq)
{
	uint8_t rs[6] = { HBK_SCSI_OP_REQUEST_SENSE, 0, 0, 0, 252 }, data[252];

	run_as(f, it, 0, rs, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(f->r.bytes, 18);
	assert_int_equal(data[0], 0x70);
	assert_int_equal(data[2] & 0x0f, key);
	assert_int_equal(data[12], asc_ascq >> 8);
	assert_int_equal(data[13], asc_ascq & 0xff);
	rs[1] = 0x01;                                      /* descriptor format */
	run_as(f, it, 0, rs, 6, data, sizeof data, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(data[0], 0x72);
	assert_int_equal(data[1] & 0x0f, key);
	assert_int_equal(data[2], asc_ascq >> 8);
	assert_int_equal(data[3], asc_ascq & 0xff);
}

/* A stopped LUN (or one without a medium) says so to REQUEST SENSE as
 * TEST UNIT READY does: the pollable sense data of SPC-4 5.11.2; a pending
 * unit attention still comes first. */
static void request_sense_polls_readiness(void **state)
{
	struct fixture *f = *state;
	const uint8_t rs[6] = { HBK_SCSI_OP_REQUEST_SENSE, 0, 0, 0, 18 };

	reconfigure(f, cfg_removable);
	expect_polled_sense(f, A, HBK_SK_NO_SENSE, 0);
	start_stop_as(f, A, 0x00);                         /* stop */
	assert_good(f);
	tur_as(f, A);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
	expect_polled_sense(f, A, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
	expect_polled_sense(f, B, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
	hbk_scsi_lun_reset(&f->mem);
	run_as(f, A, 0, rs, 6, f->buf, 18, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(f->buf[2] & 0x0f, HBK_SK_UNIT_ATTENTION);
	expect_polled_sense(f, A, HBK_SK_NOT_READY, HBK_ASC_NOT_READY_INIT_REQUIRED);
	start_stop_as(f, A, 0x02);                         /* eject */
	assert_good(f);
	tur_as(f, A);
	assert_check(f, HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
	expect_polled_sense(f, A, HBK_SK_NOT_READY, HBK_ASC_MEDIUM_NOT_PRESENT);
	start_stop_as(f, A, 0x03);                         /* load and start */
	assert_good(f);
	expect_polled_sense(f, A, HBK_SK_NO_SENSE, 0);
}

static void fixed_medium_refuses_loej(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	start_stop_as(f, A, 0x02);
	assert_invalid_field(f);
	inquiry_cdb(cdb, false, 0, 96);
	run_in(f, 0, cdb, 6, 96);
	assert_int_equal(f->buf[1], 0);                    /* RMB 0 */
}

/* ---- The write-protected medium -------------------------------------------------- */

static void cfg_read_only(struct hbk_scsi_lun_cfg *cfg)
{
	cfg->read_only = true;
}

/* A command that writes the medium meets DATA PROTECT, WRITE PROTECTED. */
static void expect_protected(struct fixture *f, const uint8_t *cdb, unsigned len, uint64_t out)
{
	static uint8_t data[2 * MEM_BS];

	run(f, 0, cdb, len, data, out, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_DATA_PROTECT, HBK_ASC_WRITE_PROTECTED);
}

static void read_only_refuses_writes(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[MEM_BS], ms10[10] = { HBK_SCSI_OP_MODE_SENSE10, 0x08, 0x3f };
	uint8_t unmap[24] = { 0, 22, 0, 16 };

	reconfigure(f, cfg_read_only);
	cdb6(cdb, HBK_SCSI_OP_WRITE6, 0, 1);
	expect_protected(f, cdb, 6, MEM_BS);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	expect_protected(f, cdb, 10, MEM_BS);
	cdb12(cdb, HBK_SCSI_OP_WRITE12, 0, 1);
	expect_protected(f, cdb, 12, MEM_BS);
	cdb16(cdb, HBK_SCSI_OP_WRITE16, 0, 1);
	expect_protected(f, cdb, 16, MEM_BS);
	cdb10(cdb, HBK_SCSI_OP_WRITE_VERIFY10, 0, 1);
	expect_protected(f, cdb, 10, MEM_BS);
	cdb10(cdb, HBK_SCSI_OP_WRITE_SAME10, 0, 1);
	expect_protected(f, cdb, 10, MEM_BS);
	cdb16(cdb, HBK_SCSI_OP_ORWRITE16, 0, 1);
	expect_protected(f, cdb, 16, MEM_BS);
	atomic_cdb(cdb, 0, 1);
	expect_protected(f, cdb, 16, MEM_BS);
	cdb16(cdb, HBK_SCSI_OP_COMPARE_AND_WRITE, 0, 0);
	cdb[13] = 1;
	expect_protected(f, cdb, 16, 2 * MEM_BS);
	put_be64(unmap + 8, 0);
	put_be32(unmap + 16, 1);
	cdb10(cdb, HBK_SCSI_OP_UNMAP, 0, 0);
	put_be16(cdb + 7, sizeof unmap);
	cdb[2] = cdb[3] = cdb[4] = cdb[5] = 0;
	run(f, 0, cdb, 10, unmap, sizeof unmap, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_DATA_PROTECT, HBK_ASC_WRITE_PROTECTED);
	assert_int_equal(f->be.writes + f->be.unmaps, 0);
	/* Reads, SYNCHRONIZE CACHE and MODE SENSE work; WP in both headers. */
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	run(f, 0, cdb, 10, data, MEM_BS, HBK_DIR_READ);
	assert_good(f);
	cdb10(cdb, HBK_SCSI_OP_SYNC_CACHE10, 0, 0);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	put_be16(ms10 + 7, 255);
	run_in(f, 0, ms10, 10, 255);
	assert_good(f);
	assert_int_equal(f->buf[3], 0x80 | 0x10);          /* WP, DPOFUA */
	cdb6(cdb, HBK_SCSI_OP_MODE_SENSE6, 0, 255);
	cdb[1] = 0x08;
	cdb[2] = 0x3f;
	cdb[3] = 0;
	run_in(f, 0, cdb, 6, 255);
	assert_int_equal(f->buf[2], 0x80 | 0x10);
}

/* ---- Physical blocks, WRITE SAME to the end, the opcode list --------------------- */

static void cfg_lbppbe3(struct hbk_scsi_lun_cfg *cfg)
{
	cfg->lbppbe = 3;
}

static void physical_block_exponent(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16] = { HBK_SCSI_OP_SERVICE_ACTION_IN16, HBK_SCSI_SA_READ_CAPACITY16 };

	put_be32(cdb + 10, 32);
	run_in(f, 0, cdb, 16, 32);
	assert_int_equal(f->buf[13], 0);
	reconfigure(f, cfg_lbppbe3);
	run_in(f, 0, cdb, 16, 32);
	assert_good(f);
	assert_int_equal(f->buf[13], 3);                   /* 8 logical blocks per physical */
	assert_int_equal(get_be16(f->buf + 14) & 0x3fff, 0); /* lowest aligned LBA 0 */
	inquiry_cdb(cdb, true, 0xb0, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_int_equal(get_be16(f->buf + 6), 8);         /* OPTIMAL TRANSFER LENGTH GRANULARITY */
	assert_int_equal(get_be32(f->buf + 28), 8);        /* OPTIMAL UNMAP GRANULARITY */
}

static void write_same16_to_the_end(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], one[MEM_BS];

	memset(one, 0x5a, sizeof one);
	inquiry_cdb(cdb, true, 0xb0, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_int_equal(f->buf[4] & 0x01, 0);             /* WSNZ 0 */
	memset(blk(f, MEM_BLOCKS - 5), 1, 5 * MEM_BS);
	cdb16(cdb, HBK_SCSI_OP_WRITE_SAME16, MEM_BLOCKS - 4, 0);
	run(f, 0, cdb, 16, one, sizeof one, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(blk(f, MEM_BLOCKS - 5)[0], 1);
	for (unsigned i = 1; i <= 4; i++)
		assert_int_equal(blk(f, MEM_BLOCKS - i)[MEM_BS - 1], 0x5a);
	cdb16(cdb, HBK_SCSI_OP_WRITE_SAME16, MEM_BLOCKS - 2, 0);
	cdb[1] = 0x09;                                     /* UNMAP, NDOB */
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->be.unmaps, 1);
	assert_int_equal(f->be.unmapped, 2);
	assert_int_equal(blk(f, MEM_BLOCKS - 3)[0], 0x5a);
	assert_int_equal(blk(f, MEM_BLOCKS - 1)[0], 0);
}

/* The new commands are listed with the CDB usage data they check. */
static void report_opcodes_lists_them(void **state)
{
	struct fixture *f = *state;
	static const struct { uint8_t op, b1; } ops[] = {
		{ HBK_SCSI_OP_RESERVE6, 0 }, { HBK_SCSI_OP_RELEASE6, 0 },
		{ HBK_SCSI_OP_PREFETCH10, 0x02 }, { HBK_SCSI_OP_READ_DEFECT10, 0 },
		{ HBK_SCSI_OP_ORWRITE16, 0xfa }, { HBK_SCSI_OP_PREFETCH16, 0x02 },
		{ HBK_SCSI_OP_WRITE_ATOMIC16, 0xf8 }, { HBK_SCSI_OP_READ_DEFECT12, 0x1f },
	};
	uint8_t cdb[12] = { HBK_SCSI_OP_MAINTENANCE_IN, HBK_SCSI_SA_REPORT_OPCODES, 0x01 };

	put_be32(cdb + 6, 64);
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
		cdb[3] = ops[i].op;
		run_in(f, 0, cdb, 12, 64);
		assert_good(f);
		assert_int_equal(f->buf[1] & 0x07, 0x03);  /* supported as in the standard */
		assert_int_equal(f->buf[4], ops[i].op);
		assert_int_equal(f->buf[5], ops[i].b1);
	}
	cdb[3] = HBK_SCSI_OP_WRITE_ATOMIC16;
	run_in(f, 0, cdb, 12, 64);
	assert_int_equal(get_be16(f->buf + 2), 16);
	assert_int_equal(f->buf[4 + 10], 0);               /* ATOMIC BOUNDARY: not used */
	assert_int_equal(f->buf[4 + 12], 0xff);            /* TRANSFER LENGTH */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(prefetch_condition_met),
		T(prefetch_ranges),
		T(prefetch_reservations),
		T(orwrite_ors_into_the_medium),
		T(orwrite_checks),
		T(orwrite_is_atomic),
		T(write_atomic_writes),
		T(write_atomic_limits_and_vpd),
		T(lun_init_checks_new_fields),
		T(read_defect_data10_header_only),
		T(read_defect_data12_header_only),
		T(reserve6_excludes_others),
		T(reserve6_and_registrations),
		T(reserve6_ends_with_reset_and_nexus_loss),
		T(ua_after_lun_reset_once_per_nexus),
		T(ua_comes_first),
		T(request_sense_returns_the_ua),
		T(reset_restores_state),
		T(mode_select_tells_the_others),
		T(release_of_registrants_only_tells_registrants),
		T(ua_precedence),
		T(ua_table_full),
		T(ua_concurrent),
		T(removable_load_and_eject),
		T(removable_prevention),
		T(request_sense_polls_readiness),
		T(fixed_medium_refuses_loej),
		T(read_only_refuses_writes),
		T(physical_block_exponent),
		T(write_same16_to_the_end),
		T(report_opcodes_lists_them),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
