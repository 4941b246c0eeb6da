/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the SCSI layer: sense building and decoding, LUN address
 * conversion, and the block-target emulation's core commands (INQUIRY and
 * VPD, REPORT LUNS, READ CAPACITY, READ/WRITE, SYNCHRONIZE CACHE, UNMAP,
 * MODE SENSE, REQUEST SENSE) driven CDB by CDB against a memory backend
 * (with fault injection) and a capacity-only backend.  The RAID-controller
 * commands have their own files (test_scsi_sbc.c, _mode.c, _pr.c).
 */
#include "test_scsi_fixture.h"

/* ---- Sense and LUN codecs --------------------------------------------------- */

static void sense_fixed_layout(void **state)
{
	uint8_t s[18];

	(void)state;
	memset(s, 0xff, sizeof s);
	assert_int_equal(hbk_scsi_sense_fixed(s, HBK_SK_MEDIUM_ERROR, 0x1100), 18);
	assert_int_equal(s[0], 0x70);
	assert_int_equal(s[2], HBK_SK_MEDIUM_ERROR);
	assert_int_equal(s[7], 10);
	assert_int_equal(s[12], 0x11);
	assert_int_equal(s[13], 0x00);
	assert_int_equal(s[1] | s[3] | s[8] | s[14] | s[17], 0);
}

static void sense_decode_fixed(void **state)
{
	uint8_t s[18];
	struct hbk_scsi_result r;

	(void)state;
	hbk_scsi_sense_fixed(s, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	s[0] |= 0x80;                                   /* VALID bit */
	assert_int_equal(hbk_scsi_sense_decode(s, sizeof s, &r), 0);
	assert_int_equal(r.sense_key, HBK_SK_ILLEGAL_REQUEST);
	assert_int_equal(r.asc, 0x21);
	assert_int_equal(r.ascq, 0x00);
}

static void sense_decode_descriptor(void **state)
{
	const uint8_t s[8] = { 0x72, HBK_SK_UNIT_ATTENTION, 0x29, 0x01, 0, 0, 0, 0 };
	const uint8_t deferred[8] = { 0x73, HBK_SK_HARDWARE_ERROR, 0x44, 0x00 };
	struct hbk_scsi_result r;

	(void)state;
	assert_int_equal(hbk_scsi_sense_decode(s, sizeof s, &r), 0);
	assert_int_equal(r.sense_key, HBK_SK_UNIT_ATTENTION);
	assert_int_equal(r.asc, 0x29);
	assert_int_equal(r.ascq, 0x01);
	assert_int_equal(hbk_scsi_sense_decode(deferred, sizeof deferred, &r), 0);
	assert_int_equal(r.sense_key, HBK_SK_HARDWARE_ERROR);
	assert_int_equal(r.asc, 0x44);
}

static void sense_decode_rejects_short_and_foreign(void **state)
{
	uint8_t s[18];
	struct hbk_scsi_result r;

	(void)state;
	hbk_scsi_sense_fixed(s, HBK_SK_MEDIUM_ERROR, 0x1100);
	memset(&r, 0x77, sizeof r);
	assert_int_equal(hbk_scsi_sense_decode(s, 4, &r), -EINVAL);
	assert_int_equal(r.sense_key | r.asc | r.ascq, 0);
	s[0] = 0x7f;
	assert_int_equal(hbk_scsi_sense_decode(s, sizeof s, &r), -EINVAL);
	assert_int_equal(hbk_scsi_sense_decode(NULL, 18, &r), -EINVAL);
}

static void sense_decode_fixed_without_asc(void **state)
{
	/* 8 bytes, additional length 0: a key but no ASC/ASCQ. */
	const uint8_t s[8] = { 0x70, 0, HBK_SK_NOT_READY, 0, 0, 0, 0, 0 };
	struct hbk_scsi_result r;

	(void)state;
	assert_int_equal(hbk_scsi_sense_decode(s, sizeof s, &r), 0);
	assert_int_equal(r.sense_key, HBK_SK_NOT_READY);
	assert_int_equal(r.asc, 0);
	assert_int_equal(r.ascq, 0);
}

static void result_str_names(void **state)
{
	struct hbk_scsi_result r = { .service = HBK_SR_TASK_COMPLETE,
				     .status = HBK_STATUS_CHECK_CONDITION,
				     .sense_key = HBK_SK_ILLEGAL_REQUEST, .asc = 0x24 };
	char buf[64], tiny[8];

	(void)state;
	assert_string_equal(hbk_scsi_result_str(&r, buf, sizeof buf), "ILLEGAL REQUEST/0x24/0x00");
	r.status = HBK_STATUS_GOOD;
	assert_string_equal(hbk_scsi_result_str(&r, buf, sizeof buf), "GOOD");
	r.service = HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE;
	r.status = HBK_DS_TASK_TIMEOUT;
	assert_string_equal(hbk_scsi_result_str(&r, buf, sizeof buf), "SERVICE FAILURE/TASK TIMEOUT");
	assert_ptr_equal(hbk_scsi_result_str(&r, tiny, sizeof tiny), tiny);
	assert_int_equal(strlen(tiny), sizeof tiny - 1);
	r.service = HBK_SR_TASK_COMPLETE;
	r.status = HBK_STATUS_TASK_ABORTED;
	assert_string_equal(hbk_scsi_result_str(&r, buf, sizeof buf), "TASK ABORTED");
	/* What is a status for which service, and what is none. */
	assert_string_equal(hbk_scsi_status_name(HBK_SR_TASK_COMPLETE, 0x18), "RESERVATION CONFLICT");
	assert_null(hbk_scsi_status_name(HBK_SR_TASK_COMPLETE, 0x100));
	assert_null(hbk_scsi_status_name(HBK_SR_TASK_COMPLETE, 0x01));
	assert_string_equal(hbk_scsi_status_name(HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE, 0xff),
			    "NO STATUS");
	assert_null(hbk_scsi_status_name(HBK_SR_SERVICE_DELIVERY_OR_TARGET_FAILURE, 9));
	assert_null(hbk_scsi_status_name(HBK_SR_FUNCTION_COMPLETE, 0));
}

static void lun_roundtrip(void **state)
{
	static const uint64_t luns[] = { 0, 1, 255, 256, 1000, 16383 };
	uint8_t a[8];

	(void)state;
	for (size_t i = 0; i < sizeof luns / sizeof luns[0]; i++) {
		hbk_scsi_lun_encode(luns[i], a);
		assert_int_equal(hbk_scsi_lun_decode(a), luns[i]);
	}
	hbk_scsi_lun_encode(5, a);                      /* peripheral form */
	assert_int_equal(a[0], 0x00);
	assert_int_equal(a[1], 5);
	hbk_scsi_lun_encode(0x123, a);                  /* flat form */
	assert_int_equal(a[0], 0x41);
	assert_int_equal(a[1], 0x23);
}

static void lun_decode_refuses_unserved(void **state)
{
	const uint8_t two_level[8] = { 0x00, 0x01, 0x00, 0x02 };
	const uint8_t other_bus[8] = { 0x01, 0x00 };
	const uint8_t logical_unit[8] = { 0x80, 0x01 };
	const uint8_t flat5[8] = { 0x40, 0x05 };
	uint8_t a[8];

	(void)state;
	assert_true(hbk_scsi_lun_decode(two_level) == UINT64_MAX);
	assert_true(hbk_scsi_lun_decode(other_bus) == UINT64_MAX);
	assert_true(hbk_scsi_lun_decode(logical_unit) == UINT64_MAX);
	assert_int_equal(hbk_scsi_lun_decode(flat5), 5);
	hbk_scsi_lun_encode(16384, a);
	assert_true(hbk_scsi_lun_decode(a) == UINT64_MAX);
}

static void lun_init_validates(void **state)
{
	struct hbk_scsi_lun lun;
	struct hbk_scsi_lun_cfg cfg = { .block_size = 512, .nblocks = 8, .ops = &null_ops };
	const struct hbk_scsi_backend_ops no_write = { .read = null_read };

	(void)state;
	cfg.block_size = 1000;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg.block_size = 256;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg.block_size = 131072;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg.block_size = 4096;
	cfg.nblocks = 0;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg.nblocks = 8;
	cfg.ops = NULL;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg.ops = &no_write;
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), -EINVAL);
	cfg.ops = &null_ops;
	cfg.vendor = "ABCDEFGHIJ";                      /* too long: truncated */
	assert_int_equal(hbk_scsi_lun_init(&lun, &cfg), 0);
	assert_memory_equal(lun.vendor, "ABCDEFGH", 8);
	assert_memory_equal(lun.product, "                ", 16);
	hbk_scsi_lun_fini(&lun);
}

