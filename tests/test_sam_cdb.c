/* SPDX-License-Identifier: MIT */
/*
 * Tests of the host's SAM CDB builders and response parsers (src/host/
 * sam_cdb.c): exact CDB bytes against SPC-4/SBC-3 layouts, and the parsers
 * on hand-built target data, including truncated and malformed data.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "hbk/scsi.h"
#include "host/sam_cdb.h"

/* ---- Builders ------------------------------------------------------------ */

static void test_tur(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t zero[16];

	memset(cdb, 0xee, sizeof(cdb));
	assert_int_equal(hbk_sam_cdb_test_unit_ready(cdb), 6);
	assert_memory_equal(cdb, zero, 16);
}

static void test_inquiry_standard(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = { 0x12, 0x00, 0x00, 0x01, 0x02, 0x00 };

	memset(cdb, 0xee, sizeof(cdb));
	assert_int_equal(hbk_sam_cdb_inquiry(cdb, false, 0, 0x0102), 6);
	assert_memory_equal(cdb, want, 16);
}

static void test_inquiry_evpd(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = { 0x12, 0x01, 0x83, 0x00, 0xff, 0x00 };

	assert_int_equal(hbk_sam_cdb_inquiry(cdb, true, 0x83, 255), 6);
	assert_memory_equal(cdb, want, 16);
}

static void test_inquiry_page_without_evpd(void **state)
{
	(void)state;
	uint8_t cdb[16], before[16];

	memset(cdb, 0xee, sizeof(cdb));
	memcpy(before, cdb, sizeof(cdb));
	assert_int_equal(hbk_sam_cdb_inquiry(cdb, false, 0x80, 255), -EINVAL);
	assert_memory_equal(cdb, before, 16);
}

static void test_report_luns(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0xa0, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x08, 0x00, 0x00,
	};

	assert_int_equal(hbk_sam_cdb_report_luns(cdb, 0x02, 0x10208), 12);
	assert_memory_equal(cdb, want, 16);
}

static void test_report_luns_invalid(void **state)
{
	(void)state;
	uint8_t cdb[16];

	assert_int_equal(hbk_sam_cdb_report_luns(cdb, 0x00, 15), -EINVAL);
	assert_int_equal(hbk_sam_cdb_report_luns(cdb, 0x03, 4096), -EINVAL);
	assert_int_equal(hbk_sam_cdb_report_luns(cdb, 0x13, 4096), -EINVAL);
	assert_int_equal(hbk_sam_cdb_report_luns(cdb, 0x11, 16), 12);
	assert_int_equal(cdb[2], 0x11);
}

static void test_read_capacity(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want16[16] = {
		0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x00, 0x20, 0, 0,
	};
	static const uint8_t want10[16] = { 0x25 };

	assert_int_equal(hbk_sam_cdb_read_capacity16(cdb, 32), 16);
	assert_memory_equal(cdb, want16, 16);
	memset(cdb, 0xee, sizeof(cdb));
	assert_int_equal(hbk_sam_cdb_read_capacity10(cdb), 10);
	assert_memory_equal(cdb, want10, 16);
}

static void test_read10(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0x28, 0x00, 0x12, 0x34, 0x56, 0x78, 0x00, 0x01, 0x00, 0x00,
	};

	memset(cdb, 0xee, sizeof(cdb));
	assert_int_equal(hbk_sam_cdb_rw(cdb, false, 0x12345678, 0x100, false), 10);
	assert_memory_equal(cdb, want, 16);
}

static void test_write10_fua(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0x2a, 0x08, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x08, 0x00,
	};

	assert_int_equal(hbk_sam_cdb_rw(cdb, true, 7, 8, true), 10);
	assert_memory_equal(cdb, want, 16);
}

static void test_rw10_limits(void **state)
{
	(void)state;
	uint8_t cdb[16];

	assert_int_equal(hbk_sam_cdb_rw(cdb, false, 0xffffffffu, 65535, false), 10);
	assert_int_equal(cdb[0], 0x28);
	assert_memory_equal(cdb + 2, ((const uint8_t[]){ 0xff, 0xff, 0xff, 0xff }), 4);
	assert_memory_equal(cdb + 7, ((const uint8_t[]){ 0xff, 0xff }), 2);
}

