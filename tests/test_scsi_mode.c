/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of what the SCSI emulation reports and lets an initiator set:
 * MODE SENSE (page control, long LBA block descriptors) and MODE SELECT
 * (WCE and its effect on writes, validation of every other field), REPORT
 * SUPPORTED OPERATION CODES (both formats, checked against what dispatch
 * serves) and the VPD B0/B2 pages and UNMAP limits as the LUN's
 * configuration sets them.
 */
#include "test_scsi_fixture.h"

/* ---- MODE SENSE ---------------------------------------------------------------- */

static void mode_sense_cdb(uint8_t *cdb, bool ten, uint8_t flags, uint8_t pc_page)
{
	memset(cdb, 0, 10);
	cdb[0] = ten ? HBK_SCSI_OP_MODE_SENSE10 : HBK_SCSI_OP_MODE_SENSE6;
	cdb[1] = flags;
	cdb[2] = pc_page;
	if (ten)
		put_be16(cdb + 7, 512);
	else
		cdb[4] = 255;
}

/* The caching page's WCE bit as MODE SENSE(6) reports it for page control pc. */
static bool sensed_wce(struct fixture *f, uint8_t pc)
{
	uint8_t cdb[10];

	mode_sense_cdb(cdb, false, 0x08, (uint8_t)(pc << 6 | 0x08));
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[4], 0x08);
	return f->buf[6] & 0x04;
}

static void mode_sense10_long_lba_descriptor(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	mode_sense_cdb(cdb, true, 0x10, 0x0a);             /* LLBAA */
	run_in(f, 2, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8 + 16 + 12);
	assert_int_equal(get_be16(f->buf), 8 + 16 + 12 - 2);
	assert_int_equal(f->buf[4] & 0x01, 1);             /* LONGLBA */
	assert_int_equal(get_be16(f->buf + 6), 16);
	assert_true(get_be64(f->buf + 8) == BIG_BLOCKS);   /* no saturation */
	assert_int_equal(get_be32(f->buf + 20), BIG_BS);
	assert_int_equal(f->buf[24], 0x0a);
	assert_int_equal(f->buf[24 + 3], 0x10);            /* QAM unrestricted */
	assert_int_equal(f->buf[24 + 5], 0x40);            /* TAS */
	mode_sense_cdb(cdb, true, 0x18, 0x0a);             /* LLBAA with DBD */
	run_in(f, 2, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[4], 0);
	assert_int_equal(get_be16(f->buf + 6), 0);
}

static void mode_sense6_llbaa_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	mode_sense_cdb(cdb, false, 0x10, 0x08);            /* reserved in MODE SENSE(6) */
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
}

/* SUBPAGE CODE FFh with one page code asks for that page and all its
 * subpages (SPC-5 table "Mode page codes and subpage codes"): the page,
 * since neither served page has subpages.  Subpages 01h-FEh of a page
 * stay unsupported, and so does 3Fh with them. */
static void mode_sense_one_page_all_subpages(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	mode_sense_cdb(cdb, true, 0x08, 0x08);             /* DBD, caching page */
	cdb[3] = 0xff;
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8 + 20);
	assert_int_equal(get_be16(f->buf), 8 + 20 - 2);
	assert_int_equal(f->buf[8], 0x08);
	assert_int_equal(f->buf[9], 0x12);
	mode_sense_cdb(cdb, false, 0x08, 0x0a);            /* DBD, control page */
	cdb[3] = 0xff;
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 4 + 12);
	assert_int_equal(f->buf[4], 0x0a);
	mode_sense_cdb(cdb, false, 0x08, 0x1c);            /* a page not served */
	cdb[3] = 0xff;
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 2, 5);
	mode_sense_cdb(cdb, false, 0x08, 0x08);
	cdb[3] = 0xfe;
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 3, 7);
	mode_sense_cdb(cdb, false, 0x08, 0x3f);
	cdb[3] = 0x01;
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 3, 7);
}