/* ---- Simple commands -------------------------------------------------------- */

static void tur_good(void **state)
{
	struct fixture *f = *state;
	const uint8_t cdb[6] = { HBK_SCSI_OP_TEST_UNIT_READY };

	run(f, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->r.bytes, 0);
}

static void unknown_opcode(void **state)
{
	struct fixture *f = *state;
	const uint8_t cdb[6] = { 0x04 };                 /* FORMAT UNIT */

	run(f, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_OPCODE);
}

static void short_cdb_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	cdb16(cdb, HBK_SCSI_OP_READ16, 0, 1);
	run_in(f, 0, cdb, 10, MEM_BS);
	assert_invalid_field(f);
	assert_int_equal(f->be.reads, 0);
}

static void naca_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6] = { HBK_SCSI_OP_TEST_UNIT_READY, 0, 0, 0, 0, 0x04 };

	run(f, 0, cdb, 6, NULL, 0, HBK_DIR_NONE);
	assert_invalid_field(f);
}

/* ACA is not supported: INQUIRY says NormACA 0, and the usage data of every
 * command treats NACA (and the rest of the CONTROL byte) as reserved. */
static void naca_not_in_usage_data(void **state)
{
	struct fixture *f = *state;
	uint8_t inq[6], rsoc[12] = { HBK_SCSI_OP_MAINTENANCE_IN, HBK_SCSI_SA_REPORT_OPCODES, 0x03 };
	static const uint8_t ops[] = {
		HBK_SCSI_OP_TEST_UNIT_READY, HBK_SCSI_OP_READ10, HBK_SCSI_OP_READ16,
		HBK_SCSI_OP_READ12, HBK_SCSI_OP_PR_IN, HBK_SCSI_OP_MAINTENANCE_IN,
	};

	inquiry_cdb(inq, false, 0, 96);
	run_in(f, 0, inq, 6, 96);
	assert_good(f);
	assert_int_equal(f->buf[3] & 0x20, 0);             /* NormACA */
	put_be32(rsoc + 6, 64);
	for (size_t i = 0; i < sizeof ops; i++) {
		unsigned len;

		rsoc[3] = ops[i];
		put_be16(rsoc + 4, ops[i] == HBK_SCSI_OP_MAINTENANCE_IN ?
			 HBK_SCSI_SA_REPORT_OPCODES : 0);
		run_in(f, 0, rsoc, 12, 64);
		assert_good(f);
		assert_int_equal(f->buf[1] & 0x07, 0x03);
		len = get_be16(f->buf + 2);
		assert_int_equal(f->buf[4 + len - 1] & 0x04, 0);   /* NACA */
	}
}

/* INVALID FIELD IN CDB and IN PARAMETER LIST say where the field is (SPC-4
 * 4.5.2.4.2): the byte and the bit, in the CDB or in the parameter data. */