static void test_read16_large_lba(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0x88, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
	};

	assert_int_equal(hbk_sam_cdb_rw(cdb, false, 0x100000000ull, 1, false), 16);
	assert_memory_equal(cdb, want, 16);
}

static void test_write16_long_transfer(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0x8a, 0x08, 0, 0, 0, 0, 0, 0, 0x00, 0x10,
		0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	};

	assert_int_equal(hbk_sam_cdb_rw(cdb, true, 16, 65536, true), 16);
	assert_memory_equal(cdb, want, 16);
}

static void test_rw_range_errors(void **state)
{
	(void)state;
	uint8_t cdb[16], before[16];

	memset(cdb, 0xee, sizeof(cdb));
	memcpy(before, cdb, sizeof(cdb));
	assert_int_equal(hbk_sam_cdb_rw(cdb, false, 0, 0, false), -ERANGE);
	assert_int_equal(hbk_sam_cdb_rw(cdb, true, UINT64_MAX, 2, false), -ERANGE);
	assert_memory_equal(cdb, before, 16);
	/* The very last block is addressable. */
	assert_int_equal(hbk_sam_cdb_rw(cdb, false, UINT64_MAX, 1, false), 16);
	assert_memory_equal(cdb + 2, ((const uint8_t[]){ 0xff, 0xff, 0xff, 0xff,
							 0xff, 0xff, 0xff, 0xff }), 8);
}

static void test_sync_cache16(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0x91, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
		0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
	};
	static const uint8_t whole[16] = { 0x91 };

	assert_int_equal(hbk_sam_cdb_sync_cache16(cdb, 0x0102030405060708ull, 256), 16);
	assert_memory_equal(cdb, want, 16);
	assert_int_equal(hbk_sam_cdb_sync_cache16(cdb, 0, 0), 16);
	assert_memory_equal(cdb, whole, 16);
	assert_int_equal(hbk_sam_cdb_sync_cache16(cdb, UINT64_MAX - 1, 3), -ERANGE);
}

static void test_unmap_cdb(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00,
	};

	assert_int_equal(hbk_sam_cdb_unmap(cdb, 40), 10);
	assert_memory_equal(cdb, want, 16);
	assert_int_equal(hbk_sam_cdb_unmap(cdb, 0), 10);
	assert_int_equal(hbk_sam_cdb_unmap(cdb, 7), -EINVAL);
	assert_int_equal(hbk_sam_cdb_unmap(cdb, 30), -EINVAL);
}

static void test_unmap_param(void **state)
{
	(void)state;
	uint8_t buf[64];
	const uint64_t lba[2] = { 0x10, 0x0102030405060708ull };
	const uint32_t nb[2] = { 8, 0xa0b0c0d0u };
	static const uint8_t want[40] = {
		0x00, 0x26, 0x00, 0x20, 0, 0, 0, 0,
		0, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 0,
		0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
		0xa0, 0xb0, 0xc0, 0xd0, 0, 0, 0, 0,
	};

	memset(buf, 0xee, sizeof(buf));
	assert_int_equal(hbk_sam_unmap_param(buf, sizeof(buf), lba, nb, 2), 40);
	assert_memory_equal(buf, want, 40);
	assert_int_equal(buf[40], 0xee);
}

static void test_unmap_param_limits(void **state)
{
	(void)state;
	uint8_t buf[64];
	const uint64_t lba[2] = { 1, UINT64_MAX };
	const uint32_t nb[2] = { 1, 2 };
	static const uint8_t hdr[8] = { 0x00, 0x06, 0x00, 0x00 };

	assert_int_equal(hbk_sam_unmap_param(buf, 23, lba, nb, 1), -ENOSPC);
	assert_int_equal(hbk_sam_unmap_param(buf, sizeof(buf), lba, nb, 2), -ERANGE);
	assert_int_equal(hbk_sam_unmap_param(buf, sizeof(buf), NULL, NULL, 1), -EINVAL);
	assert_int_equal(hbk_sam_unmap_param(buf, sizeof(buf), lba, nb,
					     HBK_SAM_UNMAP_MAX_DESC + 1), -ERANGE);
	assert_int_equal(hbk_sam_unmap_param(buf, sizeof(buf), NULL, NULL, 0), 8);
	assert_memory_equal(buf, hdr, 8);
}