static void mode_sense_changeable_block_descriptor_is_zero(void **state)
{
	struct fixture *f = *state;
	const uint8_t zero[8] = { 0 };
	uint8_t cdb[10];

	mode_sense_cdb(cdb, false, 0, 0x40 | 0x3f);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[3], 8);
	assert_memory_equal(f->buf + 4, zero, 8);
	assert_int_equal(f->buf[12 + 2], 0x04);            /* caching: WCE */
	assert_int_equal(f->buf[32 + 3], 0);               /* control: nothing */
}

/* ---- MODE SELECT --------------------------------------------------------------- */

/* A MODE SELECT parameter list: the current data of page `page` as MODE
 * SENSE gave it (with its block descriptor unless dbd), header reset. */
static size_t select_list(struct fixture *f, uint8_t *p, bool ten, bool dbd, uint8_t page)
{
	uint8_t cdb[10];
	size_t len;

	mode_sense_cdb(cdb, ten, dbd ? 0x08 : 0, page);
	run_in(f, 0, cdb, ten ? 10 : 6, sizeof f->buf);
	assert_good(f);
	len = f->r.bytes;
	memcpy(p, f->buf, len);
	if (ten)
		put_be16(p, 0);                            /* MODE DATA LENGTH: reserved */
	else
		p[0] = 0;
	return len;
}

static void mode_select(struct fixture *f, bool ten, uint8_t flags, const uint8_t *p,
			size_t len)
{
	uint8_t cdb[10] = { ten ? HBK_SCSI_OP_MODE_SELECT10 : HBK_SCSI_OP_MODE_SELECT6, flags };

	if (ten)
		put_be16(cdb + 7, (uint16_t)len);
	else
		cdb[4] = (uint8_t)len;
	run(f, 0, cdb, ten ? 10 : 6, (void *)p, len, HBK_DIR_WRITE);
}

static void mode_select6_clears_wce_writes_go_through(void **state)
{
	struct fixture *f = *state;
	uint8_t p[64], cdb[10], data[MEM_BS] = { 1 };
	size_t len = select_list(f, p, false, false, 0x08);

	p[4 + 8 + 2] &= (uint8_t)~0x04;                    /* WCE off */
	mode_select(f, false, 0x10, p, len);
	assert_good(f);
	assert_int_equal(f->r.bytes, len);
	assert_false(sensed_wce(f, 0));                    /* current */
	assert_true(sensed_wce(f, 2));                     /* default */
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 3, 1);             /* no FUA in the CDB... */
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_true(f->be.last_fua);                       /* ...but write-through */
}

static void mode_select10_sets_wce_back(void **state)
{
	struct fixture *f = *state;
	uint8_t p[64], cdb[10], data[MEM_BS] = { 1 };
	size_t len = select_list(f, p, true, true, 0x08);

	p[8 + 2] &= (uint8_t)~0x04;
	mode_select(f, true, 0x10, p, len);
	assert_good(f);
	assert_false(sensed_wce(f, 0));
	p[8 + 2] |= 0x04;
	mode_select(f, true, 0x10, p, len);
	assert_good(f);
	assert_true(sensed_wce(f, 0));
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 3, 1);
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_false(f->be.last_fua);
}

static void mode_select_round_trip_all_pages(void **state)
{
	struct fixture *f = *state;
	uint8_t p[128];
	size_t len = select_list(f, p, true, false, 0x3f);

	mode_select(f, true, 0x10, p, len);                /* restating everything */
	assert_good(f);
	p[8 + 8] |= 0x80;                                  /* PS of the first page: ignored */
	mode_select(f, true, 0x10, p, len);
	assert_good(f);
}

static void mode_select_cdb_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t p[64];
	size_t len = select_list(f, p, false, true, 0x08);

	mode_select(f, false, 0x11, p, len);               /* SP: no saved pages */
	assert_invalid_field(f);
	mode_select(f, false, 0x00, p, len);               /* PF 0: vendor format */
	assert_invalid_field(f);
	mode_select(f, false, 0x10, NULL, 0);              /* nothing to do */
	assert_good(f);
	/* data-out one byte short of the parameter list length */
	run(f, 0, (uint8_t[6]){ HBK_SCSI_OP_MODE_SELECT6, 0x10, 0, 0, (uint8_t)len, 0 }, 6,
	    p, len - 1, HBK_DIR_WRITE);
	assert_invalid_field(f);
	assert_true(sensed_wce(f, 0));
}