static void invalid_field_has_field_pointer(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], prin[10] = { HBK_SCSI_OP_PR_IN, 0x05 }, inq[6];
	uint8_t msel[6] = { HBK_SCSI_OP_MODE_SELECT6, 0x10, 0, 0, 24 }, page[24] = { 0 };
	uint8_t prout[10] = { HBK_SCSI_OP_PR_OUT, HBK_PR_REGISTER }, param[24] = { 0 };

	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	cdb[6] = 0x40;                                     /* reserved bit by GROUP NUMBER */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 6, 6);
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	cdb[9] = 0x04;                                     /* NACA */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 9, 2);
	run_in(f, 0, prin, 10, 0);                         /* no such service action */
	assert_invalid_field(f);
	assert_field_pointer(f, true, 1, 4);
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 257);            /* above MAXIMUM TRANSFER LENGTH */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 7, 7);
	cdb16(cdb, HBK_SCSI_OP_WRITE16, 0, 1);
	cdb[1] = 0x20;                                     /* WRPROTECT */
	run(f, 0, cdb, 16, f->buf, MEM_BS, HBK_DIR_WRITE);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 1, 7);
	inquiry_cdb(inq, true, 0x99, 255);                 /* no such VPD page */
	run_in(f, 0, inq, 6, 255);
	assert_invalid_field(f);
	assert_field_pointer(f, true, 2, 7);
	page[4] = 0x08;                                    /* caching page, */
	page[5] = 18;
	page[6] = 0x04 | 0x01;                             /* WCE kept, RCD not changeable */
	run(f, 0, msel, 6, page, sizeof page, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	assert_field_pointer(f, false, 6, 0);
	put_be32(prout + 5, sizeof param);
	put_be64(param + 8, 0x1234);
	param[20] = 0x08;                                  /* SPEC_I_PT */
	run(f, 0, prout, 10, param, sizeof param, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	assert_field_pointer(f, false, 20, 3);
	cdb10(cdb, HBK_SCSI_OP_READ10, MEM_BLOCKS, 1);     /* no field to point at */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	assert_int_equal(f->r.sense[15] & 0x80, 0);
}

/* ---- INQUIRY ----------------------------------------------------------------- */

static void inquiry_standard(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, false, 0, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 96);
	assert_int_equal(f->buf[0], 0x00);                 /* qualifier 0, direct access */
	assert_int_equal(f->buf[2], 0x06);                 /* SPC-4 */
	assert_int_equal(f->buf[3] & 0x0f, 2);             /* response data format */
	assert_int_equal(f->buf[4], 96 - 5);               /* additional length */
	assert_true(f->buf[7] & 0x02);                     /* CMDQUE */
	assert_memory_equal(f->buf + 8, "HBAKIT  ", 8);
	assert_memory_equal(f->buf + 16, "MEMDISK         ", 16);
	assert_memory_equal(f->buf + 32, "1.0 ", 4);
	assert_int_equal(f->buf[96], 0xee);                /* nothing beyond */
}

static void inquiry_truncated_to_allocation_length(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, false, 0, 5);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 5);
	assert_int_equal(f->buf[4], 96 - 5);               /* the full length still */
	assert_int_equal(f->buf[5], 0xee);
}

static void inquiry_never_overruns_buffer(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, false, 0, 255);
	run_in(f, 0, cdb, 6, 10);
	assert_good(f);
	assert_int_equal(f->r.bytes, 10);
	assert_int_equal(f->buf[10], 0xee);
}

static void inquiry_page_without_evpd(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, false, 0x80, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
}

static void inquiry_vpd_unsupported_page(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0x85, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
	inquiry_cdb(cdb, true, 0xb2, 255);              /* thick LUN: no LBP page */
	run_in(f, 2, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
}

static void inquiry_vpd_supported_pages(void **state)
{
	struct fixture *f = *state;
	const uint8_t thin_pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0x00, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[1], 0x00);
	assert_int_equal(get_be16(f->buf + 2), sizeof thin_pages);
	assert_memory_equal(f->buf + 4, thin_pages, sizeof thin_pages);
	assert_int_equal(f->r.bytes, 4 + sizeof thin_pages);
	run_in(f, 2, cdb, 6, sizeof f->buf);               /* thick: no B2 */
	assert_int_equal(get_be16(f->buf + 2), sizeof thin_pages - 1);
}

static void inquiry_vpd_serial(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0x80, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[1], 0x80);
	assert_int_equal(get_be16(f->buf + 2), 6);
	assert_memory_equal(f->buf + 4, "SN0001", 6);
	assert_int_equal(f->r.bytes, 10);
}

static void inquiry_vpd_device_id(void **state)
{
	struct fixture *f = *state;
	const uint8_t *d;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0x83, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->buf[1], 0x83);
	assert_int_equal(get_be16(f->buf + 2), f->r.bytes - 4);
	d = f->buf + 4;                                    /* NAA designator */
	assert_int_equal(d[0] & 0x0f, 1);                  /* binary */
	assert_int_equal((d[1] >> 4) & 0x03, 0);           /* associated with the LUN */
	assert_int_equal(d[1] & 0x0f, 3);                  /* NAA */
	assert_int_equal(d[3], 16);
	assert_int_equal(d[4] >> 4, 6);                    /* NAA 6 */
	assert_true(get_be64(d + 4) == 0x6001405abcdef012ull);
	d += 4 + d[3];                                     /* T10 vendor id */
	assert_int_equal(d[0] & 0x0f, 2);                  /* ASCII */
	assert_int_equal(d[1] & 0x0f, 1);
	assert_int_equal(d[3], 8 + 6);
	assert_memory_equal(d + 4, "HBAKIT  SN0001", 14);
	assert_int_equal(f->r.bytes, 4 + 20 + 18);
}