static void test_request_sense(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t fixed[16] = { 0x03, 0x00, 0x00, 0x00, 0xfc, 0x00 };
	static const uint8_t desc[16] = { 0x03, 0x01, 0x00, 0x00, 0x12, 0x00 };

	assert_int_equal(hbk_sam_cdb_request_sense(cdb, false, 252), 6);
	assert_memory_equal(cdb, fixed, 16);
	assert_int_equal(hbk_sam_cdb_request_sense(cdb, true, 18), 6);
	assert_memory_equal(cdb, desc, 16);
}

static void test_mode_sense6(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = { 0x1a, 0x08, 0x08, 0x00, 0xc0, 0x00 };

	assert_int_equal(hbk_sam_cdb_mode_sense6(cdb, 0x08, 0x00, 0xc0, true), 6);
	assert_memory_equal(cdb, want, 16);
	assert_int_equal(hbk_sam_cdb_mode_sense6(cdb, 0x40, 0, 0xc0, false), -EINVAL);
}

static void test_mode_sense10(void **state)
{
	(void)state;
	uint8_t cdb[16];
	static const uint8_t want[16] = {
		0x5a, 0x00, 0x3f, 0xff, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00,
	};

	assert_int_equal(hbk_sam_cdb_mode_sense10(cdb, 0x3f, 0xff, 0x1000, false), 10);
	assert_memory_equal(cdb, want, 16);
	assert_int_equal(hbk_sam_cdb_mode_sense10(cdb, 0xff, 0, 0x1000, true), -EINVAL);
}

/* ---- Parsers ------------------------------------------------------------- */

/* Standard INQUIRY data: direct access, SPC-4, CMDQUE, padded strings. */
static void make_inquiry(uint8_t buf[36])
{
	memset(buf, 0, 36);
	buf[0] = 0x00;
	buf[2] = 0x06;
	buf[3] = 0x02;
	buf[4] = 31;
	buf[7] = 0x02;
	memcpy(buf + 8, "HBAKIT  ", 8);
	memcpy(buf + 16, "RAM DISK        ", 16);
	memcpy(buf + 32, "1.0 ", 4);
}

static void test_parse_inquiry(void **state)
{
	(void)state;
	uint8_t buf[36];
	struct hbk_sam_inquiry inq;

	make_inquiry(buf);
	buf[0] = 0x3e; /* qualifier 1, type 0x1e */
	assert_int_equal(hbk_sam_parse_inquiry(buf, sizeof(buf), &inq), 0);
	assert_int_equal(inq.qualifier, 1);
	assert_int_equal(inq.device_type, 0x1e);
	assert_int_equal(inq.version, 6);
	assert_true(inq.cmdque);
	assert_string_equal(inq.vendor, "HBAKIT");
	assert_string_equal(inq.product, "RAM DISK");
	assert_string_equal(inq.revision, "1.0");
}

static void test_parse_inquiry_odd_strings(void **state)
{
	(void)state;
	uint8_t buf[36];
	struct hbk_sam_inquiry inq;

	make_inquiry(buf);
	buf[7] = 0x00;
	memcpy(buf + 8, "AB\x01" "C\0\0\0\0", 8);
	memcpy(buf + 32, "\x80\0\0\0", 4);
	assert_int_equal(hbk_sam_parse_inquiry(buf, sizeof(buf), &inq), 0);
	assert_false(inq.cmdque);
	assert_string_equal(inq.vendor, "AB?C");
	assert_string_equal(inq.revision, "?");
}