static void mode_select_parameter_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t p[128], bad[128];
	size_t len = select_list(f, p, true, false, 0x3f);
	const size_t caching = 8 + 8, control = caching + 20;

	/* Each case changes one thing; none may change WCE. */
	p[caching + 2] &= (uint8_t)~0x04;
	memcpy(bad, p, len);
	bad[control + 3] = 0x00;                           /* QAM: not changeable */
	mode_select(f, true, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	memcpy(bad, p, len);
	bad[control + 5] = 0x00;                           /* TAS: not changeable */
	mode_select(f, true, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	memcpy(bad, p, len);
	bad[caching + 1] = 0x10;                           /* page length */
	mode_select(f, true, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	memcpy(bad, p, len);
	bad[control] = 0x1c;                               /* a page not served */
	mode_select(f, true, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	memcpy(bad, p, len);
	bad[control] |= 0x40;                              /* SPF: subpage format */
	mode_select(f, true, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	mode_select(f, true, 0x10, p, len - 1);            /* control page cut short */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_PARAM_LIST_LENGTH_ERROR);
	mode_select(f, true, 0x10, p, 7);                  /* shorter than the header */
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_PARAM_LIST_LENGTH_ERROR);
	memcpy(bad, p, len);
	put_be16(bad + 6, 200);                            /* descriptors past the end */
	mode_select(f, true, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_PARAM_LIST_LENGTH_ERROR);
	assert_true(sensed_wce(f, 0));
}

static void mode_select_block_descriptor(void **state)
{
	struct fixture *f = *state;
	uint8_t p[64], bad[64];
	size_t len = select_list(f, p, false, false, 0x0a);

	memset(p + 4, 0, 4);                               /* 0 blocks: keep the capacity */
	mode_select(f, false, 0x10, p, len);
	assert_good(f);
	memcpy(bad, p, len);
	put_be24(bad + 4 + 5, 4096);                       /* another block size */
	mode_select(f, false, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	memcpy(bad, p, len);
	put_be32(bad + 4, 10);                             /* another capacity */
	mode_select(f, false, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	memcpy(bad, p, len);
	bad[3] = 4;                                        /* no such descriptor length */
	mode_select(f, false, 0x10, bad, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
}

static void mode_select10_long_lba_descriptor(void **state)
{
	struct fixture *f = *state;
	uint8_t p[64], cdb[10];
	size_t len;

	mode_sense_cdb(cdb, true, 0x10, 0x08);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	len = f->r.bytes;
	memcpy(p, f->buf, len);
	put_be16(p, 0);
	mode_select(f, true, 0x10, p, len);
	assert_good(f);
	p[4] = 0;                                          /* LONGLBA off: 16 is no short length */
	mode_select(f, true, 0x10, p, len);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
}

/* ---- REPORT SUPPORTED OPERATION CODES ---------------------------------------------- */

#define SERVED_THIN  53     /* commands served on a thin LUN; a thick one lacks UNMAP */

static void rsoc(struct fixture *f, uint64_t lun, uint8_t options, uint8_t op, uint16_t sa,
		 uint32_t alloc)
{
	uint8_t cdb[12] = { HBK_SCSI_OP_MAINTENANCE_IN, HBK_SCSI_SA_REPORT_OPCODES, options, op };

	put_be16(cdb + 4, sa);
	put_be32(cdb + 6, alloc);
	run_in(f, lun, cdb, 12, sizeof f->buf);
}

/* Whether the all-commands list in f->buf (descriptors of dlen) has op/sa. */
static bool listed(const struct fixture *f, size_t dlen, uint8_t op, int sa)
{
	size_t n = get_be32(f->buf) / dlen;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *d = f->buf + 4 + i * dlen;

		if (d[0] == op && (sa < 0 || ((d[5] & 1) && get_be16(d + 2) == sa)))
			return true;
	}
	return false;
}

static void rsoc_all_sorted_and_complete(void **state)
{
	struct fixture *f = *state;
	static const uint8_t expected[][2] = {
		{ 0x2e, 0 }, { 0x2f, 0 }, { 0x41, 0 }, { 0x42, 0 }, { 0x89, 0 }, { 0x93, 0 },
		{ 0x8e, 0 }, { 0x8f, 0 }, { 0xae, 0 }, { 0xaf, 0 }, { 0x15, 0 }, { 0x55, 0 },
		{ 0x1b, 0 }, { 0x1e, 0 },
	};
	size_t n, prev = 0;

	rsoc(f, 0, 0, 0, 0, sizeof f->buf);
	assert_good(f);
	n = get_be32(f->buf) / 8;
	assert_int_equal(f->r.bytes, 4 + 8 * n);
	assert_int_equal(n, SERVED_THIN);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *d = f->buf + 4 + 8 * i;
		size_t key = (size_t)d[0] << 16 | get_be16(d + 2);

		assert_true(i == 0 || key > prev);         /* sorted, no duplicates */
		prev = key;
		assert_int_equal(d[5] & 0x02, 0);          /* no CTDP without RCTD */
	}
	for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
		assert_true(listed(f, 8, expected[i][0], -1));
	for (int sa = 0; sa <= 3; sa++)
		assert_true(listed(f, 8, HBK_SCSI_OP_PR_IN, sa));
	for (int sa = 0; sa <= 6; sa++)
		assert_true(listed(f, 8, HBK_SCSI_OP_PR_OUT, sa));
	assert_false(listed(f, 8, HBK_SCSI_OP_PR_OUT, 7)); /* REGISTER AND MOVE */
	assert_true(listed(f, 8, 0x9e, HBK_SCSI_SA_GET_LBA_STATUS));
	assert_true(listed(f, 8, 0x9e, HBK_SCSI_SA_READ_CAPACITY16));
	rsoc(f, 2, 0, 0, 0, sizeof f->buf);                /* thick: no UNMAP */
	assert_int_equal(get_be32(f->buf) / 8, SERVED_THIN - 1);
	assert_false(listed(f, 8, HBK_SCSI_OP_UNMAP, -1));
}

/* Every opcode is listed exactly when dispatch knows it, and every service
 * action of the listed service-action opcodes is reported supported exactly
 * when it is listed. */
static void rsoc_matches_dispatch(void **state)
{
	struct fixture *f = *state;
	static uint8_t all[4 + 64 * 8];
	uint8_t cdb[16];

	rsoc(f, 0, 0, 0, 0, sizeof all);
	memcpy(all, f->buf, sizeof all);
	for (unsigned op = 0; op < 256; op++) {
		bool is_listed = false, has_sa = false;

		for (size_t i = 0; i < get_be32(all) / 8; i++) {
			is_listed |= all[4 + 8 * i] == op;
			has_sa |= all[4 + 8 * i] == op && (all[4 + 8 * i + 5] & 1);
		}
		memset(cdb, 0, sizeof cdb);
		cdb[0] = (uint8_t)op;
		run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
		assert_int_equal(f->r.sense_len && f->r.sense[12] == 0x20, !is_listed);
		for (unsigned sa = 0; has_sa && sa < 32; sa++) {
			bool sa_listed = false;

			for (size_t i = 0; i < get_be32(all) / 8; i++)
				sa_listed |= all[4 + 8 * i] == op && get_be16(all + 4 + 8 * i + 2) == sa;
			rsoc(f, 0, 0x02, (uint8_t)op, (uint16_t)sa, 512);
			assert_good(f);
			assert_int_equal(f->buf[1] & 0x07, sa_listed ? 0x03 : 0x01);
		}
	}
}

static void rsoc_one_command(void **state)
{
	struct fixture *f = *state;
	const uint8_t read10[10] = { 0x28, 0xfa, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00 };

	rsoc(f, 0, 0x01, HBK_SCSI_OP_READ10, 0, 512);
	assert_good(f);
	assert_int_equal(f->r.bytes, 4 + 10);
	assert_int_equal(f->buf[1], 0x03);                 /* SUPPORT 011b, no CTDP */
	assert_int_equal(get_be16(f->buf + 2), 10);
	assert_memory_equal(f->buf + 4, read10, 10);       /* DPO used: DPOFUA is set */
	rsoc(f, 0, 0x02, 0x9e, HBK_SCSI_SA_GET_LBA_STATUS, 512);
	assert_good(f);
	assert_int_equal(get_be16(f->buf + 2), 16);
	assert_int_equal(f->buf[4], 0x9e);
	assert_int_equal(f->buf[5], HBK_SCSI_SA_GET_LBA_STATUS);
	rsoc(f, 0, 0x03, HBK_SCSI_OP_READ10, 0x55, 512);   /* 011b: SA ignored here */
	assert_good(f);
	assert_int_equal(f->buf[1], 0x03);
	rsoc(f, 0, 0x03, 0x9e, 0x13, 512);                 /* 011b: SA counts here */
	assert_good(f);
	assert_int_equal(f->buf[1], 0x01);
	rsoc(f, 0, 0x01, 0x04, 0, 512);                    /* FORMAT UNIT: not supported */
	assert_good(f);
	assert_int_equal(f->r.bytes, 4);
	assert_int_equal(f->buf[1], 0x01);
	assert_int_equal(get_be16(f->buf + 2), 0);
	rsoc(f, 2, 0x01, HBK_SCSI_OP_UNMAP, 0, 512);       /* thick LUN */
	assert_int_equal(f->buf[1], 0x01);
}

static void rsoc_option_errors(void **state)
{
	struct fixture *f = *state;

	rsoc(f, 0, 0x01, 0x9e, 0x10, 512);                 /* 001b for an SA opcode */
	assert_invalid_field(f);
	rsoc(f, 0, 0x02, HBK_SCSI_OP_READ10, 0, 512);      /* 010b without SAs */
	assert_invalid_field(f);
	rsoc(f, 0, 0x04, HBK_SCSI_OP_READ10, 0, 512);      /* reserved option */
	assert_invalid_field(f);
	rsoc(f, 0, 0x40, 0, 0, 512);                       /* reserved bit */
	assert_invalid_field(f);
}

static void rsoc_timeouts_descriptors(void **state)
{
	struct fixture *f = *state;
	size_t n;

	rsoc(f, 0, 0x80, 0, 0, sizeof f->buf);             /* RCTD */
	assert_good(f);
	n = get_be32(f->buf) / 20;
	assert_int_equal(n, SERVED_THIN);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *d = f->buf + 4 + 20 * i;

		assert_int_equal(d[5] & 0x02, 0x02);       /* CTDP */
		assert_int_equal(get_be16(d + 8), 0x0a);
	}
	rsoc(f, 0, 0x81, HBK_SCSI_OP_WRITE16, 0, 512);
	assert_good(f);
	assert_int_equal(f->buf[1], 0x83);                 /* CTDP, SUPPORT 011b */
	assert_int_equal(f->r.bytes, 4 + 16 + 12);
	assert_int_equal(get_be16(f->buf + 4 + 16), 0x0a);
}

static void rsoc_truncated(void **state)
{
	struct fixture *f = *state;

	rsoc(f, 0, 0, 0, 0, 6);
	assert_good(f);
	assert_int_equal(f->r.bytes, 6);
	assert_int_equal(get_be32(f->buf), SERVED_THIN * 8);
	assert_int_equal(f->buf[6], 0xee);
}

/* ---- VPD B0/B2 from the configuration, and UNMAP limits ------------------------------ */

static void vpd_block_limits_follow_config(void **state)
{
	struct fixture *f = *state;
	struct hbk_scsi_lun_cfg cfg = mem_cfg(f);
	uint8_t cdb[6];

	cfg.max_xfer_blocks = 64;
	cfg.max_unmap_blocks = 2048;
	cfg.max_unmap_descs = 16;
	cfg.unmap_granularity = 8;
	cfg.max_write_same_blocks = 100;
	mem_reinit(f, &cfg);
	inquiry_cdb(cdb, true, 0xb0, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[5], 32);                   /* COMPARE AND WRITE: 64 / 2 */
	assert_int_equal(get_be32(f->buf + 8), 64);
	assert_int_equal(get_be32(f->buf + 20), 2048);
	assert_int_equal(get_be32(f->buf + 24), 16);
	assert_int_equal(get_be32(f->buf + 28), 8);
	assert_true(get_be64(f->buf + 36) == 100);
	run_in(f, 2, cdb, 6, sizeof f->buf);               /* thick, no max transfer */
	assert_int_equal(f->buf[5], HBK_SCSI_CAW_MAX);
	assert_true(get_be64(f->buf + 36) == HBK_SCSI_WRITE_SAME_MAX);
}

static void provisioning_without_lbprz(void **state)
{
	struct fixture *f = *state;
	struct hbk_scsi_lun_cfg cfg = mem_cfg(f);
	uint8_t cdb[16] = { HBK_SCSI_OP_SERVICE_ACTION_IN16, HBK_SCSI_SA_READ_CAPACITY16 };

	cfg.lbprz = false;
	mem_reinit(f, &cfg);
	put_be32(cdb + 10, 32);
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[14] & 0xc0, 0x80);         /* LBPME, not LBPRZ */
	inquiry_cdb(cdb, true, 0xb2, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_int_equal(f->buf[5], 0x80);                 /* LBPU; no LBPWS, LBPRZ */
	assert_int_equal(f->buf[6] & 0x07, 2);
}

static size_t unmap_list(uint8_t *cdb, uint8_t *buf, unsigned n, uint32_t blocks)
{
	size_t len = 8 + 16 * (size_t)n;

	memset(cdb, 0, 10);
	cdb[0] = HBK_SCSI_OP_UNMAP;
	put_be16(cdb + 7, (uint16_t)len);
	memset(buf, 0, len);
	put_be16(buf, (uint16_t)(len - 2));
	put_be16(buf + 2, (uint16_t)(16 * n));
	for (unsigned i = 0; i < n; i++) {
		put_be64(buf + 8 + 16 * i, 100 * i);
		put_be32(buf + 16 + 16 * i, blocks);
	}
	return len;
}

static void unmap_limits_follow_config(void **state)
{
	struct fixture *f = *state;
	struct hbk_scsi_lun_cfg cfg = mem_cfg(f);
	uint8_t cdb[10];
	size_t len;

	cfg.max_unmap_blocks = 16;
	cfg.max_unmap_descs = 2;
	mem_reinit(f, &cfg);
	len = unmap_list(cdb, f->buf, 2, 8);               /* 16 blocks in 2: the limits */
	run(f, 0, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->be.unmapped, 16);
	len = unmap_list(cdb, f->buf, 2, 9);               /* 18 blocks */
	run(f, 0, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	len = unmap_list(cdb, f->buf, 3, 1);               /* 3 descriptors */
	run(f, 0, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	assert_int_equal(f->be.unmaps, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(mode_sense10_long_lba_descriptor),
		T(mode_sense6_llbaa_refused),
		T(mode_sense_one_page_all_subpages),
		T(mode_sense_changeable_block_descriptor_is_zero),
		T(mode_select6_clears_wce_writes_go_through),
		T(mode_select10_sets_wce_back),
		T(mode_select_round_trip_all_pages),
		T(mode_select_cdb_errors),
		T(mode_select_parameter_errors),
		T(mode_select_block_descriptor),
		T(mode_select10_long_lba_descriptor),
		T(rsoc_all_sorted_and_complete),
		T(rsoc_matches_dispatch),
		T(rsoc_one_command),
		T(rsoc_option_errors),
		T(rsoc_timeouts_descriptors),
		T(rsoc_truncated),
		T(vpd_block_limits_follow_config),
		T(provisioning_without_lbprz),
		T(unmap_limits_follow_config),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