static void inquiry_vpd_device_id_forces_naa6(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0x83, 255);
	run_in(f, 2, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_true(get_be64(f->buf + 8) == (0x6ull << 60 | 0x1234));
}

static void inquiry_vpd_block_limits(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0xb0, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 64);
	assert_int_equal(get_be16(f->buf + 2), 0x3c);
	assert_int_equal(get_be32(f->buf + 8), 256);       /* maximum transfer length */
	assert_int_equal(get_be32(f->buf + 12), 8);        /* optimal transfer length */
	assert_int_equal(f->buf[4] & 0x01, 0);             /* WSNZ 0 */
	assert_int_equal(f->buf[5], 128);                  /* max COMPARE AND WRITE: 256 / 2 */
	assert_int_equal(get_be32(f->buf + 20), UINT32_MAX); /* max unmap LBA count */
	assert_int_equal(get_be32(f->buf + 24), HBK_SCSI_MAX_UNMAP_DESC);
	assert_int_equal(get_be32(f->buf + 28), 1);        /* unmap granularity */
	assert_int_equal(f->buf[32], 0x80);                /* UGAVALID, alignment 0 */
	assert_true(get_be64(f->buf + 36) == HBK_SCSI_WRITE_SAME_MAX);
}

static void inquiry_vpd_block_limits_thick(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0xb0, 255);
	run_in(f, 2, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(get_be32(f->buf + 8), 0);
	assert_int_equal(get_be32(f->buf + 20), 0);
	assert_int_equal(get_be32(f->buf + 24), 0);
}

static void inquiry_vpd_characteristics(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0xb1, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 64);
	assert_int_equal(get_be16(f->buf + 4), 1);         /* non-rotating */
	run_in(f, 2, cdb, 6, sizeof f->buf);
	assert_int_equal(get_be16(f->buf + 4), 7200);
}

static void inquiry_vpd_provisioning(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0xb2, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(f->buf[5], 0x80 | 0x40 | 0x20 | 0x04); /* LBPU, LBPWS, LBPWS10, LBPRZ */
	assert_int_equal(f->buf[6] & 0x07, 2);             /* thin */
}

static void inquiry_vpd_truncated(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, true, 0xb0, 12);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 12);
	assert_int_equal(get_be32(f->buf + 8), 256);
	assert_int_equal(f->buf[12], 0xee);
}

/* ---- Nonexistent LUN ---------------------------------------------------------- */

static void absent_lun_inquiry(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	inquiry_cdb(cdb, false, 0, 255);
	for (uint64_t lun = 1; lun < 8; lun += 6) {        /* a hole and past the end */
		run_in(f, lun, cdb, 6, sizeof f->buf);
		assert_good(f);
		assert_int_equal(f->buf[0], 0x7f);         /* qualifier 011b, type 1Fh */
		assert_int_equal(f->r.bytes, 96);
	}
}

static void absent_lun_refuses_io(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	run_in(f, 1, cdb, 10, sizeof f->buf);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED);
	cdb[0] = HBK_SCSI_OP_TEST_UNIT_READY;
	run(f, 99, cdb, 6, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED);
	cdb[0] = 0xee;                                     /* unknown opcode too */
	run(f, 1, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LUN_NOT_SUPPORTED);
	assert_int_equal(f->be.reads, 0);
}

static void absent_lun_request_sense(void **state)
{
	struct fixture *f = *state;
	const uint8_t cdb[6] = { HBK_SCSI_OP_REQUEST_SENSE, 0, 0, 0, 18, 0 };

	run_in(f, 1, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 18);
	assert_int_equal(f->buf[2], HBK_SK_ILLEGAL_REQUEST);
	assert_int_equal(f->buf[12], 0x25);
}

/* ---- REPORT LUNS ---------------------------------------------------------------- */

static void report_luns_cdb(uint8_t *cdb, uint8_t select, uint32_t alloc)
{
	memset(cdb, 0, 12);
	cdb[0] = HBK_SCSI_OP_REPORT_LUNS;
	cdb[2] = select;
	put_be32(cdb + 6, alloc);
}

static void report_luns_lists_present(void **state)
{
	struct fixture *f = *state;
	const uint8_t lun0[8] = { 0 }, lun2[8] = { 0, 2 };
	uint8_t cdb[12];

	report_luns_cdb(cdb, 0, 4096);
	run_in(f, 0, cdb, 12, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8 + 16);
	assert_int_equal(get_be32(f->buf), 16);            /* LUN LIST LENGTH */
	assert_int_equal(get_be32(f->buf + 4), 0);
	assert_memory_equal(f->buf + 8, lun0, 8);
	assert_memory_equal(f->buf + 16, lun2, 8);
}

static void report_luns_from_absent_lun(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12];

	report_luns_cdb(cdb, 2, 4096);
	run_in(f, 1, cdb, 12, sizeof f->buf);
	assert_good(f);
	assert_int_equal(get_be32(f->buf), 16);
}

static void report_luns_truncated(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12];

	report_luns_cdb(cdb, 0, 16);
	run_in(f, 0, cdb, 12, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 16);
	assert_int_equal(get_be32(f->buf), 16);            /* the whole list's length */
	assert_int_equal(f->buf[16], 0xee);
}

static void report_luns_well_known_only(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12];

	report_luns_cdb(cdb, 1, 4096);
	run_in(f, 0, cdb, 12, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(get_be32(f->buf), 0);
}

static void report_luns_bad_fields(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12];

	report_luns_cdb(cdb, 0, 15);
	run_in(f, 0, cdb, 12, sizeof f->buf);
	assert_invalid_field(f);
	report_luns_cdb(cdb, 3, 4096);
	run_in(f, 0, cdb, 12, sizeof f->buf);
	assert_invalid_field(f);
}