static void test_parse_inquiry_truncated(void **state)
{
	(void)state;
	uint8_t buf[36];
	struct hbk_sam_inquiry inq;

	make_inquiry(buf);
	assert_int_equal(hbk_sam_parse_inquiry(buf, 35, &inq), -EINVAL);
	assert_int_equal(hbk_sam_parse_inquiry(buf, 0, &inq), -EINVAL);
	buf[4] = 30; /* data claims to end inside the revision field */
	assert_int_equal(hbk_sam_parse_inquiry(buf, sizeof(buf), &inq), -EPROTO);
}

static void test_parse_vpd_pages(void **state)
{
	(void)state;
	const uint8_t buf[] = { 0x00, 0x00, 0x00, 0x05, 0x00, 0x80, 0x83, 0xb0, 0xb1 };
	uint8_t pages[8];
	unsigned count = 0;

	assert_int_equal(hbk_sam_parse_vpd_pages(buf, sizeof(buf), pages, 8, &count), 0);
	assert_int_equal(count, 5);
	assert_memory_equal(pages, ((const uint8_t[]){ 0x00, 0x80, 0x83, 0xb0, 0xb1 }), 5);

	memset(pages, 0, sizeof(pages));
	assert_int_equal(hbk_sam_parse_vpd_pages(buf, sizeof(buf), pages, 2, &count), 0);
	assert_int_equal(count, 5);
	assert_memory_equal(pages, ((const uint8_t[]){ 0x00, 0x80, 0x00 }), 3);
}

static void test_parse_vpd_pages_bad(void **state)
{
	(void)state;
	uint8_t buf[] = { 0x00, 0x00, 0x00, 0x05, 0x00, 0x80, 0x83, 0xb0, 0xb1 };
	uint8_t pages[8];
	unsigned count = 0;

	assert_int_equal(hbk_sam_parse_vpd_pages(buf, 8, pages, 8, &count), -EINVAL);
	assert_int_equal(hbk_sam_parse_vpd_pages(buf, 3, pages, 8, &count), -EINVAL);
	/* With max 4 the truncated list still holds what is asked for. */
	assert_int_equal(hbk_sam_parse_vpd_pages(buf, 8, pages, 4, &count), 0);
	assert_int_equal(count, 5);
	buf[1] = 0x80;
	assert_int_equal(hbk_sam_parse_vpd_pages(buf, sizeof(buf), pages, 8, &count), -EPROTO);
}

static void test_parse_vpd_serial(void **state)
{
	(void)state;
	const uint8_t buf[] = { 0x00, 0x80, 0x00, 0x0a, ' ', ' ', 'S', 'N', ' ', '4', '2',
				' ', ' ', ' ' };
	char sn[16];

	assert_int_equal(hbk_sam_parse_vpd_serial(buf, sizeof(buf), sn, sizeof(sn)), 0);
	assert_string_equal(sn, "SN 42");
	assert_int_equal(hbk_sam_parse_vpd_serial(buf, sizeof(buf), sn, 6), 0);
	assert_int_equal(hbk_sam_parse_vpd_serial(buf, sizeof(buf), sn, 5), -ENOSPC);
	assert_int_equal(hbk_sam_parse_vpd_serial(buf, sizeof(buf) - 1, sn, sizeof(sn)),
			 -EINVAL);
	assert_int_equal(hbk_sam_parse_vpd_serial(buf, sizeof(buf), sn, 0), -EINVAL);
}

/* Appends a designation descriptor to a VPD 0x83 page under construction. */
static size_t add_desig(uint8_t *buf, size_t off, uint8_t code_set, uint8_t assoc,
			uint8_t type, const void *d, uint8_t dlen)
{
	buf[off] = code_set;
	buf[off + 1] = (uint8_t)(assoc << 4 | type);
	buf[off + 2] = 0;
	buf[off + 3] = dlen;
	memcpy(buf + off + 4, d, dlen);
	off += 4u + dlen;
	buf[0] = 0;
	buf[1] = 0x83;
	buf[2] = (uint8_t)((off - 4) >> 8);
	buf[3] = (uint8_t)(off - 4);
	return off;
}

