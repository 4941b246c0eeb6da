/* SPDX-License-Identifier: MIT */
/*
 * The pure-function half of the host's SAM initiator: builders for the CDBs
 * the host sends during discovery and I/O, and parsers for the data the
 * target answers with.  No I/O, no allocation, no global state; field
 * layouts follow SPC-4 and SBC-3.  Also the big-endian field helpers.
 */
#ifndef HBK_HOST_SAM_CDB_H
#define HBK_HOST_SAM_CDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"

/* ---- Operation codes and constants --------------------------------------- */

#define HBK_SAM_OP_TEST_UNIT_READY   0x00
#define HBK_SAM_OP_REQUEST_SENSE     0x03
#define HBK_SAM_OP_INQUIRY           0x12
#define HBK_SAM_OP_MODE_SENSE6       0x1a
#define HBK_SAM_OP_READ_CAPACITY10   0x25
#define HBK_SAM_OP_READ10            0x28
#define HBK_SAM_OP_WRITE10           0x2a
#define HBK_SAM_OP_UNMAP             0x42
#define HBK_SAM_OP_MODE_SENSE10      0x5a
#define HBK_SAM_OP_READ16            0x88
#define HBK_SAM_OP_WRITE16           0x8a
#define HBK_SAM_OP_SYNC_CACHE16      0x91
#define HBK_SAM_OP_SERVICE_ACTION_IN 0x9e
#define HBK_SAM_OP_REPORT_LUNS       0xa0
#define HBK_SAM_SA_READ_CAPACITY16   0x10

#define HBK_SAM_CDB_MAX              16

/* VPD page codes the host asks for. */
#define HBK_SAM_VPD_SUPPORTED        0x00
#define HBK_SAM_VPD_SERIAL           0x80
#define HBK_SAM_VPD_DEVID            0x83
#define HBK_SAM_VPD_BLOCK_LIMITS     0xb0

/* Lengths of the fixed parts of the parameter and response data. */
#define HBK_SAM_INQUIRY_STD_LEN      36  /* through the revision field */
#define HBK_SAM_RC10_LEN             8
#define HBK_SAM_RC16_LEN             32
#define HBK_SAM_UNMAP_HDR_LEN        8
#define HBK_SAM_UNMAP_DESC_LEN       16
/* Most descriptors a UNMAP parameter list can carry (16-bit length). */
#define HBK_SAM_UNMAP_MAX_DESC       ((0xffffu - HBK_SAM_UNMAP_HDR_LEN) / HBK_SAM_UNMAP_DESC_LEN)

/* A REPORT LUNS entry in an addressing method the parser does not decode. */
#define HBK_SAM_LUN_UNSUPPORTED      UINT64_MAX

/* ---- CDB builders --------------------------------------------------------
 *
 * Each writes a whole CDB into cdb[0..15] (bytes past the CDB length are
 * zeroed) and returns the CDB length (6, 10, 12 or 16), or a negative errno
 * without touching cdb.  Control bytes, group numbers and reserved fields are
 * zero.  Any thread (no shared state).
 */

/* TEST UNIT READY (6).  Returns 6.  Any thread. */
int hbk_sam_cdb_test_unit_ready(uint8_t cdb[16]);

/*
 * INQUIRY (6): the standard data (evpd false, page must be 0) or VPD page
 * `page` (evpd true).  Returns 6, or -EINVAL for a page code without EVPD.
 * Any thread.
 */
int hbk_sam_cdb_inquiry(uint8_t cdb[16], bool evpd, uint8_t page, uint16_t alloc_len);

/*
 * REPORT LUNS (12).  select_report is 0x00, 0x01, 0x02 or 0x10..0x12.
 * Returns 12, or -EINVAL for another select_report or an allocation length
 * below 16 (which the target must refuse).  Any thread.
 */
int hbk_sam_cdb_report_luns(uint8_t cdb[16], uint8_t select_report, uint32_t alloc_len);

/* READ CAPACITY (16) (SERVICE ACTION IN 0x9E/0x10).  Returns 16.  Any thread. */
int hbk_sam_cdb_read_capacity16(uint8_t cdb[16], uint32_t alloc_len);

/* READ CAPACITY (10); the target answers 8 bytes.  Returns 10.  Any thread. */
int hbk_sam_cdb_read_capacity10(uint8_t cdb[16]);