/* ---- READ CAPACITY ---------------------------------------------------------------- */

static void read_capacity10(void **state)
{
	struct fixture *f = *state;
	const uint8_t cdb[10] = { HBK_SCSI_OP_READ_CAPACITY10 };

	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(get_be32(f->buf), MEM_BLOCKS - 1);
	assert_int_equal(get_be32(f->buf + 4), MEM_BS);
}

static void read_capacity10_saturates(void **state)
{
	struct fixture *f = *state;
	const uint8_t cdb[10] = { HBK_SCSI_OP_READ_CAPACITY10 };

	run_in(f, 2, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(get_be32(f->buf), 0xffffffffu);
	assert_int_equal(get_be32(f->buf + 4), BIG_BS);
}

static void read_capacity16_cdb(uint8_t *cdb, uint32_t alloc)
{
	memset(cdb, 0, 16);
	cdb[0] = HBK_SCSI_OP_SERVICE_ACTION_IN16;
	cdb[1] = HBK_SCSI_SA_READ_CAPACITY16;
	put_be32(cdb + 10, alloc);
}

static void read_capacity16_fields(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	read_capacity16_cdb(cdb, 32);
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 32);
	assert_true(get_be64(f->buf) == MEM_BLOCKS - 1);
	assert_int_equal(get_be32(f->buf + 8), MEM_BS);
	assert_int_equal(f->buf[13] & 0x0f, 0);            /* blocks per physical exp. */
	assert_int_equal(f->buf[14] & 0xc0, 0xc0);         /* LBPME, LBPRZ */
	run_in(f, 2, cdb, 16, sizeof f->buf);
	assert_true(get_be64(f->buf) == BIG_BLOCKS - 1);
	assert_int_equal(f->buf[14] & 0xc0, 0);            /* thick */
}

static void read_capacity16_truncated(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	read_capacity16_cdb(cdb, 12);
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 12);
	assert_int_equal(f->buf[12], 0xee);
}

static void service_action_in_unknown(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	read_capacity16_cdb(cdb, 32);
	cdb[1] = 0x11;                                     /* not served */
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_invalid_field(f);
}

/* ---- READ / WRITE ------------------------------------------------------------------- */

static void write10_then_read10(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[4 * MEM_BS];

	fill_pattern(data, sizeof data, 3);
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 100, 4);
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, sizeof data);
	assert_ptr_equal(f->be.last_buf, data);            /* no intermediate copy */
	assert_false(f->be.last_fua);
	assert_memory_equal(f->be.data + 100 * MEM_BS, data, sizeof data);
	cdb10(cdb, HBK_SCSI_OP_READ10, 100, 4);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, sizeof data);
	assert_ptr_equal(f->be.last_buf, f->buf);
	assert_memory_equal(f->buf, data, sizeof data);
}

static void write12_read12(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[12], data[2 * MEM_BS];

	fill_pattern(data, sizeof data, 9);
	cdb12(cdb, HBK_SCSI_OP_WRITE12, 7, 2);
	run(f, 0, cdb, 12, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	cdb12(cdb, HBK_SCSI_OP_READ12, 7, 2);
	run_in(f, 0, cdb, 12, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->be.last_lba, 7);
	assert_memory_equal(f->buf, data, sizeof data);
}

static void write16_passes_fua(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16], data[MEM_BS];

	fill_pattern(data, sizeof data, 1);
	cdb16(cdb, HBK_SCSI_OP_WRITE16, MEM_BLOCKS - 1, 1);
	cdb[1] = 0x08;                                     /* FUA */
	run(f, 0, cdb, 16, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_true(f->be.last_fua);
	assert_int_equal(f->be.last_lba, MEM_BLOCKS - 1);
}

static void read6_length_zero_is_256(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	cdb6(cdb, HBK_SCSI_OP_READ6, 10, 0);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->be.last_nblocks, 256);
	assert_int_equal(f->r.bytes, 256 * MEM_BS);
}

static void write6_roundtrip(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6], data[MEM_BS];

	fill_pattern(data, sizeof data, 5);
	cdb6(cdb, HBK_SCSI_OP_WRITE6, 0x1ff, 1);
	run(f, 0, cdb, 6, data, sizeof data, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->be.last_lba, 0x1ff);
	assert_memory_equal(f->be.data + 0x1ff * MEM_BS, data, sizeof data);
}

static void read10_length_zero_moves_nothing(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_READ10, MEM_BLOCKS, 0);     /* LBA == capacity is fine */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 0);
	assert_int_equal(f->be.reads, 0);
}

static void read_out_of_range(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	cdb10(cdb, HBK_SCSI_OP_READ10, MEM_BLOCKS - 1, 2);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb10(cdb, HBK_SCSI_OP_READ10, MEM_BLOCKS + 1, 0);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	cdb16(cdb, HBK_SCSI_OP_READ16, UINT64_MAX, 2);     /* lba + len wraps */
	run_in(f, 0, cdb, 16, sizeof f->buf);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	assert_int_equal(f->be.reads, 0);
}

static void write_out_of_range(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6], data[MEM_BS];

	cdb6(cdb, HBK_SCSI_OP_WRITE6, MEM_BLOCKS, 1);
	run(f, 0, cdb, 6, data, sizeof data, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	assert_int_equal(f->be.writes, 0);
}

static void write_short_data_out(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[2 * MEM_BS];

	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 2);
	run(f, 0, cdb, 10, data, sizeof data - 1, HBK_DIR_WRITE);
	assert_invalid_field(f);
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_READ); /* no data-out at all */
	assert_invalid_field(f);
	assert_int_equal(f->be.writes, 0);
}

static void read_short_data_in(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 2);
	run_in(f, 0, cdb, 10, MEM_BS);
	assert_invalid_field(f);
	assert_int_equal(f->be.reads, 0);
	assert_int_equal(f->buf[0], 0xee);
}