static const uint8_t naa6[16] = {
	0x60, 0x01, 0x40, 0x5a, 0xbc, 0xde, 0xf0, 0x12,
	0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01,
};
static const uint8_t naa5_port[8] = { 0x50, 0, 0, 0, 0, 0, 0, 0x99 };
static const uint8_t eui[8] = { 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77 };
static const char t10[] = "HBAKIT  RAM DISK        SN42    ";

static void test_parse_devid_prefers_naa(void **state)
{
	(void)state;
	uint8_t buf[256];
	size_t n = 4;
	struct hbk_sam_devid id;

	n = add_desig(buf, n, 2, 0, HBK_SAM_DESIG_T10, t10, 32);
	n = add_desig(buf, n, 1, 1, HBK_SAM_DESIG_NAA, naa5_port, 8); /* target port */
	n = add_desig(buf, n, 1, 0, HBK_SAM_DESIG_EUI64, eui, 8);
	n = add_desig(buf, n, 1, 0, HBK_SAM_DESIG_NAA, naa6, 16);
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), 0);
	assert_int_equal(id.type, HBK_SAM_DESIG_NAA);
	assert_int_equal(id.len, 16);
	assert_string_equal(id.id, "naa.6001405abcdef0123456789abcdef001");
}

static void test_parse_devid_eui_then_t10(void **state)
{
	(void)state;
	uint8_t buf[256];
	size_t n = 4;
	struct hbk_sam_devid id;

	n = add_desig(buf, n, 2, 0, HBK_SAM_DESIG_T10, t10, 32);
	n = add_desig(buf, n, 1, 0, HBK_SAM_DESIG_EUI64, eui, 8);
	n = add_desig(buf, n, 1, 1, HBK_SAM_DESIG_NAA, naa5_port, 8);
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), 0);
	assert_int_equal(id.type, HBK_SAM_DESIG_EUI64);
	assert_string_equal(id.id, "eui.0011223344556677");

	n = add_desig(buf, 4, 2, 0, HBK_SAM_DESIG_T10, t10, 32);
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), 0);
	assert_int_equal(id.type, HBK_SAM_DESIG_T10);
	assert_string_equal(id.id, "t10.HBAKIT  RAM DISK        SN42");
}

static void test_parse_devid_none(void **state)
{
	(void)state;
	uint8_t buf[64];
	size_t n;
	struct hbk_sam_devid id;
	const uint8_t scsi_name[8] = "iqn.x";

	n = add_desig(buf, 4, 1, 1, HBK_SAM_DESIG_NAA, naa5_port, 8);
	n = add_desig(buf, n, 3, 0, 8, scsi_name, 8); /* SCSI name string: not used */
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), -ENOENT);
	buf[2] = 0;
	buf[3] = 0; /* empty page */
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, 4, &id), -ENOENT);
}

static void test_parse_devid_malformed(void **state)
{
	(void)state;
	uint8_t buf[64];
	size_t n;
	struct hbk_sam_devid id;

	n = add_desig(buf, 4, 1, 0, HBK_SAM_DESIG_NAA, naa6, 16);
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n - 1, &id), -EINVAL);
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, 3, &id), -EINVAL);
	buf[7] = 17; /* descriptor overruns the page */
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), -EPROTO);
	buf[7] = 16;
	buf[3] -= 2; /* page ends inside the descriptor */
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), -EPROTO);
	n = add_desig(buf, 4, 1, 0, HBK_SAM_DESIG_NAA, naa6, 8); /* NAA 6 is 16 bytes */
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), -EPROTO);
	n = add_desig(buf, 4, 1, 0, HBK_SAM_DESIG_NAA, naa6, 16);
	buf[1] = 0x80;
	assert_int_equal(hbk_sam_parse_vpd_devid(buf, n, &id), -EPROTO);
}