/*
 * READ or WRITE of nblocks blocks at lba, with FUA if asked: the (10) form
 * when lba fits in 32 bits and nblocks <= 65535, else the (16) form.
 * Returns 10 or 16, or -ERANGE for nblocks 0 or a range that runs past the
 * last 64-bit LBA.  Any thread.
 */
int hbk_sam_cdb_rw(uint8_t cdb[16], bool write, uint64_t lba, uint32_t nblocks, bool fua);

/*
 * SYNCHRONIZE CACHE (16) of nblocks blocks from lba; nblocks 0 means from
 * lba to the end of the medium.  Returns 16, or -ERANGE for a range that runs
 * past the last 64-bit LBA.  Any thread.
 */
int hbk_sam_cdb_sync_cache16(uint8_t cdb[16], uint64_t lba, uint32_t nblocks);

/*
 * UNMAP (10) with a parameter list of param_len bytes (as returned by
 * hbk_sam_unmap_param).  Returns 10, or -EINVAL when param_len is neither 0
 * nor 8 + 16 * n.  Any thread.
 */
int hbk_sam_cdb_unmap(uint8_t cdb[16], uint16_t param_len);

/*
 * Builds the UNMAP parameter list for `count` ranges (lba[i], nblocks[i])
 * into buf: an 8-byte header and one 16-byte block descriptor per range.
 * Returns the list length (8 + 16 * count), -ENOSPC when buf is smaller,
 * -ERANGE when count exceeds HBK_SAM_UNMAP_MAX_DESC or a range runs past the
 * last 64-bit LBA, -EINVAL for NULL arrays with count > 0.  Any thread.
 */
int hbk_sam_unmap_param(uint8_t *buf, size_t size, const uint64_t *lba,
			const uint32_t *nblocks, unsigned count);

/*
 * REQUEST SENSE (6) asking for fixed (desc false) or descriptor format sense
 * data.  Returns 6.  Any thread.
 */
int hbk_sam_cdb_request_sense(uint8_t cdb[16], bool desc, uint8_t alloc_len);

/*
 * MODE SENSE (6) / (10) of the current values of page/subpage, with DBD
 * (no block descriptors) if asked.  Return 6 / 10, or -EINVAL for a page code
 * above 0x3f.  Any thread.
 */
int hbk_sam_cdb_mode_sense6(uint8_t cdb[16], uint8_t page, uint8_t subpage,
			    uint8_t alloc_len, bool dbd);
int hbk_sam_cdb_mode_sense10(uint8_t cdb[16], uint8_t page, uint8_t subpage,
			     uint16_t alloc_len, bool dbd);

/* ---- Response parsers ----------------------------------------------------
 *
 * Each reads buf[0..len-1] and never beyond, fills *out only on success (list
 * parsers may have stored entries before failing), and returns 0, -EINVAL
 * when len is too short for what the data announces (truncated transfer) and
 * -EPROTO when the data itself is malformed (wrong page code, lengths that
 * do not add up).  Any thread (no shared state).
 */

struct hbk_sam_inquiry {
	uint8_t qualifier;     /* peripheral qualifier, 0..7 */
	uint8_t device_type;   /* peripheral device type, 0..31 */
	uint8_t version;
	bool    cmdque;        /* command queuing supported */
	char    vendor[9];     /* NUL-terminated, trailing spaces trimmed */
	char    product[17];
	char    revision[5];
};

/*
 * Standard INQUIRY data.  Returns 0, -EINVAL when len < 36, -EPROTO when
 * the additional length says the data ends before the revision field.
 * Bytes outside printable ASCII in the strings read as '?'.  Any thread.
 */
int hbk_sam_parse_inquiry(const uint8_t *buf, size_t len, struct hbk_sam_inquiry *out);

/*
 * VPD page 0x00 (supported pages).  Stores min(max, total) page codes in
 * pages[] and the total the page lists in *count.  Returns 0, -EPROTO for
 * another page code, -EINVAL when len is shorter than the header or than
 * the entries to store.  Any thread.
 */
int hbk_sam_parse_vpd_pages(const uint8_t *buf, size_t len, uint8_t *pages,
			    unsigned max, unsigned *count);

/*
 * VPD page 0x80 (unit serial number) into out as a NUL-terminated string,
 * leading and trailing spaces trimmed.  Returns 0, -EPROTO for another page
 * code, -EINVAL for truncated data or size 0, -ENOSPC when the serial does
 * not fit in size bytes.  Any thread.
 */