static void transfer_above_maximum(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 257);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	assert_int_equal(f->be.reads, 0);
}

static void read_protect_refused(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	cdb[1] = 0x20;                                     /* RDPROTECT 001b */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
}

static void read_eio_is_medium_error(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	f->be.fail = -EIO;
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_check(f, HBK_SK_MEDIUM_ERROR, HBK_ASC_UNRECOVERED_READ_ERROR);
}

static void write_eio_is_medium_error(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[MEM_BS] = { 0 };

	f->be.fail = -EIO;
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_MEDIUM_ERROR, HBK_ASC_WRITE_ERROR);
}

static void backend_other_errors(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10], data[MEM_BS] = { 0 };

	f->be.fail = -ENOMEM;
	cdb10(cdb, HBK_SCSI_OP_READ10, 0, 1);
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_check(f, HBK_SK_HARDWARE_ERROR, HBK_ASC_INTERNAL_TARGET_FAILURE);
	f->be.fail = -ENOSPC;
	cdb10(cdb, HBK_SCSI_OP_WRITE10, 0, 1);
	run(f, 0, cdb, 10, data, sizeof data, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_DATA_PROTECT, HBK_ASC_SPACE_ALLOC_FAILED);
}

/* ---- SYNCHRONIZE CACHE ----------------------------------------------------------------- */

static void sync_cache_flushes(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	cdb10(cdb, HBK_SCSI_OP_SYNC_CACHE10, 0, 0);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	cdb16(cdb, HBK_SCSI_OP_SYNC_CACHE16, 10, 20);
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->be.flushes, 2);
}

static void sync_cache_out_of_range(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[16];

	cdb16(cdb, HBK_SCSI_OP_SYNC_CACHE16, MEM_BLOCKS - 5, 6);
	run(f, 0, cdb, 16, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	assert_int_equal(f->be.flushes, 0);
}

static void sync_cache_flush_error(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	f->be.fail = -EIO;
	cdb10(cdb, HBK_SCSI_OP_SYNC_CACHE10, 0, 0);
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_check(f, HBK_SK_MEDIUM_ERROR, HBK_ASC_WRITE_ERROR);
}

/* ---- UNMAP -------------------------------------------------------------------------------- */

/* Builds an UNMAP CDB and its parameter list of n descriptors in buf. */
static size_t unmap_build(uint8_t *cdb, uint8_t *buf, const uint64_t (*desc)[2], size_t n)
{
	size_t len = 8 + 16 * n;

	memset(cdb, 0, 10);
	cdb[0] = HBK_SCSI_OP_UNMAP;
	put_be16(cdb + 7, (uint16_t)len);
	memset(buf, 0, len);
	put_be16(buf, (uint16_t)(len - 2));
	put_be16(buf + 2, (uint16_t)(16 * n));
	for (size_t i = 0; i < n; i++) {
		put_be64(buf + 8 + 16 * i, desc[i][0]);
		put_be32(buf + 16 + 16 * i, (uint32_t)desc[i][1]);
	}
	return len;
}

static void unmap_calls_backend(void **state)
{
	struct fixture *f = *state;
	const uint64_t desc[3][2] = { { 0, 8 }, { 100, 0 }, { MEM_BLOCKS - 4, 4 } };
	uint8_t cdb[10];
	size_t len;

	memset(f->be.data, 0xab, (size_t)MEM_BLOCKS * MEM_BS);
	len = unmap_build(cdb, f->buf, desc, 3);
	run(f, 0, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_good(f);
	assert_int_equal(f->r.bytes, len);
	assert_int_equal(f->be.unmaps, 2);                 /* zero-length skipped */
	assert_int_equal(f->be.unmapped, 12);
	assert_int_equal(f->be.data[0], 0);
	assert_int_equal(f->be.data[8 * MEM_BS], 0xab);
}

static void unmap_descriptor_out_of_range(void **state)
{
	struct fixture *f = *state;
	const uint64_t desc[2][2] = { { 0, 8 }, { MEM_BLOCKS - 4, 5 } };
	uint8_t cdb[10];
	size_t len = unmap_build(cdb, f->buf, desc, 2);

	run(f, 0, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	assert_int_equal(f->be.unmaps, 0);                 /* none done at all */
}

static void unmap_without_backend(void **state)
{
	struct fixture *f = *state;
	const uint64_t desc[1][2] = { { 0, 8 } };
	uint8_t cdb[10];
	size_t len = unmap_build(cdb, f->buf, desc, 1);

	run(f, 2, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_OPCODE);
}

static void unmap_too_many_descriptors(void **state)
{
	struct fixture *f = *state;
	static uint64_t desc[HBK_SCSI_MAX_UNMAP_DESC + 1][2];
	uint8_t cdb[10];
	size_t len = unmap_build(cdb, f->buf, (const uint64_t (*)[2])desc,
				 HBK_SCSI_MAX_UNMAP_DESC + 1);

	run(f, 0, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_INVALID_FIELD_IN_PARAM);
	assert_int_equal(f->be.unmaps, 0);
}

static void unmap_bad_lengths(void **state)
{
	struct fixture *f = *state;
	const uint64_t desc[1][2] = { { 0, 8 } };
	uint8_t cdb[10];
	size_t len = unmap_build(cdb, f->buf, desc, 1);

	put_be16(cdb + 7, 6);                              /* shorter than the header */
	run(f, 0, cdb, 10, f->buf, len, HBK_DIR_WRITE);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_PARAM_LIST_LENGTH_ERROR);
	put_be16(cdb + 7, (uint16_t)len);
	run(f, 0, cdb, 10, f->buf, len - 1, HBK_DIR_WRITE); /* data-out short */
	assert_invalid_field(f);
	put_be16(cdb + 7, 0);                              /* nothing to do */
	run(f, 0, cdb, 10, NULL, 0, HBK_DIR_NONE);
	assert_good(f);
	assert_int_equal(f->be.unmaps, 0);
}

/* ---- MODE SENSE ------------------------------------------------------------------------------ */

static void mode_sense6_cdb(uint8_t *cdb, bool dbd, uint8_t pc_page, uint8_t alloc)
{
	memset(cdb, 0, 6);
	cdb[0] = HBK_SCSI_OP_MODE_SENSE6;
	cdb[1] = dbd ? 0x08 : 0;
	cdb[2] = pc_page;
	cdb[4] = alloc;
}

static void mode_sense10_cdb(uint8_t *cdb, bool dbd, uint8_t pc_page, uint16_t alloc)
{
	memset(cdb, 0, 10);
	cdb[0] = HBK_SCSI_OP_MODE_SENSE10;
	cdb[1] = dbd ? 0x08 : 0;
	cdb[2] = pc_page;
	put_be16(cdb + 7, alloc);
}

static void mode_sense6_caching(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	mode_sense6_cdb(cdb, false, 0x08, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 4 + 8 + 20);
	assert_int_equal(f->buf[0], 4 + 8 + 20 - 1);       /* mode data length */
	assert_int_equal(f->buf[2], 0x10);                 /* DPOFUA, not WP */
	assert_int_equal(f->buf[3], 8);                    /* block descriptor length */
	assert_int_equal(get_be32(f->buf + 4), MEM_BLOCKS);
	assert_int_equal(get_be24(f->buf + 9), MEM_BS);
	assert_int_equal(f->buf[12] & 0x3f, 0x08);
	assert_int_equal(f->buf[13], 0x12);
	assert_true(f->buf[14] & 0x04);                    /* WCE */
}

static void mode_sense10_all_pages_dbd(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	mode_sense10_cdb(cdb, true, 0x3f, 512);
	run_in(f, 2, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8 + 20 + 12);
	assert_int_equal(get_be16(f->buf), 8 + 20 + 12 - 2);
	assert_int_equal(f->buf[3], 0x10);                 /* DPOFUA */
	assert_int_equal(get_be16(f->buf + 6), 0);         /* no block descriptor */
	assert_int_equal(f->buf[8], 0x08);
	assert_false(f->buf[10] & 0x04);                   /* LUN 2: no write cache */
	assert_int_equal(f->buf[28], 0x0a);
	assert_int_equal(f->buf[29], 0x0a);
}

static void mode_sense10_block_descriptor(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	mode_sense10_cdb(cdb, false, 0x0a, 512);
	run_in(f, 2, cdb, 10, sizeof f->buf);
	assert_good(f);
	assert_int_equal(get_be16(f->buf + 6), 8);
	assert_int_equal(get_be32(f->buf + 8), 0xffffffffu); /* too many blocks */
	assert_int_equal(get_be24(f->buf + 13), BIG_BS);
	assert_int_equal(f->buf[16], 0x0a);
}

static void mode_sense_changeable_is_wce_only(void **state)
{
	struct fixture *f = *state;
	const uint8_t zero[17] = { 0 };
	uint8_t cdb[6];

	mode_sense6_cdb(cdb, true, 0x40 | 0x08, 255);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 4 + 20);
	assert_int_equal(f->buf[4], 0x08);
	assert_int_equal(f->buf[5], 0x12);
	assert_int_equal(f->buf[6], 0x04);                 /* WCE */
	assert_memory_equal(f->buf + 7, zero, 17);
}

static void mode_sense_truncated(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[6];

	mode_sense6_cdb(cdb, false, 0x3f, 4);
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 4);
	assert_int_equal(f->buf[0], 4 + 8 + 20 + 12 - 1);
	assert_int_equal(f->buf[4], 0xee);
}