static void make_block_limits(uint8_t buf[64])
{
	memset(buf, 0, 64);
	buf[1] = 0xb0;
	buf[3] = 0x3c;
	buf[6] = 0x00; buf[7] = 0x08;                              /* OTLG 8 */
	buf[8] = 0x00; buf[9] = 0x00; buf[10] = 0x10; buf[11] = 0x00; /* MTL */
	buf[12] = 0x00; buf[13] = 0x00; buf[14] = 0x01; buf[15] = 0x00; /* OTL */
	buf[20] = 0x00; buf[21] = 0x40; buf[22] = 0x00; buf[23] = 0x00; /* MULC */
	buf[27] = 0x20;                                            /* MUBDC */
	buf[31] = 0x08;                                            /* OUG */
	buf[32] = 0x80; buf[35] = 0x03;                            /* UGA */
	buf[39] = 0x01; buf[42] = 0x02; buf[43] = 0x03;            /* MWSL */
}

static void test_parse_block_limits(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct hbk_sam_block_limits bl;

	make_block_limits(buf);
	assert_int_equal(hbk_sam_parse_vpd_block_limits(buf, sizeof(buf), &bl), 0);
	assert_int_equal(bl.opt_xfer_granularity, 8);
	assert_int_equal(bl.max_xfer_len, 0x1000);
	assert_int_equal(bl.opt_xfer_len, 0x100);
	assert_int_equal(bl.max_unmap_lba_count, 0x400000);
	assert_int_equal(bl.max_unmap_desc_count, 0x20);
	assert_int_equal(bl.opt_unmap_granularity, 8);
	assert_true(bl.ugavalid);
	assert_int_equal(bl.unmap_granularity_align, 3);
	assert_int_equal(bl.max_write_same_len, 0x0000000100000203ull);
}

static void test_parse_block_limits_short(void **state)
{
	(void)state;
	uint8_t buf[64];
	struct hbk_sam_block_limits bl;

	make_block_limits(buf);
	buf[3] = 0x0c; /* the 16-byte page of older targets */
	assert_int_equal(hbk_sam_parse_vpd_block_limits(buf, sizeof(buf), &bl), 0);
	assert_int_equal(bl.max_xfer_len, 0x1000);
	assert_int_equal(bl.opt_xfer_len, 0x100);
	assert_int_equal(bl.max_unmap_lba_count, 0);
	assert_int_equal(bl.max_unmap_desc_count, 0);
	assert_false(bl.ugavalid);
	assert_int_equal(bl.max_write_same_len, 0);

	buf[3] = 0x3c; /* full page, but the transfer stopped at 24 bytes */
	assert_int_equal(hbk_sam_parse_vpd_block_limits(buf, 24, &bl), 0);
	assert_int_equal(bl.max_unmap_lba_count, 0x400000);
	assert_int_equal(bl.max_unmap_desc_count, 0);

	assert_int_equal(hbk_sam_parse_vpd_block_limits(buf, 3, &bl), -EINVAL);
	buf[1] = 0xb1;
	assert_int_equal(hbk_sam_parse_vpd_block_limits(buf, sizeof(buf), &bl), -EPROTO);
}

static void test_parse_read_capacity16(void **state)
{
	(void)state;
	uint8_t buf[32] = {
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* last LBA 2^32 */
		0x00, 0x00, 0x02, 0x00,                         /* 512 */
		0x05,                                           /* P_TYPE 2, PROT_EN */
		0x13,                                           /* P_I 1, LBPPBE 3 */
		0xc1, 0x07,                                     /* LBPME, LBPRZ, 0x107 */
	};
	struct hbk_sam_capacity cap;

	assert_int_equal(hbk_sam_parse_read_capacity16(buf, sizeof(buf), &cap), 0);
	assert_int_equal(cap.nblocks, 0x100000001ull);
	assert_int_equal(cap.block_size, 512);
	assert_true(cap.prot_en);
	assert_int_equal(cap.p_type, 2);
	assert_int_equal(cap.p_i_exponent, 1);
	assert_int_equal(cap.lbppbe, 3);
	assert_true(cap.lbpme);
	assert_true(cap.lbprz);
	assert_int_equal(cap.lowest_aligned, 0x107);
}