int hbk_sam_parse_vpd_serial(const uint8_t *buf, size_t len, char *out, size_t size);

/* Designator types of VPD page 0x83 that the host uses. */
enum hbk_sam_desig_type {
	HBK_SAM_DESIG_T10 = 1,
	HBK_SAM_DESIG_EUI64 = 2,
	HBK_SAM_DESIG_NAA = 3,
};

/* "t10." + a designator of up to 255 bytes + NUL. */
#define HBK_SAM_DEVID_LEN 260

struct hbk_sam_devid {
	uint8_t type;                 /* enum hbk_sam_desig_type */
	uint8_t len;                  /* designator length in bytes */
	char    id[HBK_SAM_DEVID_LEN]; /* "naa.<hex>", "eui.<hex>", "t10.<text>" */
};

/*
 * VPD page 0x83 (device identification): picks the best designator
 * associated with the logical unit, NAA over EUI-64 over T10 vendor ID (the
 * longer one, then the first, within a type).  NAA and EUI-64 print as
 * lowercase hex, T10 as text with trailing spaces trimmed and bytes outside
 * printable ASCII as '?'.  Returns 0, -ENOENT when there is no such
 * designator, -EPROTO for another page code, a descriptor that overruns the
 * page, or an NAA/EUI-64/T10 designator of impossible length, -EINVAL for
 * truncated data.  Any thread.
 */
int hbk_sam_parse_vpd_devid(const uint8_t *buf, size_t len, struct hbk_sam_devid *out);

struct hbk_sam_block_limits {
	uint16_t opt_xfer_granularity;   /* blocks */
	uint32_t max_xfer_len;           /* blocks, 0 = not reported */
	uint32_t opt_xfer_len;           /* blocks */
	uint32_t max_unmap_lba_count;
	uint32_t max_unmap_desc_count;
	uint32_t opt_unmap_granularity;
	uint32_t unmap_granularity_align;
	bool     ugavalid;               /* unmap_granularity_align is valid */
	uint64_t max_write_same_len;
};

/*
 * VPD page 0xB0 (block limits).  A field lying past the end of the page (as
 * its page length says) or past len reads as zero: older targets send the
 * short page.  Returns 0, -EINVAL when len < 4, -EPROTO for another page
 * code.  Any thread.
 */
int hbk_sam_parse_vpd_block_limits(const uint8_t *buf, size_t len,
				   struct hbk_sam_block_limits *out);

struct hbk_sam_capacity {
	uint64_t nblocks;          /* last LBA + 1 */
	uint32_t block_size;       /* bytes */
	bool     lbpme;            /* logical block provisioning enabled */
	bool     lbprz;            /* unmapped blocks read as zero */
	bool     prot_en;          /* protection information enabled */
	uint8_t  p_type;           /* protection type field, 0..7 */
	uint8_t  p_i_exponent;
	uint8_t  lbppbe;           /* log2 of logical blocks per physical block */
	uint16_t lowest_aligned;   /* lowest aligned LBA */
};

/*
 * READ CAPACITY (16) data.  The fields of bytes 12..15 read as zero when
 * len < 16.  Returns 0, -EINVAL when len < 12, -EPROTO for a block size of
 * 0 or a last LBA of 2^64 - 1.  Any thread.
 */
int hbk_sam_parse_read_capacity16(const uint8_t *buf, size_t len,
				  struct hbk_sam_capacity *out);

/*
 * READ CAPACITY (10) data; only nblocks and block_size are set, the rest is
 * zeroed.  Returns 0, -EINVAL when len < 8, -EPROTO for a block size of 0,
 * -EOVERFLOW when the last LBA is 0xffffffff (the capacity needs READ
 * CAPACITY (16)).  Any thread.
 */
int hbk_sam_parse_read_capacity10(const uint8_t *buf, size_t len,
				  struct hbk_sam_capacity *out);

/*
 * REPORT LUNS data.  Stores min(max, total) decoded LUNs in luns[] (see
 * hbk_scsi_lun_decode) and the total the list holds in *count, even when
 * that is more than max; pass max 0 to learn only the total.  Returns 0,
 * -EPROTO when the list length is not a multiple of 8, -EINVAL when len is
 * shorter than the header or than the entries to store.  Any thread.
 */
int hbk_sam_parse_report_luns(const uint8_t *buf, size_t len, uint64_t *luns,
			      unsigned max, unsigned *count);

#endif /* HBK_HOST_SAM_CDB_H */