static void mode_sense_bad_page(void **state)
{
	struct fixture *f = *state;
	uint8_t cdb[10];

	mode_sense6_cdb(cdb, false, 0x1c, 255);            /* not served */
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_invalid_field(f);
	mode_sense10_cdb(cdb, false, 0x08, 255);
	cdb[3] = 0x01;                                     /* subpage */
	run_in(f, 0, cdb, 10, sizeof f->buf);
	assert_invalid_field(f);
	mode_sense6_cdb(cdb, false, 0xc0 | 0x08, 255);     /* saved values */
	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_SAVING_PARAMS_NOT_SUPPORTED);
}

/* ---- REQUEST SENSE and stored sense ------------------------------------------------------------ */

static void request_sense_no_sense(void **state)
{
	struct fixture *f = *state;
	const uint8_t cdb[6] = { HBK_SCSI_OP_REQUEST_SENSE, 0, 0, 0, 252, 0 };

	run_in(f, 0, cdb, 6, sizeof f->buf);
	assert_good(f);
	assert_int_equal(f->r.bytes, 18);
	assert_int_equal(f->buf[0], 0x70);
	assert_int_equal(f->buf[2] & 0x0f, HBK_SK_NO_SENSE);
	assert_int_equal(f->buf[12], 0);
}

/* Sense data goes with its CHECK CONDITION (autosense) and is not kept:
 * a later REQUEST SENSE, from that initiator or any other, finds none, in
 * either format. */