static void test_parse_read_capacity16_short(void **state)
{
	(void)state;
	uint8_t buf[32] = {
		0, 0, 0, 0, 0, 0, 0x0f, 0xff, 0x00, 0x00, 0x10, 0x00, 0x05, 0x13, 0xc0, 0x00,
	};
	struct hbk_sam_capacity cap;

	assert_int_equal(hbk_sam_parse_read_capacity16(buf, 11, &cap), -EINVAL);
	assert_int_equal(hbk_sam_parse_read_capacity16(buf, 12, &cap), 0);
	assert_int_equal(cap.nblocks, 0x1000);
	assert_int_equal(cap.block_size, 4096);
	assert_false(cap.lbpme);
	assert_false(cap.prot_en);
	buf[10] = 0; buf[11] = 0; /* block size 0 */
	assert_int_equal(hbk_sam_parse_read_capacity16(buf, 32, &cap), -EPROTO);
	memset(buf, 0xff, 8);
	buf[11] = 1;
	assert_int_equal(hbk_sam_parse_read_capacity16(buf, 32, &cap), -EPROTO);
}

static void test_parse_read_capacity10(void **state)
{
	(void)state;
	uint8_t buf[8] = { 0x00, 0x1f, 0xff, 0xff, 0x00, 0x00, 0x02, 0x00 };
	struct hbk_sam_capacity cap;

	assert_int_equal(hbk_sam_parse_read_capacity10(buf, 8, &cap), 0);
	assert_int_equal(cap.nblocks, 0x200000);
	assert_int_equal(cap.block_size, 512);
	assert_false(cap.lbpme);
	assert_int_equal(hbk_sam_parse_read_capacity10(buf, 7, &cap), -EINVAL);
	memset(buf, 0xff, 4);
	assert_int_equal(hbk_sam_parse_read_capacity10(buf, 8, &cap), -EOVERFLOW);
	memset(buf + 4, 0, 4);
	buf[0] = 0;
	assert_int_equal(hbk_sam_parse_read_capacity10(buf, 8, &cap), -EPROTO);
}

static void test_lun_decode(void **state)
{
	(void)state;

	assert_int_equal(hbk_scsi_lun_decode((const uint8_t[8]){ 0x00, 0x05 }), 5);
	assert_int_equal(hbk_scsi_lun_decode((const uint8_t[8]){ 0x00, 0xff }), 255);
	assert_int_equal(hbk_scsi_lun_decode((const uint8_t[8]){ 0x40, 0x05 }), 5);
	assert_int_equal(hbk_scsi_lun_decode((const uint8_t[8]){ 0x7f, 0xff }), 0x3fff);
	assert_int_equal(hbk_scsi_lun_decode((const uint8_t[8]){ 0x41, 0x00 }), 0x100);
	/* Bus identifier, second level, logical unit and extended addressing. */
	assert_true(hbk_scsi_lun_decode((const uint8_t[8]){ 0x01, 0x00 }) ==
		    HBK_SAM_LUN_UNSUPPORTED);
	assert_true(hbk_scsi_lun_decode((const uint8_t[8]){ 0x00, 0x01, 0x00, 0x02 }) ==
		    HBK_SAM_LUN_UNSUPPORTED);
	assert_true(hbk_scsi_lun_decode((const uint8_t[8]){ 0x80, 0x01 }) ==
		    HBK_SAM_LUN_UNSUPPORTED);
	assert_true(hbk_scsi_lun_decode((const uint8_t[8]){ 0xd2, 0x00 }) ==
		    HBK_SAM_LUN_UNSUPPORTED);
}

static void test_parse_report_luns(void **state)
{
	(void)state;
	const uint8_t buf[8 + 24] = {
		0x00, 0x00, 0x00, 0x18, 0, 0, 0, 0,
		0x00, 0x00, 0, 0, 0, 0, 0, 0,
		0x00, 0x07, 0, 0, 0, 0, 0, 0,
		0x41, 0x2c, 0, 0, 0, 0, 0, 0,
	};
	uint64_t luns[4] = { 0 };
	unsigned count = 0;

	assert_int_equal(hbk_sam_parse_report_luns(buf, sizeof(buf), luns, 4, &count), 0);
	assert_int_equal(count, 3);
	assert_int_equal(luns[0], 0);
	assert_int_equal(luns[1], 7);
	assert_int_equal(luns[2], 0x12c);
	assert_int_equal(luns[3], 0);
}