static void request_sense_after_autosense(void **state)
{
	struct fixture *f = *state;
	uint8_t rs[6] = { HBK_SCSI_OP_REQUEST_SENSE, 0, 0, 0, 252, 0 };
	uint8_t rd[10];
	struct hbk_scsi_result r;

	cdb10(rd, HBK_SCSI_OP_READ10, MEM_BLOCKS, 1);
	run_as(f, 1, 0, rd, 10, f->buf, sizeof f->buf, HBK_DIR_READ);
	assert_check(f, HBK_SK_ILLEGAL_REQUEST, HBK_ASC_LBA_OUT_OF_RANGE);
	for (uint64_t it = 2; it > 0; it--) {           /* another initiator, then the same */
		run_as(f, it, 0, rs, 6, f->buf, sizeof f->buf, HBK_DIR_READ);
		assert_good(f);
		assert_int_equal(f->r.bytes, 18);
		assert_int_equal(f->buf[0], 0x70);
		assert_int_equal(f->buf[2] & 0x0f, HBK_SK_NO_SENSE);
		assert_int_equal(f->buf[12], 0);
	}
	rs[1] = 0x01;                                      /* descriptor format */
	run_as(f, 1, 0, rs, 6, f->buf, sizeof f->buf, HBK_DIR_READ);
	assert_good(f);
	assert_int_equal(f->r.bytes, 8);
	assert_int_equal(f->buf[0], 0x72);
	assert_int_equal(hbk_scsi_sense_decode(f->buf, f->r.bytes, &r), 0);
	assert_int_equal(r.sense_key, HBK_SK_NO_SENSE);
}

/* ---- Concurrency ----------------------------------------------------------------------------------- */

struct worker {
	struct fixture *f;
	unsigned id;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t cdb[10], out[MEM_BS], in[MEM_BS];
	struct hbk_scsi_reply r;

	for (unsigned i = 0; i < 200; i++) {
		uint32_t lba = w->id * 200 + i;

		fill_pattern(out, sizeof out, (uint8_t)(lba));
		cdb10(cdb, HBK_SCSI_OP_WRITE10, lba, 1);
		hbk_scsi_execute(&w->f->t, 0, cdb, 10, out, sizeof out, HBK_DIR_WRITE, &r);
		w->failures += r.status != HBK_STATUS_GOOD;
		cdb10(cdb, HBK_SCSI_OP_READ10, lba, 1);
		hbk_scsi_execute(&w->f->t, 0, cdb, 10, in, sizeof in, HBK_DIR_READ, &r);
		w->failures += r.status != HBK_STATUS_GOOD || memcmp(in, out, sizeof in);
		cdb10(cdb, HBK_SCSI_OP_READ10, MEM_BLOCKS, 1);  /* stores sense */
		hbk_scsi_execute(&w->f->t, 0, cdb, 10, in, sizeof in, HBK_DIR_READ, &r);
		w->failures += r.status != HBK_STATUS_CHECK_CONDITION;
	}
	return NULL;
}

static void concurrent_io(void **state)
{
	struct fixture *f = *state;
	struct worker w[4];

	for (unsigned i = 0; i < 4; i++)
		w[i] = (struct worker){ .f = f, .id = i };
	run_threads(worker_main, w, sizeof w[0], 4);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(w[i].failures, 0);
	assert_int_equal(f->be.writes, 800);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sense_fixed_layout),
		cmocka_unit_test(sense_decode_fixed),
		cmocka_unit_test(sense_decode_descriptor),
		cmocka_unit_test(sense_decode_rejects_short_and_foreign),
		cmocka_unit_test(sense_decode_fixed_without_asc),
		cmocka_unit_test(result_str_names),
		cmocka_unit_test(lun_roundtrip),
		cmocka_unit_test(lun_decode_refuses_unserved),
		cmocka_unit_test(lun_init_validates),
		T(tur_good),
		T(unknown_opcode),
		T(short_cdb_refused),
		T(naca_refused),
		T(naca_not_in_usage_data),
		T(invalid_field_has_field_pointer),
		T(inquiry_standard),
		T(inquiry_truncated_to_allocation_length),
		T(inquiry_never_overruns_buffer),
		T(inquiry_page_without_evpd),
		T(inquiry_vpd_unsupported_page),
		T(inquiry_vpd_supported_pages),
		T(inquiry_vpd_serial),
		T(inquiry_vpd_device_id),
		T(inquiry_vpd_device_id_forces_naa6),
		T(inquiry_vpd_block_limits),
		T(inquiry_vpd_block_limits_thick),
		T(inquiry_vpd_characteristics),
		T(inquiry_vpd_provisioning),
		T(inquiry_vpd_truncated),
		T(absent_lun_inquiry),
		T(absent_lun_refuses_io),
		T(absent_lun_request_sense),
		T(report_luns_lists_present),
		T(report_luns_from_absent_lun),
		T(report_luns_truncated),
		T(report_luns_well_known_only),
		T(report_luns_bad_fields),
		T(read_capacity10),
		T(read_capacity10_saturates),
		T(read_capacity16_fields),
		T(read_capacity16_truncated),
		T(service_action_in_unknown),
		T(write10_then_read10),
		T(write12_read12),
		T(write16_passes_fua),
		T(read6_length_zero_is_256),
		T(write6_roundtrip),
		T(read10_length_zero_moves_nothing),
		T(read_out_of_range),
		T(write_out_of_range),
		T(write_short_data_out),
		T(read_short_data_in),
		T(transfer_above_maximum),
		T(read_protect_refused),
		T(read_eio_is_medium_error),
		T(write_eio_is_medium_error),
		T(backend_other_errors),
		T(sync_cache_flushes),
		T(sync_cache_out_of_range),
		T(sync_cache_flush_error),
		T(unmap_calls_backend),
		T(unmap_descriptor_out_of_range),
		T(unmap_without_backend),
		T(unmap_too_many_descriptors),
		T(unmap_bad_lengths),
		T(mode_sense6_caching),
		T(mode_sense10_all_pages_dbd),
		T(mode_sense10_block_descriptor),
		T(mode_sense_changeable_is_wce_only),
		T(mode_sense_truncated),
		T(mode_sense_bad_page),
		T(request_sense_no_sense),
		T(request_sense_after_autosense),
		T(concurrent_io),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