static void test_parse_report_luns_more_than_max(void **state)
{
	(void)state;
	/* The target holds 3 LUNs but the allocation length cut the list at 1. */
	const uint8_t buf[16] = {
		0x00, 0x00, 0x00, 0x18, 0, 0, 0, 0,
		0x00, 0x03, 0, 0, 0, 0, 0, 0,
	};
	uint64_t luns[2] = { 99, 99 };
	unsigned count = 0;

	assert_int_equal(hbk_sam_parse_report_luns(buf, sizeof(buf), luns, 1, &count), 0);
	assert_int_equal(count, 3);
	assert_int_equal(luns[0], 3);
	assert_int_equal(luns[1], 99);
	assert_int_equal(hbk_sam_parse_report_luns(buf, sizeof(buf), NULL, 0, &count), 0);
	assert_int_equal(count, 3);
	/* Asking for two entries when only one arrived is a truncation. */
	assert_int_equal(hbk_sam_parse_report_luns(buf, sizeof(buf), luns, 2, &count), -EINVAL);
}

static void test_parse_report_luns_bad(void **state)
{
	(void)state;
	uint8_t buf[16] = { 0x00, 0x00, 0x00, 0x0c, 0, 0, 0, 0 };
	uint64_t luns[2];
	unsigned count = 0;

	assert_int_equal(hbk_sam_parse_report_luns(buf, sizeof(buf), luns, 2, &count), -EPROTO);
	assert_int_equal(hbk_sam_parse_report_luns(buf, 7, luns, 2, &count), -EINVAL);
	buf[3] = 0;
	assert_int_equal(hbk_sam_parse_report_luns(buf, 8, luns, 2, &count), 0);
	assert_int_equal(count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tur),
		cmocka_unit_test(test_inquiry_standard),
		cmocka_unit_test(test_inquiry_evpd),
		cmocka_unit_test(test_inquiry_page_without_evpd),
		cmocka_unit_test(test_report_luns),
		cmocka_unit_test(test_report_luns_invalid),
		cmocka_unit_test(test_read_capacity),
		cmocka_unit_test(test_read10),
		cmocka_unit_test(test_write10_fua),
		cmocka_unit_test(test_rw10_limits),
		cmocka_unit_test(test_read16_large_lba),
		cmocka_unit_test(test_write16_long_transfer),
		cmocka_unit_test(test_rw_range_errors),
		cmocka_unit_test(test_sync_cache16),
		cmocka_unit_test(test_unmap_cdb),
		cmocka_unit_test(test_unmap_param),
		cmocka_unit_test(test_unmap_param_limits),
		cmocka_unit_test(test_request_sense),
		cmocka_unit_test(test_mode_sense6),
		cmocka_unit_test(test_mode_sense10),
		cmocka_unit_test(test_parse_inquiry),
		cmocka_unit_test(test_parse_inquiry_odd_strings),
		cmocka_unit_test(test_parse_inquiry_truncated),
		cmocka_unit_test(test_parse_vpd_pages),
		cmocka_unit_test(test_parse_vpd_pages_bad),
		cmocka_unit_test(test_parse_vpd_serial),
		cmocka_unit_test(test_parse_devid_prefers_naa),
		cmocka_unit_test(test_parse_devid_eui_then_t10),
		cmocka_unit_test(test_parse_devid_none),
		cmocka_unit_test(test_parse_devid_malformed),
		cmocka_unit_test(test_parse_block_limits),
		cmocka_unit_test(test_parse_block_limits_short),
		cmocka_unit_test(test_parse_read_capacity16),
		cmocka_unit_test(test_parse_read_capacity16_short),
		cmocka_unit_test(test_parse_read_capacity10),
		cmocka_unit_test(test_lun_decode),
		cmocka_unit_test(test_parse_report_luns),
		cmocka_unit_test(test_parse_report_luns_more_than_max),
		cmocka_unit_test(test_parse_report_luns_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
